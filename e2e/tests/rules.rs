//! Rules and alerts per tenant: a Prometheus of its own loads fixtures/prometheus/tenant-rules.yml
//! (rules of team-a, of team-b, and foreign always-firing alerts), a proxy over it serves the
//! fixture tenants, and each tenant sees only its own rules and alerts.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::support::{Case, Env, case, workspace_root};

pub fn cases() -> Vec<Case> {
    vec![case(
        "each_tenant_sees_only_its_rules_and_alerts",
        each_tenant_sees_only_its_rules_and_alerts,
    )]
}

/// The rule and alert names in an answer of `/api/v1/rules` (`data.groups[].rules[].name`).
fn rule_names(data: &Value) -> Vec<String> {
    let mut names: Vec<String> = data["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

fn alert_names(data: &Value) -> Vec<String> {
    let mut names: Vec<String> = data["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

fn each_tenant_sees_only_its_rules_and_alerts(env: &Env) -> Result<()> {
    let rules = workspace_root().join("fixtures/prometheus/tenant-rules.yml");
    let config = format!(
        "global: {{scrape_interval: 15s, evaluation_interval: 1s}}\nrule_files: [{:?}]\n",
        rules.display().to_string()
    );
    let prom = e2e::Prometheus::start("rules", Some(&config))?;
    // Every alert of the file fires at its first evaluation; wait until Prometheus lists them.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = env.block_on(crate::support::send(
            env.http.get(format!("{}/api/v1/alerts", prom.url())),
        ))?;
        let all = alert_names(answer.ok_data()?);
        if all.len() == 4 {
            ensure!(
                all == [
                    "AlwaysFiring",
                    "AnyPodMissing",
                    "TeamAPodMissing",
                    "TeamBContainerMissing"
                ],
                "{all:?}"
            );
            break;
        }
        ensure!(Instant::now() < deadline, "alerts never all fired: {all:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let proxy = env.start_proxy_over(&workspace_root().join("fixtures/tenants"), &[prom.url()])?;
    let get = |tenant: &str, path: &str| {
        env.get_via(&proxy, Some(tenant), path, &[])
            .with_context(|| format!("{tenant} {path}"))
    };

    let a_rules = get("team-a", "/api/v1/rules")?;
    ensure!(
        rule_names(a_rules.ok_data()?) == ["TeamAPodMissing", "namespace:http_requests:rate5m"],
        "team-a rules: {}",
        a_rules.body
    );
    let a_alerts = get("team-a", "/api/v1/alerts")?;
    ensure!(
        alert_names(a_alerts.ok_data()?) == ["TeamAPodMissing"],
        "team-a alerts: {}",
        a_alerts.body
    );
    let b_rules = get("team-b", "/api/v1/rules")?;
    ensure!(
        rule_names(b_rules.ok_data()?)
            == ["TeamBContainerMissing", "namespace:container_cpu:rate5m"],
        "team-b rules: {}",
        b_rules.body
    );
    let b_alerts = get("team-b", "/api/v1/alerts")?;
    ensure!(
        alert_names(b_alerts.ok_data()?) == ["TeamBContainerMissing"],
        "team-b alerts: {}",
        b_alerts.body
    );
    // Nothing of team-b's, nor the foreign rules, in team-a's answers (and the reverse).
    let text = |a: &crate::support::Answer| a.body.to_string();
    for (tenant, body, other) in [
        ("team-a", text(&a_rules), "team-b"),
        ("team-a", text(&a_alerts), "team-b"),
        ("team-b", text(&b_rules), "team-a"),
        ("team-b", text(&b_alerts), "team-a"),
    ] {
        for foreign in ["AlwaysFiring", "AnyPodMissing", "vector(1)", other] {
            ensure!(!body.contains(foreign), "{tenant} sees {foreign}: {body}");
        }
    }
    // A tenant whose policy is empty sees nothing: refused, as on every read endpoint.
    for path in ["/api/v1/rules", "/api/v1/alerts"] {
        get("team-e", path)?.expect_error(403, "forbidden")?;
    }
    // Recording rules only, for team-a.
    let recorded = env.get_via(
        &proxy,
        Some("team-a"),
        "/api/v1/rules",
        &[("type", "record".to_string())],
    )?;
    ensure!(
        rule_names(recorded.ok_data()?) == ["namespace:http_requests:rate5m"],
        "{}",
        recorded.body
    );
    Ok(())
}
