use super::*;
use crate::remote_write::Label;
use crate::remote_write::proto::{Chunk, ChunkedSeries};

fn label(name: &str, value: &str) -> Label {
    Label {
        name: name.into(),
        value: value.into(),
    }
}

fn xor_chunk(samples: &[(i64, f64)]) -> Chunk {
    Chunk {
        min_time_ms: samples.first().map_or(0, |s| s.0),
        max_time_ms: samples.last().map_or(0, |s| s.0),
        r#type: chunk::Encoding::Xor as i32,
        data: xor::encode(samples).into(),
    }
}

fn frame(query: i64, name: &str, chunks: Vec<Chunk>) -> Vec<u8> {
    encode_frame(&ChunkedReadResponse {
        chunked_series: vec![ChunkedSeries {
            labels: vec![label("__name__", name)],
            chunks,
        }],
        query_index: query,
    })
}

const WINDOW: Window = Window {
    start_ms: 1000,
    end_ms: 2000,
};

async fn read_all(
    pieces: Vec<Bytes>,
    queries: usize,
) -> (Result<Vec<RawSeries>, String>, ReadStats) {
    let mut reader = SeriesReader::streamed_from_memory(pieces, WINDOW, queries);
    let mut out = Vec::new();
    let result = loop {
        match reader.next().await {
            Ok(Some(s)) => out.push(s),
            Ok(None) => break Ok(out),
            Err(e) => break Err(e),
        }
    };
    (result, reader.stats)
}

#[tokio::test]
async fn frames_split_anywhere_by_the_network_are_put_back_together() {
    let mut body = frame(0, "a", vec![xor_chunk(&[(1000, 1.0), (1500, 2.0)])]);
    body.extend(frame(0, "b", vec![xor_chunk(&[(1100, 3.0)])]));
    body.extend(frame(1, "c", vec![xor_chunk(&[(2000, 4.0)])]));
    for piece in [1, 2, 3, 7, body.len()] {
        let pieces: Vec<Bytes> = body.chunks(piece).map(Bytes::copy_from_slice).collect();
        let (got, stats) = read_all(pieces, 2).await;
        let got = got.unwrap();
        let names: Vec<(&str, usize, usize)> = got
            .iter()
            .map(|s| {
                (
                    s.labels.get(0).map_or("", |l| l.1),
                    s.query,
                    s.samples.len(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [("a", 0, 2), ("b", 0, 1), ("c", 1, 1)],
            "pieces of {piece}"
        );
        assert_eq!(stats.frames, 3);
        assert_eq!(stats.bytes, body.len() as u64);
    }
}

#[tokio::test]
async fn only_samples_inside_the_window_are_kept() {
    // Chunks overlap both edges of the window; one lies wholly before it.
    let body = frame(
        0,
        "a",
        vec![
            xor_chunk(&[(10, 0.0), (500, 0.5)]),
            xor_chunk(&[(900, 1.0), (999, 2.0), (1000, 3.0), (1001, 4.0)]),
            xor_chunk(&[(1999, 5.0), (2000, 6.0), (2001, 7.0), (2500, 8.0)]),
        ],
    );
    let (got, stats) = read_all(vec![body.into()], 1).await;
    let got = got.unwrap();
    let times: Vec<i64> = got[0].samples.iter().map(|s| s.timestamp).collect();
    assert_eq!(times, [1000, 1001, 1999, 2000]);
    assert_eq!(stats.samples, 4);
    assert_eq!(stats.xor_chunks, 3);
    // 900, 999 before; 2001 after (the rest of that chunk isn't decoded).
    assert_eq!(stats.samples_outside_window, 3);
    // A series with nothing inside the window is not handed on.
    let body = frame(0, "early", vec![xor_chunk(&[(10, 0.0), (999, 0.5)])]);
    let (got, _) = read_all(vec![body.into()], 1).await;
    assert!(got.unwrap().is_empty());
}

#[tokio::test]
async fn histogram_chunks_are_counted_and_skipped() {
    let histogram = |t: chunk::Encoding| Chunk {
        min_time_ms: 1000,
        max_time_ms: 2000,
        r#type: t as i32,
        data: Bytes::from_static(&[0, 1, 2, 3]),
    };
    let body = frame(
        0,
        "mixed",
        vec![
            histogram(chunk::Encoding::Histogram),
            histogram(chunk::Encoding::FloatHistogram),
            Chunk {
                r#type: 42,
                ..histogram(chunk::Encoding::Unknown)
            },
            xor_chunk(&[(1500, 1.0)]),
        ],
    );
    let (got, stats) = read_all(vec![body.into()], 1).await;
    assert_eq!(got.unwrap()[0].samples.len(), 1);
    assert_eq!(stats.histogram_chunks_skipped, 2);
    assert_eq!(stats.unknown_chunks_skipped, 1);
}

#[tokio::test]
async fn a_crc_mismatch_is_an_error() {
    let mut body = frame(0, "a", vec![xor_chunk(&[(1500, 1.0)])]);
    let last = body.len() - 1;
    body[last] ^= 0x01;
    let (got, _) = read_all(vec![body.into()], 1).await;
    let error = got.unwrap_err();
    assert!(
        error.contains("corrupted") && error.contains("CRC32-C"),
        "{error}"
    );
}

#[tokio::test]
async fn a_truncated_frame_is_an_error() {
    let good = frame(0, "a", vec![xor_chunk(&[(1500, 1.0)])]);
    let mut body = good.clone();
    body.extend_from_slice(&good[..good.len() - 3]);
    let (got, _) = read_all(vec![body.into()], 1).await;
    let error = got.unwrap_err();
    assert!(error.contains("ends inside frame 1"), "{error}");
    // Cut inside the length prefix or the CRC too.
    for cut in [1, 3] {
        let (got, _) = read_all(vec![Bytes::copy_from_slice(&good[..cut])], 1).await;
        assert!(got.unwrap_err().contains("ends inside frame 0"));
    }
}

#[test]
fn an_oversize_frame_is_refused_before_it_is_buffered() {
    let mut frames = Frames::new(1024);
    // Announces 1 MiB; only the prefix has arrived.
    let mut prefix = Vec::new();
    prost::encoding::encode_varint(1 << 20, &mut prefix);
    frames.extend(&prefix);
    let error = frames.next_frame().unwrap_err().to_string();
    assert!(
        error.contains("1048576 bytes, over the limit of 1024")
            && error.contains("read-max-bytes-in-frame"),
        "{error}"
    );
    let mut frames = Frames::new(1024);
    frames.extend(&[0xff; 11]);
    assert!(matches!(
        frames.next_frame(),
        Err(FrameError::Length { .. })
    ));
}

#[tokio::test]
async fn malformed_messages_and_chunks_are_errors() {
    // A valid frame around bytes that are no protobuf.
    let junk = [0x0a, 0xff, 0xff];
    let mut body = Vec::new();
    prost::encoding::encode_varint(junk.len() as u64, &mut body);
    body.extend_from_slice(&crc32c::crc32c(&junk).to_be_bytes());
    body.extend_from_slice(&junk);
    let (got, _) = read_all(vec![body.into()], 1).await;
    assert!(got.unwrap_err().contains("not a ChunkedReadResponse"));
    // A chunk cut short names the series.
    let mut chunk = xor_chunk(&[(1500, 1.0), (1600, 2.5), (1700, 3.0)]);
    chunk.data = chunk.data.slice(..chunk.data.len() - 2);
    let (got, _) = read_all(vec![frame(0, "cut", vec![chunk]).into()], 1).await;
    let error = got.unwrap_err();
    assert!(
        error.contains("__name__=\"cut\"") && error.contains("ends inside sample"),
        "{error}"
    );
    // A query index nobody asked for.
    let body = frame(3, "a", vec![xor_chunk(&[(1500, 1.0)])]);
    let (got, _) = read_all(vec![body.into()], 2).await;
    assert!(
        got.unwrap_err()
            .contains("answers query 3, but only 2 were asked")
    );
}

#[tokio::test]
async fn an_empty_answer_has_no_series() {
    let (got, stats) = read_all(Vec::new(), 1).await;
    assert!(got.unwrap().is_empty());
    assert_eq!(stats.frames, 0);
}

/// A frame's message decoded by [`decode_frame`] (the one-pass scanner, prost when it gives up)
/// and by prost alone: the same series, samples and counts, or the same error.
fn both_ways(message: &[u8], queries: usize) -> [Result<(Vec<RawSeries>, ReadStats), String>; 2] {
    let run = |prost_only: bool| {
        let mut stats = ReadStats::default();
        let mut out = VecDeque::new();
        let decoded = if prost_only {
            decode_frame_prost(0, message, WINDOW, queries, &mut stats, &mut out)
        } else {
            decode_frame(0, message, WINDOW, queries, &mut stats, &mut out)
        };
        decoded
            .map(|()| (out.into_iter().collect(), stats))
            .map_err(|e| e.to_string())
    };
    [run(false), run(true)]
}

/// Field `tag` holding the encoding of `message`.
fn field<M: prost::Message>(tag: u32, message: &M) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::message::encode(tag, message, &mut out);
    out
}

fn len_field(tag: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::bytes::encode(tag, &bytes.to_vec(), &mut out);
    out
}

#[test]
fn the_one_pass_reader_agrees_with_prost_on_every_field_order() {
    let chunk = xor_chunk(&[(900, 0.5), (1000, 1.0), (1500, 2.0)]);
    let labels = [label("__name__", "up"), label("job", "ü-job")];
    // A series with its chunk before its labels, an unknown varint field between them, and a
    // label whose name comes after its value; the query index before the series.
    let mut series = field(2, &chunk);
    series.extend([0x18, 0x07]); // field 3, varint 7: unknown
    series.extend(field(1, &labels[0]));
    let mut late_name = len_field(2, labels[1].value.as_bytes());
    late_name.extend(len_field(1, labels[1].name.as_bytes()));
    series.extend(len_field(1, &late_name));
    let mut message = vec![0x10, 0x01]; // query_index = 1
    message.extend(len_field(1, &series));
    // A second series, plainly encoded, without samples in the window: not handed on.
    message.extend(field(
        1,
        &ChunkedSeries {
            labels: vec![label("__name__", "old")],
            chunks: vec![xor_chunk(&[(10, 1.0)])],
        },
    ));
    let one_pass = scan::scan_frame(
        &message,
        WINDOW,
        &mut ReadStats::default(),
        &mut VecDeque::new(),
    );
    assert!(one_pass.is_ok(), "read in one pass, not by the fallback");
    let [scanned, prost] = both_ways(&message, 2);
    let (series, stats) = scanned.clone().expect("decodes");
    assert_eq!(scanned, prost);
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].query, 1);
    assert_eq!(series[0].labels.to_labels(), labels);
    assert_eq!(series[0].samples.len(), 2);
    assert_eq!(
        (stats.frames, stats.samples_outside_window, stats.xor_chunks),
        (1, 1, 2)
    );
}

#[test]
fn what_the_one_pass_reader_does_not_take_is_prost_s_to_judge() {
    let chunk = field(2, &xor_chunk(&[(1000, 1.0)]));
    let with_label = |name: &[u8]| {
        let mut label = len_field(1, name);
        label.extend(len_field(2, b"v"));
        let mut series = len_field(1, &label);
        series.extend(&chunk);
        len_field(1, &series)
    };
    let one_pass = |m: &[u8]| {
        scan::scan_frame(m, WINDOW, &mut ReadStats::default(), &mut VecDeque::new()).is_ok()
    };
    assert!(one_pass(&with_label(b"ok")));
    // Invalid UTF-8 in a name: prost's error.
    assert!(!one_pass(&with_label(b"\xff")));
    let [scanned, prost] = both_ways(&with_label(b"\xff"), 1);
    assert!(
        scanned.as_ref().is_err_and(|e| e.contains("UTF-8")),
        "{scanned:?}"
    );
    assert_eq!(scanned, prost);
    // A label name with a varint where a string belongs: prost's error.
    let mut series = len_field(1, &[0x08, 0x01]);
    series.extend(&chunk);
    let [scanned, prost] = both_ways(&len_field(1, &series), 1);
    assert!(scanned.is_err());
    assert_eq!(scanned, prost);
    // An unknown field holding a group (wire types 3 and 4): the scanner gives up, prost skips
    // it, and the series is read.
    let mut message = with_label(b"g");
    message.extend([0x1b, 0x08, 0x01, 0x1c]); // field 3: start group, varint, end group
    let [scanned, prost] = both_ways(&message, 1);
    assert_eq!(scanned.as_ref().map(|(s, _)| s.len()), Ok(1));
    assert_eq!(scanned, prost);
    // A query index past the queries asked: the same error either way.
    let mut message = with_label(b"q");
    message.extend([0x10, 0x05]);
    let [scanned, prost] = both_ways(&message, 1);
    assert!(
        scanned.as_ref().is_err_and(|e| e.contains("query 5")),
        "{scanned:?}"
    );
    assert_eq!(scanned, prost);
}
