//! Smoke test of the harness against a real Prometheus: start, seed, read back.

use std::time::Duration;

use crate::api;
use crate::prometheus::Prometheus;
use crate::seed::{SeedWindow, seed};
use crate::tools::{prometheus_bin, skip_or_fail};
use crate::workload::{self, SeriesDef};

#[test]
fn seeded_values_read_back_exactly() {
    if prometheus_bin().is_none() {
        skip_or_fail("Prometheus binary not found; run `cargo xtask tools` or set PROMETHEUS_BIN");
        return;
    }
    let all = workload::series();
    // Ten series of different kinds: constants, a step counter, float counters, a wave.
    let picks: Vec<&SeriesDef> = [
        "up",
        "kube_pod_info",
        "kube_pod_container_status_restarts_total",
        "kube_deployment_status_replicas_available",
        "container_cpu_usage_seconds_total",
        "container_memory_working_set_bytes",
        "node_cpu_seconds_total",
        "node_load1",
        "http_requests_total",
        "http_request_duration_seconds_bucket",
    ]
    .iter()
    .map(|name| all.iter().find(|s| s.name() == *name).unwrap())
    .collect();
    let w = SeedWindow::ending_now(Duration::from_secs(600), Duration::from_secs(15));
    let prom = Prometheus::start("smoke", None).unwrap();
    let written = seed(&prom.url(), &picks, &w).unwrap();
    assert_eq!(written, 10 * 41);

    let client = api::client().unwrap();
    for s in &picks {
        let data = api::block_on(api::query(&client, &prom.url(), &s.selector(), w.end_ms))
            .unwrap()
            .unwrap();
        let got = api::single_value(&data).unwrap_or_else(|| panic!("{}: {data}", s.selector()));
        assert_eq!(got, workload::value(s, w.end_ms), "{}", s.selector());
    }
    // A rate over the window proves the whole history landed, not just the last sample.
    let counter = picks[4];
    // 595s: 40 samples whether the range is closed (Prometheus 2) or left-open (3) at its start.
    let q = format!("count_over_time({}[595s])", counter.selector());
    let data = api::block_on(api::query(&client, &prom.url(), &q, w.end_ms))
        .unwrap()
        .unwrap();
    assert_eq!(api::single_value(&data), Some(40.0), "{data}");
    prom.kill();
}

#[test]
fn shared_lab_members_hold_identical_data() {
    if prometheus_bin().is_none() {
        skip_or_fail("Prometheus binary not found; run `cargo xtask tools` or set PROMETHEUS_BIN");
        return;
    }
    let lab = crate::lab::SharedLab::start().unwrap();
    assert_eq!(lab.infra.len(), 2);
    let client = api::client().unwrap();
    let t = lab.window.end_ms;
    let mut counts = Vec::new();
    for url in lab.infra_urls() {
        let data = api::block_on(api::query(&client, &url, "count({__name__=~\".+\"})", t))
            .unwrap()
            .unwrap();
        counts.push(api::single_value(&data));
        // A counter's increase over the whole hour proves the start of the window landed too.
        let s = lab
            .series
            .iter()
            .find(|s| s.name() == "node_cpu_seconds_total")
            .unwrap();
        let q = format!("{} - {} offset 1h", s.selector(), s.selector());
        let data = api::block_on(api::query(&client, &url, &q, t))
            .unwrap()
            .unwrap();
        let want = workload::value(s, t) - workload::value(s, t - 3_600_000);
        let got = api::single_value(&data).unwrap();
        assert!((got - want).abs() <= 1e-9 * want.abs(), "{got} vs {want}");
    }
    assert_eq!(counts, vec![Some(lab.series.len() as f64); 2]);
}

#[test]
fn prometheus_scrapes_the_workload_exposition() {
    if prometheus_bin().is_none() {
        skip_or_fail("Prometheus binary not found; run `cargo xtask tools` or set PROMETHEUS_BIN");
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, crate::lab::workload_router()).await });
    let config = format!(
        "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: lab\n    honor_labels: true\n    static_configs: [{{targets: ['{addr}']}}]\n"
    );
    let prom = Prometheus::start("scrape", Some(&config)).unwrap();
    let client = api::client().unwrap();
    let want = workload::series().len() as f64;
    let q = r#"count({__name__=~".+", job!="lab"})"#;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let data = api::block_on(api::query(&client, &prom.url(), q, now_ms))
            .unwrap()
            .unwrap();
        let got = api::single_value(&data);
        if got == Some(want) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "scraped {got:?} series, want {want}; log {}",
            prom.log_path().display()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Every exposed sample was ingested: none dropped as a duplicate or a parse error.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let q = r#"scrape_samples_post_metric_relabeling{job="lab"}"#;
    let data = api::block_on(api::query(&client, &prom.url(), q, now_ms))
        .unwrap()
        .unwrap();
    assert_eq!(api::single_value(&data), Some(want), "{data}");
    let log = std::fs::read_to_string(prom.log_path()).unwrap();
    assert!(
        !log.contains("level=error") && !log.contains("level=warn msg=\"Error"),
        "{log}"
    );
    drop(rt);
}

#[test]
fn basic_auth_prometheus_rejects_anonymous_requests() {
    if prometheus_bin().is_none() {
        skip_or_fail("Prometheus binary not found; run `cargo xtask tools` or set PROMETHEUS_BIN");
        return;
    }
    let opts = crate::prometheus::StartOptions {
        basic_auth: Some(("alice".into(), "s3cret: \"pw\"".into())),
        ..Default::default()
    };
    let prom = Prometheus::start_with("basic-auth", None, &opts).unwrap();
    let client = api::client().unwrap();
    let url = format!("{}/api/v1/query?query=up", prom.url());
    let status = |auth: Option<(&str, &str)>| {
        api::block_on(async {
            let mut req = client.get(&url);
            if let Some((user, password)) = auth {
                req = req.basic_auth(user, Some(password));
            }
            req.send().await.map(|r| r.status().as_u16())
        })
        .unwrap()
        .unwrap()
    };
    assert_eq!(status(None), 401);
    assert_eq!(status(Some(("alice", "wrong"))), 401);
    assert_eq!(status(Some(("alice", "s3cret: \"pw\""))), 200);
    prom.kill();
}
