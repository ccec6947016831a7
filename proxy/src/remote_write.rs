//! Prometheus remote write 1.0: the `prompb` protobuf messages ([`proto`]) and the snappy wire
//! codec ([`codec`]). Used by the collector (remote read, remote write), the e2e harness to seed
//! infrastructure Prometheus, and the ingest path.

pub mod codec;
pub mod proto;
pub mod wire;

pub use codec::{
    CONTENT_ENCODING, CONTENT_ENCODING_SNAPPY, CONTENT_TYPE, CONTENT_TYPE_PROTOBUF, CodecError,
    MAX_AMPLIFICATION, REMOTE_WRITE_VERSION, REMOTE_WRITE_VERSION_HEADER, check_footprint,
    decode_decompressed, decode_snappy, decode_write_request, decompress, decompress_into,
    encode_series, encode_snappy, encode_write_request, write_request_footprint,
};
pub use proto::{
    BucketSpan, Exemplar, Histogram, Label, MetricMetadata, ReadRequest, ReadResponse, Sample,
    TimeSeries, WriteRequest,
};

#[cfg(test)]
mod tests;
