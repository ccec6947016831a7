//! The scanner agrees with prost: same labels, counts and bytes on what it takes, and never
//! accepts a body prost refuses.

use prost::Message;

use super::*;
use crate::remote_write::{Exemplar, MetricMetadata, Sample, TimeSeries, WriteRequest};

fn label(name: &str, value: &str) -> Label {
    Label {
        name: name.into(),
        value: value.into(),
    }
}

fn series(n: usize, samples: &[i64]) -> TimeSeries {
    TimeSeries {
        labels: vec![
            label("__name__", "http_requests_total"),
            label("instance", &format!("10.0.0.{n}:8080")),
            label("namespace", "team-ä"),
            label("empty", ""),
        ],
        samples: samples
            .iter()
            .map(|&timestamp| Sample {
                value: n as f64,
                timestamp,
            })
            .collect(),
        ..Default::default()
    }
}

fn request() -> WriteRequest {
    let mut with_exemplar = series(3, &[5]);
    with_exemplar.exemplars.push(Exemplar {
        labels: vec![label("trace_id", "abc")],
        value: 1.0,
        timestamp: 5,
    });
    WriteRequest {
        timeseries: vec![
            series(1, &[1_700_000_000_000, 1_700_000_015_000]),
            series(2, &[-5, 0]),
            with_exemplar,
            TimeSeries::default(),
        ],
        metadata: vec![MetricMetadata {
            metric_family_name: "http_requests_total".into(),
            help: "requests".into(),
            ..Default::default()
        }],
    }
}

#[test]
fn scan_reads_what_prost_reads() {
    let req = request();
    let body = req.encode_to_vec();
    let scanned = scan(&body, usize::MAX).expect("scans");
    assert_eq!(scanned.series.len(), req.timeseries.len());
    for (s, want) in scanned.series.iter().zip(&req.timeseries) {
        let labels: Vec<Label> = scanned
            .labels_of(s)
            .iter()
            .map(|l| label(l.name, l.value))
            .collect();
        assert_eq!(labels, want.labels);
        assert_eq!(s.samples as usize, want.samples.len());
        let newest = want.samples.iter().map(|s| s.timestamp).max();
        assert_eq!(s.max_timestamp, newest.unwrap_or(i64::MIN));
        assert_eq!(TimeSeries::decode(s.encoded).expect("decodes"), *want);
        assert_eq!(s.plain, want.exemplars.is_empty());
        if s.plain {
            assert_eq!(s.to_owned(scanned.labels_of(s)).as_ref(), Some(want));
        }
    }
    assert_eq!(scanned.metadata.len(), 1);
    assert_eq!(
        MetricMetadata::decode(scanned.metadata[0]).expect("decodes"),
        req.metadata[0]
    );
}

#[test]
fn pushed_series_are_the_bytes_prost_writes() {
    let req = WriteRequest {
        metadata: Vec::new(),
        ..request()
    };
    let body = req.encode_to_vec();
    let scanned = scan(&body, usize::MAX).expect("scans");
    let mut out = Vec::new();
    for s in &scanned.series {
        push_series(&mut out, s.encoded);
    }
    assert_eq!(out, body);
}

#[test]
fn never_takes_a_body_prost_refuses() {
    let body = request().encode_to_vec();
    // Every truncation, and every single-byte corruption at a few values.
    let mut bodies: Vec<Vec<u8>> = (0..body.len()).map(|n| body[..n].to_vec()).collect();
    for i in 0..body.len() {
        for v in [0x00, 0x07, 0x80, 0xff] {
            let mut b = body.clone();
            b[i] = v;
            bodies.push(b);
        }
    }
    let mut scanned = 0;
    for b in &bodies {
        // The caller decodes the metadata and the series that are not plain with prost.
        let taken = scan(b, usize::MAX).ok().filter(|s| {
            s.series
                .iter()
                .all(|t| t.plain || TimeSeries::decode(t.encoded).is_ok())
                && s.metadata
                    .iter()
                    .all(|m| MetricMetadata::decode(*m).is_ok())
        });
        if let Some(s) = taken {
            scanned += 1;
            let decoded = WriteRequest::decode(b.as_slice());
            assert!(
                decoded.is_ok(),
                "scanned a body prost refuses: {:?} {b:?}",
                decoded.as_ref().err()
            );
            // What the scanner calls plain, prost reads to the same labels.
            let decoded = decoded.expect("checked");
            for (series, want) in s.series.iter().zip(&decoded.timeseries) {
                if series.plain {
                    let got: Vec<Label> = s
                        .labels_of(series)
                        .iter()
                        .map(|l| label(l.name, l.value))
                        .collect();
                    assert_eq!(got, want.labels);
                }
            }
        }
    }
    assert!(scanned > 0, "the valid prefixes scan");
}

#[test]
fn unusual_shapes_are_not_plain() {
    // A label message with its name twice: prost keeps the last, the scanner hands it over.
    let mut encoded = Vec::new();
    let mut lab = Vec::new();
    prost::encoding::string::encode(1, &"a".to_string(), &mut lab);
    prost::encoding::string::encode(1, &"b".to_string(), &mut lab);
    prost::encoding::bytes::encode(1, &lab, &mut encoded);
    let mut body = Vec::new();
    push_series(&mut body, &encoded);
    let scanned = scan(&body, usize::MAX).expect("scans");
    assert!(!scanned.series[0].plain);
    // A field the scanner does not know at the top level: prost's business.
    let mut body = Vec::new();
    prost::encoding::int64::encode(9, &1, &mut body);
    assert_eq!(scan(&body, usize::MAX).err(), Some(NotScanned));
}

#[test]
fn a_series_hashes_the_same_scanned_in_place_or_from_its_labels() {
    let long = "x".repeat(200);
    let huge = "y".repeat(20_000);
    let shapes: Vec<Vec<Label>> = vec![
        vec![label("__name__", "up"), label("job", "a")],
        // Non-ASCII text: the region is still UTF-8 as a whole.
        vec![label("__name__", "up"), label("namespace", "team-ä")],
        // A two-byte length, then one past the fast path's reach.
        vec![label("__name__", "up"), label("id", &long)],
        vec![label("__name__", "up"), label("id", &huge)],
        // An empty value is not written by prost: not the fast path.
        vec![label("__name__", "up"), label("empty", "")],
        vec![],
    ];
    let mut canonical = 0;
    for labels in shapes {
        let ts = TimeSeries {
            labels: labels.clone(),
            samples: vec![Sample {
                value: 1.0,
                timestamp: 7,
            }],
            ..Default::default()
        };
        let body = WriteRequest {
            timeseries: vec![ts],
            metadata: Vec::new(),
        }
        .encode_to_vec();
        let scanned = scan(&body, usize::MAX).expect("scans");
        let s = &scanned.series[0];
        let got = scanned.labels_of(s);
        assert_eq!(
            got.iter()
                .map(|l| label(l.name, l.value))
                .collect::<Vec<_>>(),
            labels
        );
        assert_eq!(s.labels_hash(got), labels_hash(&labels), "{labels:?}");
        canonical += usize::from(s.canonical_labels.is_some());
    }
    // The first three take the in-place path (the third validating its strings one by one):
    // the test covers both paths.
    assert_eq!(canonical, 3);
}

#[test]
fn padded_lengths_take_the_general_path_to_the_same_labels() {
    // `0a 09 0a 82 00 'up' 12 01 'a'`: the name's length 2 written in two bytes.
    let mut label_bytes = vec![0x0a, 0x82, 0x00];
    label_bytes.extend_from_slice(b"up");
    label_bytes.extend_from_slice(&[0x12, 0x01, b'a']);
    let mut series = vec![0x0a, label_bytes.len() as u8];
    series.extend_from_slice(&label_bytes);
    let mut body = Vec::new();
    push_series(&mut body, &series);
    let scanned = scan(&body, usize::MAX).expect("scans");
    let s = &scanned.series[0];
    assert!(s.plain);
    assert_eq!(s.canonical_labels, None);
    assert_eq!(
        scanned.labels_of(s),
        &[LabelRef {
            name: "up",
            value: "a"
        }]
    );
    let decoded = TimeSeries::decode(series.as_slice()).expect("prost reads it");
    assert_eq!(
        s.labels_hash(scanned.labels_of(s)),
        labels_hash(&decoded.labels)
    );
}

#[test]
fn distinct_label_sets_hash_apart() {
    let a = [label("a", "bc")];
    let b = [label("ab", "c")];
    let c = [label("a", "b"), label("c", "")];
    assert_ne!(labels_hash(&a), labels_hash(&b));
    assert_ne!(labels_hash(&a), labels_hash(&c));
    assert_ne!(labels_hash::<Label>(&[]), labels_hash(&[label("", "")]));
}
