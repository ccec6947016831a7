use prost::Message;

use super::*;
use crate::remote_write::proto::{
    BucketSpan, Exemplar, Histogram, Label, LabelMatcher, MetricMetadata, Query, QueryResult, ReadHints,
    ReadRequest, ReadResponse, Sample, TimeSeries, WriteRequest, histogram, label_matcher, metric_metadata,
    read_request,
};

fn full_request() -> WriteRequest {
    let int_histogram = Histogram {
        count: Some(histogram::Count::CountInt(12)),
        sum: 18.4,
        schema: -1,
        zero_threshold: 1e-128,
        zero_count: Some(histogram::ZeroCount::ZeroCountInt(2)),
        negative_spans: vec![BucketSpan { offset: -2, length: 2 }],
        negative_deltas: vec![1, -1],
        negative_counts: vec![],
        positive_spans: vec![BucketSpan { offset: 0, length: 3 }, BucketSpan { offset: 4, length: 1 }],
        positive_deltas: vec![3, -2, 5, -6],
        positive_counts: vec![],
        reset_hint: histogram::ResetHint::No as i32,
        timestamp: 1_700_000_000_123,
        custom_values: vec![],
    };
    let float_histogram = Histogram {
        count: Some(histogram::Count::CountFloat(3.5)),
        zero_count: Some(histogram::ZeroCount::ZeroCountFloat(0.5)),
        positive_spans: vec![BucketSpan { offset: 1, length: 2 }],
        positive_counts: vec![1.0, 2.0],
        negative_counts: vec![0.25],
        negative_spans: vec![BucketSpan { offset: 0, length: 1 }],
        reset_hint: histogram::ResetHint::Gauge as i32,
        custom_values: vec![0.1, 1.0],
        ..int_histogram.clone()
    };
    WriteRequest {
        timeseries: vec![
            TimeSeries {
                labels: vec![
                    Label::new("__name__", "http_requests_total"),
                    Label::new("code", "200"),
                    Label::new("namespace", "team-a"),
                ],
                samples: vec![
                    Sample { value: 1.0, timestamp: 1_700_000_000_000 },
                    Sample { value: f64::from_bits(0x7ff0_0000_0000_0002), timestamp: 1_700_000_015_000 },
                ],
                exemplars: vec![Exemplar {
                    labels: vec![Label::new("trace_id", "abc123")],
                    value: 0.42,
                    timestamp: 1_700_000_000_500,
                }],
                histograms: vec![],
            },
            TimeSeries {
                labels: vec![Label::new("__name__", "rpc_latency_seconds")],
                samples: vec![],
                exemplars: vec![],
                histograms: vec![int_histogram, float_histogram],
            },
        ],
        metadata: vec![MetricMetadata {
            r#type: metric_metadata::MetricType::Counter as i32,
            metric_family_name: "http_requests_total".into(),
            help: "Requests served.".into(),
            unit: "requests".into(),
        }],
    }
}

#[test]
fn round_trip_keeps_exemplars_histograms_metadata_and_stale_markers() {
    let req = full_request();
    let body = encode_write_request(&req);
    let back = decode_write_request(&body, 1 << 20).unwrap();
    // PartialEq on f64 fails on NaN, so compare the stale marker's bits separately.
    let stale = back.timeseries[0].samples[1].value;
    assert_eq!(stale.to_bits(), 0x7ff0_0000_0000_0002);
    let mut a = req.clone();
    let mut b = back.clone();
    a.timeseries[0].samples[1].value = 0.0;
    b.timeseries[0].samples[1].value = 0.0;
    assert_eq!(a, b);
    assert_eq!(back.timeseries[1].histograms.len(), 2);
    assert_eq!(back.metadata[0].help, "Requests served.");
    // Re-encoding the decoded message gives the same bytes: nothing was dropped.
    assert_eq!(encode_write_request(&back), body);
}

#[test]
fn body_is_snappy_block_not_framed() {
    let body = encode_write_request(&full_request());
    // The framed format starts with the stream identifier chunk 0xff 06 00 00 "sNaPpY".
    assert_ne!(body.first(), Some(&0xff));
    let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
    assert_eq!(raw, full_request().encode_to_vec());
}

#[test]
fn wire_format_of_fields_is_pinned() {
    // Sample{value: 1.0, timestamp: 2}: tag 1 fixed64, tag 2 varint.
    let s = Sample { value: 1.0, timestamp: 2 }.encode_to_vec();
    assert_eq!(s, [0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x10, 0x02]);
    // BucketSpan{offset: -2 (sint32 zigzag 3), length: 2}.
    let b = BucketSpan { offset: -2, length: 2 }.encode_to_vec();
    assert_eq!(b, [0x08, 0x03, 0x10, 0x02]);
    // Histogram: schema sint32 -1 (tag 4, zigzag 1), negative_deltas packed sint64 [1,-1]
    // (tag 9, length 2, zigzag 2 1), count_int 7 (tag 1), reset_hint YES (tag 14).
    let h = Histogram {
        count: Some(histogram::Count::CountInt(7)),
        schema: -1,
        negative_deltas: vec![1, -1],
        reset_hint: histogram::ResetHint::Yes as i32,
        ..Default::default()
    }
    .encode_to_vec();
    assert_eq!(h, [0x08, 0x07, 0x20, 0x01, 0x4a, 0x02, 0x02, 0x01, 0x70, 0x01]);
    // zero_count_float (tag 7, fixed64) and timestamp (tag 15).
    let h = Histogram {
        zero_count: Some(histogram::ZeroCount::ZeroCountFloat(0.0)),
        timestamp: 1,
        ..Default::default()
    }
    .encode_to_vec();
    assert_eq!(h, [0x39, 0, 0, 0, 0, 0, 0, 0, 0, 0x78, 0x01]);
    // WriteRequest.metadata is field 3 (field 2 is reserved upstream); MetricMetadata.help is 4.
    let w = WriteRequest {
        timeseries: vec![],
        metadata: vec![MetricMetadata { r#type: 2, metric_family_name: "m".into(), help: "h".into(), unit: String::new() }],
    }
    .encode_to_vec();
    assert_eq!(w, [0x1a, 0x08, 0x08, 0x02, 0x12, 0x01, b'm', 0x22, 0x01, b'h']);
    // TimeSeries.histograms is field 4, exemplars field 3.
    let t = TimeSeries { exemplars: vec![Exemplar::default()], histograms: vec![Histogram::default()], ..Default::default() }
        .encode_to_vec();
    assert_eq!(t, [0x1a, 0x00, 0x22, 0x00]);
}

#[test]
fn snappy_bomb_is_refused_before_allocating() {
    // A varint claiming 4 GiB of output followed by a few literal bytes: 13 bytes in all.
    let mut body = vec![0x80, 0x80, 0x80, 0x80, 0x10];
    body.extend_from_slice(&[0x1c, b'a', b'b', b'c', b'd', b'e', b'f', b'g', b'h']);
    assert_eq!(body.len(), 14 - 1);
    assert_eq!(snap::raw::decompress_len(&body).unwrap(), 1 << 32);
    match decode_write_request(&body, 64 << 20) {
        Err(CodecError::TooLarge { claimed, limit }) => {
            assert_eq!(claimed, 1 << 32);
            assert_eq!(limit, 64 << 20);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn limit_is_inclusive_and_enforced_on_real_bodies() {
    let req = full_request();
    let raw_len = req.encoded_len();
    let body = encode_write_request(&req);
    assert!(decode_write_request(&body, raw_len).is_ok());
    assert!(matches!(decode_write_request(&body, raw_len - 1), Err(CodecError::TooLarge { .. })));
}

#[test]
fn garbage_is_an_error() {
    for body in [&b""[..], b"\xff\x06\x00\x00sNaPpY", b"not snappy at all", b"\x05\x00"] {
        assert!(decode_write_request(body, 1 << 20).is_err(), "{body:?} should not decode");
    }
    // Valid snappy around invalid protobuf (a truncated length-delimited field).
    let body = snap::raw::Encoder::new().compress_vec(&[0x0a, 0x10, 0x01]).unwrap();
    assert!(matches!(decode_write_request(&body, 1 << 20), Err(CodecError::Protobuf(_))));
}

#[test]
fn remote_read_messages_round_trip() {
    let req = ReadRequest {
        queries: vec![Query {
            start_timestamp_ms: 1,
            end_timestamp_ms: 2,
            matchers: vec![LabelMatcher {
                r#type: label_matcher::Type::Re as i32,
                name: "namespace".into(),
                value: "team-.*".into(),
            }],
            hints: Some(ReadHints {
                step_ms: 15_000,
                func: "rate".into(),
                start_ms: 1,
                end_ms: 2,
                grouping: vec!["pod".into()],
                by: true,
                range_ms: 300_000,
            }),
        }],
        accepted_response_types: vec![read_request::ResponseType::Samples as i32],
    };
    let back: ReadRequest = decode_message(&encode_message(&req), 1 << 20).unwrap();
    assert_eq!(back, req);
    let resp = ReadResponse {
        results: vec![QueryResult {
            timeseries: vec![TimeSeries {
                labels: vec![Label::new("__name__", "up")],
                samples: vec![Sample { value: 1.0, timestamp: 3 }],
                ..Default::default()
            }],
        }],
    };
    let back: ReadResponse = decode_message(&encode_message(&resp), 1 << 20).unwrap();
    assert_eq!(back, resp);
}
