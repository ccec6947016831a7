//! Fault injection: every case starts its own processes (on ephemeral loopback ports, in temp
//! dirs, killed on drop) and breaks them while a user keeps working, then checks what the user
//! saw and that nothing acknowledged was lost. The shared lab's processes are never touched.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;

use crate::ingest_lab::{
    gateway_config, now_ms, post_write, stored_samples, wait_until, write_body,
};
use crate::support::{
    Answer, Case, Env, LabelSet, Served, built_proxy_bin, case, client, send, sigkill,
    workspace_root,
};

pub fn cases() -> Vec<Case> {
    vec![
        case("read_pair_members_killed_and_restarted", read_pair),
        case(
            "collector_replica_killed_then_catches_up",
            collector_replica,
        ),
        case("ingest_storage_500_then_429_then_ok", storage_errors),
        case("slow_backend_times_out_other_tenant_answers", slow_backend),
        case("binary_sigkilled_with_a_spill_then_restarted", binary_spill),
    ]
}

const WAIT: Duration = Duration::from_secs(60);
const PROTOBUF: &str = "application/x-protobuf";

/// Poll `f` until it gives Ok(Some), within `timeout`.
fn eventually<T>(
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        ensure!(
            Instant::now() < deadline,
            "timed out waiting for {what} (last error: {last})"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// (a) Read path over an HA pair (backends.rs covers one kill then both without restarts; this
/// adds the restarts): kill A → answered from B; restart A and kill B → answered from A alone
/// (so A really came back); both down → 503 in Prometheus' envelope; both restarted → answered
/// again, always with the same data.
fn read_pair(env: &Env) -> Result<()> {
    let (mut members, window) = env.start_small_pair()?;
    let urls: Vec<String> = members.iter().map(|m| m.url()).collect();
    let proxy = env.start_proxy_over(&workspace_root().join("fixtures/tenants"), &urls)?;
    let q = vec![
        ("query", "count(up)".to_string()),
        ("time", format!("{}", window.end_ms as f64 / 1000.0)),
    ];
    let ask = || env.get_via(&proxy, Some("team-c"), "/api/v1/query", &q);
    let first = ask()?;
    let expected = first.ok_data()?["result"].clone();
    ensure!(
        expected.as_array().is_some_and(|r| !r.is_empty()),
        "no data: {}",
        first.body
    );
    let same = |what: &str| -> Result<()> {
        for _ in 0..6 {
            let a = ask()?;
            ensure!(a.ok_data()?["result"] == expected, "{what}: {}", a.body);
        }
        Ok(())
    };
    // Answered (eventually: the proxy's probes may still hold the member unhealthy).
    let answered = |what: &str| -> Result<()> {
        eventually(Duration::from_secs(20), what, || {
            Ok((ask()?.status == 200).then_some(()))
        })?;
        same(what)
    };
    sigkill(members[0].pid())?;
    same("A killed")?;
    members[0].restart()?;
    sigkill(members[1].pid())?;
    answered("A restarted, B killed")?;
    sigkill(members[0].pid())?;
    for _ in 0..2 {
        ask()?.expect_error(503, "unavailable")?;
        std::thread::sleep(Duration::from_millis(600));
    }
    members[0].restart()?;
    members[1].restart()?;
    answered("both restarted")?;
    Ok(())
}

/// A scripted remote-write sink: answers the scripted statuses in order (then 204), and records
/// every attempt and every sample it stored (only with a 2xx).
#[derive(Default)]
struct SinkState {
    script: VecDeque<(u16, Option<u64>)>,
    attempts: Vec<(Instant, u16)>,
    stored: Vec<(LabelSet, i64)>,
}

fn start_sink(env: &Env, script: &[(u16, Option<u64>)]) -> Result<(Served, Arc<Mutex<SinkState>>)> {
    let state = Arc::new(Mutex::new(SinkState {
        script: script.iter().copied().collect(),
        ..Default::default()
    }));
    let s = state.clone();
    let app = axum::Router::new().route(
        "/api/v1/write",
        axum::routing::post(move |body: axum::body::Bytes| {
            let s = s.clone();
            async move {
                let mut st = s.lock().unwrap_or_else(|e| e.into_inner());
                let (code, retry_after) = st.script.pop_front().unwrap_or((204, None));
                st.attempts.push((Instant::now(), code));
                if code >= 300 {
                    let mut headers = HeaderMap::new();
                    if let Some(secs) = retry_after {
                        headers.insert("retry-after", secs.into());
                    }
                    let status =
                        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    return (status, headers, "scripted failure").into_response();
                }
                let Ok(req) = proxy::remote_write::decode_write_request(&body, 64 << 20) else {
                    return StatusCode::BAD_REQUEST.into_response();
                };
                for t in &req.timeseries {
                    let labels: LabelSet = t
                        .labels
                        .iter()
                        .map(|l| (l.name.clone(), l.value.clone()))
                        .collect();
                    for sample in &t.samples {
                        st.stored.push((labels.clone(), sample.timestamp));
                    }
                }
                StatusCode::NO_CONTENT.into_response()
            }
        }),
    );
    Ok((Served::start(env, app)?, state))
}

/// Send `n` requests of two series each (one sample per series) as `spill-t`; every (series,
/// timestamp) the gateway acknowledged with 204.
fn send_numbered(
    env: &Env,
    gateway: &str,
    metric: &str,
    n: i64,
) -> Result<BTreeSet<(LabelSet, i64)>> {
    let t0 = now_ms() - 60_000;
    let mut acked = BTreeSet::new();
    for i in 0..n {
        let ts = t0 + i * 1000;
        let series: [(&str, &[(&str, &str)]); 2] =
            [(metric, &[("s", "0")]), (metric, &[("s", "1")])];
        let (status, text) = post_write(
            env,
            gateway,
            Some("spill-t"),
            write_body(&series, ts),
            PROTOBUF,
        )?;
        ensure!(status == 204, "request {i}: {status} {text}");
        for s in ["0", "1"] {
            let labels: LabelSet = [("__name__", metric), ("s", s)]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            acked.insert((labels, ts));
        }
    }
    Ok(acked)
}

/// (c) Storage answers 500 three times, then 429 twice with `Retry-After: 3`, then 204. The
/// agent gets 204 for every request (the memory queue holds them); every acknowledged sample
/// reaches storage exactly once. The rule: a failed attempt (5xx, 429) stored nothing, so the
/// retries that follow it are not duplicates; a sample stored twice would be one. `Retry-After`
/// is honoured: with one shard (one request in flight) the attempt after a 429 comes at least
/// 3 s later, while the backoff alone is capped at `max_backoff` (2 s).
fn storage_errors(env: &Env) -> Result<()> {
    let script = [
        (500, None),
        (500, None),
        (500, None),
        (429, Some(3)),
        (429, Some(3)),
    ];
    let (sink, state) = start_sink(env, &script)?;
    let tenants = tempfile::tempdir()?;
    let config: String = gateway_config(
        &tenants.path().display().to_string(),
        &[("sink", format!("{}/api/v1/write", sink.url()))],
        "",
    )
    .lines()
    .filter(|l| !l.contains("spill_directory"))
    .map(|l| format!("{l}\n"))
    .collect::<String>()
    .replace(
        "    batch_series: 500\n",
        "    batch_series: 500\n    shards: 1\n",
    );
    let c = proxy::config::Config::from_yaml(&config, "faults-sink")?;
    let gateway = env.block_on(proxy::app::start(c, None))?;
    let acked = send_numbered(env, &gateway.api_url(), "fault_retry_total", 20)?;
    wait_until(WAIT, "every acknowledged sample at the sink", || {
        let st = state.lock().unwrap_or_else(|e| e.into_inner());
        let stored: BTreeSet<_> = st.stored.iter().cloned().collect();
        Ok(acked.is_subset(&stored))
    })?;
    std::thread::sleep(Duration::from_millis(500)); // a late duplicate would land now
    let st = state.lock().unwrap_or_else(|e| e.into_inner());
    let mut counts: BTreeMap<&(LabelSet, i64), usize> = BTreeMap::new();
    for s in &st.stored {
        *counts.entry(s).or_default() += 1;
    }
    let dups: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    ensure!(dups.is_empty(), "samples stored more than once: {dups:?}");
    ensure!(
        counts.len() == acked.len(),
        "stored {} samples, acknowledged {}",
        counts.len(),
        acked.len()
    );
    let codes: Vec<u16> = st.attempts.iter().map(|a| a.1).collect();
    ensure!(
        codes.len() > script.len() && codes[..script.len()] == [500, 500, 500, 429, 429],
        "attempts: {codes:?}"
    );
    for w in st.attempts.windows(2) {
        if w[0].1 == 429 {
            let gap = w[1].0 - w[0].0;
            ensure!(
                gap >= Duration::from_millis(2950),
                "Retry-After: 3 not honoured: next attempt after {gap:?}"
            );
        }
    }
    drop(st);
    let debug = env.admin_json(&gateway, "/debug/ingest")?;
    ensure!(
        crate::ingest_lab::shard_sum(&debug, "sink", "requests_retried") >= 5,
        "retries counted: {debug}"
    );
    env.block_on(gateway.shutdown()).context("shutdown")?;
    Ok(())
}

/// (d) A backend that answers team-a's queries after 20 s, with `backend_timeout: 2s`: team-a
/// gets 503 `timeout` once the timeout fires (well before the backend would answer), while a
/// team-b query issued at the same time on the same backend answers first, with 200.
fn slow_backend(env: &Env) -> Result<()> {
    let slow_seen = Arc::new(Mutex::new(0usize));
    let seen = slow_seen.clone();
    let app = axum::Router::new()
        .route("/-/ready", axum::routing::get(|| async { "ready" }))
        .fallback(move |req: axum::extract::Request| {
            let seen = seen.clone();
            async move {
                let query = req.uri().query().unwrap_or("").to_string();
                let body = axum::body::to_bytes(req.into_body(), 1 << 20)
                    .await
                    .unwrap_or_default();
                let params = format!("{query}&{}", String::from_utf8_lossy(&body));
                if params.contains("team-a") {
                    *seen.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                    tokio::time::sleep(Duration::from_secs(20)).await;
                }
                axum::Json(serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": []}}))
            }
        });
    let backend = Served::start(env, app)?;
    let proxy = env.block_on(crate::support::start_proxy_timeout(
        &workspace_root().join("fixtures/tenants"),
        &[backend.url()],
        "2s",
    ))?;
    let timeout = Duration::from_secs(2);
    let base = proxy.api_url();
    let query = |tenant: &'static str| {
        let req = client()
            .get(format!("{base}/api/v1/query"))
            .query(&[("query", "http_requests_total")])
            .header("X-Tenant-Namespace", tenant);
        async move {
            let t0 = Instant::now();
            let a = send(req).await;
            (a, t0.elapsed(), Instant::now())
        }
    };
    let (slow, fast) = env.block_on(async {
        let slow = tokio::spawn(query("team-a"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let fast = tokio::spawn(query("team-b"));
        (slow.await, fast.await)
    });
    let (slow, slow_took, slow_done) = slow?;
    let (fast, _, fast_done) = fast?;
    let slow: Answer = slow?;
    let fast: Answer = fast?;
    slow.expect_error(503, "timeout")?;
    ensure!(
        slow_took < timeout + Duration::from_secs(8),
        "the timeout fired after {slow_took:?}"
    );
    ensure!(
        *slow_seen.lock().unwrap_or_else(|e| e.into_inner()) >= 1,
        "team-a's query reached the backend"
    );
    fast.ok_data()?;
    ensure!(
        fast_done < slow_done,
        "team-b answered only after team-a's timeout"
    );
    // The backend stays usable for others afterwards.
    env.get_via(
        &proxy,
        Some("team-b"),
        "/api/v1/query",
        &[("query", "up".to_string())],
    )?
    .ok_data()?;
    Ok(())
}

/// (e) The proxy binary, gateway with a disk spill, storage down: requests acknowledged (204)
/// go to disk; the binary is SIGKILLed; storage comes back and the binary is started again:
/// every acknowledged sample reaches storage.
fn binary_spill(env: &Env) -> Result<()> {
    let Some(bin) = built_proxy_bin() else {
        return Ok(());
    };
    let mut storage = e2e::Prometheus::start("fault-spill-storage", None)?;
    storage.stop_keeping_data();
    let dir = tempfile::tempdir()?;
    let spill = dir.path().join("spill");
    let tenants = dir.path().join("tenants");
    std::fs::create_dir_all(&tenants)?;
    let (api, admin) = (e2e::process::free_port(), e2e::process::free_port());
    let config = gateway_config(
        &tenants.display().to_string(),
        &[("storage", format!("{}/api/v1/write", storage.url()))],
        &spill.display().to_string(),
    )
    .replace(
        r#"server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}"#,
        &format!(r#"server: {{listen: "127.0.0.1:{api}", admin_listen: "127.0.0.1:{admin}"}}"#),
    );
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config)?;
    let start = || -> Result<e2e::process::ChildGuard> {
        let mut cmd = Command::new(&bin);
        cmd.arg("--config").arg(&path);
        let mut child = e2e::process::ChildGuard::spawn("fault-gateway", cmd)?;
        child.wait_ready(
            &format!("http://127.0.0.1:{admin}/debug/ingest"),
            Duration::from_secs(20),
        )?;
        Ok(child)
    };
    let mut gateway = start()?;
    let api_url = format!("http://127.0.0.1:{api}");
    let acked = send_numbered(env, &api_url, "fault_spilled_total", 10)?;
    let on_disk = count_files(&spill, "rw")?;
    ensure!(
        on_disk >= 1,
        "storage is down: the acknowledged requests must be on disk"
    );
    sigkill(gateway.pid())?;
    eventually(
        Duration::from_secs(10),
        "the killed gateway to exit",
        || Ok(gateway.exited()),
    )?;
    drop(gateway);
    storage.restart()?;
    let gateway = start()?;
    wait_until(WAIT, "every acknowledged sample in storage", || {
        let stored = stored_samples(env, &storage.url(), "fault_spilled_total")?;
        Ok(acked.is_subset(&stored))
    })?;
    let stored = stored_samples(env, &storage.url(), "fault_spilled_total")?;
    ensure!(
        stored == acked,
        "storage holds samples nobody sent: {stored:?}"
    );
    wait_until(WAIT, "the spill to be emptied", || {
        Ok(count_files(&spill, "rw")? == 0)
    })?;
    drop(gateway);
    Ok(())
}

/// Files ending in `.ext` one level below `dir` (the spill keeps a folder per queue).
fn count_files(dir: &std::path::Path, ext: &str) -> Result<usize> {
    let mut n = 0;
    for sub in std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
        let sub = sub?.path();
        if sub.is_dir() {
            n += std::fs::read_dir(&sub)?
                .filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == ext))
                .count();
        }
    }
    Ok(n)
}

/// A counter exposition for the collector's source Prometheus: two series of namespace
/// `fault-b` and one of another namespace, each increasing with time.
pub fn counter_exposition(env: &Env, namespace: &str) -> Result<Served> {
    let started = Instant::now();
    let ns = namespace.to_string();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let v = started.elapsed().as_secs_f64();
            let ns = ns.clone();
            async move {
                format!(
                    "fault_cpu_seconds_total{{namespace=\"{ns}\",pod=\"p1\",job=\"kubelet\"}} {v}\n\
                     fault_cpu_seconds_total{{namespace=\"{ns}\",pod=\"p2\",job=\"kubelet\"}} {}\n\
                     fault_cpu_seconds_total{{namespace=\"elsewhere\",pod=\"x\",job=\"kubelet\"}} {v}\n",
                    2.0 * v
                )
            }
        }),
    );
    Served::start(env, app)
}

/// A scrape config for a source Prometheus scraping `target` every second.
pub fn scrape_config(target: std::net::SocketAddr) -> String {
    format!(
        "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\nscrape_configs:\n  - job_name: src\n    honor_labels: true\n    static_configs: [{{targets: [\"{target}\"]}}]\n"
    )
}

/// The MetricAccess CR: `namespace` gets `fault_cpu_seconds_total` written every 5 s to the
/// Prometheus `prom-f.<namespace>.svc:9090`.
pub fn collector_cr(namespace: &str) -> String {
    format!(
        "apiVersion: observability.ethos.io/v1alpha1\nkind: MetricAccess\nmetadata: {{name: cpu, namespace: {namespace}}}\nspec:\n  metricIsolation: true\n  metrics: [fault_cpu_seconds_total]\n  remoteWrite:\n    enabled: true\n    interval: 5s\n    target: {{type: prometheus}}\n    prometheus: {{serviceName: prom-f, servicePort: 9090}}\n"
    )
}

/// The collector's `remote_write:` config section writing `prom-f.<namespace>.svc:9090` to `replica`.
pub fn collector_section(secrets: &str, namespace: &str, replica: &str) -> String {
    crate::collector_lab::remote_write_section(
        secrets,
        &format!("    \"prom-f.{namespace}.svc:9090\": \"{replica}\"\n"),
    )
}

/// The collector's status of `namespace/cpu` from `/collected-metrics`, once `ready` holds.
pub fn wait_collected(
    env: &Env,
    admin: &str,
    namespace: &str,
    what: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value> {
    let url = format!("{admin}/collected-metrics");
    eventually(Duration::from_secs(90), what, || {
        let body = env.block_on(send(client().get(&url)))?.body;
        let job = body["resources"]
            .as_array()
            .and_then(|all| {
                all.iter()
                    .find(|j| j["namespace"] == namespace && j["name"] == "cpu")
            })
            .cloned()
            .with_context(|| format!("{namespace}/cpu not in /collected-metrics: {body}"))?;
        Ok(ready(&job).then_some(job))
    })
}

/// The one target's `field` of a collector job.
fn only_target(job: &serde_json::Value, field: &str) -> u64 {
    job["targets"]
        .as_object()
        .and_then(|t| t.values().next())
        .and_then(|t| t[field].as_u64())
        .unwrap_or(0)
}

/// (b) The collector writes a tenant's series from a source Prometheus to the tenant's
/// Prometheus; that Prometheus is SIGKILLed during collection for at least two cycles and then
/// restarted: the collector keeps what it could not write in its queue, and after the catch-up
/// the replica holds every sample the source had for the tenant over the collected window, and
/// no series of another namespace.
fn collector_replica(env: &Env) -> Result<()> {
    let ns = "fault-b";
    let exposition = counter_exposition(env, ns)?;
    let source = e2e::Prometheus::start("fault-col-src", Some(&scrape_config(exposition.addr)))?;
    let mut replica = e2e::Prometheus::start("fault-col-replica", None)?;
    let dir = tempfile::tempdir()?;
    let (tenants, secrets) = (dir.path().join("tenants"), dir.path().join("secrets"));
    std::fs::create_dir_all(&tenants)?;
    std::fs::create_dir_all(&secrets)?;
    std::fs::write(tenants.join("cr.yaml"), collector_cr(ns))?;
    let config = format!(
        "server: {{listen: \"127.0.0.1:0\", admin_listen: \"127.0.0.1:0\"}}\ntenants: {{source: file, directory: \"{}\"}}\nproxy: {{enable_request_logging: false}}\nbackends: {{probe_interval: 1s, groups: [{{name: infra, members: [\"{}\"]}}]}}\nauth: {{mode: header}}\n{}",
        tenants.display(),
        source.url(),
        collector_section(&secrets.display().to_string(), ns, &replica.url())
    );
    let c = proxy::config::Config::from_yaml(&config, "faults-collector")?;
    let proxy = env.block_on(proxy::app::start(c, None))?;
    let admin = proxy.admin_url();
    let cycles = crate::collector::ok_cycles;
    let job = wait_collected(env, &admin, ns, "2 cycles written", |j| {
        cycles(j) >= 2 && only_target(j, "requests_ok") >= 2
    })?;
    sigkill(replica.pid())?;
    let at_kill = cycles(&job);
    let during = wait_collected(env, &admin, ns, "2 cycles with the replica down", |j| {
        cycles(j) >= at_kill + 2 && only_target(j, "queue_depth") >= 1
    })?;
    ensure!(
        only_target(&during, "requests_retried") >= 1,
        "retries while down: {during}"
    );
    replica.restart()?;
    let after = wait_collected(env, &admin, ns, "the replica caught up", |j| {
        cycles(j) >= at_kill + 3 && only_target(j, "queue_depth") == 0
    })?;
    ensure!(only_target(&after, "dropped_queue_full") == 0, "{after}");
    let start = after["first_window_start_ms"]
        .as_i64()
        .context("no first window")?;
    let end = after["collected_until_ms"]
        .as_i64()
        .context("nothing collected")?;
    let selector = "fault_cpu_seconds_total";
    let want = crate::collector::raw_samples(
        env,
        &source.url(),
        &format!("{selector}{{namespace=\"{ns}\"}}"),
        start,
        end,
        &[],
    )?;
    let samples: usize = want.values().map(Vec::len).sum();
    ensure!(
        want.len() == 2 && samples >= 2 * 10,
        "the source should hold 2 series with samples over the window: {want:?}"
    );
    let got = crate::collector::raw_samples(env, &replica.url(), selector, start, end, &[])?;
    crate::collector::ensure_same_samples(&want, &got, "the replica")
        .with_context(|| format!("over [{start}, {end}]"))?;
    drop(proxy);
    Ok(())
}
