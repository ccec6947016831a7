//! Status writing: the pure rules, then end to end against the **simulated** API server
//! (wiremock, not a cluster).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::collector::shape::ShapeStats;
use crate::k8s::simulated::{METRIC_ACCESS, SimulatedApiServer};
use crate::k8s::tenants::Observed;

fn job(state: &str, error: Option<&str>) -> JobStatus {
    JobStatus {
        namespace: "team-a".into(),
        name: "app".into(),
        interval_seconds: 15,
        state: state.into(),
        last_cycle: Some("2026-11-30T10:00:00Z".into()),
        last_error: error.map(str::to_string),
        last_shape: Some(ShapeStats {
            series_out: 42,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn observed(enabled: bool, status: Option<MetricAccessStatus>) -> Observed {
    Observed {
        generation: Some(3),
        status,
        remote_write_enabled: enabled,
    }
}

fn condition<'a>(s: &'a MetricAccessStatus, kind: &str) -> &'a Condition {
    s.conditions.iter().find(|c| c.kind == kind).unwrap()
}

#[test]
fn desired_status_per_situation() {
    let now = "2026-11-30T10:00:05Z";
    let ok = desired(
        &observed(true, None),
        None,
        true,
        Some(&job("ok", None)),
        now,
    );
    assert_eq!(condition(&ok, "Valid").status, "True");
    assert_eq!(condition(&ok, "Collecting").status, "True");
    assert_eq!(ok.observed_generation, Some(3));
    assert_eq!(ok.series_written, Some(42));
    assert_eq!(
        ok.last_collection_time.as_deref(),
        Some("2026-11-30T10:00:00Z")
    );
    assert_eq!(ok.last_error, None);

    let bad = desired(
        &observed(true, None),
        Some("metrics[0]: bad"),
        true,
        None,
        now,
    );
    assert_eq!(
        condition(&bad, "Valid").reason.as_deref(),
        Some("InvalidSpec")
    );
    assert_eq!(condition(&bad, "Collecting").status, "False");
    assert_eq!(bad.last_error.as_deref(), Some("metrics[0]: bad"));

    let off = desired(&observed(false, None), None, true, None, now);
    assert_eq!(
        condition(&off, "Collecting").reason.as_deref(),
        Some("Disabled")
    );
    let global_off = desired(&observed(true, None), None, false, None, now);
    assert_eq!(
        condition(&global_off, "Collecting").reason.as_deref(),
        Some("CollectorDisabled")
    );
    let failing = desired(
        &observed(true, None),
        None,
        true,
        Some(&job("target_error", Some("Secret team-a/rw not found"))),
        now,
    );
    let c = condition(&failing, "Collecting");
    assert_eq!(
        (c.status.as_str(), c.reason.as_deref()),
        ("False", Some("TargetError"))
    );
    assert_eq!(c.message.as_deref(), Some("Secret team-a/rw not found"));

    // Transition time: kept while the condition's status holds, reset when it flips.
    let later = "2026-11-30T11:00:00Z";
    let again = desired(
        &observed(true, Some(ok.clone())),
        None,
        true,
        Some(&job("ok", None)),
        later,
    );
    assert_eq!(
        condition(&again, "Collecting")
            .last_transition_time
            .as_deref(),
        Some(now)
    );
    let flipped = desired(
        &observed(true, Some(ok)),
        None,
        true,
        Some(&job("read_error", Some("x"))),
        later,
    );
    assert_eq!(
        condition(&flipped, "Collecting")
            .last_transition_time
            .as_deref(),
        Some(later)
    );
}

#[test]
fn patches_only_what_changed_and_throttles_moving_fields() {
    let now = "2026-11-30T10:00:05Z";
    let ok = desired(
        &observed(true, None),
        None,
        true,
        Some(&job("ok", None)),
        now,
    );
    let hour = Duration::from_secs(3600);
    assert!(needs_patch(None, &ok, None, hour), "no status yet");
    assert!(!needs_patch(Some(&ok), &ok, None, hour), "unchanged");
    let mut next_cycle = ok.clone();
    next_cycle.last_collection_time = Some("2026-11-30T10:00:20Z".into());
    assert!(
        !needs_patch(Some(&ok), &next_cycle, Some(Instant::now()), hour),
        "throttled"
    );
    assert!(needs_patch(
        Some(&ok),
        &next_cycle,
        Some(Instant::now() - Duration::from_secs(3601)),
        hour
    ));
    let mut failed = ok.clone();
    failed.last_error = Some("boom".into());
    assert!(
        needs_patch(Some(&ok), &failed, Some(Instant::now()), hour),
        "errors go at once"
    );

    let body = patch_body(&ok);
    assert!(
        body["status"]["lastError"].is_null() && body["status"].get("lastError").is_some(),
        "cleared with null: {body}"
    );
}

#[derive(Default)]
struct FakeInputs {
    jobs: Mutex<BTreeMap<Key, JobStatus>>,
    not_owned: Vec<Key>,
}

impl StatusInputs for FakeInputs {
    fn job(&self, namespace: &str, name: &str) -> Option<JobStatus> {
        self.jobs
            .lock()
            .unwrap()
            .get(&(namespace.into(), name.into()))
            .cloned()
    }
    fn collector_enabled(&self) -> bool {
        true
    }
    fn owns(&self, namespace: &str, name: &str) -> bool {
        !self.not_owned.contains(&(namespace.into(), name.into()))
    }
}

fn status_patches(
    requests: &[crate::k8s::simulated::Recorded],
    ns: &str,
    name: &str,
) -> Vec<serde_json::Value> {
    let path = format!(
        "/apis/observability.ethos.io/v1alpha1/namespaces/{ns}/metricaccesses/{name}/status"
    );
    requests
        .iter()
        .filter(|r| r.method == "PATCH" && r.path == path)
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect()
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn simulated_status_patches_without_hot_loop() {
    let api = SimulatedApiServer::start(&[METRIC_ACCESS]).await;
    let spec = |metrics: &[&str]| json!({"metrics": metrics, "remoteWrite": {"enabled": true, "target": {"type": "prometheus"}, "prometheus": {"serviceName": "p"}}});
    api.apply(
        METRIC_ACCESS,
        json!({"metadata": {"namespace": "team-a", "name": "app"}, "spec": spec(&["up"])}),
    );
    api.apply(METRIC_ACCESS, json!({"metadata": {"namespace": "team-b", "name": "broken"}, "spec": {"metrics": ["{job="]}}));
    api.apply(METRIC_ACCESS, json!({"metadata": {"namespace": "team-c", "name": "elsewhere"}, "spec": {"metrics": ["up"]}}));
    let inputs = Arc::new(FakeInputs {
        not_owned: vec![("team-c".into(), "elsewhere".into())],
        ..Default::default()
    });
    inputs
        .jobs
        .lock()
        .unwrap()
        .insert(("team-a".into(), "app".into()), job("ok", None));
    let store = Arc::new(TenantStore::new());
    let metrics = Arc::new(crate::telemetry::Metrics::new());
    let (observed, watch) =
        crate::k8s::tenants::spawn(api.client(), None, store.clone(), metrics.clone());
    let writer = spawn(
        api.client(),
        observed,
        store,
        inputs.clone(),
        Duration::from_secs(3600),
        metrics.clone(),
    );

    wait_for("both statuses written", async || {
        let r = api.requests().await;
        !status_patches(&r, "team-a", "app").is_empty()
            && !status_patches(&r, "team-b", "broken").is_empty()
    })
    .await;
    let a = api.get(METRIC_ACCESS, "team-a", "app").unwrap();
    assert_eq!(a["status"]["observedGeneration"], 1);
    assert_eq!(a["status"]["seriesWritten"], 42);
    assert_eq!(a["status"]["conditions"][0]["type"], "Valid");
    assert_eq!(a["status"]["conditions"][0]["status"], "True");
    assert_eq!(a["status"]["conditions"][1]["reason"], "Collected");
    let b = api.get(METRIC_ACCESS, "team-b", "broken").unwrap();
    assert_eq!(b["status"]["conditions"][0]["status"], "False");
    assert_eq!(b["status"]["conditions"][0]["reason"], "InvalidSpec");
    assert!(
        b["status"]["lastError"].as_str().unwrap().contains("{job="),
        "{b}"
    );
    // The spec is untouched by a status patch, and generation did not move.
    assert_eq!(a["metadata"]["generation"], 1);

    // Nothing changes: no further patches (no hot loop on our own updates).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = api.requests().await;
    assert_eq!(
        status_patches(&r, "team-a", "app").len(),
        1,
        "hot loop on team-a"
    );
    assert_eq!(
        status_patches(&r, "team-b", "broken").len(),
        1,
        "hot loop on team-b"
    );
    assert!(
        status_patches(&r, "team-c", "elsewhere").is_empty(),
        "wrote the status of a CR another replica owns"
    );
    let text = metrics.encode();
    assert!(
        text.contains("pmtp_kubernetes_status_patches_total{result=\"ok\"} 2"),
        "{text}"
    );

    // The collector starts failing: one patch with the error.
    inputs.jobs.lock().unwrap().insert(
        ("team-a".into(), "app".into()),
        job("read_error", Some("both infra members down")),
    );
    wait_for("the error patch", async || {
        status_patches(&api.requests().await, "team-a", "app").len() == 2
    })
    .await;
    let a = api.get(METRIC_ACCESS, "team-a", "app").unwrap();
    assert_eq!(a["status"]["conditions"][1]["reason"], "ReadError");
    assert_eq!(a["status"]["lastError"], "both infra members down");

    // A spec change moves observedGeneration.
    api.apply(METRIC_ACCESS, json!({"metadata": {"namespace": "team-a", "name": "app"}, "spec": spec(&["up", "node_load1"])}));
    wait_for("observedGeneration 2", async || {
        api.get(METRIC_ACCESS, "team-a", "app").unwrap()["status"]["observedGeneration"] == 2
    })
    .await;
    writer.abort();
    watch.abort();
}
