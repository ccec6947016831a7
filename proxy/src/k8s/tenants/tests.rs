//! The tenant watcher against the **simulated** API server (wiremock, not a cluster).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::spawn;
use crate::k8s::simulated::{METRIC_ACCESS, SimulatedApiServer};
use crate::tenant::{TenantSnapshot, TenantStore};

fn metrics() -> Arc<crate::telemetry::Metrics> {
    Arc::new(crate::telemetry::Metrics::new())
}

fn cr(ns: &str, name: &str, metrics: &[&str]) -> Value {
    json!({
        "metadata": {"namespace": ns, "name": name},
        "spec": {"metricIsolation": true, "metrics": metrics},
    })
}

/// Poll `store` until `check` holds (bounded).
async fn until(store: &TenantStore, what: &str, check: impl Fn(&TenantSnapshot) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let snapshot = store.snapshot();
        if check(&snapshot) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}; store: {:?} invalid {:?}",
            snapshot.tenants.keys().collect::<Vec<_>>(),
            snapshot.invalid
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn policy_text(s: &TenantSnapshot, ns: &str) -> String {
    s.tenants
        .get(ns)
        .map(|t| format!("{:?}", t.policy))
        .unwrap_or_default()
}

#[tokio::test]
async fn simulated_tenants_appear_change_and_disappear() {
    let api = SimulatedApiServer::start(&[METRIC_ACCESS]).await;
    api.apply(METRIC_ACCESS, cr("team-a", "app", &["http_requests_total"]));
    api.apply(METRIC_ACCESS, cr("team-b", "app", &["up"]));
    // Invalid: a metric pattern that does not parse.
    api.apply(METRIC_ACCESS, cr("team-c", "broken", &["{job="]));
    let store = Arc::new(TenantStore::new());
    let (observed, task) = spawn(api.client(), None, store.clone(), metrics());

    until(&store, "initial list", |s| {
        s.loaded && s.tenants.len() == 2 && s.invalid.len() == 1
    })
    .await;
    let s = store.snapshot();
    assert!(policy_text(&s, "team-a").contains("http_requests_total"));
    assert_eq!(s.invalid[0].namespace.as_deref(), Some("team-c"));
    assert!(s.invalid[0].file.is_none());
    assert_eq!(
        observed.snapshot().len(),
        3,
        "invalid CRs are observed for their status"
    );

    // A changed spec applies; a new namespace appears.
    api.apply(
        METRIC_ACCESS,
        cr("team-a", "app", &["node_cpu_seconds_total"]),
    );
    api.apply(METRIC_ACCESS, cr("team-d", "x", &["up"]));
    until(&store, "change and addition", |s| {
        policy_text(s, "team-a").contains("node_cpu_seconds_total")
            && s.tenants.contains_key("team-d")
    })
    .await;

    // Deletion removes the tenant's access.
    api.delete(METRIC_ACCESS, "team-b", "app");
    until(&store, "deletion", |s| !s.tenants.contains_key("team-b")).await;

    // A status-only update (what the proxy's own status patches look like) does not rebuild
    // the store: the snapshot is the same Arc.
    let before = store.snapshot();
    let mut with_status = api.get(METRIC_ACCESS, "team-a", "app").unwrap();
    with_status["status"] = json!({"observedGeneration": 2, "lastError": null});
    api.apply(METRIC_ACCESS, with_status);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while observed.snapshot()[&("team-a".to_string(), "app".to_string())]
        .status
        .as_ref()
        .and_then(|s| s.observed_generation)
        != Some(2)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "status update not observed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        Arc::ptr_eq(&before, &store.snapshot()),
        "status change rebuilt the store"
    );
    task.abort();
}

#[tokio::test]
async fn simulated_relists_after_410_and_survives_errors() {
    let api = SimulatedApiServer::start(&[METRIC_ACCESS]).await;
    api.apply(METRIC_ACCESS, cr("team-a", "app", &["up"]));
    let store = Arc::new(TenantStore::new());
    let m = metrics();
    let (_observed, task) = spawn(api.client(), None, store.clone(), m.clone());
    until(&store, "initial list", |s| s.tenants.contains_key("team-a")).await;

    // Changes made while the event log is compacted are only seen by a re-list after the
    // 410 Expired the next watch gets.
    api.delete(METRIC_ACCESS, "team-a", "app");
    api.apply(METRIC_ACCESS, cr("team-b", "app", &["up"]));
    api.compact();
    until(&store, "re-list after 410", |s| {
        !s.tenants.contains_key("team-a") && s.tenants.contains_key("team-b")
    })
    .await;
    let relists = api
        .requests()
        .await
        .iter()
        .filter(|r| r.method == "GET" && !r.query.contains("watch=true"))
        .count();
    assert!(
        relists >= 2,
        "expected a second list after 410, saw {relists}"
    );

    // Watches failing with 500 (API server restarting): the last tenants stay in force and
    // the watcher recovers.
    api.fail_watches(2);
    api.apply(METRIC_ACCESS, cr("team-c", "app", &["up"]));
    until(&store, "recovery after errors", |s| {
        s.tenants.contains_key("team-b") && s.tenants.contains_key("team-c")
    })
    .await;
    // Each failure is counted (the 410 and the two 500s).
    let text = m.encode();
    let errors: u64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("pmtp_kubernetes_watch_errors_total{resource=\"metricaccesses\"} ")
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(errors >= 2, "watch errors not counted:\n{text}");
    task.abort();
}

#[tokio::test]
async fn simulated_listed_namespaces_only() {
    let api = SimulatedApiServer::start(&[METRIC_ACCESS]).await;
    api.apply(METRIC_ACCESS, cr("team-a", "app", &["up"]));
    api.apply(METRIC_ACCESS, cr("team-b", "app", &["up"]));
    api.apply(METRIC_ACCESS, cr("team-c", "app", &["up"]));
    let store = Arc::new(TenantStore::new());
    let (_observed, task) = spawn(
        api.client(),
        Some(vec!["team-a".into(), "team-c".into()]),
        store.clone(),
        metrics(),
    );
    until(&store, "two namespaces listed", |s| {
        s.loaded && s.tenants.len() == 2
    })
    .await;
    let s = store.snapshot();
    assert!(s.tenants.contains_key("team-a") && s.tenants.contains_key("team-c"));
    assert!(!s.tenants.contains_key("team-b"));
    let paths: Vec<String> = api.requests().await.into_iter().map(|r| r.path).collect();
    assert!(
        paths
            .iter()
            .all(|p| p.contains("/namespaces/team-a/") || p.contains("/namespaces/team-c/")),
        "cluster-wide or other-namespace request: {paths:?}"
    );
    task.abort();
}

#[tokio::test]
async fn not_loaded_until_the_api_server_answers() {
    let store = Arc::new(TenantStore::new());
    let client = crate::k8s::client_for("http://127.0.0.1:1").unwrap();
    let (_observed, task) = spawn(client, None, store.clone(), metrics());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!store.snapshot().loaded, "ready without ever listing");
    task.abort();
}
