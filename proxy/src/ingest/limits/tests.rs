use std::time::Duration;

use super::*;
use crate::remote_write::{Sample, WriteRequest, encode_write_request};

fn series(labels: &[(&str, &str)], ts: i64) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        samples: vec![Sample {
            value: 1.0,
            timestamp: ts,
        }],
        ..Default::default()
    }
}

fn limits() -> IngestLimits {
    IngestLimits {
        max_labels_per_series: 4,
        max_label_name_length: 10,
        max_label_value_length: 20,
        max_future: Duration::from_secs(60),
    }
}

#[test]
fn a_good_series_passes_with_its_labels_sorted() {
    let mut s = series(&[("job", "a"), ("__name__", "up")], 1000);
    check_series(&mut s, &limits(), 1000).unwrap();
    assert_eq!(s.labels[0].name, "__name__");
    assert_eq!(metric_name(&s.labels), "up");
}

#[test]
fn each_series_problem_has_its_reason() {
    let now = 1_000_000;
    let cases: Vec<(TimeSeries, &str)> = vec![
        (
            series(
                &[
                    ("__name__", "a"),
                    ("b", "1"),
                    ("c", "1"),
                    ("d", "1"),
                    ("e", "1"),
                ],
                now,
            ),
            "too_many_labels",
        ),
        (
            series(&[("__name__", "a"), ("b", "1"), ("b", "2")], now),
            "duplicate_label",
        ),
        (
            series(&[("__name__", "a"), ("a_very_long_name", "1")], now),
            "label_name_too_long",
        ),
        (
            series(&[("__name__", "a"), ("b", &"x".repeat(21))], now),
            "label_value_too_long",
        ),
        (series(&[("job", "a")], now), "missing_name"),
        (
            series(&[("__name__", ""), ("job", "a")], now),
            "missing_name",
        ),
        (
            series(&[("__name__", "a"), ("", "x")], now),
            "empty_label_name",
        ),
        (
            series(&[("__name__", "a")], now + 61_000),
            "too_far_in_future",
        ),
    ];
    for (mut s, reason) in cases {
        let e = check_series(&mut s, &limits(), now).unwrap_err();
        assert_eq!(e.reason, reason, "{}", e.message);
        assert!(!e.message.is_empty());
    }
    // Exactly at the horizon is fine.
    let mut s = series(&[("__name__", "a")], now + 60_000);
    assert!(check_series(&mut s, &limits(), now).is_ok());
}

/// Both steps, as the receiver runs them; the number of series decoded.
fn decode(body: &[u8], max: usize) -> Result<usize, Refusal> {
    let raw = decompress(body, max)?;
    super::decode(&raw, max, Default::default()).map(|d| d.series_count())
}

#[test]
fn bodies_are_refused_with_a_reason() {
    assert_eq!(decode(b"", 1000).unwrap_err().reason, "empty_body");
    assert_eq!(
        decode(b"\xff\xff\xff\xff\x0f", 1000).unwrap_err().reason,
        "too_large"
    );
    assert_eq!(decode(b"\x10garbage", 1000).unwrap_err().reason, "snappy");
    let not_proto = snap::raw::Encoder::new()
        .compress_vec(b"\xff\xff\xff not protobuf")
        .unwrap();
    assert_eq!(decode(&not_proto, 1000).unwrap_err().reason, "protobuf");
    // A label value that is not UTF-8: field 1 (timeseries) → field 1 (labels) → field 2 (value).
    let label = [0x0a, 0x01, b'a', 0x12, 0x01, 0xff];
    let mut ts = vec![0x0a, label.len() as u8];
    ts.extend_from_slice(&label);
    let mut req = vec![0x0a, ts.len() as u8];
    req.extend_from_slice(&ts);
    let body = snap::raw::Encoder::new().compress_vec(&req).unwrap();
    assert_eq!(decode(&body, 1000).unwrap_err().reason, "invalid_utf8");
    let ok = encode_write_request(&WriteRequest {
        timeseries: vec![series(&[("__name__", "up")], 1)],
        metadata: vec![],
    });
    assert_eq!(decode(&ok, 1000).unwrap(), 1);
}

#[test]
fn headers_are_checked() {
    assert!(check_headers(None, None).is_ok());
    assert!(check_headers(Some("application/x-protobuf"), Some("snappy")).is_ok());
    assert!(
        check_headers(
            Some("application/x-protobuf;proto=prometheus.WriteRequest"),
            Some("snappy")
        )
        .is_ok()
    );
    assert_eq!(
        check_headers(Some("application/json"), None)
            .unwrap_err()
            .reason,
        "content_type"
    );
    let v2 = check_headers(
        Some("application/x-protobuf;proto=io.prometheus.write.v2.Request"),
        Some("snappy"),
    )
    .unwrap_err();
    assert!(v2.message.contains("remote write 1.0"), "{}", v2.message);
    assert_eq!(
        check_headers(None, Some("gzip")).unwrap_err().reason,
        "content_encoding"
    );
}

#[test]
fn plain_ok_exactly_when_check_series_passes_without_sorting() {
    let now = 1_000_000;
    let cases: Vec<TimeSeries> = vec![
        series(&[("__name__", "up"), ("job", "a")], now),
        series(&[("job", "a"), ("__name__", "up")], now),
        series(&[("__name__", "up"), ("job", "a"), ("job", "b")], now),
        series(&[("__name__", "up"), ("", "a")], now),
        series(&[("__name__", ""), ("job", "a")], now),
        series(&[("job", "a")], now),
        series(&[("__name__", "up"), ("a_very_long_name", "a")], now),
        series(&[("__name__", "up"), ("job", &"x".repeat(21))], now),
        series(
            &[
                ("__name__", "up"),
                ("a", ""),
                ("b", ""),
                ("c", ""),
                ("d", ""),
            ],
            now,
        ),
        series(&[("__name__", "up")], now + 61_000),
        series(&[("__name__", "up")], now + 60_000),
    ];
    for case in cases {
        let body = encode_write_request(&WriteRequest {
            timeseries: vec![case.clone()],
            metadata: vec![],
        });
        let raw = decompress(&body, 1 << 20).unwrap();
        let decoded = super::decode(&raw, 1 << 20, Default::default()).unwrap();
        let s = &decoded.series[0];
        assert!(s.plain, "scanned");
        let mut checked = case.clone();
        let passes = check_series(&mut checked, &limits(), now).is_ok() && checked == case;
        assert_eq!(
            plain_ok(decoded.labels_of(s), s, &limits(), now),
            passes,
            "{case:?}"
        );
    }
}

#[test]
fn a_body_of_tiny_items_is_refused_before_it_takes_memory() {
    // 500 empty series: 1000 bytes on the wire, far more as scanned refs or prost structs.
    let raw: Vec<u8> = [0x0a, 0x00].repeat(500);
    let e = super::decode(&raw, 1000, Default::default()).unwrap_err();
    assert_eq!(e.reason, "too_large", "{}", e.message);
    // The same body under a limit that allows its memory is decoded.
    assert_eq!(
        super::decode(&raw, 100_000, Default::default())
            .unwrap()
            .series_count(),
        500
    );
}
