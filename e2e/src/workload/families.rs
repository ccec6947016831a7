//! The metric families of the workload, one function per exporter: which series exist, with
//! which labels, and how each evolves ([`Kind`]).

use super::{Builder, NAMESPACES, NODES, PODS_PER_APP, PVC_NAMESPACES, Pod};

const KSM: [(&str, &str); 2] = [
    ("job", "kube-state-metrics"),
    ("instance", "kube-state-metrics:8080"),
];

pub(super) fn kube_state_metrics(b: &mut Builder, pods: &[Pod]) {
    b.constant("up", &KSM, 1.0);
    for p in pods {
        let (ns, pod, node) = (p.namespace, p.name.as_str(), p.node);
        let base = [KSM[0], KSM[1], ("namespace", ns), ("pod", pod)];
        b.constant(
            "kube_pod_info",
            &[
                &base[..],
                &[("node", node), ("created_by_kind", "ReplicaSet")],
            ]
            .concat(),
            1.0,
        );
        for phase in ["Pending", "Running", "Succeeded", "Failed", "Unknown"] {
            let v = if phase == "Running" { 1.0 } else { 0.0 };
            b.constant(
                "kube_pod_status_phase",
                &[&base[..], &[("phase", phase)]].concat(),
                v,
            );
        }
        let c = [&base[..], &[("container", "app")]].concat();
        // One restart per half hour, at a per-pod moment: integer, monotonic, and an hour's
        // window always holds at least one increase.
        b.restarts("kube_pod_container_status_restarts_total", &c);
        for (resource, unit, request) in [("cpu", "core", 0.25), ("memory", "byte", 268_435_456.0)]
        {
            let l = [
                &c[..],
                &[("node", node), ("resource", resource), ("unit", unit)],
            ]
            .concat();
            b.constant("kube_pod_container_resource_requests", &l, request);
            b.constant("kube_pod_container_resource_limits", &l, request * 2.0);
        }
    }
    for ns in NAMESPACES {
        let deployment = format!("{ns}-app");
        let l = [
            KSM[0],
            KSM[1],
            ("namespace", ns),
            ("deployment", &deployment),
        ];
        b.constant("kube_deployment_spec_replicas", &l, PODS_PER_APP as f64);
        // team-b runs one replica short, so a "replicas unavailable" alert fires in the lab.
        let available = if ns == "team-b" {
            1.0
        } else {
            PODS_PER_APP as f64
        };
        b.constant("kube_deployment_status_replicas_available", &l, available);
    }
    for node in NODES {
        let l = [
            KSM[0],
            KSM[1],
            ("node", node),
            ("kernel_version", "6.1.0"),
            ("os_image", "Debian GNU/Linux 12"),
        ];
        b.constant("kube_node_info", &l, 1.0);
        for status in ["true", "false", "unknown"] {
            let l = [
                KSM[0],
                KSM[1],
                ("node", node),
                ("condition", "Ready"),
                ("status", status),
            ];
            b.constant(
                "kube_node_status_condition",
                &l,
                if status == "true" { 1.0 } else { 0.0 },
            );
        }
    }
    for ns in NAMESPACES {
        b.constant(
            "kube_namespace_status_phase",
            &[KSM[0], KSM[1], ("namespace", ns), ("phase", "Active")],
            1.0,
        );
    }
}

fn kubelet_target<'a>(node: &'a str, instance: &'a str, path: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("job", "kubelet"),
        ("instance", instance),
        ("node", node),
        ("metrics_path", path),
    ]
}

pub(super) fn cadvisor(b: &mut Builder, pods: &[Pod]) {
    for node in NODES {
        let instance = format!("{node}:10250");
        b.constant(
            "up",
            &kubelet_target(node, &instance, "/metrics/cadvisor"),
            1.0,
        );
    }
    for p in pods {
        let instance = format!("{}:10250", p.node);
        let t = kubelet_target(p.node, &instance, "/metrics/cadvisor");
        let id = format!("/kubepods/burstable/pod{}/{}", p.uid, p.container_id);
        let name = format!("k8s_app_{}_{}_{}_0", p.name, p.namespace, p.uid);
        let image = "registry.local/app:1.0";
        let c = [
            &t[..],
            &[
                ("namespace", p.namespace),
                ("pod", &p.name),
                ("container", "app"),
                ("image", image),
                ("id", &id),
                ("name", &name),
            ],
        ]
        .concat();
        b.counter("container_cpu_usage_seconds_total", &c, 0.15, false);
        b.gauge(
            "container_memory_working_set_bytes",
            &c,
            150_000_000.0,
            20_000_000.0,
            600.0,
        );
        b.gauge(
            "container_memory_rss",
            &c,
            120_000_000.0,
            15_000_000.0,
            600.0,
        );
        let net = [
            &t[..],
            &[
                ("namespace", p.namespace),
                ("pod", &p.name),
                ("interface", "eth0"),
            ],
        ]
        .concat();
        b.counter(
            "container_network_receive_bytes_total",
            &net,
            20_000.0,
            true,
        );
        b.counter(
            "container_network_transmit_bytes_total",
            &net,
            12_000.0,
            true,
        );
    }
}

pub(super) fn kubelet(b: &mut Builder, pods: &[Pod]) {
    for node in NODES {
        let instance = format!("{node}:10250");
        let t = kubelet_target(node, &instance, "/metrics");
        let on_node = pods.iter().filter(|p| p.node == node).count() as f64;
        b.constant("up", &t, 1.0);
        b.constant("kubelet_running_pods", &t, on_node);
        b.constant(
            "kubelet_running_containers",
            &[&t[..], &[("container_state", "running")]].concat(),
            on_node,
        );
    }
    // A `data-<ns>` volume in some namespaces, mounted by the app's first pod (so reported by
    // that pod's kubelet).
    for p in pods
        .iter()
        .step_by(PODS_PER_APP)
        .filter(|p| PVC_NAMESPACES.contains(&p.namespace))
    {
        let instance = format!("{}:10250", p.node);
        let t = kubelet_target(p.node, &instance, "/metrics");
        let pvc = format!("data-{}", p.namespace);
        let l = [
            &t[..],
            &[("namespace", p.namespace), ("persistentvolumeclaim", &pvc)],
        ]
        .concat();
        b.gauge(
            "kubelet_volume_stats_used_bytes",
            &l,
            4_000_000_000.0,
            500_000_000.0,
            3_600.0,
        );
        b.constant("kubelet_volume_stats_capacity_bytes", &l, 10_737_418_240.0);
    }
}

pub(super) fn node_exporter(b: &mut Builder) {
    for node in NODES {
        let instance = format!("{node}:9100");
        let t = [("job", "node-exporter"), ("instance", instance.as_str())];
        b.constant("up", &t, 1.0);
        for cpu in ["0", "1"] {
            for (mode, rate) in [
                ("idle", 0.7),
                ("user", 0.2),
                ("system", 0.07),
                ("iowait", 0.03),
            ] {
                b.counter(
                    "node_cpu_seconds_total",
                    &[t[0], t[1], ("cpu", cpu), ("mode", mode)],
                    rate,
                    false,
                );
            }
        }
        b.gauge(
            "node_memory_MemAvailable_bytes",
            &t,
            8_000_000_000.0,
            1_000_000_000.0,
            900.0,
        );
        b.constant("node_memory_MemTotal_bytes", &t, 16_777_216_000.0);
        let fs = [
            t[0],
            t[1],
            ("device", "/dev/sda1"),
            ("fstype", "ext4"),
            ("mountpoint", "/"),
        ];
        b.gauge(
            "node_filesystem_avail_bytes",
            &fs,
            60_000_000_000.0,
            2_000_000_000.0,
            7_200.0,
        );
        b.constant("node_filesystem_size_bytes", &fs, 107_374_182_400.0);
        b.gauge("node_load1", &t, 1.2, 0.6, 300.0);
        b.gauge("node_load5", &t, 1.0, 0.3, 900.0);
    }
}

/// Extra labels of the app series in some namespaces (used by label-selector tenants).
fn app_extra_labels(namespace: &str) -> &'static [(&'static str, &'static str)] {
    match namespace {
        "team-c" => &[("environment", "production"), ("team", "webapp")],
        "team-d" => &[("environment", "staging"), ("team", "webapp")],
        "default" => &[("environment", "production"), ("team", "other")],
        _ => &[],
    }
}

pub(super) fn apps(b: &mut Builder, pods: &[Pod]) {
    for p in pods {
        let job = format!("{}-app", p.namespace);
        let instance = format!("{}:8080", p.ip);
        let t = [
            &[
                ("job", job.as_str()),
                ("instance", instance.as_str()),
                ("namespace", p.namespace),
                ("pod", &p.name),
            ][..],
            app_extra_labels(p.namespace),
        ]
        .concat();
        b.constant("up", &t, 1.0);
        for method in ["GET", "POST"] {
            for (code, rate) in [("200", 5.0), ("500", 0.1)] {
                let l = [
                    &t[..],
                    &[("method", method), ("code", code), ("handler", "/api")],
                ]
                .concat();
                b.counter("http_requests_total", &l, rate, true);
            }
        }
        for method in ["GET", "POST"] {
            let l = [&t[..], &[("method", method), ("handler", "/api")]].concat();
            b.histogram("http_request_duration_seconds", &l, 5.0);
        }
        b.gauge(
            "process_resident_memory_bytes",
            &t,
            80_000_000.0,
            10_000_000.0,
            1_200.0,
        );
    }
}
