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
async fn a_series_is_queued_in_one_shard_at_a_time() {
    // A dead endpoint: nothing leaves the queues, so what is queued where stays visible.
    let dead = "http://127.0.0.1:9/api/v1/write".to_string();
    let metrics = Metrics::new();
    let mut cfg = config(&[("s", dead)], 10, 100);
    cfg.shards = 2;
    let f = Forwarder::start(&cfg, metrics.collector.delivery.clone()).unwrap();
    let batch = |pods: std::ops::Range<usize>, t: i64| -> Vec<TimeSeries> {
        pods.map(|p| ts("a", &p.to_string(), &[(t, 1.0)])).collect()
    };
    let depths =
        |f: &Forwarder| -> Vec<usize> { f.stats().values().map(|s| s.queue_depth).collect() };
    // A request goes whole to one shard.
    f.accept("t", batch(0..20, 1), vec![]).unwrap();
    assert_eq!(f.stats().keys().collect::<Vec<_>>(), ["s-0", "s-1"]);
    assert_eq!(depths(&f), [1, 0]);
    // Other series: the idle shard.
    f.accept("t", batch(100..120, 1), vec![]).unwrap();
    assert_eq!(depths(&f), [1, 1]);
    // The same series again: behind their earlier samples, whatever the load.
    f.accept("t", batch(0..20, 2), vec![]).unwrap();
    f.accept("t", batch(0..20, 3), vec![]).unwrap();
    assert_eq!(depths(&f), [3, 1]);
    // Series queued in both shards: split, each series behind its own samples.
    f.accept("t", batch(10..110, 4), vec![]).unwrap();
    assert_eq!(depths(&f), [4, 2]);
    let queued = |shard: usize| -> Vec<TimeSeries> {
        let d = &f.destinations[0].shards[shard].1;
        let q = d.queue_snapshot();
        q.iter()
            .flat_map(|p| decode_write_request(&p.body, 1 << 20).unwrap().timeseries)
            .collect()
    };
    for shard in [0, 1] {
        let other: Vec<String> = queued(1 - shard)
            .iter()
            .map(|t| t.labels[1].value.clone())
            .collect();
        for t in queued(shard) {
            assert!(
                !other.contains(&t.labels[1].value),
                "pod {} queued in both shards",
                t.labels[1].value
            );
        }
    }
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

#[tokio::test]
async fn series_spilled_before_a_restart_keep_their_shard() {
    let dir = tempfile::tempdir().unwrap();
    let dead = "http://127.0.0.1:9/api/v1/write".to_string();
    let metrics = Metrics::new();
    let mut cfg = config(&[("s", dead)], 10, 100);
    cfg.shards = 2;
    cfg.spill_directory = Some(dir.path().to_path_buf());
    let batch = |pods: std::ops::Range<usize>, t: i64| -> Vec<TimeSeries> {
        pods.map(|p| ts("a", &p.to_string(), &[(t, 1.0)])).collect()
    };
    let depths =
        |f: &Forwarder| -> Vec<usize> { f.stats().values().map(|s| s.queue_depth).collect() };
    {
        let f = Forwarder::start(&cfg, metrics.collector.delivery.clone()).unwrap();
        f.accept("t", batch(0..20, 1), vec![]).unwrap();
        f.accept("t", batch(0..20, 2), vec![]).unwrap();
        assert_eq!(depths(&f), [2, 0]);
        f.shutdown(Duration::ZERO).await;
    }
    // The stopped workers release the spill's lock as the runtime drops them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let f = loop {
        match Forwarder::start(&cfg, metrics.collector.delivery.clone()) {
            Ok(f) => break f,
            Err(e) if tokio::time::Instant::now() < deadline && e.contains("in use") => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(depths(&f), [2, 0], "the spill kept both requests");
    // Shard 1 is idle, but these series wait in shard 0's spill: they follow them.
    f.accept("t", batch(5..10, 3), vec![]).unwrap();
    assert_eq!(depths(&f), [3, 0]);
    // Series nobody holds take the idle shard.
    f.accept("t", batch(50..60, 3), vec![]).unwrap();
    assert_eq!(depths(&f), [3, 1]);
}
