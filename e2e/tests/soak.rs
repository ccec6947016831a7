//! Bounded soak: the proxy binary with the read path, the collector and the ingest gateway all
//! configured, driven on loopback at a steady rate for `PMTP_SOAK_SECONDS` (25 s in the suite;
//! `cargo xtask soak --minutes N` runs this case longer). At the end: zero acknowledged samples
//! lost, zero series outside a tenant's policy (reads and the collector's writes), and the
//! proxy's peak RSS under [`RSS_BOUND_MIB`].

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::faults::{
    collector_cr, collector_section, counter_exposition, scrape_config, wait_collected,
};
use crate::ingest_lab::{now_ms, stored_samples, wait_until};
use crate::support::{
    Case, Env, LabelSet, TENANTS, built_proxy_bin, case, client, expected_clauses, label_set, send,
    series_set, workspace_root,
};

pub fn cases() -> Vec<Case> {
    vec![case("bounded_soak", soak)]
}

/// Peak resident memory allowed for the (debug build) proxy over the soak.
pub const RSS_BOUND_MIB: u64 = 256;
/// The collector's tenant namespace.
const COLLECTED: &str = "soak-c";
/// The ingest tenant.
const INGEST_TENANT: &str = "soak-i";
/// Series per remote-write request; one request per tick.
const SERIES_PER_WRITE: usize = 10;
const TICK: Duration = Duration::from_millis(100);

fn duration() -> Duration {
    let secs = std::env::var("PMTP_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(25.0);
    Duration::from_secs_f64(secs)
}

#[derive(Default)]
struct Tally {
    reads: u64,
    reads_failed: u64,
    cross_tenant: Vec<String>,
    writes: u64,
    writes_refused: u64,
    acked: BTreeSet<(LabelSet, i64)>,
    peak_rss_kib: u64,
}

fn soak(env: &Env) -> Result<()> {
    let Some(bin) = built_proxy_bin() else {
        return Ok(());
    };
    let run_for = duration();
    // Infrastructure Prometheus: the lab workload seeded over the last 30 minutes, plus a live
    // scrape of counters for the collector.
    let exposition = counter_exposition(env, COLLECTED)?;
    let infra = e2e::Prometheus::start("soak-infra", Some(&scrape_config(exposition.addr)))?;
    let window =
        e2e::seed::SeedWindow::ending_now(Duration::from_secs(1800), Duration::from_secs(30));
    let defs: Vec<&e2e::workload::SeriesDef> = env.lab.series.iter().collect();
    e2e::seed::seed(&infra.url(), &defs, &window)?;
    let replica = e2e::Prometheus::start("soak-tenant", None)?;
    let storage = e2e::Prometheus::start("soak-storage", None)?;

    let dir = tempfile::tempdir()?;
    let (tenants, secrets, spill) = (
        dir.path().join("tenants"),
        dir.path().join("secrets"),
        dir.path().join("spill"),
    );
    std::fs::create_dir_all(&tenants)?;
    std::fs::create_dir_all(&secrets)?;
    // The fixture tenants for reads, with their own collection off (their targets don't exist
    // here), and one collector tenant.
    for entry in std::fs::read_dir(workspace_root().join("fixtures/tenants"))? {
        let path = entry?.path();
        let text = std::fs::read_to_string(&path)?.replace(
            "remoteWrite:\n    enabled: true",
            "remoteWrite:\n    enabled: false",
        );
        std::fs::write(tenants.join(path.file_name().context("file name")?), text)?;
    }
    std::fs::write(tenants.join("soak-c.yaml"), collector_cr(COLLECTED))?;
    let (api, admin) = (e2e::process::free_port(), e2e::process::free_port());
    let config = format!(
        r#"server: {{listen: "127.0.0.1:{api}", admin_listen: "127.0.0.1:{admin}"}}
tenants: {{source: file, directory: "{tenants}"}}
proxy: {{enable_request_logging: false, backend_timeout: 10s}}
backends: {{probe_interval: 1s, groups: [{{name: infra, members: ["{infra}"]}}]}}
auth: {{mode: header, header: {{name: X-Tenant-Namespace}}}}
{collector}ingest:
  enabled: true
  forward:
    destinations: [{{name: storage, url: "{storage}/api/v1/write"}}]
    spill_directory: "{spill}"
    min_backoff: 200ms
    max_backoff: 2s
"#,
        tenants = tenants.display(),
        infra = infra.url(),
        collector = collector_section(&secrets.display().to_string(), COLLECTED, &replica.url()),
        storage = storage.url(),
        spill = spill.display(),
    );
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, config)?;
    let mut cmd = Command::new(&bin);
    cmd.arg("--config").arg(&config_path);
    let mut proxy = e2e::process::ChildGuard::spawn("soak-proxy", cmd)?;
    proxy.wait_ready(
        &format!("http://127.0.0.1:{api}/-/ready"),
        Duration::from_secs(30),
    )?;
    let pid = proxy.pid();
    let base = format!("http://127.0.0.1:{api}");
    let admin_url = format!("http://127.0.0.1:{admin}");

    // What each tenant may see, asked of infrastructure Prometheus directly with the hand-written
    // clauses (independent of the proxy's policy compiler).
    let mut allowed: BTreeMap<&str, BTreeSet<LabelSet>> = BTreeMap::new();
    for tenant in TENANTS {
        let mut params: Vec<(&str, String)> = expected_clauses(tenant)
            .iter()
            .map(|c| ("match[]", c.to_string()))
            .collect();
        params.push(("start", format!("{}", window.start_ms / 1000)));
        let answer = env.block_on(send(
            client()
                .post(format!("{}/api/v1/series", infra.url()))
                .form(&params),
        ))?;
        let set = series_set(answer.ok_data()?);
        ensure!(
            !set.is_empty(),
            "{tenant}: no series in infrastructure Prometheus"
        );
        allowed.insert(tenant, set);
    }

    let mut tally = Tally::default();
    let t0 = Instant::now();
    let mut tick = 0u64;
    let mut last_ts: i64 = 0;
    while t0.elapsed() < run_for {
        let next = t0 + TICK * (tick as u32 + 1);
        let tenant = TENANTS[(tick % TENANTS.len() as u64) as usize];
        read_once(
            env,
            &base,
            tenant,
            tick,
            &window,
            &allowed[tenant],
            &mut tally,
        );
        let ts = now_ms().max(last_ts + 1);
        last_ts = ts;
        write_once(env, &base, tick, ts, &mut tally);
        if tick.is_multiple_of(10) {
            tally.peak_rss_kib = tally
                .peak_rss_kib
                .max(proc_status_kib(pid, "VmRSS:").unwrap_or(0));
        }
        tick += 1;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let driven = t0.elapsed();
    ensure!(
        proxy.exited().is_none(),
        "the proxy died during the soak: {}",
        proxy.log_tail(20)
    );

    // Every acknowledged sample in storage (the queues drain within a minute).
    let mut stored = BTreeSet::new();
    let drained = wait_until(
        Duration::from_secs(90),
        "every acknowledged sample in storage",
        || {
            stored = stored_samples(env, &storage.url(), "soak_ingest_total")?;
            Ok(tally.acked.is_subset(&stored))
        },
    );
    let lost = tally.acked.difference(&stored).count();
    // The collector ran, and wrote only its tenant's series.
    let job = wait_collected(env, &admin_url, COLLECTED, "a collection cycle", |j| {
        crate::collector::ok_cycles(j) >= 1
    });
    let collected = env.block_on(send(
        client()
            .get(format!("{}/api/v1/series", replica.url()))
            .query(&[
                ("match[]", "{__name__=~\".+\"}".to_string()),
                ("start", format!("{}", now_ms() / 1000 - 3600)),
            ]),
    ))?;
    let collected = series_set(collected.ok_data()?);
    let foreign: Vec<_> = collected
        .iter()
        .filter(|s| s.get("namespace").map(String::as_str) != Some(COLLECTED))
        .collect();
    let hwm = proc_status_kib(pid, "VmHWM:").unwrap_or(0);
    let peak_kib = tally.peak_rss_kib.max(hwm);
    drop(proxy);

    let cycles = job.as_ref().map(crate::collector::ok_cycles).unwrap_or(0);
    let rows = [
        ("duration driven", format!("{:.1} s", driven.as_secs_f64())),
        (
            "tenant reads (4 tenants)",
            format!("{} ({} failed)", tally.reads, tally.reads_failed),
        ),
        (
            "series outside the tenant's policy",
            format!("{}", tally.cross_tenant.len() + foreign.len()),
        ),
        (
            "remote-write requests",
            format!("{} ({} refused)", tally.writes, tally.writes_refused),
        ),
        ("samples acknowledged", format!("{}", tally.acked.len())),
        (
            "acknowledged samples stored",
            format!("{}", tally.acked.len() - lost),
        ),
        ("acknowledged samples lost", format!("{lost}")),
        (
            "collector cycles ok / series written",
            format!("{cycles} / {}", collected.len()),
        ),
        (
            "proxy peak RSS (VmHWM)",
            format!(
                "{:.1} MiB (bound {RSS_BOUND_MIB} MiB)",
                peak_kib as f64 / 1024.0
            ),
        ),
    ];
    eprintln!("\nsoak summary\n| measure | value |\n| --- | --- |");
    for (k, v) in &rows {
        eprintln!("| {k} | {v} |");
    }
    ensure!(
        tally.cross_tenant.is_empty(),
        "series outside a tenant's policy: {:?}",
        &tally.cross_tenant[..tally.cross_tenant.len().min(5)]
    );
    ensure!(
        foreign.is_empty(),
        "the collector wrote another tenant's series: {foreign:?}"
    );
    ensure!(lost == 0, "{lost} acknowledged samples lost ({drained:?})");
    ensure!(
        tally.reads_failed == 0,
        "{} reads failed",
        tally.reads_failed
    );
    ensure!(
        tally.acked.len() >= SERIES_PER_WRITE,
        "nothing was acknowledged"
    );
    ensure!(
        collected.len() == 2 && cycles >= 1,
        "the collector wrote {} series in {cycles} cycles ({job:?})",
        collected.len()
    );
    ensure!(
        peak_kib > 0 && peak_kib < RSS_BOUND_MIB * 1024,
        "peak RSS {peak_kib} KiB"
    );
    Ok(())
}

/// One read as `tenant` (alternately the series endpoint and an instant query over every
/// metric); every series answered must be one the tenant may see.
fn read_once(
    env: &Env,
    base: &str,
    tenant: &str,
    tick: u64,
    window: &e2e::seed::SeedWindow,
    allowed: &BTreeSet<LabelSet>,
    tally: &mut Tally,
) {
    tally.reads += 1;
    let all = "{__name__=~\".+\"}".to_string();
    let (path, params) = if tick % 8 < 4 {
        (
            "/api/v1/series",
            vec![
                ("match[]", all),
                ("start", format!("{}", window.start_ms / 1000)),
            ],
        )
    } else {
        (
            "/api/v1/query",
            vec![
                ("query", all),
                ("time", format!("{}", window.end_ms as f64 / 1000.0)),
            ],
        )
    };
    let req = client()
        .get(format!("{base}{path}"))
        .query(&params)
        .header("X-Tenant-Namespace", tenant);
    let series: Vec<LabelSet> = match env.block_on(send(req)) {
        Ok(a) if a.status == 200 => match a.body["data"].as_array() {
            Some(list) => list.iter().map(label_set).collect(),
            None => a.body["data"]["result"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| label_set(&s["metric"]))
                .collect(),
        },
        _ => {
            tally.reads_failed += 1;
            return;
        }
    };
    if series.is_empty() {
        tally.reads_failed += 1;
    }
    for s in series {
        if !allowed.contains(&s) {
            tally.cross_tenant.push(format!("{tenant}: {s:?}"));
        }
    }
}

/// One remote-write request of [`SERIES_PER_WRITE`] series at `ts`, counted if acknowledged.
fn write_once(env: &Env, base: &str, tick: u64, ts: i64, tally: &mut Tally) {
    use proxy::remote_write::{Label, Sample, TimeSeries, WriteRequest};
    tally.writes += 1;
    let label = |n: &str, v: String| Label {
        name: n.into(),
        value: v,
    };
    let timeseries: Vec<TimeSeries> = (0..SERIES_PER_WRITE)
        .map(|s| TimeSeries {
            labels: vec![
                label("__name__", "soak_ingest_total".into()),
                label("s", s.to_string()),
            ],
            samples: vec![Sample {
                value: tick as f64,
                timestamp: ts,
            }],
            ..Default::default()
        })
        .collect();
    let body = proxy::remote_write::encode_write_request(&WriteRequest {
        timeseries: timeseries.clone(),
        metadata: Vec::new(),
    });
    let req = client()
        .post(format!("{base}/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .header("X-Scope-OrgID", INGEST_TENANT)
        .body(body);
    let status = env.block_on(async { req.send().await.map(|r| r.status().as_u16()) });
    if status.ok() != Some(204) {
        tally.writes_refused += 1; // not acknowledged: the sender would retry, nothing is owed
        return;
    }
    for t in timeseries {
        let labels: LabelSet = t.labels.into_iter().map(|l| (l.name, l.value)).collect();
        tally.acked.insert((labels, ts));
    }
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS:`, `VmHWM:`).
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}
