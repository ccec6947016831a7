//! The `read` scenario: the proxy vs vmauth in front of a Prometheus backfilled with the
//! harness's series (`gen/load_prometheus.py`), queries of `configs/queries.tsv` through
//! `run_query.sh`; the figure is the target's CPU per request (its /proc CPU-s ÷ requests),
//! which for the proxy includes the PromQL rewrite, and per MB of answer for `sel_10k`.

use std::time::Duration;

use anyhow::{Context, bail};

use super::env::Ctx;
use super::load::{measured, median, wait_http};
use super::{Better, Row};

const READ_LISTEN: &str = "127.0.0.1:18690";
const READ_ADMIN: &str = "127.0.0.1:18691";
const PROM: &str = "127.0.0.1:19090";
const VMAUTH: &str = "http://127.0.0.1:18427";

fn read_rows() -> Vec<Row> {
    vec![
        Row::new(
            "read `up`: target CPU per request",
            "ms",
            Better::Lower,
            Some(0.3),
        )
        // Issue #14: ≤ 0.3 ms and ≥ 2× vmauth.
        .ratio_goal(2.0),
        Row::new(
            "read `cpu_by_ns`: target CPU per request",
            "ms",
            Better::Lower,
            Some(0.3),
        )
        // Issue #14: ≤ 0.3 ms and ≥ 2× vmauth.
        .ratio_goal(2.0),
        Row::new(
            "read `sel_10k` (9,600 series): target CPU per MB",
            "ms/MB",
            Better::Lower,
            // Issue #14's goal.
            Some(0.8),
        ),
    ]
}

pub fn run(ctx: &mut Ctx) -> Vec<Row> {
    match read_inner(ctx) {
        Ok(rows) => rows,
        Err(e) => Row::failed(read_rows(), &format!("{e:#}")),
    }
}

const READ_TENANT: &str = "apiVersion: observability.ethos.io/v1alpha1
kind: MetricAccess
metadata: {name: bench-reads, namespace: monitoring}
spec:
  source: monitoring
  metricIsolation: false
  metrics:
    - up
    - container_cpu_usage_seconds_total
    - \"http_request_duration_seconds_.*\"
";

fn read_inner(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    ctx.wrk()?;
    let prom = ctx.tool("prometheus", &["prometheus"], &[], false, &["--version"])?;
    ctx.record_version("prometheus", &prom, &["--version"]);
    let vmauth = ctx.victoria("vmauth");
    let py = ctx.python()?;
    ctx.harness("anchors/prometheus.sh", &["start"], &[])?;
    let prom_pid = ctx.harness_pid("prometheus").context("prometheus pid")?;
    let state = ctx.run_dir.join("prom/loaded.json");
    let hours = if ctx.quick { "1200" } else { "3600" };
    eprintln!("xtask bench: backfilling Prometheus ({hours} s of series)");
    let ok = std::process::Command::new(&py)
        .arg(ctx.harness.join("gen/load_prometheus.py"))
        .args([
            "--url",
            &format!("http://{PROM}/api/v1/write"),
            "--duration",
            hours,
            "--step",
            "15",
        ])
        .arg("--state")
        .arg(&state)
        .stdout(std::process::Stdio::null())
        .status()?;
    if !ok.success() {
        bail!("load_prometheus.py failed");
    }
    if vmauth.is_ok() {
        ctx.harness("anchors/vmauth.sh", &["start"], &[])?;
    }
    let tenants = ctx.run_dir.join("read-tenants");
    std::fs::create_dir_all(&tenants)?;
    std::fs::write(tenants.join("bench.yaml"), READ_TENANT)?;
    let cfg = ctx.run_dir.join("read.yaml");
    std::fs::write(
        &cfg,
        format!(
            "server: {{listen: \"{READ_LISTEN}\", admin_listen: \"{READ_ADMIN}\"}}\n\
             tenants: {{source: file, directory: \"{}\"}}\n\
             backends: {{groups: [{{name: infra, members: [\"http://{PROM}\"]}}]}}\n\
             auth: {{mode: header, header: {{name: X-Tenant-Namespace}}}}\n\
             proxy: {{enable_request_logging: false}}\n",
            tenants.display()
        ),
    )?;
    let proxy_pid = ctx.spawn_proxy("proxy", &cfg)?;
    wait_http(READ_LISTEN, "/-/ready", proxy_pid, Duration::from_secs(60))?;
    let vmauth_pid = ctx.harness_pid("vmauth");
    let warm = Duration::from_secs(if ctx.quick { 2 } else { 4 });
    let cpu_ms = |ctx: &mut Ctx, q: &str, target: &str| -> anyhow::Result<f64> {
        let (base, header, pid) = match target {
            "proxy" => (
                format!("http://{READ_LISTEN}"),
                "X-Tenant-Namespace: monitoring",
                proxy_pid,
            ),
            _ => (
                VMAUTH.to_string(),
                "Authorization: Bearer bench-query-token",
                vmauth_pid.context("vmauth not running")?,
            ),
        };
        let envs = |secs: Duration, rep: u32| {
            vec![
                ("BASE", base.clone()),
                ("HEADERS", header.to_string()),
                ("PIDS", format!("{target}={pid} prometheus={prom_pid}")),
                ("QUERIES", q.to_string()),
                ("CONNS", "4".to_string()),
                ("DURATION", secs.as_secs().max(1).to_string()),
                ("REPEAT", rep.to_string()),
                ("STATE", state.display().to_string()),
            ]
        };
        let _ = measured(
            ctx,
            "run_query.sh",
            &format!("warmup-{target}-{q}"),
            envs(warm, 0),
        );
        let mut v = Vec::new();
        for rep in 1..=ctx.repeats {
            let d = ctx.duration;
            let r = measured(ctx, "run_query.sh", &format!("{target}-{q}"), envs(d, rep))?;
            let reqs = r["wrk"]["requests"].as_f64().unwrap_or(0.0)
                - r["wrk"]["errors_status"].as_f64().unwrap_or(0.0);
            if let Some(cpu) = r["cpu"][target]["cpu_s"].as_f64().filter(|_| reqs > 0.0) {
                v.push(cpu * 1000.0 / reqs);
            }
        }
        median(v).context("no successful requests")
    };
    let mut rows = Vec::new();
    let mut templates = read_rows().into_iter();
    for q in ["up", "cpu_by_ns", "sel_10k"] {
        let proxy = cpu_ms(ctx, q, "proxy");
        let peer = cpu_ms(ctx, q, "vmauth");
        let mut row = templates.next().context("row template")?;
        if q == "sel_10k" {
            let mb = response_mb(ctx, &py, &state)?;
            row = row
                .proxy(proxy.as_ref().ok().map(|ms| ms / mb))
                .peer("vmauth", peer.as_ref().ok().map(|ms| ms / mb))
                .note(&format!("response {mb:.2} MB"));
        } else {
            row = row
                .proxy(proxy.as_ref().ok().copied())
                .peer("vmauth", peer.as_ref().ok().copied());
        }
        if let Err(e) = &proxy {
            row = row.note(&format!("proxy: {e:#}"));
        }
        rows.push(row.note("c=4, CPU-s of the target ÷ requests, includes the PromQL rewrite"));
    }
    Ok(rows)
}

/// Size of the `sel_10k` answer straight from Prometheus, in MB (10^6 bytes).
fn response_mb(
    ctx: &mut Ctx,
    py: &std::path::Path,
    state: &std::path::Path,
) -> anyhow::Result<f64> {
    let out = std::process::Command::new(py)
        .arg(ctx.harness.join("lib/query_url.py"))
        .arg("sel_10k")
        .arg(state)
        .output()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let r = crate::http::get(PROM.parse().context("prom address")?, &path, &[])?;
    if r.status != 200 {
        bail!("sel_10k answered {}", r.status);
    }
    Ok(r.body.len() as f64 / 1e6)
}
