//! Reading one streamed remote-read frame (`ChunkedReadResponse`) in a single pass over its
//! bytes: each series' labels are copied once into its [`SeriesLabels`] and each XOR chunk is
//! decoded where it lies, instead of decoding the frame into owned messages first (two
//! allocations per label and a copy of every chunk).
//!
//! Like the ingest path's scanner (`remote_write::wire`), it reads fields as prost does (unknown
//! fields skipped, the last of a repeated scalar wins) and gives up on anything else: a wrong
//! wire type, a malformed varint or length, invalid UTF-8, a group. The caller then decodes the
//! frame with prost, whose verdict and error message stand, so the scanner never accepts what
//! prost would refuse.

use std::collections::VecDeque;

use super::{RawSeries, ReadStats, window_samples};
use crate::collector::labels::{SeriesLabels, SeriesLabelsBuilder};
use crate::collector::source::Window;
use crate::collector::xor::XorError;
use crate::remote_write::wire::{LEN, NotScanned, Reader, VARINT};

/// What a scanned frame said besides its series.
pub(super) struct Scanned {
    pub query_index: i64,
    /// The first chunk that could not be decoded, and its series' labels.
    pub chunk_error: Option<(SeriesLabels, XorError)>,
}

/// Scan `frame`, appending its series that have samples inside `window` to `out` (their
/// `query` is left 0: the query index is the frame's last field). On `Err` the caller restores
/// `out` and `stats` and decodes the frame with prost.
pub(super) fn scan_frame(
    frame: &[u8],
    window: Window,
    stats: &mut ReadStats,
    out: &mut VecDeque<RawSeries>,
) -> Result<Scanned, NotScanned> {
    let mut r = Reader { buf: frame };
    let mut scanned = Scanned {
        query_index: 0,
        chunk_error: None,
    };
    while !r.buf.is_empty() {
        match r.key()? {
            (1, LEN) => scan_series(r.bytes()?, window, stats, out, &mut scanned.chunk_error)?,
            (2, VARINT) => scanned.query_index = r.varint()? as i64,
            (1 | 2, _) => return Err(NotScanned),
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok(scanned)
}

/// A `ChunkedSeries`: fields 1 (labels) and 2 (chunks), in any order.
fn scan_series(
    bytes: &[u8],
    window: Window,
    stats: &mut ReadStats,
    out: &mut VecDeque<RawSeries>,
    chunk_error: &mut Option<(SeriesLabels, XorError)>,
) -> Result<(), NotScanned> {
    let mut r = Reader { buf: bytes };
    // Labels are most of a series' bytes besides its chunks; 256 fits nearly all.
    let mut labels = SeriesLabelsBuilder::with_capacity(12, bytes.len().min(256));
    let mut samples = Vec::new();
    let mut failed = None;
    while !r.buf.is_empty() {
        match r.key()? {
            (1, LEN) => {
                let (name, value) = scan_label(r.bytes()?)?;
                labels.push(name, value);
            }
            (2, LEN) => {
                let chunk = scan_chunk(r.bytes()?)?;
                if failed.is_none()
                    && let Err(e) = window_samples(
                        chunk.kind,
                        chunk.min_time_ms,
                        chunk.max_time_ms,
                        chunk.data,
                        window,
                        stats,
                        &mut samples,
                    )
                {
                    failed = Some(e);
                }
            }
            (1 | 2, _) => return Err(NotScanned),
            (_, wire) => r.skip(wire)?,
        }
    }
    let labels = labels.finish().ok_or(NotScanned)?;
    if let Some(error) = failed {
        if chunk_error.is_none() {
            *chunk_error = Some((labels, error));
        }
        return Ok(());
    }
    if samples.is_empty() {
        return Ok(());
    }
    stats.series += 1;
    stats.samples += samples.len() as u64;
    out.push_back(RawSeries {
        query: 0,
        labels,
        samples,
    });
    Ok(())
}

/// A `Label`: name (1) and value (2), UTF-8 checked by [`SeriesLabelsBuilder::finish`].
fn scan_label(bytes: &[u8]) -> Result<(&[u8], &[u8]), NotScanned> {
    let mut r = Reader { buf: bytes };
    let (mut name, mut value): (&[u8], &[u8]) = (&[], &[]);
    while !r.buf.is_empty() {
        match r.key()? {
            (1, LEN) => name = r.bytes()?,
            (2, LEN) => value = r.bytes()?,
            (1 | 2, _) => return Err(NotScanned),
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok((name, value))
}

struct ChunkRef<'a> {
    min_time_ms: i64,
    max_time_ms: i64,
    kind: i32,
    data: &'a [u8],
}

/// A `Chunk`: min time (1), max time (2), encoding (3), data (4).
fn scan_chunk(bytes: &[u8]) -> Result<ChunkRef<'_>, NotScanned> {
    let mut r = Reader { buf: bytes };
    let mut chunk = ChunkRef {
        min_time_ms: 0,
        max_time_ms: 0,
        kind: 0,
        data: &[],
    };
    while !r.buf.is_empty() {
        match r.key()? {
            (1, VARINT) => chunk.min_time_ms = r.varint()? as i64,
            (2, VARINT) => chunk.max_time_ms = r.varint()? as i64,
            // prost reads an int32 field as the varint's low 32 bits.
            (3, VARINT) => chunk.kind = r.varint()? as i32,
            (4, LEN) => chunk.data = r.bytes()?,
            (1..=4, _) => return Err(NotScanned),
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok(chunk)
}
