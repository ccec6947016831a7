//! Discovery tests: the member rules on plain objects, and the watcher against the
//! simulated API server (`simulated_*`): list, watch events, 410, errors, resync.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;

use super::*;
use crate::k8s::simulated::{
    ENDPOINT_SLICE, ENDPOINTS, POD, Recorded, SERVICE, SimulatedApiServer,
};

fn group(name: &str, members: &[&str]) -> GroupSettings {
    GroupSettings {
        name: name.into(),
        members: members.iter().map(|m| m.to_string()).collect(),
    }
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn pod(ns: &str, name: &str, ip: &str, ready: bool, port: (&str, i32), label: &str) -> Value {
    json!({
        "metadata": {"namespace": ns, "name": name, "labels": {"prometheus": label}},
        "spec": {"containers": [{"name": "prometheus", "ports": [
            {"name": port.0, "containerPort": port.1}
        ]}]},
        "status": {"podIP": ip, "conditions": [
            {"type": "Ready", "status": if ready { "True" } else { "False" }}
        ]},
    })
}

fn parse<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

/// Wait until the published groups satisfy `done`; the last value on timeout (the assertion
/// after it shows what was published).
async fn wait_for(
    rx: &mut watch::Receiver<Vec<GroupSettings>>,
    done: impl Fn(&[GroupSettings]) -> bool,
) -> Vec<GroupSettings> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let current = rx.borrow_and_update().clone();
        if done(&current) {
            return current;
        }
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            return current;
        }
    }
}

fn pods_config() -> KubernetesDiscovery {
    KubernetesDiscovery {
        namespaces: vec!["mon-a".into(), "mon-b".into()],
        label_selectors: map(&[("prometheus", "infra")]),
        port: "web".into(),
        resource_types: vec![ResourceType::Pod],
        ..KubernetesDiscovery::default()
    }
}

fn pod_requests(requests: &[Recorded]) -> Vec<&Recorded> {
    requests
        .iter()
        .filter(|r| r.path.ends_with("/pods"))
        .collect()
}

#[test]
fn pods_need_ready_not_terminating_and_the_port() {
    let config = pods_config();
    let mut terminating = pod("a", "t", "10.0.0.9", true, ("web", 9090), "infra");
    terminating["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
    let objects: Vec<Discovered> = [
        pod("a", "ok", "10.0.0.1", true, ("web", 9090), "infra"),
        pod("a", "unready", "10.0.0.2", false, ("web", 9090), "infra"),
        pod("a", "noport", "10.0.0.3", true, ("metrics", 8080), "infra"),
        pod("a", "v6", "fd00::1", true, ("web", 9090), "infra"),
        terminating,
    ]
    .into_iter()
    .map(|p| Discovered::Pod(Box::new(parse(p))))
    .collect();
    assert_eq!(
        groups_from(&objects, &config),
        vec![group(
            "infra",
            &["http://10.0.0.1:9090", "http://[fd00::1]:9090"]
        )]
    );
    // A number needs no declared port.
    let by_number = KubernetesDiscovery {
        port: "8080".into(),
        ..config
    };
    assert_eq!(
        groups_from(&objects, &by_number),
        vec![group(
            "infra",
            &[
                "http://10.0.0.1:8080",
                "http://10.0.0.3:8080",
                "http://[fd00::1]:8080"
            ]
        )]
    );
}

#[test]
fn groups_are_sorted_deduplicated_and_the_read_group_comes_first() {
    let pairs: Vec<Contribution> = [
        ("zeta", "http://b:1"),
        ("alpha", "http://a:1"),
        ("zeta", "http://a:1"),
        ("zeta", "http://b:1"),
        ("default", "http://c:1"),
    ]
    .iter()
    .map(|(g, m)| (g.to_string(), m.to_string()))
    .collect();
    let zeta = group("zeta", &["http://a:1", "http://b:1"]);
    let alpha = group("alpha", &["http://a:1"]);
    let default = group("default", &["http://c:1"]);
    assert_eq!(
        assemble(&pairs, None),
        vec![alpha.clone(), default.clone(), zeta.clone()]
    );
    assert_eq!(
        assemble(&pairs, Some("zeta")),
        vec![zeta.clone(), alpha.clone(), default.clone()]
    );
    assert_eq!(assemble(&pairs, Some("absent")), vec![alpha, default, zeta]);
}

#[test]
fn objects_without_the_group_label_go_to_default_endpoints_and_slices_to_their_service() {
    let config = KubernetesDiscovery {
        port: "9090".into(),
        ..KubernetesDiscovery::default()
    };
    let unlabelled = json!({
        "metadata": {"namespace": "a", "name": "p"},
        "status": {"podIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]},
    });
    let slice = json!({
        "metadata": {"namespace": "a", "name": "s-1", "labels": {SERVICE_NAME: "svc"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.2"]}],
        "ports": [{"port": 9090}],
    });
    // Real Endpoints carry no service-name label: their own name is the Service's.
    let endpoints = json!({
        "metadata": {"namespace": "a", "name": "prom-infra"},
        "subsets": [{"addresses": [{"ip": "10.0.0.3"}], "ports": [{"port": 9090}]}],
    });
    let objects = vec![
        Discovered::Pod(Box::new(parse(unlabelled))),
        Discovered::EndpointSlice(Box::new(parse(slice))),
        Discovered::Endpoints(Box::new(parse(endpoints))),
    ];
    assert_eq!(
        groups_from(&objects, &config),
        vec![
            group("default", &["http://10.0.0.1:9090"]),
            group("prom-infra", &["http://10.0.0.3:9090"]),
            group("svc", &["http://10.0.0.2:9090"])
        ]
    );
}

const SERVICE_NAME: &str = members::SERVICE_NAME_LABEL;

#[tokio::test]
async fn simulated_pods_follow_readiness_deletion_compaction_and_namespaces() {
    let server = SimulatedApiServer::start(&[POD]).await;
    for p in [
        pod("mon-a", "p1", "10.0.0.1", true, ("web", 9090), "infra"),
        pod("mon-b", "p2", "10.0.0.2", true, ("web", 9091), "infra"),
        pod(
            "mon-a",
            "unready",
            "10.0.0.3",
            false,
            ("web", 9090),
            "infra",
        ),
        pod(
            "mon-a",
            "noport",
            "10.0.0.4",
            true,
            ("metrics", 8080),
            "infra",
        ),
        pod("mon-a", "other", "10.0.0.5", true, ("web", 9090), "other"),
        pod("elsewhere", "p6", "10.0.0.6", true, ("web", 9090), "infra"),
    ] {
        server.apply(POD, p);
    }
    let (mut rx, task) = spawn(server.client(), pods_config(), Duration::from_secs(60));

    let infra = |members: &[&str]| vec![group("infra", members)];
    let expected = infra(&["http://10.0.0.1:9090", "http://10.0.0.2:9091"]);
    assert_eq!(wait_for(&mut rx, |g| g == expected).await, expected);

    server.apply(
        POD,
        pod("mon-a", "unready", "10.0.0.3", true, ("web", 9090), "infra"),
    );
    let expected = infra(&[
        "http://10.0.0.1:9090",
        "http://10.0.0.2:9091",
        "http://10.0.0.3:9090",
    ]);
    assert_eq!(wait_for(&mut rx, |g| g == expected).await, expected);

    server.delete(POD, "mon-a", "p1");
    let expected = infra(&["http://10.0.0.2:9091", "http://10.0.0.3:9090"]);
    assert_eq!(wait_for(&mut rx, |g| g == expected).await, expected);

    // Compaction: the next watch gets 410 and the watcher must list again to see p7.
    server.compact();
    server.apply(
        POD,
        pod("mon-b", "p7", "10.0.0.7", true, ("web", 9090), "infra"),
    );
    server.apply(
        POD,
        pod("elsewhere", "p8", "10.0.0.8", true, ("web", 9090), "infra"),
    );
    let expected = infra(&[
        "http://10.0.0.2:9091",
        "http://10.0.0.3:9090",
        "http://10.0.0.7:9090",
    ]);
    assert_eq!(wait_for(&mut rx, |g| g == expected).await, expected);
    task.abort();

    let requests = server.requests().await;
    let pods = pod_requests(&requests);
    assert!(!pods.is_empty());
    for r in &pods {
        assert!(
            r.path == "/api/v1/namespaces/mon-a/pods" || r.path == "/api/v1/namespaces/mon-b/pods",
            "cluster-wide or unlisted namespace asked: {r:?}"
        );
        assert!(
            r.query.contains("labelSelector=prometheus%3Dinfra"),
            "{r:?}"
        );
    }
    // After the 410 the watcher listed again (a list has no `watch=true`).
    let lists = pods.iter().filter(|r| !r.query.contains("watch=")).count();
    assert!(lists > 2, "expected a re-list after 410, got {lists} lists");
}

#[tokio::test]
async fn simulated_api_errors_keep_the_last_groups_and_recover() {
    let server = SimulatedApiServer::start(&[POD]).await;
    server.apply(
        POD,
        pod("mon-a", "p1", "10.0.0.1", true, ("web", 9090), "infra"),
    );
    let (mut rx, task) = spawn(server.client(), pods_config(), Duration::from_secs(60));
    let first = vec![group("infra", &["http://10.0.0.1:9090"])];
    assert_eq!(wait_for(&mut rx, |g| g == first).await, first);

    server.fail_watches(2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        *rx.borrow(),
        first,
        "the last known groups stay during errors"
    );
    server.apply(
        POD,
        pod("mon-b", "p2", "10.0.0.2", true, ("web", 9090), "infra"),
    );
    let expected = vec![group(
        "infra",
        &["http://10.0.0.1:9090", "http://10.0.0.2:9090"],
    )];
    assert_eq!(wait_for(&mut rx, |g| g == expected).await, expected);
    task.abort();
}

#[tokio::test]
async fn simulated_resync_lists_again_without_resending_unchanged_groups() {
    let server = SimulatedApiServer::start(&[POD]).await;
    server.apply(
        POD,
        pod("mon-a", "p1", "10.0.0.1", true, ("web", 9090), "infra"),
    );
    let (mut rx, task) = spawn(server.client(), pods_config(), Duration::from_secs(1));
    let first = vec![group("infra", &["http://10.0.0.1:9090"])];
    assert_eq!(wait_for(&mut rx, |g| g == first).await, first);
    let lists_before = pod_requests(&server.requests().await)
        .iter()
        .filter(|r| !r.query.contains("watch="))
        .count();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let lists_after = pod_requests(&server.requests().await)
        .iter()
        .filter(|r| !r.query.contains("watch="))
        .count();
    assert!(
        lists_after >= lists_before + 2,
        "{lists_before} → {lists_after}"
    );
    assert!(
        !rx.has_changed().unwrap(),
        "an unchanged resync sends nothing"
    );
    task.abort();
}

/// A Service (plus a headless one and an annotation-filtered one), an Endpoints and an
/// EndpointSlice, every port named `web` = 9090.
fn apply_service_fixtures(server: &SimulatedApiServer) {
    let annotations = json!({"prometheus.io/proxy": "true"});
    let web = json!([{"name": "web", "port": 9090}]);
    let service = |name: &str, cluster_ip: &str, annotations: &Value| {
        json!({
            "metadata": {"namespace": "mon", "name": name,
                "labels": {"prometheus": "a"}, "annotations": annotations},
            "spec": {"clusterIP": cluster_ip, "ports": web},
        })
    };
    server.apply(SERVICE, service("prom-a", "10.96.0.10", &annotations));
    server.apply(SERVICE, service("prom-a-headless", "None", &annotations));
    server.apply(
        SERVICE,
        service(
            "prom-x",
            "10.96.0.11",
            &json!({"prometheus.io/proxy": "false"}),
        ),
    );
    server.apply(
        ENDPOINTS,
        json!({
            "metadata": {"namespace": "mon", "name": "prom-b",
                "labels": {"prometheus": "b"}, "annotations": annotations},
            "subsets": [{
                "addresses": [{"ip": "10.1.0.2"}, {"ip": "10.1.0.1"}],
                "notReadyAddresses": [{"ip": "10.1.0.3"}],
                "ports": web,
            }],
        }),
    );
    server.apply(
        ENDPOINT_SLICE,
        json!({
            "metadata": {"namespace": "mon", "name": "prom-c-x1",
                "labels": {SERVICE_NAME: "prom-c"}, "annotations": annotations},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.2.0.1"], "conditions": {"ready": true}},
                {"addresses": ["10.2.0.2"], "conditions": {"ready": false}},
                {"addresses": ["10.2.0.3"]},
            ],
            "ports": web,
        }),
    );
}

#[tokio::test]
async fn simulated_services_endpoints_and_slices_by_port_name_and_number() {
    let server = SimulatedApiServer::start(&[SERVICE, ENDPOINTS, ENDPOINT_SLICE]).await;
    apply_service_fixtures(&server);
    let expected = vec![
        group("b", &["http://10.1.0.1:9090", "http://10.1.0.2:9090"]),
        group("a", &["http://prom-a.mon.svc:9090"]),
        group("prom-c", &["http://10.2.0.1:9090", "http://10.2.0.3:9090"]),
    ];
    for port in ["web", "9090"] {
        let config = KubernetesDiscovery {
            port: port.into(),
            annotation_selectors: map(&[("prometheus.io/proxy", "true")]),
            resource_types: vec![
                ResourceType::Service,
                ResourceType::Endpoints,
                ResourceType::EndpointSlice,
            ],
            read_group: Some("b".into()),
            ..KubernetesDiscovery::default()
        };
        let (mut rx, task) = spawn(server.client(), config, Duration::from_secs(60));
        let groups = wait_for(&mut rx, |g| !g.is_empty()).await;
        assert_eq!(groups, expected, "port {port}");
        task.abort();
    }
    // No namespaces configured: cluster-wide lists.
    let requests = server.requests().await;
    assert!(requests.iter().any(|r| r.path == "/api/v1/services"));
    assert!(
        requests
            .iter()
            .any(|r| r.path == "/apis/discovery.k8s.io/v1/endpointslices")
    );
}
