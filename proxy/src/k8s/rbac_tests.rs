//! RBAC derived from the code: the whole proxy runs with every Kubernetes feature on against
//! the **simulated** API server (wiremock, not a cluster); the (group, resource, verb) of
//! every request it made must equal the rules of `kustomize/base/rbac.yaml`, no more, no less.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::k8s::simulated::{
    ENDPOINT_SLICE, ENDPOINTS, LEASE, METRIC_ACCESS, POD, Recorded, SECRET, SERVICE,
    SimulatedApiServer,
};

type Permission = (String, String, String);

/// What RBAC calls a request: (API group, resource[/subresource], verb).
fn permission(r: &Recorded) -> Permission {
    let parts: Vec<&str> = r.path.split('/').filter(|p| !p.is_empty()).collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => (String::new(), rest.to_vec()),
        ["apis", group, _version, rest @ ..] => (group.to_string(), rest.to_vec()),
        _ => panic!("not an API path: {}", r.path),
    };
    let rest = match rest.as_slice() {
        ["namespaces", _ns, rest @ ..] => rest.to_vec(),
        other => other.to_vec(),
    };
    let resource = match rest.as_slice() {
        [plural, _name, sub] => format!("{plural}/{sub}"),
        [plural, ..] => plural.to_string(),
        [] => panic!("no resource in {}", r.path),
    };
    let named = rest.len() >= 2;
    let verb = match (r.method.as_str(), named) {
        ("GET", false)
            if r.query
                .split('&')
                .any(|q| q == "watch=true" || q == "watch=1") =>
        {
            "watch"
        }
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        (m, _) => panic!("unexpected method {m} on {}", r.path),
    };
    (group, resource, verb.to_string())
}

/// Every (group, resource, verb) the ClusterRole and Role of the manifest grant.
fn granted() -> BTreeSet<Permission> {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../kustomize/base/rbac.yaml");
    let text = std::fs::read_to_string(file).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    let mut out = BTreeSet::new();
    for doc in docs
        .iter()
        .filter(|d| matches!(d["kind"].as_str(), Some("ClusterRole" | "Role")))
    {
        for rule in doc["rules"].as_array().unwrap() {
            let list = |k: &str| -> Vec<String> {
                rule[k]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect()
            };
            for g in list("apiGroups") {
                for r in list("resources") {
                    for v in list("verbs") {
                        assert!(g != "*" && r != "*" && v != "*", "wildcard in {file}");
                        out.insert((g.clone(), r.clone(), v));
                    }
                }
            }
        }
    }
    out
}

async fn eventually(api: &SimulatedApiServer, what: &str, check: impl Fn(&[Recorded]) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if check(&api.requests().await) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn seen(requests: &[Recorded], method: &str, path_part: &str) -> bool {
    requests
        .iter()
        .any(|r| r.method == method && r.path.contains(path_part))
}

#[tokio::test]
async fn simulated_rbac_manifest_grants_exactly_what_the_code_calls() {
    let api = SimulatedApiServer::start(&[
        METRIC_ACCESS,
        SECRET,
        SERVICE,
        POD,
        ENDPOINTS,
        ENDPOINT_SLICE,
        LEASE,
    ])
    .await;
    Mock::given(method("POST"))
        .and(path("/apis/authentication.k8s.io/v1/tokenreviews"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "metadata": {},
            "spec": {}, "status": {"authenticated": true, "user": {
                "username": "system:serviceaccount:team-a:grafana", "uid": "u1",
                "groups": ["system:serviceaccounts"]}}})))
        .mount(api.server())
        .await;
    Mock::given(method("POST"))
        .and(path("/apis/authorization.k8s.io/v1/subjectaccessreviews"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "metadata": {},
            "spec": {}, "status": {"allowed": true}})))
        .mount(api.server())
        .await;
    api.apply(METRIC_ACCESS, json!({
        "metadata": {"namespace": "team-a", "name": "app"},
        "spec": {"metrics": ["up"], "remoteWrite": {
            "enabled": true, "interval": "5s", "target": {"type": "remote_write"},
            "remoteWrite": {"url": "http://127.0.0.1:1/api/v1/write",
                "basicAuth": {"username": "u", "passwordSecret": {"name": "rw", "key": "password"}}}}},
    }));
    let running = super::tests::start_proxy(
        &api,
        r#"
tenants: { source: kubernetes }
discovery:
  kubernetes:
    namespaces: [monitoring]
    port: "9090"
    resource_types: [Pod, Service, Endpoints, EndpointSlice]
auth:
  mode: kubernetes
  kubernetes:
    access_review: { verb: get, group: observability.ethos.io, resource: metricaccesses }
remote_write: { enabled: true, collection_interval: 5s, allowed_urls: ['http://127\.0\.0\.1:1/api/v1/write'] }
kubernetes:
  sharding: { enabled: true, identity: r0, namespace: monitoring, lease_duration: 1s }
"#,
    )
    .await;

    // A tenant request: TokenReview, then SubjectAccessReview.
    let answer = reqwest::Client::new()
        .get(format!("http://{}/api/v1/query?query=up", running.api_addr))
        .bearer_auth("a-service-account-token")
        .send()
        .await
        .unwrap();
    assert_ne!(answer.status(), 401, "the token was not accepted");

    eventually(&api, "every feature's calls", |r| {
        seen(r, "PATCH", "/metricaccesses/app/status")
            && seen(r, "GET", "/namespaces/team-a/secrets/rw")
            && seen(r, "PUT", "/leases/")
            && seen(r, "POST", "/subjectaccessreviews")
            && ["pods", "services", "endpoints", "endpointslices"]
                .iter()
                .all(|p| {
                    r.iter().any(|q| {
                        q.path.ends_with(&format!("/{p}")) && q.query.contains("watch=true")
                    })
                })
    })
    .await;
    running.shutdown().await.unwrap();
    eventually(&api, "the lease deleted on shutdown", |r| {
        seen(r, "DELETE", "/leases/")
    })
    .await;

    let used: BTreeSet<Permission> = api.requests().await.iter().map(permission).collect();
    let granted = granted();
    let missing: Vec<_> = used.difference(&granted).collect();
    let unused: Vec<_> = granted.difference(&used).collect();
    assert!(
        missing.is_empty() && unused.is_empty(),
        "kustomize/base/rbac.yaml is out of line with the code.\n  called but not granted: {missing:?}\n  granted but never called: {unused:?}"
    );
    // Secrets: only `get`, only in the CR's namespace.
    let secret_paths: BTreeSet<String> = api
        .requests()
        .await
        .into_iter()
        .filter(|r| r.path.contains("/secrets"))
        .map(|r| r.path)
        .collect();
    assert_eq!(
        secret_paths,
        BTreeSet::from(["/api/v1/namespaces/team-a/secrets/rw".to_string()])
    );
}
