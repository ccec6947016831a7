//! The collector against real processes: what each tenant target holds after the proxy copied
//! it, compared with infrastructure Prometheus itself.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::collector_lab::{CollectorLab, auth_header, target_u64};
use crate::support::{Case, Env, LabelSet, case, client, label_set, send, series_set};

pub fn cases() -> Vec<Case> {
    vec![
        case(
            "tenant_prometheus_gets_exactly_its_series",
            tenant_prometheus,
        ),
        case("replicas_identical_then_one_catches_up", replicas),
        case("pushgateway_holds_the_group", pushgateway),
        case("basic_auth_endpoint", basic_auth),
        case("removed_series_goes_stale", staleness),
        case("bad_crs_are_reported_others_keep_working", bad_crs),
        case(
            "remote_read_and_query_modes_read_the_same_samples",
            read_methods,
        ),
        case(
            "relabel_engine_matches_prometheus_metric_relabel_configs",
            relabel_parity,
        ),
        case(
            "a_restarted_proxy_continues_without_a_gap",
            restart_continuity,
        ),
    ]
}

const CYCLES_WAIT: Duration = Duration::from_secs(60);

pub fn ok_cycles(job: &Value) -> u64 {
    job["cycles_ok"].as_u64().unwrap_or(0)
}

fn lab(env: &Env) -> Result<&CollectorLab> {
    env.collector_lab()
}

/// Every series of a Prometheus with samples since `start_s`.
fn all_series(
    env: &Env,
    base: &str,
    auth: Option<&str>,
    start_s: f64,
) -> Result<BTreeSet<LabelSet>> {
    let mut req = client().get(format!("{base}/api/v1/series")).query(&[
        ("match[]", "{__name__=~\".+\"}".to_string()),
        ("start", format!("{start_s}")),
    ]);
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let answer = env.block_on(send(req))?;
    Ok(series_set(answer.ok_data()?))
}

fn instant(env: &Env, base: &str, query: &str) -> Result<Vec<Value>> {
    let req = client()
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", query)]);
    let answer = env.block_on(send(req))?;
    Ok(answer.ok_data()?["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

fn lab_start_s() -> f64 {
    // Everything the lab holds is younger than this suite's process.
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0))
        - 3600.0
}

/// (a) The tenant Prometheus holds exactly the tenant's series, relabeled, with extra labels,
/// and nothing of any other namespace.
fn tenant_prometheus(env: &Env) -> Result<()> {
    let lab = lab(env)?;
    lab.wait_job(
        env,
        "col-a",
        "app-metrics",
        CYCLES_WAIT,
        "2 cycles written",
        |j| ok_cycles(j) >= 2 && target_u64(j, "prom", "requests_ok") >= 2,
    )?;
    let series = all_series(env, &lab.col_a.url(), None, lab_start_s())?;
    for s in &series {
        ensure!(
            s.get("namespace").map(String::as_str) == Some("col-a"),
            "a series of another namespace reached col-a: {s:?}"
        );
        ensure!(
            s["__name__"] != "secret_debug_total",
            "dropped by relabel, yet written: {s:?}"
        );
        ensure!(
            s.get("tenant").map(String::as_str) == Some("col-a"),
            "extra label missing: {s:?}"
        );
        ensure!(
            s.get("job").map(String::as_str) == Some("copied"),
            "honorLabels false: {s:?}"
        );
        ensure!(
            s.get("exported_job").map(String::as_str) == Some("app"),
            "collected job kept as exported_job: {s:?}"
        );
    }
    let text: String = series.iter().map(|s| format!("{s:?}\n")).collect();
    insta::assert_snapshot!("collector_col_a_series", text);
    Ok(())
}

/// Raw samples of `selector` over `[start_ms, end_ms]`, keyed by labels minus `drop`.
pub fn raw_samples(
    env: &Env,
    base: &str,
    selector: &str,
    start_ms: i64,
    end_ms: i64,
    drop: &[&str],
) -> Result<BTreeMap<LabelSet, Vec<(i64, String)>>> {
    let range_ms = end_ms - start_ms;
    let query = format!("{selector}[{range_ms}ms]");
    let req = client().get(format!("{base}/api/v1/query")).query(&[
        ("query", query),
        ("time", format!("{:.3}", end_ms as f64 / 1000.0)),
    ]);
    let answer = env.block_on(send(req))?;
    let mut out = BTreeMap::new();
    for s in answer.ok_data()?["result"].as_array().into_iter().flatten() {
        let mut labels = label_set(&s["metric"]);
        for d in drop {
            labels.remove(*d);
        }
        let samples: Vec<(i64, String)> = s["values"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| {
                (
                    (v[0].as_f64().unwrap_or(0.0) * 1000.0).round() as i64,
                    v[1].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        out.insert(labels, samples);
    }
    Ok(out)
}

/// (b) Both replicas hold the same series and samples: every raw sample the source had for
/// them in the collected range (the interval, 6s, is longer than the 1s scrape interval).
/// (c) Then one replica is stopped for several cycles and restarted: it catches up from its
/// queue with no gap, while the other kept receiving.
fn replicas(env: &Env) -> Result<()> {
    let lab = lab(env)?;
    let selector =
        r#"{__name__=~"container_cpu_usage_seconds_total|kubelet_running_pods",namespace="col-b"}"#;
    let job = lab.wait_job(
        env,
        "col-b",
        "containers",
        CYCLES_WAIT,
        "2 cycles on both replicas",
        |j| {
            ok_cycles(j) >= 2
                && target_u64(j, "prom-b-0", "requests_ok") >= 2
                && target_u64(j, "prom-b-1", "requests_ok") >= 2
        },
    )?;
    // The real Prometheus was asked for, and answered with, streamed XOR chunks: the samples
    // compared below came through the frame reader and the XOR decoder.
    ensure!(
        job["last_read"]["response_type"] == "streamed_xor_chunks"
            && job["last_read"]["frames"].as_u64().unwrap_or(0) > 0
            && job["last_read"]["xor_chunks"].as_u64().unwrap_or(0) > 0,
        "the collector should read streamed chunks from Prometheus: {job}"
    );
    compare_replicas_with_source(env, lab, selector, &job).context("before the outage")?;

    // (c) Stop replica 1 for three cycles.
    let before = lab.job(env, "col-b", "containers")?;
    let ok0_before = target_u64(&before, "prom-b-0", "requests_ok");
    lab.col_b.lock().unwrap_or_else(|e| e.into_inner())[1].stop_keeping_data();
    let cycles_at_stop = ok_cycles(&before);
    let during = lab.wait_job(
        env,
        "col-b",
        "containers",
        CYCLES_WAIT,
        "3 cycles with replica 1 down",
        |j| ok_cycles(j) >= cycles_at_stop + 3 && target_u64(j, "prom-b-1", "queue_depth") >= 2,
    )?;
    ensure!(
        target_u64(&during, "prom-b-0", "requests_ok") >= ok0_before + 2,
        "replica 0 must keep receiving while replica 1 is down: {during}"
    );
    ensure!(
        target_u64(&during, "prom-b-1", "requests_retried") >= 1,
        "{during}"
    );
    lab.col_b.lock().unwrap_or_else(|e| e.into_inner())[1].restart()?;
    let after = lab.wait_job(
        env,
        "col-b",
        "containers",
        CYCLES_WAIT,
        "replica 1 caught up",
        |j| {
            target_u64(j, "prom-b-1", "queue_depth") == 0
                && target_u64(j, "prom-b-0", "queue_depth") == 0
        },
    )?;
    ensure!(
        target_u64(&after, "prom-b-1", "dropped_queue_full") == 0,
        "{after}"
    );
    compare_replicas_with_source(env, lab, selector, &after).context("after the catch-up")?;
    Ok(())
}

fn compare_replicas_with_source(
    env: &Env,
    lab: &CollectorLab,
    selector: &str,
    job: &Value,
) -> Result<()> {
    let start = job["first_window_start_ms"]
        .as_i64()
        .context("no first window")?;
    let end = job["collected_until_ms"]
        .as_i64()
        .context("nothing collected")?;
    let source = job["source"].as_str().context("no source member")?;
    // Everything up to `end` was queued before `collected_until_ms` moved there; wait until the
    // queues holding it are empty.
    lab.wait_job(
        env,
        "col-b",
        "containers",
        CYCLES_WAIT,
        "queues drained",
        |j| {
            target_u64(j, "prom-b-0", "queue_depth") == 0
                && target_u64(j, "prom-b-1", "queue_depth") == 0
        },
    )?;
    let want = raw_samples(env, source, selector, start, end, &[])?;
    ensure!(
        want.len() == 3,
        "the source should hold 3 col-b series, got {want:?}"
    );
    let samples: usize = want.values().map(Vec::len).sum();
    // At least one 6 s interval of 1 s scrapes per series (scraping starts a few seconds after
    // the first window does).
    ensure!(
        samples >= 3 * 6,
        "the source should hold at least 6 samples per series, got {samples} over {} s",
        (end - start) / 1000
    );
    let replicas = lab.col_b.lock().unwrap_or_else(|e| e.into_inner());
    for (i, replica) in replicas.iter().enumerate() {
        let got = raw_samples(env, &replica.url(), selector, start, end, &["metrics_path"])?;
        ensure_same_samples(&want, &got, &format!("replica {i}"))
            .with_context(|| format!("over [{start}, {end}]"))?;
    }
    Ok(())
}

/// `got` (a tenant's Prometheus) holds exactly the raw samples `want` (the source) has.
pub fn ensure_same_samples(
    want: &BTreeMap<LabelSet, Vec<(i64, String)>>,
    got: &BTreeMap<LabelSet, Vec<(i64, String)>>,
    who: &str,
) -> Result<()> {
    if got != want {
        let missing: Vec<_> = want
            .iter()
            .map(|(k, v)| {
                (
                    k.get("pod").cloned(),
                    v.len(),
                    got.get(k).map_or(0, Vec::len),
                )
            })
            .collect();
        bail!(
            "{who} differs from the source (pod, source samples, {who} samples): {missing:?}; {who} series: {:?}",
            got.keys().collect::<Vec<_>>()
        );
    }
    Ok(())
}

/// (d) The Pushgateway holds the tenant's group with the latest values.
fn pushgateway(env: &Env) -> Result<()> {
    let lab = lab(env)?;
    lab.wait_job(env, "col-d", "nodes", CYCLES_WAIT, "a push", |j| {
        target_u64(j, "pushgateway", "requests_ok") >= 1
    })?;
    let url = format!("{}/metrics", lab.pushgateway.url());
    let text = env.block_on(async { client().get(url).send().await?.text().await })?;
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("node_load1"))
        .collect();
    lines.sort();
    ensure!(
        lines.len() == 2,
        "expected the two node_load1 series: {text}"
    );
    for l in &lines {
        ensure!(l.contains(r#"job="col-d-nodes""#), "{l}");
    }
    insta::assert_snapshot!("collector_pushgateway_group", lines.join("\n"));
    Ok(())
}

/// (e) The basic-auth receiver accepts the collector with the right password and refuses the
/// wrong one; the refused CR is counted and logged and keeps cycling.
fn basic_auth(env: &Env) -> Result<()> {
    let lab = lab(env)?;
    lab.wait_job(env, "col-c", "good", CYCLES_WAIT, "a write accepted", |j| {
        target_u64(j, "remote_write", "requests_ok") >= 1
    })?;
    let bad = lab.wait_job(
        env,
        "col-c",
        "wrong-password",
        CYCLES_WAIT,
        "two 401s",
        |j| target_u64(j, "remote_write", "requests_rejected") >= 2,
    )?;
    ensure!(
        target_u64(&bad, "remote_write", "last_status") == 401,
        "{bad}"
    );
    ensure!(
        target_u64(&bad, "remote_write", "requests_ok") == 0,
        "{bad}"
    );
    ensure!(ok_cycles(&bad) >= 2, "the CR keeps collecting: {bad}");
    let series = all_series(env, &lab.auth.url(), Some(&auth_header()), lab_start_s())?;
    let names: BTreeSet<(String, String)> = series
        .iter()
        .map(|s| {
            (
                s["__name__"].clone(),
                s.get("namespace").cloned().unwrap_or_default(),
            )
        })
        .collect();
    ensure!(
        names == BTreeSet::from([("http_requests_total".to_string(), "col-c".to_string())]),
        "the receiver must hold col-c's http_requests_total only: {names:?}"
    );
    let metrics = env.block_on(async {
        client()
            .get(format!("{}/metrics", lab.proxy.admin_url()))
            .send()
            .await?
            .text()
            .await
    })?;
    ensure!(
        metrics.contains(r#"pmtp_collector_dropped_requests_total{namespace="col-c",resource="wrong-password",target="remote_write",outcome="rejected"}"#),
        "the 401s are counted on /metrics"
    );
    Ok(())
}

/// (f) A series that disappears from the source goes stale at the target instead of lingering
/// for the 5 minute lookback.
fn staleness(env: &Env) -> Result<()> {
    let lab = lab(env)?;
    let url = lab.col_a.url();
    let deadline = std::time::Instant::now() + CYCLES_WAIT;
    while instant(env, &url, r#"temp_series{id="vanishing"}"#)?.is_empty() {
        ensure!(
            std::time::Instant::now() < deadline,
            "temp_series never reached col-a"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    ensure!(
        lab.exposition.remove("a-vanishing"),
        "series already removed"
    );
    let deadline = std::time::Instant::now() + CYCLES_WAIT;
    loop {
        let vanishing = instant(env, &url, r#"temp_series{id="vanishing"}"#)?;
        let staying = instant(env, &url, r#"temp_series{id="staying"}"#)?;
        ensure!(!staying.is_empty(), "the other series must stay");
        if vanishing.is_empty() {
            return Ok(());
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "the removed series is still current at the target: {vanishing:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Invalid CRs are reported with the reason; an unusable target (missing Secret, nothing
/// listening) is reported per CR; every other CR keeps collecting.
fn bad_crs(env: &Env) -> Result<()> {
    let lab = lab(env)?;
    let url = format!("{}/debug/tenants", lab.proxy.admin_url());
    let debug = env.block_on(send(client().get(url)))?.body;
    let invalid = debug["invalid"].to_string();
    for needle in [
        "metricRelabelings[0].regex",
        "spec.remoteWrite.interval",
        "kafka",
        "X-Scope-OrgID",
    ] {
        ensure!(
            invalid.contains(needle),
            "{needle:?} not reported: {invalid}"
        );
    }
    let missing = lab.wait_job(
        env,
        "col-c",
        "missing-secret",
        CYCLES_WAIT,
        "reported",
        |j| j["state"] == "target_error",
    )?;
    let error = missing["last_error"].as_str().unwrap_or_default();
    ensure!(error.contains("Secret col-c/absent"), "{missing}");
    let unreachable = lab.wait_job(env, "col-e", "unreachable", CYCLES_WAIT, "retrying", |j| {
        target_u64(j, "gone", "requests_retried") >= 2
    })?;
    ensure!(
        unreachable["targets"]["gone"]["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("connect"),
        "{unreachable}"
    );
    lab.wait_job(
        env,
        "col-a",
        "app-metrics",
        CYCLES_WAIT,
        "still collecting",
        |j| ok_cycles(j) >= 2 && j["state"] == "ok",
    )?;
    ensure!(
        debug["collectors"].as_array().is_some_and(|c| c.len() >= 6),
        "/debug/tenants lists the collector of each CR: {}",
        debug["collectors"]
    );
    Ok(())
}

/// The two ways of reading a window (remote read, which a real Prometheus answers with streamed
/// XOR chunks that overlap the window's edges; range selectors through `/api/v1/query`, as
/// behind prom-label-proxy) return the same raw samples from the same Prometheus: a sample
/// lost or invented by the frame reader, the XOR decoder or the edge trimming fails this.
fn read_methods(env: &Env) -> Result<()> {
    use proxy::collector::source::{Method, Upstream, Window, read};
    use proxy::tenant::{Clause, LabelMatcher, MatchKind, Policy};
    let lab = lab(env)?;
    let source = lab._sources[0].url();
    let policy = Policy {
        clauses: vec![
            Clause::new(vec![
                // Not temp_series: the staleness test removes one of them meanwhile.
                LabelMatcher::new(
                    "__name__",
                    MatchKind::Regex,
                    "http_requests_total|secret_.*",
                ),
                LabelMatcher::equal("namespace", "col-a"),
            ]),
            Clause::new(vec![LabelMatcher::equal("__name__", "node_load1")]),
        ],
    };
    // Wait for 14 s of scrapes (Prometheus starts scraping about 5 s after it starts), then
    // read the 10 s before the last 2.
    let deadline = std::time::Instant::now() + CYCLES_WAIT;
    loop {
        let n = instant(env, &source, "count_over_time(node_load1[14s])")?;
        if n.len() == 2
            && n.iter().all(|s| {
                s["value"][1]
                    .as_str()
                    .is_some_and(|v| v.parse::<f64>().unwrap_or(0.0) >= 13.0)
            })
        {
            break;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "the source never scraped 14 s of data: {n:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let end_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64
        - 2000;
    let window = Window {
        start_ms: end_ms - 10_000,
        end_ms,
    };
    let pool = std::sync::Arc::new(proxy::backend::BackendPool::new(
        proxy::backend::BackendSettings {
            groups: vec![proxy::backend::GroupSettings {
                name: "src".into(),
                members: vec![source.clone()],
            }],
            probe_interval: Duration::from_secs(60),
            probe_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
            max_concurrent_requests: 4,
        },
        std::sync::Arc::new(proxy::telemetry::Metrics::new()),
    )?);
    let timeout = Duration::from_secs(10);
    let by_read = env.block_on(read(
        &Upstream::Backends(pool.clone()),
        "col-a",
        &policy,
        window,
        timeout,
        None,
        Method::RemoteRead,
    ))?;
    let by_query = env.block_on(read(
        &Upstream::Backends(pool),
        "col-a",
        &policy,
        window,
        timeout,
        None,
        Method::Query,
    ))?;
    let by_label_proxy = env.block_on(read(
        &Upstream::LabelProxy {
            url: source.clone(),
            header: "X-Tenant-Namespace".into(),
            client: client(),
        },
        "col-a",
        &policy,
        window,
        timeout,
        None,
        Method::RemoteRead,
    ))?;
    let flat = |o: &proxy::collector::source::ReadOutcome| -> Vec<(String, Vec<(i64, u64)>)> {
        o.series
            .iter()
            .map(|t| {
                (
                    format!("{:?}", t.labels),
                    t.samples
                        .iter()
                        .filter(|s| !proxy::collector::shape::is_stale(s.value))
                        .map(|s| (s.timestamp, s.value.to_bits()))
                        .collect(),
                )
            })
            .collect()
    };
    use proxy::collector::stream::ResponseType;
    // Remote read against a real Prometheus streams XOR chunks (what the collector asks for
    // first); the label-proxy path falls back to query mode.
    ensure!(
        by_read.stats.response_type == ResponseType::StreamedXorChunks
            && by_read.stats.frames >= 5
            && by_read.stats.xor_chunks >= 5,
        "remote read was not streamed: {:?}",
        by_read.stats
    );
    ensure!(by_query.stats.response_type == ResponseType::Query);
    let (a, b, c) = (flat(&by_read), flat(&by_query), flat(&by_label_proxy));
    // col-a: 2 http_requests_total + secret_debug_total; node_load1: 2.
    ensure!(a.len() == 5, "expected 5 series, got {}", a.len());
    for (labels, samples) in &a {
        ensure!(
            samples.len() >= 8
                && samples
                    .iter()
                    .all(|(t, _)| *t >= window.start_ms && *t <= window.end_ms),
            "about 10 samples at 1s inside the window for {labels}: {samples:?}"
        );
    }
    ensure!(a == b, "remote read and query mode differ:\n{a:?}\n{b:?}");
    ensure!(a == c, "remote read and the label-proxy path differ");
    Ok(())
}

/// The engine gives what Prometheus' own `metric_relabel_configs` give for the same rules and
/// series (capture groups, hashmod, labelmap, labeldrop, case actions, keepequal, drop, Go's
/// ASCII-only `\d`, separators).
fn relabel_parity(env: &Env) -> Result<()> {
    use crate::collector_lab::{PROMETHEUS_RELABEL_RULES, RELABEL_EXPOSITION};
    let lab = lab(env)?;
    let source = lab._sources[0].url();
    let deadline = std::time::Instant::now() + CYCLES_WAIT;
    let stored: BTreeSet<LabelSet> = loop {
        let got = all_series(env, &source, None, lab_start_s())?;
        let got: BTreeSet<LabelSet> = got
            .into_iter()
            .filter(|s| s["__name__"].starts_with("rl_"))
            .collect();
        if !got.is_empty() {
            break got;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "Prometheus never scraped /relabel"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let camel = PROMETHEUS_RELABEL_RULES
        .replace("source_labels", "sourceLabels")
        .replace("target_label", "targetLabel");
    let rules: Vec<proxy::relabel::RelabelConfig> = serde_saphyr::from_str(&camel)?;
    let program =
        proxy::relabel::RelabelProgram::compile(&rules).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut ours = BTreeSet::new();
    for line in RELABEL_EXPOSITION.lines() {
        let (name, rest) = line.split_once('{').context("exposition line")?;
        let body = rest.rsplit_once('}').context("exposition line")?.0;
        let mut labels = vec![proxy::remote_write::Label {
            name: "__name__".into(),
            value: name.into(),
        }];
        for pair in body.split("\",") {
            let (k, v) = pair.split_once("=\"").context("label pair")?;
            labels.push(proxy::remote_write::Label {
                name: k.into(),
                value: v.trim_end_matches('"').into(),
            });
        }
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        if program.apply(&mut labels) {
            ours.insert(
                labels
                    .into_iter()
                    .map(|l| (l.name, l.value))
                    .collect::<LabelSet>(),
            );
        }
    }
    ensure!(
        ours.len() == 3,
        "two of five series are dropped by the rules: {ours:?}"
    );
    ensure!(
        ours == stored,
        "engine and Prometheus differ:\nengine:     {ours:?}\nprometheus: {stored:?}"
    );
    Ok(())
}

/// With `state_directory`, a proxy that stops and starts again continues from where it
/// stopped reading: the target holds every source sample across the downtime.
fn restart_continuity(env: &Env) -> Result<()> {
    let lab = lab(env)?;
    let source = lab._sources[0].url();
    let target = e2e::Prometheus::start("col-r", None)?;
    let dirs = (tempfile::tempdir()?, tempfile::tempdir()?);
    std::fs::write(
        dirs.0.path().join("r.yaml"),
        r#"apiVersion: observability.ethos.io/v1alpha1
kind: MetricAccess
metadata: {name: nodes, namespace: col-r}
spec:
  metrics: [node_load1]
  remoteWrite:
    enabled: true
    interval: 5s
    target: {type: prometheus}
    prometheus: {serviceName: prom, servicePort: 9090}
"#,
    )?;
    let config = format!(
        r#"server: {{listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}}
tenants: {{source: file, directory: "{tenants}"}}
proxy: {{enable_request_logging: false}}
backends: {{groups: [{{name: infra, members: ["{source}"]}}]}}
auth: {{mode: header}}
remote_write:
  enabled: true
  collection_lag: 2s
  state_directory: "{state}"
  address_overrides: {{"prom.col-r.svc:9090": "{target}"}}
"#,
        tenants = dirs.0.path().display(),
        state = dirs.1.path().display(),
        target = target.url(),
    );
    let start = || -> Result<proxy::app::RunningProxy> {
        let c = proxy::config::Config::from_yaml(&config, "restart")?;
        env.block_on(proxy::app::start(c, None))
    };
    let job_of = |p: &proxy::app::RunningProxy| -> Value {
        p.state.collector().status_json()["resources"][0].clone()
    };
    let wait = |p: &proxy::app::RunningProxy, cycles: u64| -> Result<Value> {
        let deadline = std::time::Instant::now() + CYCLES_WAIT;
        loop {
            let j = job_of(p);
            if ok_cycles(&j) >= cycles && target_u64(&j, "prom", "requests_ok") >= cycles {
                return Ok(j);
            }
            ensure!(std::time::Instant::now() < deadline, "no progress: {j}");
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    let first = start()?;
    let before = wait(&first, 2)?;
    let from = before["first_window_start_ms"]
        .as_i64()
        .context("first window")?;
    env.block_on(first.shutdown())?;
    // Down for more than one interval: without the saved position this time would be lost.
    std::thread::sleep(Duration::from_secs(8));
    let second = start()?;
    let after = wait(&second, 2)?;
    ensure!(
        after["first_window_start_ms"].as_i64()
            == before["collected_until_ms"].as_i64().map(|t| t + 1),
        "the restarted job must start right after the saved position: before {before}, after {after}"
    );
    let until = after["collected_until_ms"].as_i64().context("collected")?;
    env.block_on(second.shutdown())?;
    let selector = "node_load1";
    let want = raw_samples(env, &source, selector, from, until, &[])?;
    let got = raw_samples(env, &target.url(), selector, from, until, &[])?;
    let n: usize = want.values().map(Vec::len).sum();
    ensure!(
        n >= 2 * 20,
        "the source should hold 20+ s of samples per series: {n}"
    );
    ensure!(
        got == want,
        "the target lacks samples of the downtime: source {n} samples, target {}",
        got.values().map(Vec::len).sum::<usize>()
    );
    Ok(())
}
