//! Backends: an HA pair of real Prometheus behind the proxy. One member killed mid-test: queries
//! are still answered; both down: 503 with Prometheus' error envelope.

use anyhow::{Result, ensure};

use crate::support::{Case, Env, case};

pub fn cases() -> Vec<Case> {
    vec![case("ha_pair_failover_then_503", ha_pair_failover_then_503)]
}

fn ha_pair_failover_then_503(env: &Env) -> Result<()> {
    let (mut members, window) = env.start_small_pair()?;
    let urls: Vec<String> = members.iter().map(|m| m.url()).collect();
    let proxy = env.start_proxy_over(
        &crate::support::workspace_root().join("fixtures/tenants"),
        &urls,
    )?;
    let q = vec![
        ("query", "count(up)".to_string()),
        ("time", format!("{}", window.end_ms as f64 / 1000.0)),
    ];
    let count = |env: &Env| -> Result<crate::support::Answer> {
        env.get_via(&proxy, Some("team-c"), "/api/v1/query", &q)
    };
    // Both up: every answer succeeds (round robin spreads them over both members).
    let first = count(env)?;
    let expected = first.ok_data()?["result"].clone();
    ensure!(
        expected.as_array().is_some_and(|r| !r.is_empty()),
        "no data: {}",
        first.body
    );
    for _ in 0..4 {
        ensure!(
            count(env)?.ok_data()?["result"] == expected,
            "members disagree"
        );
    }
    // Kill one member mid-test: the next queries still succeed, with the same answer.
    drop(members.remove(0));
    for _ in 0..6 {
        let a = count(env)?;
        ensure!(
            a.ok_data()?["result"] == expected,
            "after failover: {}",
            a.body
        );
    }
    // Both down: 503, errorType unavailable, before and after the probes notice.
    drop(members.remove(0));
    for _ in 0..2 {
        count(env)?.expect_error(503, "unavailable")?;
        std::thread::sleep(std::time::Duration::from_millis(600));
    }
    let targets = env.admin_json(&proxy, "/debug/targets")?;
    ensure!(
        targets.to_string().contains(&urls[0]),
        "/debug/targets lists members: {targets}"
    );
    Ok(())
}
