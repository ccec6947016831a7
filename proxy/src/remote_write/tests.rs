//! Codec tests: round trip of every message kind, hostile length claims, garbage input.

use prost::Message;

use super::proto::{
    LabelMatcher, Query, QueryResult, ReadHints, histogram, label_matcher, metric_metadata,
    read_request,
};
use super::*;

fn label(name: &str, value: &str) -> Label {
    Label {
        name: name.into(),
        value: value.into(),
    }
}

fn sample_request() -> WriteRequest {
    WriteRequest {
        timeseries: vec![
            TimeSeries {
                labels: vec![
                    label("__name__", "http_requests_total"),
                    label("namespace", "team-a"),
                ],
                samples: vec![
                    Sample {
                        value: 1.5,
                        timestamp: 1_700_000_000_000,
                    },
                    Sample {
                        value: 2.5,
                        timestamp: 1_700_000_015_000,
                    },
                ],
                exemplars: vec![Exemplar {
                    labels: vec![label("trace_id", "abc")],
                    value: 0.3,
                    timestamp: 1_700_000_000_001,
                }],
                histograms: vec![],
            },
            TimeSeries {
                labels: vec![label("__name__", "latency_seconds")],
                samples: vec![],
                exemplars: vec![],
                histograms: vec![
                    Histogram {
                        count: Some(histogram::Count::CountInt(12)),
                        sum: 3.25,
                        schema: -2,
                        zero_threshold: 1e-128,
                        zero_count: Some(histogram::ZeroCount::ZeroCountInt(1)),
                        negative_spans: vec![BucketSpan {
                            offset: -1,
                            length: 2,
                        }],
                        negative_deltas: vec![2, -1],
                        negative_counts: vec![],
                        positive_spans: vec![BucketSpan {
                            offset: 0,
                            length: 3,
                        }],
                        positive_deltas: vec![3, 1, -2],
                        positive_counts: vec![],
                        reset_hint: histogram::ResetHint::No as i32,
                        timestamp: 1_700_000_000_000,
                        custom_values: vec![],
                    },
                    Histogram {
                        count: Some(histogram::Count::CountFloat(7.5)),
                        sum: -1.0,
                        schema: 3,
                        zero_threshold: 0.0,
                        zero_count: Some(histogram::ZeroCount::ZeroCountFloat(0.5)),
                        negative_spans: vec![],
                        negative_deltas: vec![],
                        negative_counts: vec![],
                        positive_spans: vec![BucketSpan {
                            offset: 2,
                            length: 2,
                        }],
                        positive_deltas: vec![],
                        positive_counts: vec![4.0, 3.0],
                        reset_hint: histogram::ResetHint::Gauge as i32,
                        timestamp: 1_700_000_015_000,
                        custom_values: vec![0.1, 1.0],
                    },
                ],
            },
        ],
        metadata: vec![MetricMetadata {
            r#type: metric_metadata::MetricType::Counter as i32,
            metric_family_name: "http_requests_total".into(),
            help: "Requests.".into(),
            unit: "requests".into(),
        }],
    }
}

#[test]
fn round_trip_keeps_every_field() {
    let req = sample_request();
    let body = encode_write_request(&req);
    // The body is snappy, not bare protobuf.
    assert_ne!(body, req.encode_to_vec());
    let back = decode_write_request(&body, 1 << 20).unwrap();
    assert_eq!(back, req);
    assert_eq!(
        back.timeseries[1].histograms[0].reset_hint(),
        histogram::ResetHint::No
    );
    assert_eq!(
        back.metadata[0].r#type(),
        metric_metadata::MetricType::Counter
    );
}

#[test]
fn wire_tags_match_prompb() {
    // Sample{value=1 double, timestamp=2 int64}: 0x09 <8 bytes>, 0x10 <varint>.
    let bytes = Sample {
        value: 1.0,
        timestamp: 1,
    }
    .encode_to_vec();
    assert_eq!(bytes, [0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x10, 0x01]);
    // BucketSpan offset is sint32 (zigzag): -1 encodes as 1.
    assert_eq!(
        BucketSpan {
            offset: -1,
            length: 2
        }
        .encode_to_vec(),
        [0x08, 0x01, 0x10, 0x02]
    );
    // MetricMetadata help is tag 4 (0x22), not 3.
    let md = MetricMetadata {
        help: "h".into(),
        ..Default::default()
    }
    .encode_to_vec();
    assert_eq!(md, [0x22, 0x01, b'h']);
}

#[test]
fn limit_is_checked_on_the_decompressed_size() {
    let body = encode_write_request(&sample_request());
    let len = snap::raw::decompress_len(&body).unwrap();
    assert!(decode_write_request(&body, len).is_ok());
    match decode_write_request(&body, len - 1) {
        Err(CodecError::TooLarge { claimed, limit }) => {
            assert_eq!((claimed, limit), (len, len - 1))
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn tiny_body_claiming_4gib_is_refused_before_allocation() {
    // Varint preamble 0xffffffff (4 GiB - 1) followed by a few literal bytes: 13 bytes in all.
    let body: [u8; 13] = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00, 0x61, 0, 0, 0, 0, 0, 0];
    match decode_write_request(&body, 10 << 20) {
        Err(CodecError::TooLarge { claimed, .. }) => assert_eq!(claimed, 0xffff_ffff),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn garbage_is_an_error() {
    assert!(decode_write_request(b"this is not snappy at all", 1 << 20).is_err());
    assert!(decode_write_request(&[], 1 << 20).is_err());
    // Valid snappy wrapping invalid protobuf (a truncated length-delimited field).
    let bad = snap::raw::Encoder::new()
        .compress_vec(&[0x0a, 0x05, 0x01])
        .unwrap();
    assert!(matches!(
        decode_write_request(&bad, 1 << 20),
        Err(CodecError::Protobuf(_))
    ));
}

#[test]
fn remote_read_messages_round_trip() {
    let req = ReadRequest {
        queries: vec![Query {
            start_timestamp_ms: 1,
            end_timestamp_ms: 2,
            matchers: vec![LabelMatcher {
                r#type: label_matcher::Type::Nre as i32,
                name: "job".into(),
                value: "a.*".into(),
            }],
            hints: Some(ReadHints {
                step_ms: 15_000,
                func: "rate".into(),
                start_ms: 1,
                end_ms: 2,
                grouping: vec!["namespace".into()],
                by: true,
                range_ms: 300_000,
            }),
        }],
        accepted_response_types: vec![read_request::ResponseType::StreamedXorChunks as i32],
    };
    assert_eq!(
        ReadRequest::decode(req.encode_to_vec().as_slice()).unwrap(),
        req
    );
    let resp = ReadResponse {
        results: vec![QueryResult {
            timeseries: sample_request().timeseries,
        }],
    };
    assert_eq!(
        ReadResponse::decode(resp.encode_to_vec().as_slice()).unwrap(),
        resp
    );
}

#[test]
fn encoding_borrowed_series_gives_the_same_bytes_as_a_write_request() {
    let series: Vec<TimeSeries> = (0..3)
        .map(|i| TimeSeries {
            labels: vec![Label {
                name: "__name__".into(),
                value: format!("m{i}"),
            }],
            samples: vec![Sample {
                value: i as f64,
                timestamp: 1000 + i,
            }],
            ..Default::default()
        })
        .collect();
    let owned = encode_write_request(&WriteRequest {
        timeseries: series.clone(),
        metadata: Vec::new(),
    });
    assert_eq!(super::encode_series(&series), owned);
    let back = decode_write_request(&owned, 1 << 20).unwrap();
    assert_eq!(back.timeseries, series);
}

/// A body of 100,000 empty histograms in one series: 200 KB decompressed, over 20 MB decoded.
fn histogram_bomb() -> Vec<u8> {
    let histograms = [0x22u8, 0x00].repeat(100_000);
    let mut series = vec![0x0a, 0x05, 0x0a, 0x01, b'a', 0x12, 0x00];
    series.extend_from_slice(&histograms);
    let mut raw = vec![0x0a];
    prost::encoding::encode_varint(series.len() as u64, &mut raw);
    raw.extend_from_slice(&series);
    snap::raw::Encoder::new().compress_vec(&raw).unwrap()
}

#[test]
fn tiny_items_that_decode_to_far_more_memory_are_refused_before_decoding() {
    let body = histogram_bomb();
    let len = snap::raw::decompress_len(&body).unwrap();
    let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
    let footprint = write_request_footprint(&raw);
    assert!(
        footprint > 100_000 * std::mem::size_of::<Histogram>(),
        "{footprint}"
    );
    match decode_write_request(&body, len) {
        Err(CodecError::Amplified {
            footprint: f,
            limit,
        }) => {
            assert_eq!((f, limit), (footprint, len))
        }
        other => panic!(
            "expected Amplified, got {:?}",
            other.map(|r| r.timeseries.len())
        ),
    }
    // Under a limit large enough for what it decodes to, it is an ordinary request.
    let decoded = decode_write_request(&body, footprint / MAX_AMPLIFICATION + 1).unwrap();
    assert_eq!(decoded.timeseries[0].histograms.len(), 100_000);
}

#[test]
fn real_requests_are_well_under_the_amplification_limit() {
    let body = encode_write_request(&sample_request());
    let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
    let footprint = write_request_footprint(&raw);
    assert!(footprint >= raw.len(), "{footprint} < {}", raw.len());
    assert!(
        footprint <= 6 * raw.len(),
        "{footprint} > 6 × {}",
        raw.len()
    );
}
