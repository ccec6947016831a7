//! The synthetic workload of the collector benchmark and of `examples/collector_pipeline.rs`:
//! kube-like series, the seed README's relabel rules, the extra labels, the streamed remote-read
//! frames a Prometheus would send for them, and the decode stage of the sampled answer.
//! Included by both with `#[path]`, so they measure the same thing.

#![allow(dead_code)]

use std::collections::BTreeMap;

use proxy::collector::source::Window;
use proxy::collector::stream::encode_frame;
use proxy::collector::xor::XorEncoder;
use proxy::relabel::RelabelConfig;
use proxy::remote_write::proto::{Chunk, ChunkedReadResponse, ChunkedSeries, chunk};
use proxy::remote_write::{Label, ReadResponse, Sample, TimeSeries, decode_snappy};

/// The end of the collected window, in milliseconds.
pub const END_MS: i64 = 1_700_000_000_000;

pub const METRICS: [&str; 50] = [
    "container_cpu_usage_seconds_total",
    "container_cpu_cfs_periods_total",
    "container_cpu_cfs_throttled_periods_total",
    "container_memory_working_set_bytes",
    "container_memory_rss",
    "container_memory_cache",
    "container_memory_usage_bytes",
    "container_network_receive_bytes_total",
    "container_network_transmit_bytes_total",
    "container_fs_reads_bytes_total",
    "container_fs_writes_bytes_total",
    "container_spec_cpu_quota",
    "container_spec_memory_limit_bytes",
    "container_last_seen",
    "container_oom_events_total",
    "kubelet_running_pods",
    "kubelet_running_containers",
    "kubelet_volume_stats_used_bytes",
    "kubelet_volume_stats_capacity_bytes",
    "kubelet_pod_start_duration_seconds_bucket",
    "kubelet_pleg_relist_duration_seconds_bucket",
    "kubelet_runtime_operations_total",
    "kubelet_runtime_operations_errors_total",
    "kubelet_node_config_error",
    "kubelet_certificate_manager_client_ttl_seconds",
    "http_requests_total",
    "http_request_duration_seconds_bucket",
    "http_request_size_bytes_bucket",
    "http_response_size_bytes_bucket",
    "grpc_server_handled_total",
    "grpc_server_handling_seconds_bucket",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "go_goroutines",
    "go_memstats_alloc_bytes",
    "go_gc_duration_seconds",
    "up",
    "kube_pod_status_phase",
    "kube_pod_container_status_restarts_total",
    "kube_deployment_status_replicas_available",
    "kube_pod_container_resource_requests",
    "apiserver_request_total",
    "apiserver_request_duration_seconds_bucket",
    "rest_client_requests_total",
    "workqueue_depth",
    "workqueue_adds_total",
    "etcd_debugging_mvcc_keys_total",
    "etcd_debugging_store_reads_total",
    "etcd_debugging_snap_save_total_duration_seconds_bucket",
];

pub const NAMESPACES: [&str; 12] = [
    "kube-system",
    "monitoring",
    "ingress-nginx",
    "cert-manager",
    "payments",
    "checkout",
    "catalog",
    "search",
    "auth",
    "team-a",
    "team-b",
    "logging",
];

pub const CONTAINERS: [&str; 8] = [
    "app",
    "sidecar",
    "istio-proxy",
    "envoy",
    "server",
    "worker",
    "exporter",
    "nginx",
];

pub const BUCKETS: [&str; 11] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf",
];

/// `n` series of about 8 kube labels each (sorted by name), 2 samples each. Series `i` is
/// metric `i % 50` of pod `i / 50`, so every series is distinct; `_bucket` metrics get an `le`,
/// one series in 7 an `instance_id` (dropped by the `labeldrop` rule), and the `etcd_debugging_*`
/// ones (3 in 50) are dropped by the `drop` rule. Same generator as
/// `examples/collector_pipeline.rs`.
pub fn kube_series(n: usize) -> Vec<TimeSeries> {
    (0..n).map(kube_series_at).collect()
}

/// Series `i` of [`kube_series`].
pub fn kube_series_at(i: usize) -> TimeSeries {
    let metric = METRICS[i % METRICS.len()];
    let pod_idx = i / METRICS.len();
    let namespace = NAMESPACES[pod_idx % NAMESPACES.len()];
    let container = CONTAINERS[pod_idx % CONTAINERS.len()];
    let node = pod_idx % 64;
    let job = if metric.starts_with("container_") {
        "cadvisor"
    } else if metric.starts_with("kubelet_") {
        "kubelet"
    } else {
        "kubernetes-pods"
    };
    let mut labels = vec![
        label("__name__", metric),
        label("container", container),
        label(
            "instance",
            &format!("10.{}.{}.{}:10250", node / 16, node % 16, pod_idx % 250),
        ),
        label("job", job),
        label("namespace", namespace),
        label(
            "node",
            &format!("ip-10-0-{node}-17.eu-west-1.compute.internal"),
        ),
        label(
            "pod",
            &format!(
                "{container}-{:08x}-{:05x}",
                pod_idx * 2_654_435_761 % 0xffff_ffff,
                pod_idx
            ),
        ),
    ];
    if metric.ends_with("_bucket") {
        labels.push(label("le", BUCKETS[pod_idx % BUCKETS.len()]));
    }
    if i.is_multiple_of(7) {
        labels.push(label("instance_id", &format!("i-{pod_idx:017x}")));
    }
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    TimeSeries {
        labels,
        samples: vec![
            Sample {
                value: i as f64,
                timestamp: END_MS - 30_000,
            },
            Sample {
                value: i as f64 + 1.0,
                timestamp: END_MS - 15_000,
            },
        ],
        ..Default::default()
    }
}

/// The window the collector reads: the 2 samples of every series are inside it.
pub const WINDOW: Window = Window {
    start_ms: END_MS - 30_000,
    end_ms: END_MS,
};

/// The streamed remote-read frame Prometheus would send for series `i`: one series, one XOR
/// chunk holding `before` samples (15 s apart) before the window, then the series' 2 samples
/// in it, as when a window ends in the middle of a chunk (Prometheus sends whole chunks; the
/// collector decodes from the chunk's start and keeps what is inside the window).
pub fn streamed_frame(i: usize, before: usize) -> Vec<u8> {
    let series = kube_series_at(i);
    let mut e = XorEncoder::new();
    let first = series.samples[0].timestamp - 15_000 * before as i64;
    for k in 0..before {
        e.append(first + 15_000 * k as i64, i as f64 - (before - k) as f64);
    }
    for s in &series.samples {
        e.append(s.timestamp, s.value);
    }
    let last = series.samples.last().map_or(END_MS, |s| s.timestamp);
    encode_frame(&ChunkedReadResponse {
        chunked_series: vec![ChunkedSeries {
            labels: series.labels,
            chunks: vec![Chunk {
                min_time_ms: first,
                max_time_ms: last,
                r#type: chunk::Encoding::Xor as i32,
                data: e.bytes().into(),
            }],
        }],
        query_index: 0,
    })
}

pub fn label(name: &str, value: &str) -> Label {
    Label {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

pub fn rules() -> Vec<RelabelConfig> {
    vec![
        RelabelConfig {
            source_labels: vec!["__name__".into()],
            regex: Some("container_(.*)".into()),
            target_label: Some("metrics_path".into()),
            replacement: Some("/metrics/cadvisor".into()),
            ..Default::default()
        },
        RelabelConfig {
            source_labels: vec!["__name__".into()],
            regex: Some("kubelet_(.*)".into()),
            target_label: Some("metrics_path".into()),
            replacement: Some("/metrics".into()),
            ..Default::default()
        },
        RelabelConfig {
            source_labels: vec!["__name__".into()],
            regex: Some("etcd_debugging_.*".into()),
            action: Some("drop".into()),
            ..Default::default()
        },
        RelabelConfig {
            regex: Some("instance_id".into()),
            action: Some("labeldrop".into()),
            ..Default::default()
        },
    ]
}

pub fn extra_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("tenant".to_owned(), "team-a".to_owned()),
        ("managed_by".to_owned(), "multi-tenant-proxy".to_owned()),
    ])
}

pub fn decode(body: &[u8], max_len: usize) -> Vec<TimeSeries> {
    let response: ReadResponse = decode_snappy(body, max_len).expect("decodes");
    response
        .results
        .into_iter()
        .flat_map(|r| r.timeseries)
        .collect()
}
