//! The built binary, as an operator runs it: serves the shared lab, reloads on SIGHUP (a bad
//! config is refused and the running one keeps serving), labels its metrics by route template,
//! and never logs credentials.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::support::{Case, Env, built_proxy_bin, case, send, workspace_root};

pub fn cases() -> Vec<Case> {
    vec![case(
        "serves_reloads_on_sighup_and_keeps_secrets_out_of_logs",
        binary_end_to_end,
    )]
}

fn config(api: u16, admin: u16, header: &str, backends: &[String]) -> String {
    let members: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "server:\n  listen: 127.0.0.1:{api}\n  admin_listen: 127.0.0.1:{admin}\ntenants:\n  directory: {:?}\nbackends:\n  probe_interval: 500ms\n  probe_timeout: 500ms\n  groups:\n    - name: infra\n      members: [{}]\nauth:\n  mode: header\n  header:\n    name: {header}\n",
        workspace_root()
            .join("fixtures/tenants")
            .display()
            .to_string(),
        members.join(", ")
    )
}

fn binary_end_to_end(env: &Env) -> Result<()> {
    let Some(bin) = built_proxy_bin() else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("config.yaml");
    let (api, admin) = (e2e::process::free_port(), e2e::process::free_port());
    let backends = env.lab.infra_urls();
    std::fs::write(&path, config(api, admin, "X-Tenant-Namespace", &backends))?;
    let mut cmd = Command::new(&bin);
    cmd.arg("--config")
        .arg(&path)
        .args(["--log-format", "json", "--log-level", "debug"]);
    let mut child = e2e::process::ChildGuard::spawn("proxy-binary", cmd)?;
    child.wait_ready(
        &format!("http://127.0.0.1:{api}/-/ready"),
        Duration::from_secs(20),
    )?;

    let base = format!("http://127.0.0.1:{api}");
    let query = |header: &str| -> Result<crate::support::Answer> {
        let req = env
            .http
            .get(format!("{base}/api/v1/query"))
            .query(&[("query", "count(up)")])
            .header(header, "team-a")
            .header("Authorization", "Bearer do-not-log-this-secret");
        env.block_on(send(req))
    };
    query("X-Tenant-Namespace")?.ok_data()?;
    let label_values = env
        .http
        .get(format!("{base}/api/v1/label/job/values"))
        .header("X-Tenant-Namespace", "team-a");
    env.block_on(send(label_values))?.ok_data()?;

    // SIGHUP with a new auth header name: applied.
    std::fs::write(&path, config(api, admin, "X-Team", &backends))?;
    hup(child.pid())?;
    wait_until(
        || query("X-Team").is_ok_and(|a| a.status == 200),
        "the reloaded header name",
    )?;
    query("X-Tenant-Namespace")?.expect_error(401, "unauthorized")?;

    // SIGHUP with a broken config: refused, the running config keeps serving.
    std::fs::write(&path, "proxy:\n  enable_cachng: true\n")?;
    hup(child.pid())?;
    std::thread::sleep(Duration::from_millis(500));
    query("X-Team")?.ok_data()?;

    let metrics = env.block_on(async {
        env.http
            .get(format!("http://127.0.0.1:{admin}/metrics"))
            .send()
            .await?
            .text()
            .await
    })?;
    ensure!(
        metrics.contains(r#"route="/api/v1/label/{name}/values""#),
        "route templates as labels:\n{metrics}"
    );
    ensure!(
        !metrics.contains("/api/v1/label/job/values"),
        "a raw path in /metrics"
    );
    ensure!(
        metrics.contains("pmtp_config_reloads_total"),
        "reloads are counted"
    );

    let log = std::fs::read_to_string(child.log_path()).context("reading the proxy log")?;
    ensure!(
        log.contains("enable_cachng"),
        "the refused reload is logged with its reason"
    );
    ensure!(
        !log.contains("do-not-log-this-secret"),
        "a credential reached the log"
    );
    ensure!(
        log.lines().filter(|l| l.starts_with('{')).count() > 3,
        "JSON log lines"
    );
    Ok(())
}

fn hup(pid: u32) -> Result<()> {
    let status = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()?;
    ensure!(status.success(), "kill -HUP {pid} failed");
    Ok(())
}

fn wait_until(mut ok: impl FnMut() -> bool, what: &str) -> Result<()> {
    let t0 = Instant::now();
    while !ok() {
        ensure!(
            t0.elapsed() < Duration::from_secs(5),
            "{what} not applied within 5s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
