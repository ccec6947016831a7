use std::collections::{BTreeMap, BTreeSet};

use super::*;

const T0: i64 = 1_750_000_000_000;

fn is_label_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

fn is_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_' || ch == ':')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
}

#[test]
fn deterministic() {
    assert_eq!(series(), series());
    assert_eq!(exposition(T0), exposition(T0));
    for s in series() {
        assert_eq!(value(&s, T0).to_bits(), value(&s, T0).to_bits());
    }
}

#[test]
fn size_and_namespaces() {
    let all = series();
    assert!(all.len() > 300 && all.len() < 2500, "{} series", all.len());
    let ns: BTreeSet<&str> = all.iter().filter_map(|s| s.label("namespace")).collect();
    assert_eq!(ns, NAMESPACES.iter().copied().collect());
    assert_eq!(namespaces().len(), 7);
}

#[test]
fn labels_valid_sorted_unique() {
    let mut identities = BTreeSet::new();
    for s in series() {
        assert!(is_metric_name(s.name()), "{s:?}");
        let names: Vec<&str> = s.labels.iter().map(|(k, _)| k.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(names, sorted, "labels not sorted or duplicated: {s:?}");
        for (k, v) in &s.labels {
            assert!(is_label_name(k), "bad label name {k}");
            assert!(!v.is_empty(), "empty value for {k} in {s:?}");
        }
        for required in ["__name__", "job", "instance"] {
            assert!(s.label(required).is_some(), "{required} missing in {s:?}");
        }
        assert!(
            identities.insert(s.labels.clone()),
            "duplicate series {s:?}"
        );
    }
}

#[test]
fn counters_grow_and_never_decrease() {
    for s in series() {
        let counting = matches!(
            s.kind,
            Kind::Counter { .. }
                | Kind::StepCounter { .. }
                | Kind::HistogramBucket { .. }
                | Kind::HistogramCount { .. }
                | Kind::HistogramSum { .. }
        );
        if !counting {
            continue;
        }
        let mut prev = f64::MIN;
        for i in 0..600 {
            let v = value(&s, T0 + i * 15_000);
            assert!(
                v >= prev,
                "{} decreased at step {i}: {prev} -> {v}",
                s.selector()
            );
            assert!(v >= 0.0);
            prev = v;
        }
        if !matches!(s.kind, Kind::Counter { rate, .. } if rate < 0.01) {
            assert!(
                value(&s, T0 + 3_600_000) > value(&s, T0),
                "{} does not grow",
                s.selector()
            );
        }
    }
}

#[test]
fn histograms_are_consistent() {
    let all = series();
    // Group bucket/sum/count by their label set without `le` and `__name__`.
    let mut groups: BTreeMap<Vec<(String, String)>, Vec<&SeriesDef>> = BTreeMap::new();
    for s in all
        .iter()
        .filter(|s| s.family_type == FamilyType::Histogram)
    {
        let key = s
            .labels
            .iter()
            .filter(|(k, _)| k != "le" && k != "__name__")
            .cloned()
            .collect();
        groups.entry(key).or_default().push(s);
    }
    assert!(!groups.is_empty());
    for (key, members) in groups {
        for t in [T0, T0 + 7_777_000, T0 + 86_400_000] {
            let mut buckets: Vec<(f64, f64)> = members
                .iter()
                .filter_map(|s| {
                    let le = s.label("le")?;
                    let bound = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().ok()?
                    };
                    Some((bound, value(s, t)))
                })
                .collect();
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert_eq!(buckets.len(), 6, "{key:?}");
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "not cumulative: {key:?} {buckets:?}"
            );
            let count = members
                .iter()
                .find(|s| s.name().ends_with("_count"))
                .map(|s| value(s, t));
            let sum = members
                .iter()
                .find(|s| s.name().ends_with("_sum"))
                .map(|s| value(s, t));
            assert_eq!(count, Some(buckets[5].1), "+Inf != _count for {key:?}");
            let (count, sum) = (count.unwrap_or_default(), sum.unwrap_or_default());
            assert!(sum > 0.0 && sum < count, "sum {sum} vs count {count}");
        }
    }
}

#[test]
fn required_families_and_labels() {
    let all = series();
    let has = |name: &str, labels: &[(&str, &str)]| {
        all.iter()
            .any(|s| s.name() == name && labels.iter().all(|(k, v)| s.label(k) == Some(v)))
    };
    assert!(has(
        "kube_pod_status_phase",
        &[
            ("namespace", "team-b"),
            ("phase", "Running"),
            ("job", "kube-state-metrics")
        ]
    ));
    assert!(has(
        "container_cpu_usage_seconds_total",
        &[
            ("namespace", "team-b"),
            ("metrics_path", "/metrics/cadvisor")
        ]
    ));
    assert!(has(
        "kubelet_running_pods",
        &[
            ("job", "kubelet"),
            ("metrics_path", "/metrics"),
            ("node", "node-2")
        ]
    ));
    assert!(has(
        "node_cpu_seconds_total",
        &[("job", "node-exporter"), ("mode", "iowait"), ("cpu", "1")]
    ));
    assert!(has(
        "up",
        &[
            ("job", "team-c-app"),
            ("environment", "production"),
            ("team", "webapp")
        ]
    ));
    assert!(has(
        "http_requests_total",
        &[
            ("namespace", "team-d"),
            ("environment", "staging"),
            ("code", "500")
        ]
    ));
    assert!(has(
        "http_requests_total",
        &[("namespace", "default"), ("team", "other")]
    ));
    assert!(has(
        "http_request_duration_seconds_bucket",
        &[("namespace", "team-a"), ("le", "+Inf")]
    ));
    assert!(has(
        "kube_node_status_condition",
        &[("node", "node-3"), ("status", "unknown")]
    ));
    // Only team-c, team-d and default apps carry environment/team.
    assert!(
        !all.iter()
            .any(|s| s.label("namespace") == Some("team-a") && s.label("team").is_some())
    );
    let running: f64 = all
        .iter()
        .filter(|s| s.name() == "kube_pod_status_phase")
        .map(|s| value(s, T0))
        .sum();
    assert_eq!(running, 14.0, "one Running phase per pod");
}

#[test]
fn exposition_is_grouped_and_parsable() {
    let text = exposition(T0);
    let mut seen_families = Vec::new();
    let mut current = String::new();
    let mut samples = 0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let family = rest.split(' ').next().unwrap_or_default().to_string();
            assert!(
                !seen_families.contains(&family),
                "family {family} appears twice"
            );
            seen_families.push(family.clone());
            current = family;
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap();
        assert!(
            line[..name_end].starts_with(current.as_str()),
            "{line} outside its family {current}"
        );
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok() || value == "+Inf", "{line}");
        samples += 1;
    }
    assert_eq!(samples, series().len());
    assert!(text.contains("# TYPE http_request_duration_seconds histogram\n"));
    assert!(text.contains("# TYPE node_cpu_seconds_total counter\n"));
}

#[test]
fn selector_names_exactly_one_series() {
    let all = series();
    let s = &all[3];
    assert!(s.selector().starts_with("{__name__=\""));
    assert_eq!(
        all.iter().filter(|o| o.selector() == s.selector()).count(),
        1
    );
}

#[test]
fn restarts_are_integer_steps() {
    let all = series();
    let restarts: Vec<&SeriesDef> = all
        .iter()
        .filter(|s| s.name() == "kube_pod_container_status_restarts_total")
        .collect();
    assert_eq!(restarts.len(), 14);
    for s in restarts {
        assert!(matches!(s.kind, Kind::StepCounter { .. }));
        let (a, b) = (value(s, T0), value(s, T0 + 3_600_000));
        assert_eq!(a.fract(), 0.0);
        // Exactly two steps of 30 min in any hour.
        assert_eq!(b - a, 2.0, "{}", s.selector());
    }
}

#[test]
fn topology_matches_the_lab_contract() {
    let all = series();
    let names: BTreeSet<String> = pods().into_iter().map(|p| p.name).collect();
    assert!(names.contains("team-a-app-0") && names.contains("default-app-1"));
    assert_eq!(names.len(), 14);
    let get = |name: &str, ns: &str| {
        all.iter()
            .find(|s| s.name() == name && s.label("namespace") == Some(ns))
            .map(|s| (s.label("deployment").map(str::to_string), value(s, T0)))
    };
    assert_eq!(
        get("kube_deployment_status_replicas_available", "team-b"),
        Some((Some("team-b-app".into()), 1.0))
    );
    assert_eq!(
        get("kube_deployment_status_replicas_available", "team-a"),
        Some((Some("team-a-app".into()), 2.0))
    );
    let pvcs: BTreeSet<&str> = all
        .iter()
        .filter(|s| s.name() == "kubelet_volume_stats_capacity_bytes")
        .filter_map(|s| s.label("persistentvolumeclaim"))
        .collect();
    assert_eq!(
        pvcs,
        BTreeSet::from(["data-team-a", "data-team-b", "data-monitoring"])
    );
    let infra_up = all
        .iter()
        .filter(|s| s.name() == "up" && s.label("namespace").is_none())
        .count();
    assert_eq!(
        infra_up,
        1 + 3 + 3 + 3,
        "ksm + cadvisor + kubelet + node-exporter"
    );
    let m = labels_map(&all[0]);
    assert_eq!(m.len(), all[0].labels.len());
    assert_eq!(m.get("__name__").map(String::as_str), Some(all[0].name()));
}

#[test]
fn counters_differ_between_series() {
    let all = series();
    let cpu: BTreeSet<u64> = all
        .iter()
        .filter(|s| s.name() == "container_cpu_usage_seconds_total")
        .map(|s| value(s, T0).to_bits())
        .collect();
    assert!(cpu.len() >= 10, "only {} distinct values", cpu.len());
}
