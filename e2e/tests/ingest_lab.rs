//! The ingest gateway's lab, started on first use by the ingest tests and dropped with [`Env`]:
//! a real agent-mode Prometheus scraping an in-process exposition and remote-writing through
//! the gateway (an in-process proxy with a disk spill) to two destinations: a storage
//! Prometheus, and a recorder that keeps every request's headers and series (what the gateway
//! forwarded, i.e. acknowledged).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};

use crate::support::{Env, LabelSet};

/// The agent's tenant and the rules the gateway applies to it.
pub const AGENT_TENANT: &str = "agent-a";

const EXPOSITION: &str = r#"app_requests_total{team="a",path="/x",uid="u1",job="agent-app",instance="w"} COUNTER
app_requests_total{team="a",path="/y",uid="u2",job="agent-app",instance="w"} COUNTER
app_temperature{team="a",job="agent-app",instance="w"} 21.5
debug_allocs_total{team="a",job="agent-app",instance="w"} COUNTER
orphan_metric{job="agent-app",instance="w"} 1
"#;

/// One request the recorder received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub tenant: Option<String>,
    /// Series labels and their sample timestamps.
    pub series: Vec<(LabelSet, Vec<i64>)>,
}

#[derive(Default)]
pub struct Recorder {
    pub requests: Mutex<Vec<Recorded>>,
}

impl Recorder {
    /// Every (series, timestamp) forwarded for `tenant`.
    pub fn samples(&self, tenant: &str) -> BTreeSet<(LabelSet, i64)> {
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        requests
            .iter()
            .filter(|r| r.tenant.as_deref() == Some(tenant))
            .flat_map(|r| {
                r.series
                    .iter()
                    .flat_map(|(l, ts)| ts.iter().map(move |t| (l.clone(), *t)))
            })
            .collect()
    }
}

pub struct IngestLab {
    pub storage: Mutex<e2e::Prometheus>,
    pub _agent: e2e::Prometheus,
    pub recorder: Arc<Recorder>,
    pub gateway: proxy::app::RunningProxy,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

/// Tenants that may send, each with the bearer token `token-<tenant>`. (Debian's Prometheus
/// 2.42 sends no custom `headers:` of its remote_write config, so the agent can't set
/// `X-Scope-OrgID`; its `authorization:` credentials do arrive.)
pub const SENDERS: [&str; 6] = [
    "agent-a",
    "card-t",
    "strict-t",
    "bad-t",
    "after-bad-t",
    "spill-t",
];

pub fn token(tenant: &str) -> String {
    format!("token-{tenant}")
}

/// The gateway's config: `destinations` and the spill directory vary per test.
pub fn gateway_config(tenants_dir: &str, destinations: &[(&str, String)], spill: &str) -> String {
    use sha2::Digest;
    let tokens: String = SENDERS
        .iter()
        .map(|t| {
            let hash = sha2::Sha256::digest(token(t).as_bytes());
            let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
            format!("      - {{tenant: {t}, sha256: \"{hex}\"}}\n")
        })
        .collect();
    let dests: String = destinations
        .iter()
        .map(|(name, url)| format!("      - {{name: {name}, url: \"{url}\"}}\n"))
        .collect();
    format!(
        r#"server: {{listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}}
tenants: {{source: file, directory: "{tenants_dir}"}}
proxy: {{enable_request_logging: false}}
backends: {{probe_interval: 60s, groups: [{{name: infra, members: ["http://127.0.0.1:9"]}}]}}
auth:
  mode: bearer
  bearer:
    tokens:
{tokens}ingest:
  enabled: true
  forward:
    destinations:
{dests}    spill_directory: "{spill}"
    batch_series: 500
    min_backoff: 200ms
    max_backoff: 2s
  governance:
    tenants:
      agent-a:
        label_drops: [uid]
        relabel:
          - {{source_labels: [__name__], regex: "debug_.*", action: drop}}
        naming: {{required_labels: [team], action: drop}}
      card-t:
        cardinality: {{max_series: 3}}
      strict-t:
        naming: {{metric_name_regex: "[a-z_]+_total", action: reject}}
"#
    )
}

impl IngestLab {
    pub fn start(env: &Env) -> Result<IngestLab> {
        let t0 = Instant::now();
        let started = Instant::now();
        let app = Router::new().route(
            "/metrics",
            get(move || async move {
                let v = started.elapsed().as_secs_f64();
                EXPOSITION.replace("COUNTER", &format!("{v}"))
            }),
        );
        let listener = env.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let exposition = listener.local_addr()?;
        env.rt
            .spawn(async move { axum::serve(listener, app).await });

        let recorder = Arc::new(Recorder::default());
        let r = recorder.clone();
        let app = Router::new().route(
            "/api/v1/write",
            post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let r = r.clone();
                async move {
                    let Ok(req) = proxy::remote_write::decode_write_request(&body, 64 << 20) else {
                        return StatusCode::BAD_REQUEST;
                    };
                    let tenant = headers
                        .get("x-scope-orgid")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let series = req
                        .timeseries
                        .iter()
                        .map(|t| {
                            (
                                t.labels
                                    .iter()
                                    .map(|l| (l.name.clone(), l.value.clone()))
                                    .collect(),
                                t.samples.iter().map(|s| s.timestamp).collect(),
                            )
                        })
                        .collect();
                    r.requests
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(Recorded { tenant, series });
                    StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = env.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let recorder_url = format!("http://{}/api/v1/write", listener.local_addr()?);
        env.rt
            .spawn(async move { axum::serve(listener, app).await });

        let storage = e2e::Prometheus::start("ingest-storage", None)?;
        let tenants = tempfile::tempdir()?;
        let spill = tempfile::tempdir()?;
        let config = gateway_config(
            &tenants.path().display().to_string(),
            &[
                ("storage", format!("{}/api/v1/write", storage.url())),
                ("recorder", recorder_url),
            ],
            &spill.path().display().to_string(),
        );
        let config = proxy::config::Config::from_yaml(&config, "ingest-lab")?;
        let gateway = env.block_on(proxy::app::start(config, None))?;
        let agent_config = format!(
            r#"global: {{scrape_interval: 1s, scrape_timeout: 1s}}
scrape_configs:
  - job_name: agent-app
    honor_labels: true
    static_configs: [{{targets: ["{exposition}"]}}]
remote_write:
  - url: "{}/api/v1/write"
    authorization: {{credentials: {}}}
    queue_config: {{batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 2s}}
"#,
            gateway.api_url(),
            token(AGENT_TENANT)
        );
        let agent = e2e::Prometheus::start_with(
            "ingest-agent",
            Some(&agent_config),
            &e2e::prometheus::StartOptions {
                agent: true,
                ..Default::default()
            },
        )?;
        eprintln!("e2e: ingest lab started in {:.1?}", t0.elapsed());
        Ok(IngestLab {
            storage: Mutex::new(storage),
            _agent: agent,
            recorder,
            gateway,
            _dirs: (tenants, spill),
        })
    }

    pub fn storage_url(&self) -> String {
        self.storage.lock().unwrap_or_else(|e| e.into_inner()).url()
    }

    /// `/debug/ingest` of the gateway.
    pub fn debug(&self, env: &Env) -> Result<serde_json::Value> {
        let url = format!("{}/debug/ingest", self.gateway.admin_url());
        Ok(env
            .block_on(crate::support::send(crate::support::client().get(url)))?
            .body)
    }

    /// Requests waiting for `destination` (over its shards).
    pub fn queue_depth(&self, env: &Env, destination: &str) -> Result<u64> {
        Ok(shard_sum(&self.debug(env)?, destination, "queue_depth"))
    }
}

/// Poll until `ready()` or fail after `timeout` with `what`.
pub fn wait_until(
    timeout: Duration,
    what: &str,
    mut ready: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready()? {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// One remote-write body of `series` (name, labels) with one sample each at `ts_ms`.
pub fn write_body(series: &[(&str, &[(&str, &str)])], ts_ms: i64) -> Vec<u8> {
    use proxy::remote_write::{Label, Sample, TimeSeries, WriteRequest};
    let timeseries = series
        .iter()
        .map(|(name, labels)| {
            let mut l = vec![Label {
                name: "__name__".into(),
                value: name.to_string(),
            }];
            l.extend(labels.iter().map(|(n, v)| Label {
                name: n.to_string(),
                value: v.to_string(),
            }));
            TimeSeries {
                labels: l,
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: ts_ms,
                }],
                ..Default::default()
            }
        })
        .collect();
    proxy::remote_write::encode_write_request(&WriteRequest {
        timeseries,
        metadata: Vec::new(),
    })
}

/// POST a remote-write body to the gateway as `tenant` (its bearer token); status and text.
pub fn post_write(
    env: &Env,
    gateway: &str,
    tenant: Option<&str>,
    body: Vec<u8>,
    content_type: &str,
) -> Result<(u16, String)> {
    let mut req = crate::support::client()
        .post(format!("{gateway}/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", content_type)
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body);
    if let Some(t) = tenant {
        req = req.header("Authorization", format!("Bearer {}", token(t)));
    }
    env.block_on(async {
        let r = req.send().await?;
        let status = r.status().as_u16();
        Ok((status, r.text().await?))
    })
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Label sets of `selector` stored since an hour ago.
pub fn stored_series(env: &Env, base: &str, selector: &str) -> Result<BTreeSet<LabelSet>> {
    let req = crate::support::client()
        .get(format!("{base}/api/v1/series"))
        .query(&[
            ("match[]", selector.to_string()),
            ("start", format!("{}", now_ms() / 1000 - 3600)),
        ]);
    let answer = env.block_on(crate::support::send(req))?;
    Ok(crate::support::series_set(answer.ok_data()?))
}

/// Every (series, timestamp) stored for `selector` over the last hour.
pub fn stored_samples(env: &Env, base: &str, selector: &str) -> Result<BTreeSet<(LabelSet, i64)>> {
    let req = crate::support::client()
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", format!("{selector}[1h]"))]);
    let answer = env.block_on(crate::support::send(req))?;
    let mut out = BTreeSet::new();
    for s in answer.ok_data()?["result"].as_array().into_iter().flatten() {
        let labels = crate::support::label_set(&s["metric"]);
        for v in s["values"].as_array().into_iter().flatten() {
            let t = (v[0].as_f64().unwrap_or(0.0) * 1000.0).round() as i64;
            out.insert((labels.clone(), t));
        }
    }
    Ok(out)
}

/// Counter value from a `/metrics` text, 0 when absent.
pub fn counter(metrics_text: &str, line_prefix: &str) -> f64 {
    metrics_text
        .lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

pub fn metrics_text(env: &Env, admin: &str) -> Result<String> {
    env.block_on(async {
        Ok(crate::support::client()
            .get(format!("{admin}/metrics"))
            .send()
            .await?
            .text()
            .await?)
    })
}

/// Label sets grouped by metric name (for messages).
pub fn by_name(set: &BTreeSet<LabelSet>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for s in set {
        *out.entry(s.get("__name__").cloned().unwrap_or_default())
            .or_insert(0) += 1;
    }
    out
}

/// A `/debug/ingest` field summed over the shards (`<name>-<i>`) of a destination.
pub fn shard_sum(debug: &serde_json::Value, destination: &str, field: &str) -> u64 {
    debug["destinations"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| {
            k.strip_prefix(destination)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
        })
        .map(|(_, v)| v[field].as_u64().unwrap_or(0))
        .sum()
}
