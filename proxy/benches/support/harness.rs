//! Series shaped like the shared bench harness's universe (`bench/harness/gen/universe.py`):
//! cadvisor, kube-state-metrics and application series of namespaces `tenant-00..49`, with the
//! labels the 10 governance rules of `bench/harness/configs/relabel-governance.yml` act on
//! (`namespace`, `image`, `id`, `uid`, `le`, `service`, `endpoint`, `pod`). Deterministic, no
//! randomness: the same `n` gives the same series. Used by the `relabel` and `codec` benches.

#![allow(dead_code)]

use proxy::relabel::RelabelConfig;
use proxy::remote_write::{Label, Sample, TimeSeries, WriteRequest};

/// The harness's governance rules, verbatim (copied into the repo with the harness).
pub const GOVERNANCE_YAML: &str =
    include_str!("../../../bench/harness/configs/relabel-governance.yml");

const LE: [&str; 12] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
];
const APPS: [&str; 6] = ["api", "web", "worker", "checkout", "cart", "auth"];

/// The 10 governance rules parsed into the proxy's relabel config type.
pub fn governance_rules() -> Vec<RelabelConfig> {
    serde_saphyr::from_str(GOVERNANCE_YAML).expect("relabel-governance.yml parses")
}

fn l(name: &str, value: impl Into<String>) -> Label {
    Label {
        name: name.to_owned(),
        value: value.into(),
    }
}

/// `n` harness-like series with one sample each, labels sorted by name, ~11 labels per series.
/// The mix per pod follows universe.py: 2 containers × 5 cadvisor series, 4 kube-state series,
/// 24 histogram buckets, 8 app counters/gauges (incl. `go_memstats_*`).
pub fn harness_series(n: usize) -> Vec<TimeSeries> {
    let mut out = Vec::with_capacity(n);
    let mut pod_idx = 0usize;
    while out.len() < n {
        let ns = format!("tenant-{:02}", pod_idx % 50);
        let app = APPS[pod_idx % APPS.len()];
        let pod = format!("{app}-{:010x}-{:05x}", pod_idx * 2_654_435_761, pod_idx);
        let node = format!("ip-10-0-0-{}.eu-west-1.compute.internal", pod_idx % 20 + 10);
        let uid = format!(
            "{:08x}-{:04x}-{:012x}",
            pod_idx * 7919,
            pod_idx % 65536,
            pod_idx
        );
        let common = |name: &str, job: &str| {
            vec![
                l("__name__", name),
                l("cluster", "prod-eu-0"),
                l("job", job),
                l("namespace", ns.clone()),
                l("pod", pod.clone()),
            ]
        };
        for ctn in [app, "istio-proxy"] {
            for name in [
                "container_cpu_usage_seconds_total",
                "container_memory_working_set_bytes",
                "container_memory_cache",
                "container_fs_writes_bytes_total",
                "container_spec_memory_limit_bytes",
            ] {
                let mut labels = common(name, "kubelet");
                labels.push(l("container", ctn));
                labels.push(l(
                    "image",
                    format!("registry.example.com/{ns}/{ctn}:v1.{}.0", pod_idx % 30),
                ));
                labels.push(l("id", format!("/kubepods/burstable/pod{uid}/{ctn}")));
                labels.push(l("node", node.clone()));
                labels.push(l("metrics_path", "/metrics/cadvisor"));
                out.push(labels);
            }
        }
        for phase in ["Pending", "Running", "Failed", "Unknown"] {
            let mut labels = common("kube_pod_status_phase", "kube-state-metrics");
            labels.push(l("phase", phase));
            labels.push(l("uid", uid.clone()));
            labels.push(l("service", "kube-state-metrics"));
            labels.push(l("endpoint", "http"));
            out.push(labels);
        }
        let app_labels = |name: &str| {
            let mut labels = common(name, &format!("{ns}/{app}"));
            labels.push(l("container", app));
            labels.push(l("instance", format!("10.100.0.{}:8080", pod_idx % 250)));
            labels.push(l("service", app));
            labels.push(l("endpoint", "http"));
            labels
        };
        for route in ["/api/v1/items", "/api/v1/orders/{id}"] {
            for le in LE {
                let mut labels = app_labels("http_request_duration_seconds_bucket");
                labels.push(l("method", "GET"));
                labels.push(l("route", route));
                labels.push(l("le", le));
                out.push(labels);
            }
        }
        for name in [
            "up",
            "http_requests_total",
            "http_request_duration_seconds_sum",
            "http_request_duration_seconds_count",
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "go_goroutines",
            "go_memstats_heap_alloc_bytes",
        ] {
            out.push(app_labels(name));
        }
        pod_idx += 1;
    }
    out.truncate(n);
    out.into_iter()
        .enumerate()
        .map(|(i, mut labels)| {
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            TimeSeries {
                labels,
                samples: vec![Sample {
                    value: i as f64,
                    timestamp: 1_700_000_000_000,
                }],
                ..Default::default()
            }
        })
        .collect()
}

/// A remote-write request of `n` harness-like series (the harness posts 2,000 per request).
pub fn write_request(n: usize) -> WriteRequest {
    WriteRequest {
        timeseries: harness_series(n),
        ..Default::default()
    }
}
