//! The `ingest` scenario, driven through the copied harness (`bench/harness/`): the proxy's
//! remote-write gateway vs vmagent into the nginx 204 sink, no rules and the 10 governance
//! rules + `X-Scope-OrgID`, 32 and 1 connections; plus the helpers [`read`](super::read) shares. Every run is `lib/measure.py` (wrk + /proc CPU of the target), after a
//! warm-up run; figures are per CPU-second of the target process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use super::env::Ctx;
use super::{Better, Row};

const INGEST_LISTEN: &str = "127.0.0.1:18490";
const INGEST_ADMIN: &str = "127.0.0.1:18491";
const VMAGENT: &str = "http://127.0.0.1:18429/api/v1/write";

pub(super) fn wait_http(addr: &str, path: &str, pid: i32, timeout: Duration) -> anyhow::Result<()> {
    let addr: SocketAddr = addr.parse().context("address")?;
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !crate::pidfile::pid_exists(pid) {
            bail!("pid {pid} exited before {addr}{path} answered");
        }
        if crate::http::get(addr, path, &[]).is_ok_and(|r| r.status == 200) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("{addr}{path} not ready after {timeout:?}")
}

/// Median of the repeats of one measured case, from measure.py's JSON records.
pub(super) fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// One measure.py run through a harness script; returns its full JSON record.
pub(super) fn measured(
    ctx: &mut Ctx,
    script: &str,
    label: &str,
    envs: Vec<(&str, String)>,
) -> anyhow::Result<Value> {
    let out: PathBuf = ctx
        .dir
        .join("results")
        .join(format!("{}.jsonl", label.replace('/', "_")));
    let _ = std::fs::remove_file(&out);
    let mut envs = envs;
    envs.push(("OUT", out.display().to_string()));
    envs.push(("LABEL", label.to_string()));
    ctx.harness(script, &[], &envs)?;
    let text =
        std::fs::read_to_string(&out).with_context(|| format!("reading {}", out.display()))?;
    let line = text.lines().last().context("measure.py wrote no record")?;
    Ok(serde_json::from_str(line)?)
}

/// The harness's remote-write payloads (`gen/gen_payloads.py`), generated once.
pub(super) fn payloads(ctx: &mut Ctx) -> anyhow::Result<PathBuf> {
    let py = ctx.python()?;
    let payloads = ctx.dir.join("payloads/write");
    if !payloads.join("manifest.json").is_file() {
        let gen_py = ctx.harness.join("gen/gen_payloads.py");
        let ok = std::process::Command::new(&py)
            .arg(gen_py)
            .arg("--out")
            .arg(&payloads)
            .status()?;
        if !ok.success() {
            bail!("gen_payloads.py failed");
        }
    }
    Ok(payloads)
}

fn ingest_rows() -> Vec<Row> {
    vec![
        Row::new(
            "ingest c=32, no rules",
            "samples/CPU-s",
            Better::Higher,
            Some(1_000_000.0),
        )
        // Issue #14: ≥ 1M and ≥ 1× vmagent.
        .ratio_goal(1.0),
        Row::new(
            "ingest c=32, 10 rules + X-Scope-OrgID",
            "samples/CPU-s",
            Better::Higher,
            Some(600_000.0),
        )
        // Issue #14: ≥ 600k and ≥ 2× vmagent.
        .ratio_goal(2.0),
        Row::new(
            "ingest c=1, no rules: p50 latency",
            "ms",
            Better::Lower,
            Some(1.0),
        ),
        Row::new(
            "ingest c=1, 10 rules: p50 latency",
            "ms",
            Better::Lower,
            None,
        ),
    ]
}

pub fn ingest(ctx: &mut Ctx) -> Vec<Row> {
    match ingest_inner(ctx) {
        Ok(rows) => rows,
        Err(e) => Row::failed(ingest_rows(), &format!("{e:#}")),
    }
}

fn ingest_inner(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    ctx.wrk()?;
    ctx.nginx()?;
    let vmagent = ctx.victoria("vmagent");
    let payloads = payloads(ctx)?;
    let tenants = ctx.run_dir.join("ingest-tenants");
    std::fs::create_dir_all(&tenants)?;
    ctx.harness("sink/sink.sh", &["start"], &[])?;
    let sink = ctx.harness_pid("sink").context("sink pid")?;
    let warm = Duration::from_secs(if ctx.quick { 3 } else { 5 });
    // (case, c=32 samples/CPU-s, c=1 p50 ms) per target.
    let mut got: Vec<(&str, &str, Option<f64>, Option<f64>)> = Vec::new();
    for case in ["plain", "relabel"] {
        for target in ["vmagent", "proxy"] {
            let started: anyhow::Result<(i32, &str)> = (|| {
                if target == "vmagent" {
                    if let Err(e) = &vmagent {
                        bail!("vmagent unavailable: {e:#}");
                    }
                    ctx.harness("anchors/vmagent.sh", &["start", case], &[])?;
                    Ok((ctx.harness_pid("vmagent").context("vmagent pid")?, VMAGENT))
                } else {
                    let file = if case == "plain" {
                        "gateway-plain.yaml"
                    } else {
                        "gateway.yaml"
                    };
                    let text = std::fs::read_to_string(ctx.root.join("bench/ingest").join(file))?
                        .replace("/tmp/bench-ingest-tenants", &tenants.display().to_string());
                    let cfg = ctx.run_dir.join(format!("ingest-{case}.yaml"));
                    std::fs::write(&cfg, text)?;
                    let pid = ctx.spawn_proxy("proxy", &cfg)?;
                    wait_http(INGEST_ADMIN, "/metrics", pid, Duration::from_secs(30))?;
                    let _ = INGEST_LISTEN;
                    Ok((pid, "http://127.0.0.1:18490/api/v1/write"))
                }
            })();
            let (pid, url) = match started {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("xtask bench: ingest {case} {target}: {e:#}");
                    got.push((case, target, None, None));
                    ctx.stop(target);
                    continue;
                }
            };
            let mut envs = vec![
                ("TARGET_URL", url.to_string()),
                ("PIDS", format!("{target}={pid} sink={sink}")),
                ("PAYLOADS", payloads.display().to_string()),
                ("DRAIN", "60".to_string()),
            ];
            if case == "relabel" && target == "proxy" {
                envs.push(("HEADERS", "X-Scope-OrgID: tenant-07".to_string()));
            }
            let run = |ctx: &mut Ctx, conns: u32, secs: Duration, rep: u32, label: &str| {
                let mut e = envs.clone();
                e.push(("CONNS", conns.to_string()));
                e.push(("DURATION", secs.as_secs().max(1).to_string()));
                e.push(("REPEAT", rep.to_string()));
                measured(ctx, "run_write.sh", label, e)
            };
            let _ = run(ctx, 32, warm, 0, &format!("warmup-{target}-{case}"));
            let mut spc = Vec::new();
            let mut p50 = Vec::new();
            for rep in 1..=ctx.repeats {
                let d = ctx.duration;
                if let Ok(r) = run(ctx, 32, d, rep, &format!("{target}-{case}-c32")) {
                    // CPU through the drain: a forwarder that answers before it delivers does
                    // part of its work after wrk stops (measure.py leaves the figure out when
                    // the drain did not finish).
                    spc.extend(r["samples_per_cpu_s_incl_drain"].as_f64());
                }
                if let Ok(r) = run(ctx, 1, d, rep, &format!("{target}-{case}-c1")) {
                    p50.extend(r["wrk"]["lat_p50_us"].as_f64().map(|us| us / 1000.0));
                }
            }
            got.push((case, target, median(spc), median(p50)));
            ctx.stop(target);
        }
    }
    let find =
        |case: &str, target: &str| got.iter().find(|g| g.0 == case && g.1 == target).copied();
    let mut rows = ingest_rows().into_iter();
    let mut out = Vec::new();
    for (case, which) in [("plain", 0), ("relabel", 0), ("plain", 1), ("relabel", 1)] {
        let pick = |g: Option<(&str, &str, Option<f64>, Option<f64>)>| {
            g.and_then(|g| if which == 0 { g.2 } else { g.3 })
        };
        if let Some(r) = rows.next() {
            out.push(
                r.proxy(pick(find(case, "proxy")))
                    .peer("vmagent", pick(find(case, "vmagent"))),
            );
        }
    }
    Ok(out)
}
