//! The PromQL the reference deployment ships: the PrometheusRule's alerts are checked by
//! `promtool check rules` (the Debian Prometheus package's promtool, next to the Prometheus
//! binary the suite uses), and every dashboard query parses as PromQL.

use std::path::PathBuf;
use std::process::Command;

use e2e::tools::{prometheus_bin, skip_or_fail, workspace_root};

#[test]
fn prometheus_rule_passes_promtool() {
    let Some(promtool) = prometheus_bin()
        .and_then(|p| std::fs::canonicalize(p).ok())
        .and_then(|p| p.parent().map(|d| d.join("promtool")))
        .filter(|p| p.is_file())
    else {
        skip_or_fail("promtool not found next to the Prometheus binary; run `cargo xtask tools`");
        return;
    };
    let file = workspace_root().join("kustomize/base/prometheusrule.yaml");
    let rule: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let groups = &rule["spec"]["groups"];
    assert!(
        groups.as_array().is_some_and(|g| !g.is_empty()),
        "no rule groups in {}",
        file.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let rules: PathBuf = dir.path().join("rules.json");
    // promtool reads YAML, and JSON is YAML.
    std::fs::write(&rules, serde_json::json!({ "groups": groups }).to_string()).unwrap();
    let out = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: promtool check rules failed:\n{}{}",
        file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn dashboard_queries_parse() {
    let file = workspace_root().join("grafana/dashboards/prometheus-multi-tenant-proxy.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(
        exprs.len() > 10,
        "only {} queries in {}",
        exprs.len(),
        file.display()
    );
    let mut bad = Vec::new();
    for expr in &exprs {
        // Grafana's variables, as Grafana would substitute them.
        let text = expr
            .replace("$__rate_interval", "1m")
            .replace("$__range", "1h")
            .replace("$pod", ".*");
        if let Err(e) = promql_parser::parser::parse(&text) {
            bad.push(format!("{expr}: {e}"));
        }
    }
    assert!(
        bad.is_empty(),
        "{}: queries that are not PromQL:\n{}",
        file.display(),
        bad.join("\n")
    );
}

/// Panel targets' `expr` (the template variable's `label_values(...)` query is Grafana's, not
/// PromQL, and is skipped).
fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map {
                match (k.as_str(), child.as_str()) {
                    ("expr", Some(e)) => out.push(e.to_string()),
                    _ => collect_exprs(child, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect_exprs(i, out)),
        _ => {}
    }
}
