//! The `scale` scenario: how the gateway's cost grows.
//!
//! - Ingest at 1, 100 and 10,000 tenants: the harness payloads through the gateway (no rules)
//!   into the nginx sink, c=32, with `X-Scope-OrgID` rotating over N tenants (built per request
//!   by the harness's `TENANT_DYNAMIC` mode, so every tenant is used); samples per CPU-second
//!   of the proxy and its resident memory after the run. Each tenant's series are tracked
//!   apart, so memory grows with tenants × series, which is what the rows show.
//! - The cardinality tracker's bytes per active series at 100k, 1M and 5M series
//!   (`examples/tracker_memory.rs`: the tables' size at their capacity).
//!
//! The rewrite's cost against policy size is part of the `rewrite` scenario.

use std::time::Duration;

use anyhow::Context;
use regex::Regex;

use super::env::{Ctx, status_kib};
use super::load::{measured, wait_http};
use super::{Better, Row};

const LISTEN: &str = "127.0.0.1:18490";
const ADMIN: &str = "127.0.0.1:18491";
const TENANTS: [usize; 3] = [1, 100, 10_000];
const TRACKER_POINTS: [usize; 3] = [100_000, 1_000_000, 5_000_000];

fn count(n: usize) -> String {
    match n {
        1 => "1 tenant".to_string(),
        10_000 => "10,000 tenants".to_string(),
        n => format!("{n} tenants"),
    }
}

fn human(n: usize) -> String {
    if n >= 1_000_000 {
        format!("{}M", n / 1_000_000)
    } else {
        format!("{}k", n / 1000)
    }
}

pub fn run(ctx: &mut Ctx) -> Vec<Row> {
    let mut rows = ingest(ctx);
    rows.extend(tracker(ctx));
    rows
}

fn ingest_rows() -> Vec<Row> {
    let mut rows: Vec<Row> = TENANTS
        .iter()
        .map(|&n| {
            Row::new(
                &format!("scale: ingest c=32, no rules, {}", count(n)),
                "samples/CPU-s",
                Better::Higher,
                None,
            )
        })
        .collect();
    rows.extend(TENANTS.iter().map(|&n| {
        Row::new(
            &format!("scale: proxy RSS after that run, {}", count(n)),
            "MiB",
            Better::Lower,
            None,
        )
    }));
    rows
}

fn ingest(ctx: &mut Ctx) -> Vec<Row> {
    match ingest_inner(ctx) {
        Ok(rows) => rows,
        Err(e) => Row::failed(ingest_rows(), &format!("{e:#}")),
    }
}

fn ingest_inner(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    ctx.wrk()?;
    ctx.nginx()?;
    let payloads = super::load::payloads(ctx)?;
    let tenants = ctx.run_dir.join("ingest-tenants");
    std::fs::create_dir_all(&tenants)?;
    ctx.harness("sink/sink.sh", &["start"], &[])?;
    let sink = ctx.harness_pid("sink").context("sink pid")?;
    let text = std::fs::read_to_string(ctx.root.join("bench/ingest/gateway-plain.yaml"))?
        .replace("/tmp/bench-ingest-tenants", &tenants.display().to_string());
    let cfg = ctx.run_dir.join("scale.yaml");
    std::fs::write(&cfg, text)?;
    let mut throughput = Vec::new();
    let mut rss = Vec::new();
    for n in TENANTS {
        // A fresh process per point: its memory is that of N tenants only.
        let pid = ctx.spawn_proxy("proxy", &cfg)?;
        let result = (|| -> anyhow::Result<(f64, f64, String)> {
            wait_http(ADMIN, "/metrics", pid, Duration::from_secs(30))?;
            let _ = LISTEN;
            let envs = vec![
                ("TARGET_URL", format!("http://{LISTEN}/api/v1/write")),
                ("PIDS", format!("proxy={pid} sink={sink}")),
                ("PAYLOADS", payloads.display().to_string()),
                ("DRAIN", "60".to_string()),
                ("CONNS", "32".to_string()),
                ("DURATION", ctx.duration.as_secs().max(1).to_string()),
                ("TENANT_HEADER", "X-Scope-OrgID".to_string()),
                ("TENANT_COUNT", n.to_string()),
                ("TENANT_DYNAMIC", "1".to_string()),
            ];
            let r = measured(ctx, "run_write.sh", &format!("scale-{n}"), envs)?;
            let spc = r["samples_per_cpu_s_incl_drain"].as_f64().context(
                "no samples_per_cpu_s_incl_drain in the record (the queues did not drain)",
            )?;
            let requests = r["wrk"]["requests"].as_f64().unwrap_or(0.0);
            let kib = status_kib(pid, "VmRSS").context("reading VmRSS")?;
            let hwm = status_kib(pid, "VmHWM").unwrap_or(kib);
            Ok((
                spc,
                kib as f64 / 1024.0,
                format!(
                    "{requests:.0} requests of 2,000 series over {n} tenant(s); peak {:.0} MiB",
                    hwm as f64 / 1024.0
                ),
            ))
        })();
        ctx.stop("proxy");
        match result {
            Ok((spc, mib, note)) => {
                throughput.push((Some(spc), String::new()));
                rss.push((Some(mib), note));
            }
            Err(e) => {
                throughput.push((None, format!("not run: {e:#}")));
                rss.push((None, format!("not run: {e:#}")));
            }
        }
    }
    let values = throughput.into_iter().chain(rss);
    Ok(ingest_rows()
        .into_iter()
        .zip(values)
        .map(|(row, (v, note))| row.proxy(v).note(&note))
        .collect())
}

fn tracker_rows() -> Vec<Row> {
    TRACKER_POINTS
        .iter()
        .map(|&n| {
            Row::new(
                &format!(
                    "scale: tracker bytes per active series, {} series",
                    human(n)
                ),
                "B",
                Better::Lower,
                Some(100.0),
            )
        })
        .collect()
}

/// Bytes per active series and the RSS growth the example printed.
pub fn parse_tracker(out: &str) -> Option<(f64, f64)> {
    let c = Regex::new(
        r"tracker: \d+ active series, tables [\d.]+ MiB, ([\d.]+) bytes per active series \(RSS grew ([\d.]+) MiB\)",
    )
    .ok()?
    .captures(out)?;
    Some((c[1].parse().ok()?, c[2].parse().ok()?))
}

fn tracker(ctx: &mut Ctx) -> Vec<Row> {
    let mut rows = Vec::new();
    for (n, row) in TRACKER_POINTS.iter().zip(tracker_rows()) {
        let series = n.to_string();
        let args = [
            "run",
            "--release",
            "-q",
            "-p",
            "proxy",
            "--example",
            "tracker_memory",
            "--",
            "--series",
            &series,
        ];
        let got = super::micro::run_capture(ctx, &args).and_then(|out| {
            parse_tracker(&out).context("the example's line was not found in its output")
        });
        rows.push(match got {
            Ok((bytes, rss)) => row.proxy(Some(bytes)).note(&format!(
                "the tracker's tables at their capacity; RSS of the process grew {rss:.0} MiB (allocator pages, freed tables kept a while)"
            )),
            Err(e) => row.note(&format!("not run: {e:#}")),
        });
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_tracker_line() {
        let out = "tracker: 1000001 active series, tables 34.0 MiB, 35.7 bytes per active series (RSS grew 78.0 MiB)\n";
        assert_eq!(parse_tracker(out), Some((35.7, 78.0)));
        assert_eq!(parse_tracker("nothing"), None);
    }
}
