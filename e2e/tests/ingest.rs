//! The ingest gateway against real processes: an agent-mode Prometheus sends through it to a
//! storage Prometheus.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::ingest_lab::{
    AGENT_TENANT, IngestLab, by_name, counter, gateway_config, metrics_text, now_ms, post_write,
    stored_samples, stored_series, wait_until, write_body,
};
use crate::support::{Case, Env, LabelSet, case, client, send};

pub fn cases() -> Vec<Case> {
    vec![
        case(
            "agent_series_reach_storage_governed_and_survive_an_outage",
            agent_to_storage,
        ),
        case("cardinality_limit_keeps_existing_series", cardinality),
        case("bad_input_is_refused_with_reasons", bad_input),
        case("the_spill_survives_a_gateway_crash", spill_restart),
    ]
}

const WAIT: Duration = Duration::from_secs(60);
const PROTOBUF: &str = "application/x-protobuf";

fn lab(env: &Env) -> Result<&IngestLab> {
    env.ingest_lab()
}

fn top(env: &Env, lab: &IngestLab, by: &str) -> Result<Vec<Value>> {
    let url = format!(
        "{}/api/v1/governance/top?tenant={AGENT_TENANT}&by={by}&limit=20",
        lab.gateway.admin_url()
    );
    let answer = env.block_on(send(client().get(url)))?;
    Ok(answer.body["data"].as_array().cloned().unwrap_or_default())
}

/// The agent's series reach storage with the tenant header, relabeled and governed; then
/// storage is stopped for a minute while the agent keeps sending, and afterwards storage holds
/// every sample the gateway acknowledged (the recorder saw each forwarded request).
fn agent_to_storage(env: &Env) -> Result<()> {
    let lab = lab(env)?;
    let selector = r#"{job="agent-app"}"#;
    let mut stored = BTreeSet::new();
    let waited = wait_until(WAIT, "the agent's series in storage", || {
        stored = stored_series(env, &lab.storage_url(), selector)?;
        Ok(stored.len() >= 3)
    });
    if let Err(e) = waited {
        let m = metrics_text(env, &lab.gateway.admin_url())?;
        let requests: Vec<&str> = m.lines().filter(|l| l.starts_with("pmtp_ingest")).collect();
        anyhow::bail!(
            "{e}: stored {stored:?}; gateway {:?}; agent log: {}",
            requests,
            std::fs::read_to_string(lab._agent.log_path()).unwrap_or_default()
        );
    }
    for s in &stored {
        ensure!(
            !s.contains_key("uid"),
            "label_drops: uid must be gone: {s:?}"
        );
        ensure!(s["__name__"] != "debug_allocs_total", "relabel drop: {s:?}");
        ensure!(
            s.get("team").map(String::as_str) == Some("a"),
            "naming (required team): {s:?}"
        );
    }
    let text: String = stored.iter().map(|s| format!("{s:?}\n")).collect();
    insta::assert_snapshot!("ingest_stored_series", text);
    {
        let requests = lab
            .recorder
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let agent: Vec<_> = requests
            .iter()
            .filter(|r| {
                r.series
                    .iter()
                    .any(|(l, _)| l.get("job").map(String::as_str) == Some("agent-app"))
            })
            .collect();
        ensure!(!agent.is_empty(), "the recorder saw no agent request");
        ensure!(
            agent
                .iter()
                .all(|r| r.tenant.as_deref() == Some(AGENT_TENANT)),
            "every forwarded request carries X-Scope-OrgID: {AGENT_TENANT}"
        );
    }
    // Top offenders: active series per metric, and what was dropped why.
    let by_series = top(env, lab, "series")?;
    let view: Vec<String> = by_series
        .iter()
        .map(|e| {
            format!(
                "{} active={}",
                e["metric"].as_str().unwrap_or(""),
                e["active_series"]
            )
        })
        .collect();
    insta::assert_snapshot!("ingest_top_by_series", view.join("\n"));
    let drops = top(env, lab, "drops")?;
    let reasons: BTreeSet<String> = drops
        .iter()
        .flat_map(|e| {
            let metric = e["metric"].as_str().unwrap_or("").to_string();
            e["drops"]
                .as_object()
                .into_iter()
                .flatten()
                .map(move |(reason, _)| format!("{metric}: {reason}"))
        })
        .collect();
    for want in [
        "debug_allocs_total: relabel",
        "orphan_metric: naming",
        "up: naming",
    ] {
        ensure!(
            reasons.contains(want),
            "{want:?} not among the top drops: {reasons:?}"
        );
    }

    // Storage down for a minute; the agent keeps sending, the gateway keeps acknowledging.
    let outage_start = now_ms();
    lab.storage
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .stop_keeping_data();
    std::thread::sleep(Duration::from_secs(60));
    let outage_end = now_ms();
    let queued = lab.queue_depth(env, "storage")?;
    ensure!(
        queued > 0,
        "requests should be queued for storage during its outage"
    );
    let during = lab.debug(env)?;
    ensure!(
        crate::ingest_lab::shard_sum(&during, "storage", "requests_retried") > 0,
        "{during}"
    );
    lab.storage
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .restart()?;
    // Everything forwarded before this point must end up in storage: take the recorder's view,
    // then wait until the storage queue has been empty once (it is FIFO).
    let acknowledged: BTreeSet<(LabelSet, i64)> = lab
        .recorder
        .samples(AGENT_TENANT)
        .into_iter()
        .filter(|(l, _)| l.get("job").map(String::as_str) == Some("agent-app"))
        .collect();
    wait_until(
        Duration::from_secs(120),
        "the storage queue to drain",
        || Ok(lab.queue_depth(env, "storage")? == 0),
    )?;
    let in_storage = stored_samples(env, &lab.storage_url(), selector)?;
    let missing: Vec<_> = acknowledged.difference(&in_storage).take(5).collect();
    ensure!(
        missing.is_empty(),
        "{} of {} acknowledged samples are not in storage, e.g. {missing:?} (queued during the outage: {queued})",
        acknowledged.difference(&in_storage).count(),
        acknowledged.len()
    );
    // The agent scrapes 3 kept series every second; even on a loaded machine at least half of
    // the outage must have been acknowledged (and, above, found in storage).
    let during_outage = acknowledged
        .iter()
        .filter(|(_, t)| (outage_start..outage_end).contains(t))
        .count();
    ensure!(
        during_outage >= 3 * 30,
        "samples acknowledged during the outage: {during_outage}, expected about 180"
    );
    Ok(())
}

/// A tenant over its series limit keeps its existing series and loses only new ones, counted
/// under the right reason.
fn cardinality(env: &Env) -> Result<()> {
    let lab = lab(env)?;
    let gw = lab.gateway.api_url();
    let t = now_ms();
    let s = |pod: &'static str| ("card_metric", [("pod", pod)]);
    let first = [s("1"), s("2"), s("3")];
    let first: Vec<(&str, &[(&str, &str)])> = first.iter().map(|(n, l)| (*n, &l[..])).collect();
    let (status, text) = post_write(env, &gw, Some("card-t"), write_body(&first, t), PROTOBUF)?;
    ensure!(status == 204, "{status} {text}");
    let second = [s("1"), s("4"), s("5")];
    let second: Vec<(&str, &[(&str, &str)])> = second.iter().map(|(n, l)| (*n, &l[..])).collect();
    let (status, text) = post_write(
        env,
        &gw,
        Some("card-t"),
        write_body(&second, t + 1000),
        PROTOBUF,
    )?;
    ensure!(
        status == 204,
        "drops are not errors for the sender: {status} {text}"
    );
    wait_until(WAIT, "card-t at the recorder", || {
        Ok(lab.recorder.samples("card-t").len() >= 4)
    })?;
    std::thread::sleep(Duration::from_millis(500));
    let got: BTreeSet<(String, i64)> = lab
        .recorder
        .samples("card-t")
        .into_iter()
        .map(|(l, ts)| (l["pod"].clone(), ts))
        .collect();
    let want: BTreeSet<(String, i64)> = [("1", t), ("2", t), ("3", t), ("1", t + 1000)]
        .into_iter()
        .map(|(p, ts)| (p.to_string(), ts))
        .collect();
    ensure!(got == want, "forwarded {got:?}, expected {want:?}");
    let m = metrics_text(env, &lab.gateway.admin_url())?;
    let dropped = counter(
        &m,
        r#"pmtp_ingest_dropped_series_total{tenant="card-t",reason="cardinality_tenant",dry_run="false"}"#,
    );
    ensure!(
        dropped == 2.0,
        "2 new series over the limit counted, got {dropped}"
    );
    Ok(())
}

/// Each bad request gets its 4xx and is counted under its reason; the process stays up and
/// other tenants' traffic goes on.
fn bad_input(env: &Env) -> Result<()> {
    let lab = lab(env)?;
    let gw = lab.gateway.api_url();
    let admin = lab.gateway.admin_url();
    let t = now_ms();
    let good = write_body(&[("ok_total", &[("a", "1")])], t);
    let mut truncated = good.clone();
    truncated.truncate(good.len() / 2);
    let bomb = b"\xff\xff\xff\xff\x0f\x00\x00".to_vec();
    let garbage = snap::raw::Encoder::new().compress_vec(b"\xff\xfe not a protobuf message")?;
    let many_labels: Vec<(String, String)> = (0..10_000)
        .map(|i| (format!("l{i}"), "v".to_string()))
        .collect();
    let many: Vec<(&str, &str)> = many_labels
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let wide = write_body(&[("wide_total", &many)], t);
    let dup = write_body(&[("dup_total", &[("a", "1"), ("a", "2")])], t);
    let nameless = {
        use proxy::remote_write::{Label, Sample, TimeSeries, WriteRequest};
        proxy::remote_write::encode_write_request(&WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "job".into(),
                    value: "x".into(),
                }],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: t,
                }],
                ..Default::default()
            }],
            metadata: vec![],
        })
    };
    let future = write_body(&[("future_total", &[])], t + 3_600_000);
    let badly_named = write_body(&[("BadName", &[])], t);
    let huge = vec![0u8; 11 * 1024 * 1024];
    // (what, tenant, body, content type, expected status, refusal reason counted)
    type BadCase<'a> = (
        &'a str,
        Option<&'a str>,
        Vec<u8>,
        &'a str,
        u16,
        Option<&'a str>,
    );
    let cases: Vec<BadCase> = vec![
        (
            "truncated snappy",
            Some("bad-t"),
            truncated,
            PROTOBUF,
            400,
            Some("snappy"),
        ),
        (
            "snappy bomb",
            Some("bad-t"),
            bomb,
            PROTOBUF,
            413,
            Some("too_large"),
        ),
        (
            "garbage protobuf",
            Some("bad-t"),
            garbage,
            PROTOBUF,
            400,
            Some("protobuf"),
        ),
        (
            "10k labels",
            Some("bad-t"),
            wide,
            PROTOBUF,
            400,
            Some("too_many_labels"),
        ),
        (
            "empty body",
            Some("bad-t"),
            Vec::new(),
            PROTOBUF,
            400,
            Some("empty_body"),
        ),
        (
            "wrong content type",
            Some("bad-t"),
            good.clone(),
            "application/json",
            415,
            Some("content_type"),
        ),
        (
            "duplicate label",
            Some("bad-t"),
            dup,
            PROTOBUF,
            400,
            Some("duplicate_label"),
        ),
        (
            "no metric name",
            Some("bad-t"),
            nameless,
            PROTOBUF,
            400,
            Some("missing_name"),
        ),
        (
            "an hour ahead",
            Some("bad-t"),
            future,
            PROTOBUF,
            400,
            Some("too_far_in_future"),
        ),
        (
            "naming reject",
            Some("strict-t"),
            badly_named,
            PROTOBUF,
            400,
            None,
        ),
        ("no tenant", None, good.clone(), PROTOBUF, 401, None),
        (
            "over max_body_bytes",
            Some("bad-t"),
            huge,
            PROTOBUF,
            413,
            None,
        ),
    ];
    for (what, tenant, body, ct, want, reason) in cases {
        let before = metrics_text(env, &admin)?;
        let (status, text) = match post_write(env, &gw, tenant, body, ct) {
            Ok(answer) => answer,
            // Refusing an oversized body, the gateway answers 413 without reading the body
            // and closes the connection; the client may see the close (a broken pipe)
            // before the answer. The gateway's own count shows what it answered.
            Err(e) if want == 413 && is_broken_connection(&e) => {
                let line = r#"pmtp_ingest_requests_total{code="413"}"#;
                let after = metrics_text(env, &admin)?;
                ensure!(
                    counter(&after, line) == counter(&before, line) + 1.0,
                    "{what}: the connection broke ({e:#}) and no 413 was counted"
                );
                continue;
            }
            Err(e) => return Err(e),
        };
        ensure!(
            status == want,
            "{what}: expected {want}, got {status} {text}"
        );
        ensure!(!text.trim().is_empty(), "{what}: the answer says why");
        if let Some(reason) = reason {
            let line = format!(r#"pmtp_ingest_refused_series_total{{reason="{reason}"}}"#);
            let after = metrics_text(env, &admin)?;
            ensure!(
                counter(&after, &line) == counter(&before, &line) + 1.0,
                "{what}: {line} must grow by one"
            );
        }
    }
    let m = metrics_text(env, &admin)?;
    ensure!(
        counter(
            &m,
            r#"pmtp_ingest_dropped_series_total{tenant="strict-t",reason="naming",dry_run="false"}"#
        ) >= 1.0,
        "the naming rejection is counted"
    );
    let (status, text) = post_write(env, &gw, Some("after-bad-t"), good, PROTOBUF)?;
    ensure!(status == 204, "other traffic still flows: {status} {text}");
    wait_until(WAIT, "after-bad-t forwarded", || {
        Ok(!lab.recorder.samples("after-bad-t").is_empty())
    })?;
    Ok(())
}

/// With the disk spill, requests the gateway acknowledged while storage was down survive the
/// gateway being killed (dropped, no graceful drain) and reach storage after a restart.
fn spill_restart(env: &Env) -> Result<()> {
    let mut storage = e2e::Prometheus::start("spill-storage", None)?;
    let url = format!("{}/api/v1/write", storage.url());
    storage.stop_keeping_data();
    let tenants = tempfile::tempdir()?;
    let spill = tempfile::tempdir()?;
    let config = gateway_config(
        &tenants.path().display().to_string(),
        &[("storage", url)],
        &spill.path().display().to_string(),
    );
    let start = || -> Result<proxy::app::RunningProxy> {
        let c = proxy::config::Config::from_yaml(&config, "spill")?;
        env.block_on(proxy::app::start(c, None))
    };
    let gateway = start()?;
    let t = now_ms() - 60_000;
    for i in 0..5 {
        let body = write_body(&[("spilled_total", &[("i", "x")])], t + i * 1000);
        let (status, text) = post_write(env, &gateway.api_url(), Some("spill-t"), body, PROTOBUF)?;
        ensure!(
            status == 204,
            "accepted while storage is down: {status} {text}"
        );
    }
    let mut files = 0;
    for dir in std::fs::read_dir(spill.path())? {
        let dir = dir?.path();
        files += std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "rw"))
            .count();
    }
    ensure!(files == 5, "5 requests on disk, found {files}");
    drop(gateway); // a crash: no drain
    storage.restart()?;
    let gateway = start()?;
    let debug_url = format!("{}/debug/ingest", gateway.admin_url());
    wait_until(WAIT, "the spill to drain after the restart", || {
        let d = env.block_on(send(client().get(&debug_url)))?.body;
        Ok(
            crate::ingest_lab::shard_sum(&d, "storage", "queue_depth") == 0
                && crate::ingest_lab::shard_sum(&d, "storage", "requests_ok") >= 5,
        )
    })?;
    let stored = stored_samples(env, &storage.url(), "spilled_total")?;
    let times: Vec<i64> = stored.iter().map(|(_, ts)| *ts).collect();
    let want: Vec<i64> = (0..5).map(|i| t + i * 1000).collect();
    ensure!(
        times == want,
        "storage holds {times:?}, expected {want:?} ({:?})",
        by_name(&stored.iter().map(|(l, _)| l.clone()).collect())
    );
    env.block_on(gateway.shutdown()).context("shutdown")?;
    Ok(())
}

/// The peer closed the connection while the request was being written.
fn is_broken_connection(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}");
    text.contains("Broken pipe") || text.contains("Connection reset")
}
