use super::*;
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
            .map(|s| (s.labels[0].value.as_str(), s.query, s.samples.len()))
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
