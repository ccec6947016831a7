//! The whole proxy in Kubernetes mode against the **simulated** API server (wiremock, not a
//! cluster): tenants, backends and status all come from (and go to) the API.

use std::time::Duration;

use serde_json::json;

use crate::config::Config;
use crate::http::tests::FakeUpstream;
use crate::k8s::simulated::{METRIC_ACCESS, POD, SimulatedApiServer};

fn pod(ns: &str, name: &str, port: u16, ready: bool) -> serde_json::Value {
    json!({
        "metadata": {"namespace": ns, "name": name, "labels": {"app": "prometheus", "prometheus": "infra"}},
        "spec": {"containers": [{"name": "prometheus", "ports": [{"name": "web", "containerPort": port}]}]},
        "status": {"podIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
    })
}

/// The whole proxy on loopback ports, in the Kubernetes mode `yaml` describes, talking to
/// `api`.
pub(super) async fn start_proxy(api: &SimulatedApiServer, yaml: &str) -> crate::app::RunningProxy {
    let listeners = "server: { listen: \"127.0.0.1:0\", admin_listen: \"127.0.0.1:0\" }\n";
    let config = Config::from_yaml(&format!("{listeners}{yaml}"), "test").unwrap();
    let options = crate::app::StartOptions {
        kube_client: Some(api.client()),
        ..Default::default()
    };
    crate::app::start_with(config, None, options).await.unwrap()
}

async fn eventually<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn simulated_kubernetes_mode_end_to_end() {
    let upstream = FakeUpstream::start().await;
    let port: u16 = upstream.url.rsplit(':').next().unwrap().parse().unwrap();
    let api = SimulatedApiServer::start(&[METRIC_ACCESS, POD]).await;
    api.apply(POD, pod("monitoring", "prometheus-infra-0", port, true));
    api.apply(
        METRIC_ACCESS,
        json!({
            "metadata": {"namespace": "team-a", "name": "app"},
            "spec": {"metricIsolation": true, "metrics": ["http_requests_total"]},
        }),
    );
    let running = start_proxy(
        &api,
        r#"
tenants: { source: kubernetes }
discovery:
  kubernetes:
    namespaces: [monitoring]
    label_selectors: { app: prometheus }
    port: web
    resource_types: [Pod]
backends: { probe_interval: 100ms }
auth: { mode: header }
"#,
    )
    .await;
    let client = reqwest::Client::new();
    let query = |tenant: &'static str| {
        client
            .get(format!(
                "http://{}/api/v1/query?query=sum(up)",
                running.api_addr
            ))
            .header("X-Tenant-Namespace", tenant)
            .send()
    };

    // Backends discovered from the pod, tenants from the CR: team-a's query is rewritten and
    // reaches the discovered Prometheus.
    eventually("team-a answered", async || {
        let r = query("team-a").await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let sent = upstream.take();
    let forwarded = sent
        .iter()
        .find(|r| r.path == "/api/v1/query")
        .expect("query forwarded");
    let text = format!("{} {}", forwarded.query, forwarded.body);
    assert!(
        text.contains("team-a") && text.contains("http_requests_total"),
        "not enforced: {text}"
    );
    assert_eq!(
        query("team-b").await.unwrap().status(),
        403,
        "unknown tenant"
    );

    // The CR's status says it is valid (written through the status subresource).
    eventually("status written", async || {
        let o = api.get(METRIC_ACCESS, "team-a", "app")?;
        (o["status"]["conditions"][0]["status"] == "True").then_some(())
    })
    .await;

    let debug: serde_json::Value = client
        .get(format!("http://{}/debug/tenants", running.admin_addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(debug["source"], "kubernetes");
    assert_eq!(debug["tenants"][0]["namespace"], "team-a");
    assert!(debug["invalid"].as_array().unwrap().is_empty(), "{debug}");

    // Deleting the CR removes the tenant's access.
    api.delete(METRIC_ACCESS, "team-a", "app");
    eventually("team-a denied", async || {
        (query("team-a").await.ok()?.status() == 403).then_some(())
    })
    .await;
    drop(running);
}
