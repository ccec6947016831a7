//! Delivery against an in-process endpoint that answers from a script of statuses.

use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::post;
use bytes::Bytes;
use http::HeaderValue;

use super::*;
use crate::telemetry::Metrics;

#[derive(Default)]
struct Script {
    /// Status per request, in order; after the script: 204.
    statuses: Vec<(u16, Option<&'static str>)>,
    calls: AtomicUsize,
    bodies: Mutex<Vec<(Vec<u8>, HeaderMap)>>,
}

async fn endpoint(script: Arc<Script>) -> String {
    let app = Router::new().route(
        "/api/v1/write",
        post(move |headers: HeaderMap, body: Bytes| {
            let script = script.clone();
            async move {
                let n = script.calls.fetch_add(1, Ordering::SeqCst);
                let (status, retry_after) = script.statuses.get(n).copied().unwrap_or((204, None));
                if status < 300 {
                    script.bodies.lock().unwrap().push((body.to_vec(), headers));
                }
                let mut response =
                    (StatusCode::from_u16(status).unwrap(), "out of order sample").into_response();
                if let Some(after) = retry_after {
                    response
                        .headers_mut()
                        .insert("retry-after", after.parse().unwrap());
                }
                response
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/api/v1/write")
}

fn settings(capacity: usize) -> DeliverySettings {
    DeliverySettings {
        capacity,
        request_timeout: Duration::from_secs(5),
        min_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
    }
}

fn delivery(url: String, settings: DeliverySettings) -> (Arc<Delivery>, Arc<Metrics>) {
    crate::client::install_crypto_provider();
    let metrics = Arc::new(Metrics::new());
    let mut headers = http::HeaderMap::new();
    headers.insert("x-scope-orgid", "team-a".parse().unwrap());
    let endpoint = Endpoint {
        name: "prom-0".into(),
        url,
        protocol: Protocol::RemoteWrite,
        headers,
        tls: None,
    };
    let labels = EndpointLabels {
        namespace: "team-a".into(),
        resource: "cr".into(),
        target: "prom-0".into(),
    };
    let d = Delivery::new(
        labels,
        endpoint,
        reqwest::Client::new(),
        settings,
        metrics.collector.delivery.clone(),
    );
    (d, metrics)
}

fn payload(tag: &str) -> Payload {
    Payload {
        body: Bytes::from(tag.to_string()),
        series: 1,
        samples: 2,
        headers: Vec::new(),
    }
}

async fn wait_for(mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn retries_5xx_and_429_then_delivers_in_order() {
    let script = Arc::new(Script {
        statuses: vec![(503, None), (429, Some("0")), (500, None)],
        ..Default::default()
    });
    let url = endpoint(script.clone()).await;
    let (d, metrics) = delivery(url, settings(10));
    let (_stop_tx, stop) = watch::channel(false);
    tokio::spawn(d.clone().run(stop));
    d.enqueue(vec![payload("a"), payload("b")]);
    wait_for(|| script.bodies.lock().unwrap().len() == 2).await;
    // The endpoint answered; the worker records it right after.
    wait_for(|| d.stats().requests_ok == 2).await;
    let bodies = script.bodies.lock().unwrap();
    assert_eq!(
        bodies[0].0, b"a",
        "oldest first, the failed one was retried, not skipped"
    );
    assert_eq!(bodies[1].0, b"b");
    let h = &bodies[0].1;
    assert_eq!(h["content-encoding"], "snappy");
    assert_eq!(h["content-type"], "application/x-protobuf");
    assert_eq!(h["x-prometheus-remote-write-version"], "0.1.0");
    assert_eq!(h["x-scope-orgid"], "team-a");
    drop(bodies);
    let s = d.stats();
    assert_eq!((s.requests_ok, s.requests_retried), (2, 3));
    assert_eq!(s.samples_written, 4);
    assert_eq!(s.queue_depth, 0);
    let text = metrics.encode();
    assert!(
        text.contains(r#"pmtp_collector_requests_total{namespace="team-a",resource="cr",target="prom-0",outcome="retry"} 3"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_4xx_is_dropped_with_its_message_and_the_queue_moves_on() {
    let script = Arc::new(Script {
        statuses: vec![(400, None)],
        ..Default::default()
    });
    let url = endpoint(script.clone()).await;
    let (d, metrics) = delivery(url, settings(10));
    let (_stop_tx, stop) = watch::channel(false);
    tokio::spawn(d.clone().run(stop));
    d.enqueue(vec![payload("bad"), payload("good")]);
    wait_for(|| script.bodies.lock().unwrap().len() == 1).await;
    wait_for(|| d.stats().requests_ok == 1).await;
    assert_eq!(script.bodies.lock().unwrap()[0].0, b"good");
    assert_eq!(
        script.calls.load(Ordering::SeqCst),
        2,
        "the 400 was not retried"
    );
    let s = d.stats();
    assert_eq!(s.requests_rejected, 1);
    assert_eq!(
        s.last_error.as_deref(),
        Some("HTTP 400: out of order sample")
    );
    assert!(metrics.encode().contains(r#"outcome="rejected"} 1"#));
}

#[tokio::test]
async fn a_full_queue_drops_the_oldest_and_counts_it() {
    // Nothing listens here: the worker is not started, so requests pile up.
    let (d, metrics) = delivery("http://127.0.0.1:9/api/v1/write".into(), settings(2));
    d.enqueue(vec![payload("1"), payload("2"), payload("3")]);
    assert_eq!(d.depth(), 2);
    assert_eq!(d.stats().dropped_queue_full, 1);
    let q = d.queue.lock().unwrap();
    let left: Vec<&[u8]> = q.items.iter().map(|(_, p)| p.body.as_ref()).collect();
    assert_eq!(left, [b"2".as_ref(), b"3".as_ref()]);
    drop(q);
    assert!(metrics.encode().contains(r#"outcome="queue_full"} 1"#));
}

#[tokio::test]
async fn a_healthy_endpoint_is_waited_for_instead_of_dropping() {
    let script = Arc::new(Script::default());
    let url = endpoint(script.clone()).await;
    let (d, _) = delivery(url, settings(1));
    // Queue one before the worker runs: the queue is full when the next ones come.
    d.enqueue(vec![payload("1")]);
    let (_stop_tx, stop) = watch::channel(false);
    tokio::spawn(d.clone().run(stop));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for tag in ["2", "3", "4"] {
        d.enqueue_waiting(payload(tag), deadline).await;
    }
    wait_for(|| script.bodies.lock().unwrap().len() == 4).await;
    assert_eq!(d.stats().dropped_queue_full, 0);
    let order: Vec<Vec<u8>> = script
        .bodies
        .lock()
        .unwrap()
        .iter()
        .map(|b| b.0.clone())
        .collect();
    assert_eq!(
        order,
        [b"1".to_vec(), b"2".to_vec(), b"3".to_vec(), b"4".to_vec()]
    );
}

#[tokio::test]
async fn waiting_for_room_ends_at_the_deadline_or_when_the_endpoint_fails() {
    // No worker: nothing ever makes room; a deadline already passed drops the oldest.
    let (d, _) = delivery("http://127.0.0.1:9/api/v1/write".into(), settings(1));
    d.enqueue(vec![payload("1")]);
    d.enqueue_waiting(payload("2"), tokio::time::Instant::now())
        .await;
    assert_eq!(d.stats().dropped_queue_full, 1);
    // A worker whose writes fail (nothing listens): the waiter is released by the failure,
    // not by the (far) deadline.
    let (_stop_tx, stop) = watch::channel(false);
    tokio::spawn(d.clone().run(stop));
    let far = tokio::time::Instant::now() + Duration::from_secs(3600);
    tokio::time::timeout(
        Duration::from_secs(30),
        d.enqueue_waiting(payload("3"), far),
    )
    .await
    .expect("released when the endpoint failed");
    assert_eq!(d.stats().dropped_queue_full, 2);
    assert!(d.stats().requests_retried >= 1);
}

#[tokio::test]
async fn an_endpoint_that_comes_back_gets_the_backlog_oldest_first() {
    // Start with a dead address, queue three requests, then point the delivery at a live one.
    let (d, _) = delivery("http://127.0.0.1:9/api/v1/write".into(), settings(10));
    let (_stop_tx, stop) = watch::channel(false);
    tokio::spawn(d.clone().run(stop));
    d.enqueue(vec![payload("1"), payload("2"), payload("3")]);
    wait_for(|| d.stats().requests_retried >= 2).await;
    let script = Arc::new(Script::default());
    let url = endpoint(script.clone()).await;
    let target = d.target.load_full();
    let mut endpoint = target.endpoint.clone();
    endpoint.url = url;
    d.update(endpoint, reqwest::Client::new());
    wait_for(|| script.bodies.lock().unwrap().len() == 3).await;
    let order: Vec<Vec<u8>> = script
        .bodies
        .lock()
        .unwrap()
        .iter()
        .map(|b| b.0.clone())
        .collect();
    assert_eq!(order, [b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]);
}

#[tokio::test]
async fn the_worker_drains_before_it_stops() {
    let script = Arc::new(Script::default());
    let url = endpoint(script.clone()).await;
    let (d, _) = delivery(url, settings(10));
    let (stop_tx, stop) = watch::channel(false);
    d.enqueue(vec![payload("1"), payload("2")]);
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), d.clone().run(stop))
        .await
        .expect("drained and returned");
    assert_eq!(script.bodies.lock().unwrap().len(), 2);
}

#[test]
fn backoff_grows_is_capped_and_jittered() {
    let s = DeliverySettings {
        capacity: 1,
        request_timeout: Duration::from_secs(1),
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
    };
    for _ in 0..50 {
        let first = backoff(&s, 1);
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        let third = backoff(&s, 3);
        assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
        let capped = backoff(&s, 30);
        assert!(capped >= Duration::from_millis(500) && capped <= Duration::from_secs(1));
    }
}

#[tokio::test]
async fn try_enqueue_is_all_or_nothing_and_payload_headers_are_sent() {
    let script = Arc::new(Script::default());
    let url = endpoint(script.clone()).await;
    let (d, _) = delivery(url, settings(2));
    let full = d.try_enqueue(vec![payload("1"), payload("2"), payload("3")]);
    assert_eq!(
        full,
        Err(QueueFull {
            depth: 0,
            capacity: 2
        })
    );
    assert_eq!(d.depth(), 0, "nothing queued");
    let mut p = payload("tenant");
    p.headers.push((
        http::HeaderName::from_static("x-scope-orgid"),
        HeaderValue::from_static("team-b"),
    ));
    d.try_enqueue(vec![p]).unwrap();
    assert!(d.has_room(1, 10) && !d.has_room(2, 10));
    let (_stop_tx, stop) = watch::channel(false);
    tokio::spawn(d.clone().run(stop));
    wait_for(|| script.bodies.lock().unwrap().len() == 1).await;
    assert_eq!(
        script.bodies.lock().unwrap()[0].1["x-scope-orgid"],
        "team-b",
        "the payload's header wins over the endpoint's"
    );
}

#[test]
fn spilled_payloads_round_trip() {
    let mut p = payload("body bytes");
    p.headers.push((
        http::HeaderName::from_static("x-scope-orgid"),
        HeaderValue::from_static("team-b"),
    ));
    let back = spill_decode(Bytes::from(spill_encode(&p))).unwrap();
    assert_eq!(back.body, p.body);
    assert_eq!((back.series, back.samples), (1, 2));
    assert_eq!(back.headers, p.headers);
    assert!(spill_decode(Bytes::from_static(b"\x01")).is_none());
}

#[tokio::test]
async fn a_spilled_queue_survives_a_restart() {
    crate::client::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::new();
    let target = |url: String| Endpoint {
        name: "storage".into(),
        url,
        protocol: Protocol::RemoteWrite,
        headers: http::HeaderMap::new(),
        tls: None,
    };
    let labels = || EndpointLabels {
        namespace: String::new(),
        resource: "ingest".into(),
        target: "storage".into(),
    };
    {
        // Nothing listens: the requests stay on disk; the process "dies" (dropped).
        let spill = spill::SpillQueue::open(dir.path(), 1 << 20).unwrap();
        let d = Delivery::with_spill(
            labels(),
            target("http://127.0.0.1:9/api/v1/write".into()),
            reqwest::Client::new(),
            settings(10),
            metrics.collector.delivery.clone(),
            spill,
        );
        d.try_enqueue(vec![payload("1"), payload("2")]).unwrap();
        assert_eq!(d.depth(), 2);
    }
    let script = Arc::new(Script::default());
    let url = endpoint(script.clone()).await;
    let spill = spill::SpillQueue::open(dir.path(), 1 << 20).unwrap();
    let d = Delivery::with_spill(
        labels(),
        target(url),
        reqwest::Client::new(),
        settings(10),
        metrics.collector.delivery.clone(),
        spill,
    );
    assert_eq!(d.depth(), 2, "both requests came back from disk");
    let (_stop_tx, stop) = watch::channel(false);
    tokio::spawn(d.clone().run(stop));
    wait_for(|| d.depth() == 0 && script.bodies.lock().unwrap().len() == 2).await;
    let order: Vec<Vec<u8>> = script
        .bodies
        .lock()
        .unwrap()
        .iter()
        .map(|b| b.0.clone())
        .collect();
    assert_eq!(order, [b"1".to_vec(), b"2".to_vec()]);
}
