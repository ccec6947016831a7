//! Reading a remote-read answer series by series, in bounded memory: the framing of a streamed
//! answer (`STREAMED_XOR_CHUNKS`), the decoding of each frame's XOR chunks into the samples
//! inside the window, and [`SeriesReader`], which hands the collector one series at a time
//! whether the answer was streamed, sampled (`SAMPLES`, the fallback) or a query-mode result.
//!
//! A streamed answer is a sequence of frames: a uvarint length, the CRC32-Castagnoli of the
//! message (4 bytes, big endian), then a `ChunkedReadResponse`. Prometheus writes one series per
//! frame (a long series spans consecutive frames) and flushes each, so at most one frame (at
//! most [`MAX_FRAME_BYTES`]) plus one network read is held here at a time.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use prost::Message;

use super::labels::SeriesLabels;
use super::source::Window;
use super::xor::{self, XorError};
use crate::remote_write::Sample;
use crate::remote_write::proto::{ChunkedReadResponse, chunk};

/// The content type of a streamed answer (Prometheus sends exactly this).
pub const CONTENT_TYPE_STREAMED: &str =
    "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse";

/// Largest frame accepted. Prometheus cuts frames at `--storage.remote.read-max-bytes-in-frame`
/// (1 MiB by default) plus at most one chunk, so this leaves room for 8× that setting.
pub const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;

/// One series of an answer: labels as the source sent them, the samples inside the window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawSeries {
    /// Which query (policy clause) it answers: clauses may overlap, so the same series can come
    /// back for two of them.
    pub query: usize,
    pub labels: SeriesLabels,
    pub samples: Vec<Sample>,
}

/// How the source answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseType {
    /// Remote read, streamed XOR chunks, frame by frame.
    #[default]
    StreamedXorChunks,
    /// Remote read, one snappy `ReadResponse` (a server without streaming): read whole.
    Samples,
    /// Range selectors through `/api/v1/query`: read whole.
    Query,
}

/// What one read went through (`/collected-metrics`, `last_read`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReadStats {
    pub response_type: ResponseType,
    /// Body bytes received (compressed for `samples`).
    pub bytes: u64,
    pub frames: u64,
    /// Series handed on, and their samples inside the window.
    pub series: u64,
    pub samples: u64,
    pub xor_chunks: u64,
    /// Samples of XOR chunks that overlap the window's edges, outside it: dropped.
    pub samples_outside_window: u64,
    /// Native-histogram chunks (integer and float): not copied (the collector writes float
    /// samples), counted here and in the cycle's log line.
    pub histogram_chunks_skipped: u64,
    /// Chunks of an encoding this proxy does not know: skipped and counted.
    pub unknown_chunks_skipped: u64,
}

/// A streamed answer that can't be read: the cycle fails and the window is read again.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error(
        "frame {frame} announces {size} bytes, over the limit of {limit} (lower \
         --storage.remote.read-max-bytes-in-frame on the source Prometheus)"
    )]
    Oversize { frame: u64, size: u64, limit: usize },
    #[error("frame {frame} has a malformed length prefix")]
    Length { frame: u64 },
    #[error(
        "frame {frame} is corrupted: its CRC32-C is {actual:08x}, the frame says {expected:08x}"
    )]
    Crc {
        frame: u64,
        expected: u32,
        actual: u32,
    },
    #[error("the answer ends inside frame {frame} ({have} of {need} bytes)")]
    Truncated {
        frame: u64,
        have: usize,
        need: usize,
    },
    #[error("frame {frame} is not a ChunkedReadResponse: {error}")]
    Protobuf {
        frame: u64,
        error: prost::DecodeError,
    },
    #[error("frame {frame} answers query {index}, but only {queries} were asked")]
    QueryIndex {
        frame: u64,
        index: i64,
        queries: usize,
    },
    #[error("frame {frame}, series {series}: {error}")]
    Chunk {
        frame: u64,
        series: String,
        error: XorError,
    },
}

/// Cuts a byte stream into CRC-checked frames.
#[derive(Debug)]
pub struct Frames {
    buf: BytesMut,
    limit: usize,
    /// Frames returned so far (names the frame in errors).
    count: u64,
}

impl Frames {
    pub fn new(limit: usize) -> Frames {
        Frames {
            buf: BytesMut::new(),
            limit,
            count: 0,
        }
    }

    pub fn extend(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame's message, CRC-checked; `None` until more bytes arrive. An
    /// oversize length is refused as soon as it is read, before its bytes are buffered.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        self.read_next(Bytes::copy_from_slice)
    }

    /// [`Frames::next_frame`], handing the message to `read` where it lies in the buffer.
    pub fn read_next<R>(&mut self, read: impl FnOnce(&[u8]) -> R) -> Result<Option<R>, FrameError> {
        let frame = self.count;
        let mut size = 0u64;
        let mut prefix = 0;
        loop {
            let Some(&byte) = self.buf.get(prefix) else {
                return Ok(None);
            };
            if prefix == 9 && byte > 1 {
                return Err(FrameError::Length { frame });
            }
            size |= u64::from(byte & 0x7f) << (7 * prefix);
            prefix += 1;
            if byte < 0x80 {
                break;
            }
            if prefix == 10 {
                return Err(FrameError::Length { frame });
            }
        }
        if size > self.limit as u64 {
            return Err(FrameError::Oversize {
                frame,
                size,
                limit: self.limit,
            });
        }
        let need = prefix + 4 + size as usize;
        if self.buf.len() < need {
            self.buf.reserve(need - self.buf.len());
            return Ok(None);
        }
        let expected = (&self.buf[prefix..prefix + 4]).get_u32();
        let message = &self.buf[prefix + 4..need];
        let actual = crc32c::crc32c(message);
        if actual != expected {
            return Err(FrameError::Crc {
                frame,
                expected,
                actual,
            });
        }
        let out = read(message);
        self.buf.advance(need);
        self.count += 1;
        Ok(Some(out))
    }

    /// At the end of the body: nothing may be left over.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        // What the incomplete frame needed, for the message.
        let mut size = 0u64;
        let mut prefix = 0;
        for &byte in self.buf.iter().take(10) {
            size |= u64::from(byte & 0x7f) << (7 * prefix);
            prefix += 1;
            if byte < 0x80 {
                break;
            }
        }
        Err(FrameError::Truncated {
            frame: self.count,
            have: self.buf.len(),
            need: prefix + 4 + size as usize,
        })
    }

    pub fn count(&self) -> u64 {
        self.count
    }
}

/// One frame on the wire (tests, benches, simulated servers).
pub fn encode_frame(message: &ChunkedReadResponse) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut out = Vec::with_capacity(body.len() + 14);
    prost::encoding::encode_varint(body.len() as u64, &mut out);
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decode one frame's series into `out`, keeping only samples inside `window`; a series left
/// without samples there is not handed on. The frame is read by [`scan`] in one pass; one the
/// scanner can't read is decoded by prost (whose error, if any, is the frame's).
pub fn decode_frame(
    frame_no: u64,
    frame: &[u8],
    window: Window,
    queries: usize,
    stats: &mut ReadStats,
    out: &mut VecDeque<RawSeries>,
) -> Result<(), FrameError> {
    let (len_before, stats_before) = (out.len(), stats.clone());
    let Ok(scanned) = scan::scan_frame(frame, window, stats, out) else {
        out.truncate(len_before);
        *stats = stats_before;
        return decode_frame_prost(frame_no, frame, window, queries, stats, out);
    };
    let query = match query_of(frame_no, scanned.query_index, queries) {
        Ok(q) => q,
        Err(e) => {
            out.truncate(len_before);
            return Err(e);
        }
    };
    if let Some((labels, error)) = scanned.chunk_error {
        out.truncate(len_before);
        return Err(FrameError::Chunk {
            frame: frame_no,
            series: describe_labels(labels.iter()),
            error,
        });
    }
    stats.frames += 1;
    for series in out.range_mut(len_before..) {
        series.query = query;
    }
    Ok(())
}

fn query_of(frame: u64, index: i64, queries: usize) -> Result<usize, FrameError> {
    usize::try_from(index)
        .ok()
        .filter(|&q| q < queries)
        .ok_or(FrameError::QueryIndex {
            frame,
            index,
            queries,
        })
}

/// [`decode_frame`] through prost's owned messages.
fn decode_frame_prost(
    frame_no: u64,
    frame: &[u8],
    window: Window,
    queries: usize,
    stats: &mut ReadStats,
    out: &mut VecDeque<RawSeries>,
) -> Result<(), FrameError> {
    let message = ChunkedReadResponse::decode(frame).map_err(|error| FrameError::Protobuf {
        frame: frame_no,
        error,
    })?;
    let query = query_of(frame_no, message.query_index, queries)?;
    stats.frames += 1;
    for series in message.chunked_series {
        let mut samples = Vec::new();
        for c in &series.chunks {
            window_samples(
                c.r#type,
                c.min_time_ms,
                c.max_time_ms,
                &c.data,
                window,
                stats,
                &mut samples,
            )
            .map_err(|error| FrameError::Chunk {
                frame: frame_no,
                series: describe_labels(series.labels.iter().map(|l| (&*l.name, &*l.value))),
                error,
            })?;
        }
        if samples.is_empty() {
            continue;
        }
        stats.series += 1;
        stats.samples += samples.len() as u64;
        out.push_back(RawSeries {
            query,
            labels: series.labels.into(),
            samples,
        });
    }
    Ok(())
}

/// Append the samples of one chunk that lie inside `window` to `samples`; count what is
/// skipped (histogram and unknown chunks, samples outside the window).
fn window_samples(
    kind: i32,
    min_time_ms: i64,
    max_time_ms: i64,
    data: &[u8],
    window: Window,
    stats: &mut ReadStats,
    samples: &mut Vec<Sample>,
) -> Result<(), XorError> {
    if kind != chunk::Encoding::Xor as i32 {
        match chunk::Encoding::try_from(kind) {
            Ok(chunk::Encoding::Histogram | chunk::Encoding::FloatHistogram) => {
                stats.histogram_chunks_skipped += 1;
            }
            _ => stats.unknown_chunks_skipped += 1,
        }
        return Ok(());
    }
    stats.xor_chunks += 1;
    if max_time_ms < window.start_ms || min_time_ms > window.end_ms {
        return Ok(());
    }
    // No reserve for the announced count: a chunk often reaches far outside the window.
    let count = xor::decode_window(data, window.start_ms, window.end_ms, samples, |t, v| {
        Sample {
            value: v,
            timestamp: t,
        }
    })?;
    stats.samples_outside_window += count.outside;
    Ok(())
}

/// `{a="1", b="2"}`, cut short: names a series in an error message.
fn describe_labels<'a>(labels: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut s = String::from("{");
    for (i, (name, value)) in labels.enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(name);
        s.push_str("=\"");
        s.push_str(value);
        s.push('"');
        if s.len() > 200 {
            s.push_str(", …");
            break;
        }
    }
    s.push('}');
    s
}

enum Body {
    /// A streamed HTTP answer, read chunk by chunk.
    Http(reqwest::Response),
    /// A streamed answer from memory, in pieces as a network would deliver them (the bench and
    /// the tests drive the real frame path with it).
    Pieces(Box<dyn Iterator<Item = Bytes> + Send>),
    /// A sampled or query-mode answer, decoded whole.
    Decoded(std::vec::IntoIter<RawSeries>),
}

/// One answer, series by series.
pub struct SeriesReader {
    body: Body,
    frames: Frames,
    window: Window,
    queries: usize,
    /// Longest wait for the next piece of a streamed body.
    idle_timeout: Duration,
    ready: VecDeque<RawSeries>,
    done: bool,
    pub stats: ReadStats,
}

impl std::fmt::Debug for SeriesReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesReader")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl SeriesReader {
    fn with(body: Body, window: Window, queries: usize, response_type: ResponseType) -> Self {
        SeriesReader {
            body,
            frames: Frames::new(MAX_FRAME_BYTES),
            window,
            queries,
            idle_timeout: Duration::from_secs(30),
            ready: VecDeque::new(),
            done: false,
            stats: ReadStats {
                response_type,
                ..ReadStats::default()
            },
        }
    }

    /// A streamed HTTP answer to `queries` queries over `window`.
    pub fn streamed(
        response: reqwest::Response,
        window: Window,
        queries: usize,
        idle_timeout: Duration,
    ) -> Self {
        let mut r = Self::with(
            Body::Http(response),
            window,
            queries,
            ResponseType::StreamedXorChunks,
        );
        r.idle_timeout = idle_timeout;
        r
    }

    /// A streamed answer held in memory as `pieces`.
    pub fn streamed_from_memory(pieces: Vec<Bytes>, window: Window, queries: usize) -> Self {
        Self::streamed_from_pieces(pieces.into_iter(), window, queries)
    }

    /// A streamed answer whose pieces come from `pieces` (a generator, a channel).
    pub fn streamed_from_pieces(
        pieces: impl Iterator<Item = Bytes> + Send + 'static,
        window: Window,
        queries: usize,
    ) -> Self {
        Self::with(
            Body::Pieces(Box::new(pieces)),
            window,
            queries,
            ResponseType::StreamedXorChunks,
        )
    }

    /// An answer decoded whole (sampled remote read, query mode).
    pub fn decoded(series: Vec<RawSeries>, window: Window, response_type: ResponseType) -> Self {
        let mut r = Self::with(
            Body::Decoded(Vec::new().into_iter()),
            window,
            0,
            response_type,
        );
        r.stats.series = series.len() as u64;
        r.stats.samples = series.iter().map(|s| s.samples.len() as u64).sum();
        r.body = Body::Decoded(series.into_iter());
        r
    }

    /// The next series, `None` at the end of the answer. An error ends the answer: the caller
    /// fails the cycle, and the window is read again by the next one.
    pub async fn next(&mut self) -> Result<Option<RawSeries>, String> {
        loop {
            if let Some(series) = self.ready.pop_front() {
                return Ok(Some(series));
            }
            if self.done {
                return Ok(None);
            }
            if let Body::Decoded(series) = &mut self.body {
                let next = series.next();
                self.done = next.is_none();
                return Ok(next);
            }
            let frame_no = self.frames.count();
            let (window, queries) = (self.window, self.queries);
            let (stats, ready) = (&mut self.stats, &mut self.ready);
            let decoded = self
                .frames
                .read_next(|frame| decode_frame(frame_no, frame, window, queries, stats, ready))
                .map_err(|e| e.to_string())?;
            if let Some(decoded) = decoded {
                decoded.map_err(|e| e.to_string())?;
                continue;
            }
            let piece = match &mut self.body {
                Body::Http(response) => {
                    match tokio::time::timeout(self.idle_timeout, response.chunk()).await {
                        Err(_) => {
                            return Err(format!(
                                "no data for {} s in the middle of the streamed answer",
                                self.idle_timeout.as_secs()
                            ));
                        }
                        Ok(Err(e)) => {
                            return Err(format!(
                                "the streamed answer broke off after {} frames: {}",
                                self.frames.count(),
                                crate::client::describe(&e)
                            ));
                        }
                        Ok(Ok(piece)) => piece,
                    }
                }
                Body::Pieces(pieces) => pieces.next(),
                Body::Decoded(_) => None,
            };
            match piece {
                Some(piece) => {
                    self.stats.bytes += piece.len() as u64;
                    self.frames.extend(&piece);
                }
                None => {
                    self.done = true;
                    self.frames.finish().map_err(|e| e.to_string())?;
                }
            }
        }
    }
}

mod scan;

#[cfg(test)]
mod tests;
