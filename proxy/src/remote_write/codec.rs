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
}

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
    decode_snappy(body, max_decompressed)
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
    let claimed = snap::raw::decompress_len(body)?;
    if claimed > max_decompressed {
        return Err(CodecError::TooLarge {
            claimed,
            limit: max_decompressed,
        });
    }
    Ok(snap::raw::Decoder::new().decompress_vec(body)?)
}
