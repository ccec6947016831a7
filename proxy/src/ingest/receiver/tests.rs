//! A request through `Ingest::receive` to a sink on loopback: what the rules change is
//! re-encoded, the rest goes on as the bytes it came as.

use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use prost::Message;

use super::*;
use crate::config::ingest::IngestConfig;
use crate::remote_write::{Label, Sample, TimeSeries, WriteRequest, decode_write_request};
use crate::telemetry::Metrics;

type Seen = Arc<StdMutex<Vec<Vec<u8>>>>;

async fn sink() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = Router::new().route(
        "/api/v1/write",
        post(move |body: bytes::Bytes| {
            let s = s.clone();
            async move {
                s.lock().expect("lock").push(body.to_vec());
                http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/api/v1/write"), seen)
}

async fn received(seen: &Seen, n: usize) -> Vec<Vec<u8>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.lock().expect("lock").len() < n {
        assert!(tokio::time::Instant::now() < deadline, "sink got < {n}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    seen.lock().expect("lock").clone()
}

fn ingest(url: &str, shards: usize, rules: &str) -> Arc<Ingest> {
    let yaml = format!(
        "enabled: true\ndefault_tenant: t\n\
         forward: {{destinations: [{{name: s, url: \"{url}\"}}], shards: {shards}}}\n\
         governance:\n  default:\n    relabel:\n{rules}"
    );
    let config: IngestConfig = serde_saphyr::from_str(&yaml).expect("config");
    Ingest::start(&config, Arc::new(Metrics::new())).expect("starts")
}

fn ts(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| Sample { value, timestamp })
            .collect(),
        ..Default::default()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

const RULES: &str = "      - {action: keep, source_labels: [namespace], regex: 'a|b'}
      - {source_labels: [namespace], regex: 'a', target_label: team, replacement: alpha}
      - {action: labeldrop, regex: id}
";

#[tokio::test]
async fn rules_re_encode_what_they_change_and_pass_the_rest_as_it_came() {
    let (url, seen) = sink().await;
    let ingest = ingest(&url, 1, RULES);
    let t = now_ms();
    let changed = ts(
        &[("__name__", "up"), ("id", "x"), ("namespace", "a")],
        &[(t, 1.0), (t + 1, f64::from_bits(0x7ff0_0000_0000_0002))],
    );
    let untouched = ts(&[("__name__", "up"), ("namespace", "b")], &[(t, 2.0)]);
    let dropped = ts(&[("__name__", "up"), ("namespace", "c")], &[(t, 3.0)]);
    let request = WriteRequest {
        timeseries: vec![changed, untouched.clone(), dropped],
        metadata: vec![],
    };
    let body = crate::remote_write::encode_write_request(&request);
    let answer = ingest.receive("t", None, Some("snappy"), body.into());
    assert_eq!(answer.outcome, Outcome::Accepted, "{answer:?}");
    let got = received(&seen, 1).await;
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&got[0])
        .expect("snappy");
    let forwarded = decode_write_request(&got[0], 1 << 20).expect("decodes");
    let want_changed = ts(
        &[("__name__", "up"), ("namespace", "a"), ("team", "alpha")],
        &[(t, 1.0), (t + 1, 0.0)],
    );
    assert_eq!(forwarded.timeseries.len(), 2, "{forwarded:?}");
    let first = &forwarded.timeseries[0];
    assert_eq!(first.labels, want_changed.labels);
    // The samples are copied as bytes: the staleness marker's NaN bits survive.
    assert_eq!(first.samples[0], want_changed.samples[0]);
    assert_eq!(first.samples[1].value.to_bits(), 0x7ff0_0000_0000_0002);
    assert_eq!(forwarded.timeseries[1], untouched);
    // The series no rule changed is in the forwarded body as the bytes it was sent as.
    let untouched_bytes = untouched.encode_to_vec();
    assert!(
        raw.windows(untouched_bytes.len())
            .any(|w| w == untouched_bytes.as_slice()),
        "the unchanged series was re-encoded"
    );
}

#[tokio::test]
async fn a_request_no_rule_changes_is_forwarded_whole() {
    let (url, seen) = sink().await;
    // Several shards: the request still goes whole to one of them.
    let ingest = ingest(&url, 2, RULES);
    let t = now_ms();
    let request = WriteRequest {
        timeseries: vec![
            ts(
                &[("__name__", "up"), ("namespace", "b"), ("pod", "p1")],
                &[(t, 1.0)],
            ),
            ts(
                &[("__name__", "up"), ("namespace", "b"), ("pod", "p2")],
                &[(t, 2.0)],
            ),
        ],
        metadata: vec![],
    };
    let body = crate::remote_write::encode_write_request(&request);
    let answer = ingest.receive("t", None, Some("snappy"), body.clone().into());
    assert_eq!(answer.outcome, Outcome::Accepted, "{answer:?}");
    assert_eq!(received(&seen, 1).await, vec![body]);
}

#[tokio::test]
async fn dropped_series_are_counted_by_reason_once_per_series() {
    let (url, seen) = sink().await;
    let rules = "      - {action: keep, source_labels: [namespace], regex: 'a|b'}
      - {source_labels: [namespace], regex: 'b', target_label: __name__, replacement: ''}
";
    let ingest = ingest(&url, 1, rules);
    let t = now_ms();
    let series = |ns: &str, pod: &str| {
        ts(
            &[("__name__", "up"), ("namespace", ns), ("pod", pod)],
            &[(t, 1.0)],
        )
    };
    for round in 0..2 {
        let request = WriteRequest {
            timeseries: ["a", "b", "b", "c", "c", "c"]
                .iter()
                .enumerate()
                .map(|(i, ns)| series(ns, &format!("p{round}-{i}")))
                .collect(),
            metadata: vec![],
        };
        let body = crate::remote_write::encode_write_request(&request);
        let answer = ingest.receive("t", None, Some("snappy"), body.into());
        assert_eq!(answer.outcome, Outcome::Accepted, "{answer:?}");
    }
    let got = received(&seen, 1).await;
    assert!(!got.is_empty());
    let dropped = |reason: &str| {
        ingest
            .metrics
            .ingest
            .dropped_series
            .get_or_create(&DropLabels {
                tenant: "_other".into(),
                reason: reason.into(),
                dry_run: "false".into(),
            })
            .get()
    };
    // Two requests: 3 series outside the kept namespaces and 2 whose name a rule removed, each.
    assert_eq!(dropped("relabel"), 6);
    assert_eq!(dropped("relabel_removed_name"), 4);
}
