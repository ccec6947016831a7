//! Backend pool tests against tiny axum "Prometheus" servers on 127.0.0.1.

use std::sync::atomic::AtomicU32;

use axum::Router;
use axum::routing::{get, post};

use super::*;

struct Fake {
    url: String,
    hits: Arc<AtomicU32>,
    task: JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A fake Prometheus answering `/api/v1/query` with `status` and `/-/ready` with `ready`.
async fn fake(status: u16, ready: u16, delay: Duration) -> Fake {
    let hits = Arc::new(AtomicU32::new(0));
    let counter = hits.clone();
    let app = Router::new()
        .route(
            "/api/v1/query",
            post(move |body: String| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    (
                        StatusCode::from_u16(status).unwrap(),
                        [("content-type", "application/json")],
                        format!("{{\"status\":\"success\",\"echo\":{body:?}}}"),
                    )
                }
            }),
        )
        .route(
            "/-/ready",
            get(move || async move { StatusCode::from_u16(ready).unwrap() }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Fake { url, hits, task }
}

/// A URL where nothing listens.
async fn closed_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

pub(super) fn pool(members: Vec<String>, max_concurrent: usize, timeout: Duration) -> BackendPool {
    BackendPool::new(
        BackendSettings {
            groups: vec![GroupSettings {
                name: "infra".into(),
                members,
            }],
            probe_interval: Duration::from_millis(50),
            probe_timeout: Duration::from_millis(500),
            request_timeout: timeout,
            max_concurrent_requests: max_concurrent,
        },
        Arc::new(Metrics::new()),
    )
    .unwrap()
}

pub(super) fn query() -> UpstreamRequest {
    UpstreamRequest {
        method: Method::POST,
        path: "/api/v1/query".into(),
        form: "query=up".into(),
    }
}

async fn body_text(response: UpstreamResponse) -> String {
    let bytes = read_body(response.body, 1 << 20).await.unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn fails_over_from_5xx_to_the_next_member() {
    let broken = fake(500, 200, Duration::ZERO).await;
    let good = fake(200, 200, Duration::ZERO).await;
    let pool = pool(
        vec![broken.url.clone(), good.url.clone()],
        10,
        Duration::from_secs(5),
    );
    for _ in 0..4 {
        let response = pool.send(&query()).await.unwrap();
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.member, good.url);
        assert!(body_text(response).await.contains("query=up"));
    }
    assert_eq!(good.hits.load(Ordering::SeqCst), 4);
    // Round robin started on the broken member for half of the requests.
    assert_eq!(broken.hits.load(Ordering::SeqCst), 2);
    let metrics = pool.metrics.encode();
    assert!(metrics.contains("outcome=\"http_5xx\""), "{metrics}");
}

#[tokio::test]
async fn all_members_5xx_passes_the_last_answer_on() {
    let a = fake(503, 200, Duration::ZERO).await;
    let b = fake(503, 200, Duration::ZERO).await;
    let pool = pool(
        vec![a.url.clone(), b.url.clone()],
        10,
        Duration::from_secs(5),
    );
    let response = pool.send(&query()).await.unwrap();
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        a.hits.load(Ordering::SeqCst) + b.hits.load(Ordering::SeqCst),
        2
    );
}

#[tokio::test]
async fn fails_over_from_a_closed_port_and_marks_it_down() {
    let closed = closed_url().await;
    let good = fake(200, 200, Duration::ZERO).await;
    let pool = pool(
        vec![closed.clone(), good.url.clone()],
        10,
        Duration::from_secs(5),
    );
    for _ in 0..3 {
        let response = pool.send(&query()).await.unwrap();
        assert_eq!(response.member, good.url);
    }
    let down = pool.members().find(|(_, m)| m.url == closed).unwrap().1;
    assert_eq!(down.health(), Health::Down);
    assert!(
        down.state()
            .last_error
            .unwrap()
            .contains("connection failed")
    );
}

#[tokio::test]
async fn all_down_is_503_unavailable() {
    let pool = pool(
        vec![closed_url().await, closed_url().await],
        10,
        Duration::from_secs(5),
    );
    let error = pool.send(&query()).await.unwrap_err();
    assert!(matches!(error, UpstreamError::Unavailable(_)), "{error:?}");
    assert!(error.to_string().contains("group infra"), "{error}");
    // Both are now known down: the next request doesn't even try.
    let error = pool.send(&query()).await.unwrap_err();
    assert_eq!(
        error,
        UpstreamError::Unavailable("no healthy backend in group infra".into())
    );
}

#[tokio::test]
async fn probes_set_health_and_targets_show_it() {
    let up = fake(200, 200, Duration::ZERO).await;
    let unready = fake(200, 503, Duration::ZERO).await;
    let pool = pool(
        vec![up.url.clone(), unready.url.clone()],
        10,
        Duration::from_secs(5),
    );
    assert!(pool.read_group_ready().is_err());
    pool.start_probes();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let states: Vec<Health> = pool.members().map(|(_, m)| m.health()).collect();
        if states == [Health::Up, Health::Down] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "probes did not settle: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(pool.read_group_ready().is_ok());
    let targets = pool.targets_json();
    let members = &targets["groups"][0]["members"];
    assert_eq!(targets["groups"][0]["name"], "infra");
    assert_eq!(members[0]["health"], "up");
    assert_eq!(members[1]["health"], "down");
    assert!(members[1]["lastError"].as_str().unwrap().contains("503"));
    assert!(members[1]["lastProbe"].as_str().unwrap().ends_with('Z'));
    // Reads now only go to the ready member.
    for _ in 0..3 {
        assert_eq!(pool.send(&query()).await.unwrap().member, up.url);
    }
    assert_eq!(unready.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn concurrency_limit_waits_then_gives_up() {
    let good = fake(200, 200, Duration::ZERO).await;
    let pool = Arc::new(pool(vec![good.url.clone()], 1, Duration::from_millis(300)));
    // Hold the only permit, as a request streaming its answer would.
    let held = pool.semaphore.clone().acquire_owned().await.unwrap();
    let started = Instant::now();
    let error = pool.send(&query()).await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(matches!(error, UpstreamError::Unavailable(_)), "{error:?}");
    assert!(
        error.to_string().contains("too many concurrent requests"),
        "{error}"
    );
    // A request waiting for a permit gets it as soon as it is released.
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.send(&query()).await.map(|r| r.status) })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(held);
    assert_eq!(waiter.await.unwrap().unwrap(), StatusCode::OK);
    assert_eq!(good.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn slow_backend_hits_the_request_timeout() {
    let slow = fake(200, 200, Duration::from_secs(5)).await;
    let pool = pool(vec![slow.url.clone()], 1, Duration::from_millis(200));
    let error = pool.send(&query()).await.unwrap_err();
    assert!(matches!(error, UpstreamError::Timeout(_)), "{error:?}");
    // A timeout is not a reason to take the member out of rotation.
    assert_ne!(pool.members().next().unwrap().1.health(), Health::Down);
}

#[tokio::test]
async fn invalid_members_are_refused() {
    let settings = |url: &str| BackendSettings {
        groups: vec![GroupSettings {
            name: "infra".into(),
            members: vec![url.to_string()],
        }],
        probe_interval: Duration::from_secs(1),
        probe_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(1),
        max_concurrent_requests: 1,
    };
    for bad in ["ftp://x", "not a url", "http://h/?q=1"] {
        assert!(
            BackendPool::new(settings(bad), Arc::new(Metrics::new())).is_err(),
            "{bad}"
        );
    }
    let pool = BackendPool::new(settings("http://h:9090/prom/"), Arc::new(Metrics::new())).unwrap();
    assert_eq!(pool.members().next().unwrap().1.url, "http://h:9090/prom");
}
