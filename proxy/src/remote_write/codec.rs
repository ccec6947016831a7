//! The remote-write 1.0 wire codec: protobuf `WriteRequest` framed with raw (block) snappy, plus
//! the HTTP header names and values the protocol requires.
//!
//! Decoding is defensive: the snappy preamble announces the decompressed length, and that claim is
//! checked against the caller's limit before any buffer is allocated, so a tiny body claiming
//! gigabytes cannot make us allocate them.

use prost::Message;

use super::proto::WriteRequest;

/// `Content-Encoding` header name.
pub const CONTENT_ENCODING: &str = "Content-Encoding";
/// Remote write 1.0 bodies are raw (block) snappy, not the framed stream format.
pub const CONTENT_ENCODING_SNAPPY: &str = "snappy";
/// `Content-Type` header name.
pub const CONTENT_TYPE: &str = "Content-Type";
/// Content type of a remote-write 1.0 body.
pub const CONTENT_TYPE_PROTOBUF: &str = "application/x-protobuf";
/// Version header name.
pub const REMOTE_WRITE_VERSION_HEADER: &str = "X-Prometheus-Remote-Write-Version";
/// Remote write 1.0 announces itself as `0.1.0`.
pub const REMOTE_WRITE_VERSION: &str = "0.1.0";

/// Why a remote-write body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("invalid snappy body: {0}")]
    Snappy(#[from] snap::Error),
    #[error("decompressed body of {claimed} bytes exceeds the limit of {limit} bytes")]
    TooLarge { claimed: usize, limit: usize },
    #[error("invalid protobuf message: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// Within the size limit, but made of so many tiny items (an empty series or histogram is
    /// 2 bytes on the wire and over 100 bytes decoded) that decoding would take more memory
    /// than [`MAX_AMPLIFICATION`] times the limit.
    #[error(
        "decoding would take {footprint} bytes of memory, over {MAX_AMPLIFICATION} times the limit of {limit} bytes"
    )]
    Amplified { footprint: usize, limit: usize },
}

/// The memory the decoded structs of a `WriteRequest` may take, as a multiple of the
/// decompressed-size limit. Real requests take about 1 to 5 times their decompressed size
/// (short labels are the most: `job="api"` is 12 bytes on the wire, 60 decoded); a body of
/// empty series would take 48 times, of empty histograms over 100 times.
pub const MAX_AMPLIFICATION: usize = 8;

/// Serialise and snappy-compress a `WriteRequest`, ready to POST.
pub fn encode_write_request(req: &WriteRequest) -> Vec<u8> {
    encode_snappy(req)
}

/// The body of a `WriteRequest` holding `series` (and no metadata), encoded straight from the
/// borrowed series: the same bytes as [`encode_write_request`] without copying every series
/// into an owned request first.
pub fn encode_series(series: &[super::proto::TimeSeries]) -> Vec<u8> {
    // `WriteRequest.timeseries` is field 1.
    let len: usize = series
        .iter()
        .map(|t| prost::encoding::message::encoded_len(1, t))
        .sum();
    let mut raw = Vec::with_capacity(len);
    for t in series {
        prost::encoding::message::encode(1, t, &mut raw);
    }
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .unwrap_or_default()
}

/// Serialise and snappy-compress any message (remote read requests and answers use the same
/// framing as remote write).
pub fn encode_snappy<M: Message>(message: &M) -> Vec<u8> {
    let raw = message.encode_to_vec();
    // Compressing an in-memory buffer only fails when the input exceeds snappy's 4 GiB block
    // limit, which a protobuf we just built in memory cannot reasonably reach.
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .unwrap_or_default()
}

/// Decompress and parse a remote-write body, refusing bodies that decompress beyond
/// `max_decompressed` bytes without allocating for them.
pub fn decode_write_request(
    body: &[u8],
    max_decompressed: usize,
) -> Result<WriteRequest, CodecError> {
    let raw = decompress(body, max_decompressed)?;
    decode_decompressed(&raw, max_decompressed)
}

/// Parse a decompressed `WriteRequest`, refusing one whose structs would take more than
/// [`MAX_AMPLIFICATION`] times `max_decompressed` bytes of memory.
pub fn decode_decompressed(
    raw: &[u8],
    max_decompressed: usize,
) -> Result<WriteRequest, CodecError> {
    check_footprint(raw, max_decompressed)?;
    Ok(WriteRequest::decode(raw)?)
}

/// Refuse a decompressed `WriteRequest` whose structs would take more than
/// [`MAX_AMPLIFICATION`] times `max_decompressed` bytes of memory.
pub fn check_footprint(raw: &[u8], max_decompressed: usize) -> Result<(), CodecError> {
    let footprint = write_request_footprint(raw);
    let limit = max_decompressed.saturating_mul(MAX_AMPLIFICATION);
    if footprint > limit {
        return Err(CodecError::Amplified {
            footprint,
            limit: max_decompressed,
        });
    }
    Ok(())
}

/// Decompress and parse any snappy-framed message, with the same allocation guard.
pub fn decode_snappy<M: Message + Default>(
    body: &[u8],
    max_decompressed: usize,
) -> Result<M, CodecError> {
    let raw = decompress(body, max_decompressed)?;
    Ok(M::decode(raw.as_slice())?)
}

/// Decompress a snappy body, refusing one that claims more than `max_decompressed` bytes
/// before allocating for it.
pub fn decompress(body: &[u8], max_decompressed: usize) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    decompress_into(body, max_decompressed, &mut out)?;
    Ok(out)
}

/// [`decompress`] into `out` (replacing what it held), reusing its allocation.
pub fn decompress_into(
    body: &[u8],
    max_decompressed: usize,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let claimed = snap::raw::decompress_len(body)?;
    if claimed > max_decompressed {
        return Err(CodecError::TooLarge {
            claimed,
            limit: max_decompressed,
        });
    }
    // The decoder writes every byte it returns: a reused buffer is only sized, not zeroed
    // again (zeroing a request's worth of memory was a twentieth of the ingest path).
    if out.len() < claimed {
        out.resize(claimed, 0);
    } else {
        out.truncate(claimed);
    }
    let n = snap::raw::Decoder::new().decompress(body, out)?;
    out.truncate(n);
    Ok(())
}

/// The messages of a `WriteRequest` whose repeated fields allocate one struct per item.
#[derive(Clone, Copy)]
enum Shape {
    WriteRequest,
    TimeSeries,
    Exemplar,
    Histogram,
    Leaf,
}

/// The struct a length-delimited `field` of `shape` decodes to (its size, and its shape).
fn item(shape: Shape, field: u32) -> Option<(usize, Shape)> {
    use super::proto::{
        BucketSpan, Exemplar, Histogram, Label, MetricMetadata, Sample, TimeSeries,
    };
    use std::mem::size_of;
    Some(match (shape, field) {
        (Shape::WriteRequest, 1) => (size_of::<TimeSeries>(), Shape::TimeSeries),
        (Shape::WriteRequest, 3) => (size_of::<MetricMetadata>(), Shape::Leaf),
        (Shape::TimeSeries | Shape::Exemplar, 1) => (size_of::<Label>(), Shape::Leaf),
        (Shape::TimeSeries, 2) => (size_of::<Sample>(), Shape::Leaf),
        (Shape::TimeSeries, 3) => (size_of::<Exemplar>(), Shape::Exemplar),
        (Shape::TimeSeries, 4) => (size_of::<Histogram>(), Shape::Histogram),
        (Shape::Histogram, 8 | 11) => (size_of::<BucketSpan>(), Shape::Leaf),
        _ => return None,
    })
}

/// An upper estimate of the memory `WriteRequest::decode(raw)` allocates for its structs:
/// a walk of the wire format (no allocation, depth 3) counting each repeated item's struct,
/// 8 bytes per scalar, and the bytes of strings and packed fields (×8: a 1-byte varint
/// decodes to an 8-byte integer). Malformed input ends the walk: the decoder refuses it.
pub fn write_request_footprint(raw: &[u8]) -> usize {
    footprint(raw, Shape::WriteRequest)
}

fn footprint(mut buf: &[u8], shape: Shape) -> usize {
    use prost::encoding::{WireType, decode_key, decode_varint};
    let mut total = 0usize;
    while !buf.is_empty() {
        let Ok((field, wire)) = decode_key(&mut buf) else {
            break;
        };
        let step = match wire {
            WireType::Varint => decode_varint(&mut buf).map(|_| 8).ok(),
            WireType::SixtyFourBit | WireType::ThirtyTwoBit => {
                let n = if wire == WireType::SixtyFourBit { 8 } else { 4 };
                buf.get(n..).map(|rest| {
                    buf = rest;
                    8
                })
            }
            WireType::LengthDelimited => decode_varint(&mut buf).ok().map(|len| {
                let len = usize::try_from(len).unwrap_or(usize::MAX).min(buf.len());
                let (body, rest) = buf.split_at(len);
                buf = rest;
                match item(shape, field) {
                    Some((size, Shape::Leaf)) => size.saturating_add(len),
                    Some((size, inner)) => size.saturating_add(footprint(body, inner)),
                    None => len.saturating_mul(8),
                }
            }),
            WireType::StartGroup | WireType::EndGroup => None,
        };
        match step {
            Some(n) => total = total.saturating_add(n),
            None => break,
        }
    }
    total
}
