//! e2e against the **kind lab** (`cargo xtask up --kind`, then `cargo xtask e2e --kind`): the
//! proxy runs in the monitoring cluster in Kubernetes mode (tenants from MetricAccess CRs,
//! infrastructure Prometheus discovered, service-account tokens checked with TokenReview).
//! The tests are ignored by default (no cluster, as on machines without Docker: they show as
//! ignored, never as passed); `cargo xtask e2e --kind` runs them with `--include-ignored`.

use std::process::Command;

const CONTEXT: &str = "kind-pmtp-monitoring";
const AUDIENCE: &str = "prometheus-multi-tenant-proxy";

struct Lab {
    proxy: String,
    prometheus: String,
}

fn lab() -> Lab {
    let var = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set: run `cargo xtask e2e --kind`"))
    };
    assert_eq!(var("PMTP_E2E_KIND"), "1", "run `cargo xtask e2e --kind`");
    Lab {
        proxy: var("PMTP_E2E_PROXY_URL"),
        prometheus: var("PMTP_E2E_PROMETHEUS_URL"),
    }
}

/// `kubectl --context <the lab's monitoring cluster> <args>`: its stdout, or a failure with
/// kubectl's stderr.
fn kubectl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("kubectl")
        .args(["--context", CONTEXT])
        .args(args)
        .output()
        .expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A token of the tenant's Grafana ServiceAccount (gitops/tenants/<ns>/serviceaccount.yaml).
fn token(namespace: &str) -> String {
    let out = kubectl(&[
        "-n",
        namespace,
        "create",
        "token",
        "grafana",
        "--audience",
        AUDIENCE,
        "--duration",
        "10m",
    ]);
    String::from_utf8(out).unwrap().trim().to_string()
}

async fn query(base: &str, token: Option<&str>, promql: &str) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new()
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", promql)]);
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request.send().await.expect("proxy reachable");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

fn namespaces_in(answer: &serde_json::Value) -> Vec<String> {
    answer["data"]["result"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|s| s["metric"]["namespace"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
#[ignore = "needs the kind lab"]
async fn kind_tenants_see_only_their_namespace() {
    let lab = lab();
    // The infrastructure Prometheus holds several namespaces: otherwise isolation shows nothing.
    let all_series = "count by (namespace) ({__name__=~\".+\"})";
    let (_, all) = query(&lab.prometheus, None, all_series).await;
    assert!(
        namespaces_in(&all).len() > 1,
        "infra holds one namespace only: {all}"
    );
    for tenant in ["team-a", "team-b"] {
        let (status, answer) = query(&lab.proxy, Some(&token(tenant)), all_series).await;
        assert_eq!(status, 200, "{tenant}: {answer}");
        let seen = namespaces_in(&answer);
        assert!(seen.iter().all(|ns| ns == tenant), "{tenant} sees {seen:?}");
    }
}

#[tokio::test]
#[ignore = "needs the kind lab"]
async fn kind_requests_without_a_valid_token_are_refused() {
    let lab = lab();
    assert_eq!(query(&lab.proxy, None, "up").await.0, 401);
    assert_eq!(query(&lab.proxy, Some("not-a-token"), "up").await.0, 401);
}

#[test]
#[ignore = "needs the kind lab"]
fn kind_metricaccess_status_is_written() {
    lab();
    let out = kubectl(&["-n", "team-a", "get", "metricaccess", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&out).unwrap();
    for item in list["items"].as_array().unwrap() {
        let valid = item["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Valid"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(valid["status"], "True", "{}", item["metadata"]["name"]);
    }
}
