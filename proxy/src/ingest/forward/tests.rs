use std::sync::Mutex as StdMutex;

use axum::Router;
use axum::http::HeaderMap as AxumHeaders;
use axum::routing::post;

use super::*;
use crate::config::ingest::Destination as DestinationConfig;
use crate::remote_write::Label;
use crate::remote_write::decode_write_request;
use crate::telemetry::Metrics;

fn ts(name: &str, pod: &str, samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: vec![
            Label {
                name: "__name__".into(),
                value: name.into(),
            },
            Label {
                name: "pod".into(),
                value: pod.into(),
            },
        ],
        samples: samples
            .iter()
            .map(|&(timestamp, value)| Sample { value, timestamp })
            .collect(),
        ..Default::default()
    }
}

#[test]
fn duplicates_are_merged_in_time_order() {
    let out = merge_duplicates(vec![
        ts("a", "1", &[(3, 3.0)]),
        ts("a", "2", &[(1, 1.0)]),
        ts("a", "1", &[(1, 1.0), (3, 30.0)]),
    ]);
    assert_eq!(out.len(), 2);
    let times: Vec<(i64, f64)> = out[0]
        .samples
        .iter()
        .map(|s| (s.timestamp, s.value))
        .collect();
    assert_eq!(
        times,
        [(1, 1.0), (3, 3.0)],
        "first value of a timestamp kept"
    );
    assert_eq!(out[1].labels[1].value, "2");
}

type Seen = Arc<StdMutex<Vec<(AxumHeaders, Vec<u8>)>>>;

async fn sink() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = Router::new().route(
        "/api/v1/write",
        post(move |h: AxumHeaders, body: bytes::Bytes| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push((h, body.to_vec()));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/api/v1/write"), seen)
}

fn config(urls: &[(&str, String)], capacity: usize, batch: usize) -> ForwardConfig {
    ForwardConfig {
        destinations: urls
            .iter()
            .map(|(name, url)| DestinationConfig {
                name: name.to_string(),
                url: url.clone(),
                ..Default::default()
            })
            .collect(),
        batch_series: batch,
        shards: 1,
        queue_capacity: capacity,
        min_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(20),
        ..Default::default()
    }
}

#[tokio::test]
async fn batches_carry_the_tenant_header_and_at_most_batch_series() {
    let (url, seen) = sink().await;
    let metrics = Metrics::new();
    let f = Forwarder::start(
        &config(&[("storage", url)], 10, 2),
        metrics.collector.delivery.clone(),
    )
    .unwrap();
    let series = vec![
        ts("a", "1", &[(1, 1.0)]),
        ts("a", "2", &[(1, 1.0)]),
        ts("a", "3", &[(1, 1.0)]),
    ];
    assert_eq!(f.accept("team-a", series, vec![]).unwrap(), 3);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < 2 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seen = seen.lock().unwrap();
    let sizes: Vec<usize> = seen
        .iter()
        .map(|(_, b)| decode_write_request(b, 1 << 20).unwrap().timeseries.len())
        .collect();
    assert_eq!(sizes, [2, 1]);
    assert!(seen.iter().all(|(h, _)| h["x-scope-orgid"] == "team-a"));
}

#[tokio::test]
async fn a_request_goes_to_every_destination_or_to_none() {
    // Nothing listens on port 9: requests stay queued (the worker retries the oldest).
    let dead = "http://127.0.0.1:9/api/v1/write".to_string();
    let metrics = Metrics::new();
    let f = Forwarder::start(
        &config(&[("a", dead.clone()), ("b", dead)], 2, 1),
        metrics.collector.delivery.clone(),
    )
    .unwrap();
    f.accept("t", vec![ts("a", "1", &[(1, 1.0)])], vec![])
        .unwrap();
    let full = f.accept(
        "t",
        vec![ts("a", "1", &[(2, 1.0)]), ts("a", "2", &[(2, 1.0)])],
        vec![],
    );
    assert!(
        full.is_err(),
        "two more requests don't fit a queue of 2 holding 1"
    );
    let stats = f.stats();
    assert_eq!(stats["a"].queue_depth, 1);
    assert_eq!(stats["b"].queue_depth, 1, "nothing half-queued");
}

#[tokio::test]
async fn shards_split_series_by_their_labels() {
    let dead = "http://127.0.0.1:9/api/v1/write".to_string();
    let metrics = Metrics::new();
    let mut cfg = config(&[("s", dead)], 10, 100);
    cfg.shards = 2;
    let f = Forwarder::start(&cfg, metrics.collector.delivery.clone()).unwrap();
    let pods: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    let batch =
        |t: i64| -> Vec<TimeSeries> { pods.iter().map(|p| ts("a", p, &[(t, 1.0)])).collect() };
    f.accept("t", batch(1), vec![]).unwrap();
    let first = f.stats();
    assert_eq!(first.keys().collect::<Vec<_>>(), ["s-0", "s-1"]);
    assert!(
        first.values().all(|s| s.queue_depth == 1),
        "20 series use both shards: {first:?}"
    );
    f.accept("t", batch(2), vec![]).unwrap();
    assert!(f.stats().values().all(|s| s.queue_depth == 2));
}

/// Wait until the sink holds `n` requests; their bodies.
async fn received(seen: &Seen, n: usize) -> Vec<Vec<u8>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < n {
        assert!(tokio::time::Instant::now() < deadline, "sink got < {n}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    seen.lock()
        .unwrap()
        .iter()
        .map(|(_, b)| b.clone())
        .collect()
}

/// The request's series as the scanner hands them to the forwarder.
fn scanned(raw: &[u8]) -> Vec<Outgoing<'_>> {
    let scanned = crate::remote_write::wire::scan(raw, usize::MAX).unwrap();
    scanned
        .series
        .iter()
        .map(|s| {
            let hash = series_hash(scanned.labels_of(s));
            Outgoing::encoded(s.encoded, hash, s.samples as usize)
        })
        .collect()
}

#[tokio::test]
async fn an_unchanged_request_is_forwarded_byte_for_byte_or_re_batched() {
    let request = WriteRequest {
        timeseries: vec![
            ts("a", "1", &[(1, 1.0)]),
            ts("a", "2", &[(1, 2.0)]),
            ts("a", "3", &[(1, 3.0)]),
        ],
        metadata: vec![],
    };
    let body = crate::remote_write::encode_write_request(&request);
    let raw = crate::remote_write::decompress(&body, 1 << 20).unwrap();
    let metrics = Metrics::new();
    // One batch fits: the body itself goes out.
    let (url, seen) = sink().await;
    let f = Forwarder::start(
        &config(&[("s", url)], 10, 10),
        metrics.collector.delivery.clone(),
    )
    .unwrap();
    let n = f
        .accept_batch("t", scanned(&raw), vec![], Some(body.clone().into()))
        .unwrap();
    assert_eq!(n, 3);
    assert_eq!(received(&seen, 1).await, vec![body.clone()]);
    // Batches of 2: re-encoded from the series' bytes, same series in the same order.
    let (url, seen) = sink().await;
    let f = Forwarder::start(
        &config(&[("s", url)], 10, 2),
        metrics.collector.delivery.clone(),
    )
    .unwrap();
    f.accept_batch("t", scanned(&raw), vec![], Some(body.into()))
        .unwrap();
    let got: Vec<TimeSeries> = received(&seen, 2)
        .await
        .iter()
        .flat_map(|b| decode_write_request(b, 1 << 20).unwrap().timeseries)
        .collect();
    assert_eq!(got, request.timeseries);
}

#[tokio::test]
async fn encoded_duplicates_are_merged_not_passed_through() {
    let request = WriteRequest {
        timeseries: vec![ts("a", "1", &[(2, 2.0)]), ts("a", "1", &[(1, 1.0)])],
        metadata: vec![],
    };
    let body = crate::remote_write::encode_write_request(&request);
    let raw = crate::remote_write::decompress(&body, 1 << 20).unwrap();
    let (url, seen) = sink().await;
    let metrics = Metrics::new();
    let f = Forwarder::start(
        &config(&[("s", url)], 10, 10),
        metrics.collector.delivery.clone(),
    )
    .unwrap();
    let n = f
        .accept_batch("t", scanned(&raw), vec![], Some(body.into()))
        .unwrap();
    assert_eq!(n, 1);
    let got = decode_write_request(&received(&seen, 1).await[0], 1 << 20).unwrap();
    assert_eq!(got.timeseries, vec![ts("a", "1", &[(1, 1.0), (2, 2.0)])]);
}
