use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;

fn names(q: &str) -> Vec<String> {
    names_in_query(q).unwrap().names.into_iter().collect()
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/usage")
        .join(name)
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

#[test]
fn names_from_nested_expressions() {
    assert_eq!(
        names("sum by (job) (rate(http_requests_total{code=~\"5..\"}[5m]))"),
        ["http_requests_total"]
    );
    assert_eq!(
        names("a / on (job) group_left (team) b * ignoring (x) c"),
        ["a", "b", "c"]
    );
    assert_eq!(
        names("max_over_time(rate(sub_total[1m])[30m:1m] offset 1h)"),
        ["sub_total"]
    );
    assert_eq!(names("absent(gone_metric{job=\"x\"})"), ["gone_metric"]);
    assert_eq!(
        names(r#"label_replace(up, "host", "$1", "instance", "(.*):.*")"#),
        ["up"]
    );
    assert_eq!(
        names("topk(5, -(foo or bar)) unless count_values(\"v\", baz)"),
        ["bar", "baz", "foo"]
    );
    assert_eq!(
        names("histogram_quantile(0.9, sum by (le) (rate(lat_bucket[5m]))) > scalar(thr)"),
        ["lat_bucket", "thr"]
    );
    assert_eq!(names(r#"{__name__="by_matcher", job="a"}"#), ["by_matcher"]);
    let u = names_in_query(r#"count({__name__=~"node_.*", job="n"})"#).unwrap();
    assert!(u.names.is_empty());
    assert_eq!(u.patterns, ["^(?:node_.*)$"]);
    assert!(u.matches("node_load1"));
    assert!(!u.matches("xnode_load1"), "patterns are anchored");
    // No name constraint: nothing added.
    assert!(names_in_query(r#"{job="api"}"#).unwrap().is_empty());
    assert!(names_in_query("1 + 2").unwrap().is_empty());
    assert!(names_in_query("sum(").is_err());
}

#[test]
fn or_matcher_groups_and_merge() {
    let u = names_in_query(r#"{__name__="a" or __name__=~"b_.*"}"#).unwrap();
    assert!(u.matches("a") && u.matches("b_x") && !u.matches("c"));

    let mut m = names_in_query("x").unwrap();
    assert!(!m.matches("node_cpu"));
    m.merge(names_in_query(r#"{__name__=~"node_.*"}"#).unwrap());
    m.merge(names_in_query(r#"{__name__=~"node_.*"}"#).unwrap());
    assert_eq!(m.patterns.len(), 1, "patterns are deduplicated");
    assert!(m.matches("node_cpu"), "the cache is reset by merge");
    // A direct edit of `patterns` after a match is still seen.
    m.patterns.push("^(?:direct)$".into());
    assert!(m.matches("direct"));
}

#[test]
fn grafana_variables_are_substituted() {
    let s = |e| substitute_variables(e, Fill::Name);
    assert_eq!(
        s(r#"rate(a{ns="$namespace",pod=~"${pod:regex}"}[$__rate_interval])"#),
        r#"rate(a{ns="x",pod=~"x"}[5m])"#
    );
    assert_eq!(s("b[[[window]]] offset $off"), "b[5m] offset 5m");
    assert_eq!(
        s("sum_over_time(c[$__interval:$step])"),
        "sum_over_time(c[5m:5m])"
    );
    assert_eq!(s("d / $__range_s"), "d / 300");
    assert_eq!(
        s(r#"label_replace(e, "a", "$1${2}", "b", "(.*)$")"#),
        r#"label_replace(e, "a", "$1${2}", "b", "(.*)$")"#
    );
    assert_eq!(
        substitute_variables("topk($n, f)", Fill::Number),
        "topk(1, f)"
    );
}

#[test]
fn rule_file_and_dashboard_fixtures() {
    let (used, problems) = load_static(&[fixture("rules.yaml")], &[fixture("dashboard.json")]);
    for name in [
        "node_cpu_seconds_total",
        "http_requests_total",
        // Templating: object and string forms.
        "kube_pod_info",
        "kube_pod_container_info",
        // `[$__rate_interval]`, `${pod:regex}`.
        "container_cpu_usage_seconds_total",
        // A panel nested in a collapsed row, `[$__interval]` and `offset $offset`.
        "container_memory_working_set_bytes",
    ] {
        assert!(
            used.names.contains(name),
            "{name} missing: {:?}",
            used.names
        );
    }
    assert!(used.matches("kube_node_info"), "rule pattern kube_.*_info");
    assert!(!used.names.contains("broken_metric_total"));
    assert!(
        !used
            .names
            .contains("kube_pod_container_status_restarts_total"),
        "broken panel"
    );
    assert!(!used.names.contains("x"), "{:?}", used.names);
    // The Loki panel is skipped, not reported.
    assert!(
        !problems.iter().any(|p| p.contains("Logs")),
        "{problems:#?}"
    );
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems.iter().any(|p| p.contains("rules.yaml")
            && p.contains("rule Broken")
            && p.contains("cannot parse")),
        "{problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("dashboard.json") && p.contains("panel \"Restarts\"")),
        "{problems:#?}"
    );
}

#[test]
fn unreadable_files_and_nameless_selectors_are_problems() {
    let dir = tempfile::tempdir().unwrap();
    let bad_json = dir.path().join("bad.json");
    std::fs::write(&bad_json, "{ not json").unwrap();
    let nameless = dir.path().join("nameless.yaml");
    std::fs::write(
        &nameless,
        "spec:\n  groups:\n    - name: g\n      rules:\n        - record: r\n          expr: count({job=\"a\"}) + kept\n",
    )
    .unwrap();
    let (used, problems) = load_static(&[dir.path().join("missing.yaml"), nameless], &[bad_json]);
    assert!(used.names.contains("kept"), "PrometheusRule `spec.groups`");
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(problems[0].contains("missing.yaml"));
    assert!(problems[1].contains("rule r") && problems[1].contains("without a metric name"));
    assert!(problems[2].contains("bad.json"));
}

#[test]
fn query_stats_count_and_snapshot() {
    let stats = QueryStats::new();
    let q = names_in_query(r#"a + b + {__name__=~"c_.*"}"#).unwrap();
    stats.record("t1", &q, at(10));
    stats.record("t1", &names_in_query("a").unwrap(), at(20));
    stats.record("t2", &names_in_query("z").unwrap(), at(5));

    assert_eq!(stats.last_used("t1", "a"), Some(at(20)));
    assert_eq!(stats.last_used("t1", "b"), Some(at(10)));
    assert_eq!(
        stats.last_used("t1", "c_total"),
        Some(at(10)),
        "via the pattern"
    );
    assert_eq!(stats.last_used("t1", "z"), None);
    assert_eq!(stats.last_used("t3", "a"), None);

    let snap = stats.snapshot(Some("t1"));
    let rows: Vec<(&str, bool, u64)> = snap
        .iter()
        .map(|s| (s.metric.as_str(), s.pattern, s.queries))
        .collect();
    assert_eq!(
        rows,
        [("a", false, 2), ("b", false, 1), ("^(?:c_.*)$", true, 1)]
    );
    assert_eq!(snap[0].last_queried, "2023-11-14T22:13:40Z");
    let all = stats.snapshot(None);
    assert_eq!(all.len(), 4);
    assert_eq!(all.last().unwrap().tenant, "t2");
    let json = serde_json::to_value(&all[0]).unwrap();
    assert_eq!(json["tenant"], "t1");
    assert_eq!(json["queries"], 2);
}

#[test]
fn full_tenant_prunes_then_overflows() {
    let stats = QueryStats::with_retention(Duration::from_secs(100));
    let many = UsedNames {
        names: (0..MAX_METRICS_PER_TENANT)
            .map(|i| format!("m{i}"))
            .collect(),
        ..UsedNames::default()
    };
    stats.record("t", &many, at(0));
    // Full of fresh entries: the new name is refused, the tenant overflowed.
    stats.record("t", &names_in_query("late").unwrap(), at(50));
    assert_eq!(stats.last_used("t", "late"), None);
    assert!(stats.overflowed("t", at(60)));
    assert!(!stats.overflowed("other", at(60)));
    // Existing entries still count.
    stats.record("t", &names_in_query("m1").unwrap(), at(60));
    assert_eq!(stats.last_used("t", "m1"), Some(at(60)));
    // Later the stale entries are pruned and make room.
    stats.record("t", &names_in_query("later").unwrap(), at(200));
    assert_eq!(stats.last_used("t", "later"), Some(at(200)));
    assert_eq!(stats.last_used("t", "m2"), None, "pruned");
    assert!(stats.overflowed("t", at(149)));
    assert!(!stats.overflowed("t", at(151)));
}

#[test]
fn is_unused_waits_for_the_observation_period() {
    let usage = Usage::new(Duration::from_secs(3600), at(0));
    usage
        .stats()
        .record("t", &names_in_query("queried").unwrap(), at(100));
    // Before the period: nothing is unused.
    assert!(!usage.is_unused("t", "never", at(3599)));
    // After it.
    assert!(usage.is_unused("t", "never", at(3600)));
    assert!(!usage.is_unused("t", "queried", at(3600)));
    assert!(
        usage.is_unused("t", "queried", at(3700)),
        "last query too old"
    );
    assert!(usage.is_unused("other", "queried", at(3600)), "per tenant");
    // A clock before the start counts as not observed yet.
    assert!(!usage.is_unused("t", "never", at(0) - Duration::from_secs(5)));
}

#[test]
fn is_unused_honours_static_names_and_patterns() {
    let usage = Usage::new(Duration::from_secs(60), at(0));
    let (used, _) = load_static(&[fixture("rules.yaml")], &[]);
    usage.set_static(used);
    assert!(!usage.is_unused("t", "http_requests_total", at(1000)));
    assert!(
        !usage.is_unused("t", "kube_node_info", at(1000)),
        "static pattern"
    );
    assert!(usage.is_unused("t", "kube_node_labels", at(1000)));
    // A tenant pattern query.
    usage.stats().record(
        "t",
        &names_in_query(r#"{__name__=~"kube_node_.+"}"#).unwrap(),
        at(990),
    );
    assert!(!usage.is_unused("t", "kube_node_labels", at(1000)));
    assert!(usage.is_unused("u", "kube_node_labels", at(1000)));
    // Reload swaps the static set.
    usage.set_static(UsedNames::default());
    assert!(usage.is_unused("t", "http_requests_total", at(1000)));
    assert_eq!(usage.static_names().names.len(), 0);
}
