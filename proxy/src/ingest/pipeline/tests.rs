use std::time::Duration;

use super::*;
use crate::remote_write::{Label, Sample};

fn series(labels: &[(&str, &str)]) -> TimeSeries {
    let mut labels: Vec<Label> = labels
        .iter()
        .map(|(n, v)| Label {
            name: n.to_string(),
            value: v.to_string(),
        })
        .collect();
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    TimeSeries {
        labels,
        samples: vec![Sample {
            value: 1.0,
            timestamp: 1,
        }],
        ..Default::default()
    }
}

struct World {
    tracker: SeriesTracker,
    analytics: Analytics,
    usage: Usage,
}

impl World {
    fn new() -> World {
        World {
            tracker: SeriesTracker::new(Duration::from_secs(600)),
            analytics: Analytics::new(),
            usage: Usage::new(Duration::from_secs(3600), SystemTime::now()),
        }
    }
    fn cx<'a>(&'a self, tenant: &'a str) -> Context<'a> {
        Context::new(tenant, &self.tracker, &self.analytics, &self.usage)
    }
}

fn governance(yaml: &str) -> Governance {
    let config: GovernanceConfig = serde_saphyr::from_str(yaml).unwrap();
    Governance::compile(&config).unwrap()
}

const RULES: &str = r#"
default: {}
tenants:
  team-a:
    naming:
      metric_name_regex: "[a-z_]+"
      required_labels: [namespace]
      forbidden_labels: [pod_ip]
      action: drop
    relabel:
      - {source_labels: [__name__], regex: "debug_.*", action: drop}
      - {source_labels: [code], regex: '(\d)..', target_label: class, replacement: '${1}xx'}
    label_drops: [instance_id]
    cardinality: {max_series: 2, max_series_per_metric: 0}
  team-r:
    naming: {required_labels: [namespace], action: reject}
  team-d:
    dry_run: true
    relabel:
      - {source_labels: [__name__], regex: ".*", action: drop}
"#;

#[test]
fn rules_run_in_order_and_each_drop_has_its_reason() {
    let g = governance(RULES);
    let w = World::new();
    let p = g.for_tenant("team-a");
    let run = |labels: &[(&str, &str)]| {
        let mut s = series(labels);
        let v = p.apply("team-a", &mut s, &w.cx("team-a"));
        (v, s)
    };
    assert_eq!(
        run(&[("__name__", "Bad-Name"), ("namespace", "a")]).0,
        Verdict::Drop { reason: "naming" }
    );
    assert_eq!(
        run(&[("__name__", "ok")]).0,
        Verdict::Drop { reason: "naming" },
        "missing namespace"
    );
    assert_eq!(
        run(&[
            ("__name__", "ok"),
            ("namespace", "a"),
            ("pod_ip", "1.2.3.4")
        ])
        .0,
        Verdict::Drop { reason: "naming" }
    );
    assert_eq!(
        run(&[("__name__", "debug_x"), ("namespace", "a")]).0,
        Verdict::Drop { reason: "relabel" }
    );
    let (v, s) = run(&[
        ("__name__", "http_total"),
        ("namespace", "a"),
        ("code", "503"),
        ("instance_id", "i-1"),
    ]);
    assert_eq!(v, Verdict::Keep);
    let names: Vec<String> = s
        .labels
        .iter()
        .map(|l| format!("{}={}", l.name, l.value))
        .collect();
    assert_eq!(
        names,
        [
            "__name__=http_total",
            "class=5xx",
            "code=503",
            "namespace=a"
        ]
    );
    // Cardinality: max 2 series; the kept one above is 1, one more fits, the third is dropped,
    // and an existing one still passes.
    assert_eq!(
        run(&[("__name__", "b"), ("namespace", "a")]).0,
        Verdict::Keep
    );
    assert_eq!(
        run(&[("__name__", "c"), ("namespace", "a")]).0,
        Verdict::Drop {
            reason: "cardinality_tenant"
        }
    );
    assert_eq!(
        run(&[("__name__", "b"), ("namespace", "a")]).0,
        Verdict::Keep
    );
}

#[test]
fn reject_answers_with_the_violation() {
    let g = governance(RULES);
    let w = World::new();
    let mut s = series(&[("__name__", "up")]);
    match g
        .for_tenant("team-r")
        .apply("team-r", &mut s, &w.cx("team-r"))
    {
        Verdict::Reject(r) => {
            assert_eq!(r.reason, "naming");
            assert!(
                r.message.contains("required label \"namespace\""),
                "{}",
                r.message
            );
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn dry_run_forwards_unchanged_and_counts_apart() {
    let g = governance(RULES);
    let w = World::new();
    let mut s = series(&[("__name__", "up"), ("job", "x")]);
    let before = s.clone();
    assert_eq!(
        g.for_tenant("team-d")
            .apply("team-d", &mut s, &w.cx("team-d")),
        Verdict::Keep
    );
    assert_eq!(s, before);
    let top = w.analytics.top(
        &w.tracker,
        Some("team-d"),
        super::super::analytics::TopBy::Drops,
        10,
        Instant::now(),
    );
    assert_eq!(top.len(), 1);
    assert_eq!(top[0].dry_run_drops.get("relabel"), Some(&1));
    assert!(top[0].drops.is_empty());
}

#[test]
fn tenants_without_rules_get_the_default() {
    let g = governance(RULES);
    assert!(g.has_rules("team-a") && !g.has_rules("someone"));
    let w = World::new();
    let mut s = series(&[("__name__", "Anything-Goes")]);
    assert_eq!(
        g.for_tenant("someone")
            .apply("someone", &mut s, &w.cx("someone")),
        Verdict::Keep
    );
}
