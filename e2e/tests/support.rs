//! Shared state of the suite and small helpers: the lab (infra pair, oracles, proxy), tenant
//! requests through the proxy, and comparison of Prometheus answers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

/// A test: a name and a function over the shared environment.
pub struct Case {
    pub name: &'static str,
    pub run: fn(&Env) -> Result<()>,
}

pub fn case(name: &'static str, run: fn(&Env) -> Result<()>) -> Case {
    Case { name, run }
}

/// The fixture tenants with data (team-e has an empty policy and sees nothing).
pub const TENANTS: [&str; 4] = ["team-a", "team-b", "team-c", "team-d"];

/// What each fixture tenant may see, written by hand from its MetricAccess CRs following DESIGN §3,
/// independently of the policy compiler under test. Infrastructure Prometheus answers which
/// series match these selectors; the oracle of each tenant holds exactly those.
pub fn expected_clauses(tenant: &str) -> &'static [&'static str] {
    match tenant {
        "team-a" => &[
            r#"{__name__=~"http_requests_total|http_request_duration_seconds_.*|kube_pod_info",namespace="team-a"}"#,
            r#"{job="team-a-app",namespace="team-a"}"#,
        ],
        "team-b" => &[
            r#"{__name__=~"container_cpu_usage_seconds_total|container_memory_working_set_bytes|kube_pod_container_.*",namespace="team-b"}"#,
            r#"{__name__=~"kube_deployment_.*",namespace="team-b"}"#,
            r#"{__name__="kube_pod_status_phase",namespace="team-b",phase="Running"}"#,
        ],
        "team-c" => &[r#"{__name__=~"http_.*|up",environment="production",team="webapp"}"#],
        "team-d" => &[
            r#"{__name__=~"node_.*|kube_node_.*"}"#,
            r#"{job="kubelet",metrics_path="/metrics"}"#,
        ],
        _ => &[],
    }
}

pub type LabelSet = BTreeMap<String, String>;

pub fn label_set(v: &Value) -> LabelSet {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

pub fn series_set(data: &Value) -> BTreeSet<LabelSet> {
    data.as_array()
        .map(|a| a.iter().map(label_set).collect())
        .unwrap_or_default()
}

/// A Prometheus API answer: HTTP status and JSON body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    pub fn ok_data(&self) -> Result<&Value> {
        if self.status != 200 || self.body["status"] != "success" {
            bail!("expected success, got {} {}", self.status, self.body);
        }
        Ok(&self.body["data"])
    }
    pub fn error_type(&self) -> Option<&str> {
        (self.body["status"] == "error").then(|| self.body["errorType"].as_str().unwrap_or(""))
    }
    /// Assert a Prometheus-style error with this status and errorType.
    pub fn expect_error(&self, status: u16, error_type: &str) -> Result<()> {
        if self.status != status || self.error_type() != Some(error_type) {
            bail!(
                "expected {status} {error_type}, got {} {}",
                self.status,
                self.body
            );
        }
        if self.body["error"].as_str().unwrap_or("").is_empty() {
            bail!("error envelope without a message: {}", self.body);
        }
        Ok(())
    }
}

pub async fn send(req: reqwest::RequestBuilder) -> Result<Answer> {
    let resp = req.send().await.context("request failed")?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok(Answer { status, body })
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client")
}

/// Float equality for sample values as Prometheus prints them.
pub fn values_equal(a: &str, b: &str, rel: f64) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) if x.is_nan() && y.is_nan() => true,
        (Ok(x), Ok(y)) => {
            let scale = x.abs().max(y.abs());
            (x - y).abs() <= rel * scale
        }
        _ => false,
    }
}

/// Compare two Prometheus query answers as sets of series; `Ok(())` when equal, else why not.
/// Values must be equal; within `rel` relative where a sum over a union runs in another order.
pub fn compare_answers(got: &Answer, want: &Answer, rel: f64) -> std::result::Result<(), String> {
    match (got.error_type(), want.error_type()) {
        (Some(a), Some(b)) if a == b => return Ok(()),
        (Some(_), _) | (_, Some(_)) => {
            return Err(format!(
                "proxy: {} {} / oracle: {} {}",
                got.status, got.body, want.status, want.body
            ));
        }
        _ => {}
    }
    let (g, w) = (&got.body["data"], &want.body["data"]);
    if g["resultType"] != w["resultType"] {
        return Err(format!(
            "resultType {} vs {}",
            g["resultType"], w["resultType"]
        ));
    }
    match w["resultType"].as_str() {
        Some("scalar") | Some("string") => {
            let (a, b) = (&g["result"][1], &w["result"][1]);
            if g["result"][0] != w["result"][0]
                || !values_equal(a.as_str().unwrap_or(""), b.as_str().unwrap_or(""), rel)
            {
                return Err(format!("{} vs {}", g["result"], w["result"]));
            }
            Ok(())
        }
        _ => {
            let index = |d: &Value| -> BTreeMap<LabelSet, Vec<(String, String)>> {
                d["result"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| {
                        let points: Vec<(String, String)> = if let Some(v) = s.get("value") {
                            vec![(v[0].to_string(), v[1].as_str().unwrap_or("").to_string())]
                        } else {
                            s["values"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .map(|v| {
                                    (v[0].to_string(), v[1].as_str().unwrap_or("").to_string())
                                })
                                .collect()
                        };
                        (label_set(&s["metric"]), points)
                    })
                    .collect()
            };
            let (gi, wi) = (index(g), index(w));
            let (gk, wk): (BTreeSet<_>, BTreeSet<_>) = (gi.keys().collect(), wi.keys().collect());
            if gk != wk {
                let extra: Vec<_> = gk.difference(&wk).take(3).collect();
                let missing: Vec<_> = wk.difference(&gk).take(3).collect();
                return Err(format!(
                    "series differ: {} vs {} (extra in proxy {extra:?}, missing {missing:?})",
                    gk.len(),
                    wk.len()
                ));
            }
            for (labels, wp) in &wi {
                let gp = &gi[labels];
                let same = gp.len() == wp.len()
                    && gp
                        .iter()
                        .zip(wp)
                        .all(|((ta, va), (tb, vb))| ta == tb && values_equal(va, vb, rel));
                if !same {
                    return Err(format!("values differ for {labels:?}: {gp:?} vs {wp:?}"));
                }
            }
            Ok(())
        }
    }
}

/// Number of series in a query answer (0 for scalars and errors).
pub fn result_len(a: &Answer) -> usize {
    a.body["data"]["result"].as_array().map_or(0, |r| {
        if a.body["data"]["resultType"] == "scalar" || a.body["data"]["resultType"] == "string" {
            1
        } else {
            r.len()
        }
    })
}

pub fn workspace_root() -> std::path::PathBuf {
    e2e::tools::workspace_root()
}

/// An oracle: a Prometheus holding only one tenant's series.
pub struct Oracle {
    pub prom: e2e::Prometheus,
    pub series: BTreeSet<LabelSet>,
}

/// Everything the tests share, started once by `main` and dropped after the last test.
pub struct Env {
    pub rt: tokio::runtime::Runtime,
    pub http: reqwest::Client,
    pub lab: e2e::lab::SharedLab,
    pub oracles: BTreeMap<&'static str, Oracle>,
    pub proxy: proxy::app::RunningProxy,
    /// The collector's processes, started by the first collector test.
    pub collector:
        std::sync::OnceLock<std::result::Result<crate::collector_lab::CollectorLab, String>>,
    /// The ingest gateway's processes, started by the first ingest test.
    pub ingest: std::sync::OnceLock<std::result::Result<crate::ingest_lab::IngestLab, String>>,
}

impl Env {
    /// Start the shared processes. `Ok(None)`: Prometheus is missing outside CI (skipped loudly).
    pub fn start() -> Result<Option<Env>> {
        if let Err(e) = e2e::tools::require_prometheus() {
            e2e::tools::skip_or_fail(&format!("{e:#}"));
            return Ok(None);
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let t0 = std::time::Instant::now();
        let lab = e2e::lab::SharedLab::start().context("starting infrastructure Prometheus")?;
        eprintln!("e2e: infrastructure pair seeded in {:.1?}", t0.elapsed());
        let http = client();
        let oracles = Self::start_oracles(&rt, &http, &lab)?;
        eprintln!(
            "e2e: {} oracles seeded in {:.1?}",
            oracles.len(),
            t0.elapsed()
        );
        let urls: Vec<String> = lab.infra.iter().map(|p| p.url()).collect();
        let proxy = rt.block_on(start_proxy(
            &workspace_root().join("fixtures/tenants"),
            &urls,
        ))?;
        Ok(Some(Env {
            rt,
            http,
            lab,
            oracles,
            proxy,
            collector: std::sync::OnceLock::new(),
            ingest: std::sync::OnceLock::new(),
        }))
    }

    /// For each tenant: ask infrastructure Prometheus which series match the hand-written
    /// clauses, and write exactly those series' workload samples to a fresh Prometheus.
    fn start_oracles(
        rt: &tokio::runtime::Runtime,
        http: &reqwest::Client,
        lab: &e2e::lab::SharedLab,
    ) -> Result<BTreeMap<&'static str, Oracle>> {
        let w = &lab.window;
        let mut out = BTreeMap::new();
        let handles: Vec<_> = TENANTS
            .iter()
            .map(|t| {
                std::thread::spawn(move || e2e::Prometheus::start(&format!("oracle-{t}"), None))
            })
            .collect();
        for (tenant, handle) in TENANTS.iter().zip(handles) {
            let prom = handle
                .join()
                .map_err(|_| anyhow::anyhow!("oracle start panicked"))??;
            let mut params: Vec<(&str, String)> = expected_clauses(tenant)
                .iter()
                .map(|c| ("match[]", c.to_string()))
                .collect();
            params.push(("start", format!("{}", w.start_ms as f64 / 1000.0)));
            params.push(("end", format!("{}", w.end_ms as f64 / 1000.0)));
            let url = format!("{}/api/v1/series", lab.infra[0].url());
            let answer = rt.block_on(send(http.post(url).form(&params)))?;
            let series = series_set(answer.ok_data()?);
            ensure!(
                !series.is_empty(),
                "{tenant}: infrastructure Prometheus has no series for its clauses"
            );
            let defs: Vec<&e2e::workload::SeriesDef> = lab
                .series
                .iter()
                .filter(|d| series.contains(&d.labels.iter().cloned().collect::<LabelSet>()))
                .collect();
            ensure!(
                defs.len() == series.len(),
                "{tenant}: {} series in Prometheus, {} in the workload",
                series.len(),
                defs.len()
            );
            e2e::seed::seed(&prom.url(), &defs, w)?;
            out.insert(*tenant, Oracle { prom, series });
        }
        Ok(out)
    }

    /// The collector lab, started once (a failed start fails every collector test).
    pub fn collector_lab(&self) -> Result<&crate::collector_lab::CollectorLab> {
        self.collector
            .get_or_init(|| {
                crate::collector_lab::CollectorLab::start(self).map_err(|e| format!("{e:#}"))
            })
            .as_ref()
            .map_err(|e| anyhow::anyhow!("collector lab: {e}"))
    }

    /// The ingest lab, started once.
    pub fn ingest_lab(&self) -> Result<&crate::ingest_lab::IngestLab> {
        self.ingest
            .get_or_init(|| crate::ingest_lab::IngestLab::start(self).map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| anyhow::anyhow!("ingest lab: {e}"))
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// End of the seeded window: every instant query is evaluated there.
    pub fn eval_time_param(&self) -> String {
        format!("{}", self.lab.window.end_ms as f64 / 1000.0)
    }

    pub fn window_params(&self) -> Vec<(&'static str, String)> {
        let w = &self.lab.window;
        vec![
            ("start", format!("{}", w.start_ms as f64 / 1000.0)),
            ("end", format!("{}", w.end_ms as f64 / 1000.0)),
        ]
    }

    /// The last 30 minutes of the window at a 60s step.
    pub fn range_params(&self) -> Vec<(&'static str, String)> {
        let end = self.lab.window.end_ms as f64 / 1000.0;
        vec![
            ("start", format!("{}", end - 1800.0)),
            ("end", format!("{end}")),
            ("step", "60".to_string()),
        ]
    }

    pub fn snapshot_dir(&self) -> std::path::PathBuf {
        workspace_root().join("e2e/tests/snapshots")
    }

    pub fn tenant_request(
        &self,
        tenant: Option<&str>,
        path: &str,
        params: &[(&str, String)],
    ) -> reqwest::RequestBuilder {
        request_via(
            &self.http,
            &self.proxy.api_url(),
            tenant,
            path,
            params,
            false,
        )
    }

    pub fn oracle_request(
        &self,
        tenant: &str,
        path: &str,
        params: &[(&str, String)],
    ) -> reqwest::RequestBuilder {
        let url = format!("{}{path}", self.oracles[tenant].prom.url());
        self.http.get(url).query(params)
    }

    pub fn tenant_get(
        &self,
        tenant: Option<&str>,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<Answer> {
        self.block_on(send(self.tenant_request(tenant, path, params)))
    }

    pub fn tenant_post(
        &self,
        tenant: Option<&str>,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<Answer> {
        let req = request_via(
            &self.http,
            &self.proxy.api_url(),
            tenant,
            path,
            params,
            true,
        );
        self.block_on(send(req))
    }

    pub fn oracle_get(
        &self,
        tenant: &str,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<Answer> {
        self.block_on(send(self.oracle_request(tenant, path, params)))
    }

    pub fn tenant_get_text(
        &self,
        tenant: Option<&str>,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<(u16, String)> {
        self.block_on(text(self.tenant_request(tenant, path, params)))
    }

    pub fn oracle_get_text(
        &self,
        tenant: &str,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<(u16, String)> {
        self.block_on(text(self.oracle_request(tenant, path, params)))
    }

    pub fn oracle_series(&self, tenant: &str) -> Result<BTreeSet<LabelSet>> {
        Ok(self
            .oracles
            .get(tenant)
            .context("no oracle")?
            .series
            .clone())
    }

    /// A request through another proxy instance.
    pub fn get_via(
        &self,
        proxy: &proxy::app::RunningProxy,
        tenant: Option<&str>,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<Answer> {
        self.block_on(send(request_via(
            &self.http,
            &proxy.api_url(),
            tenant,
            path,
            params,
            false,
        )))
    }

    pub fn admin_json(&self, proxy: &proxy::app::RunningProxy, path: &str) -> Result<Value> {
        let a = self.block_on(send(self.http.get(format!("{}{path}", proxy.admin_url()))))?;
        ensure!(a.status == 200, "{path}: {}", a.status);
        Ok(a.body)
    }

    /// A second proxy instance over the shared infrastructure pair with its own tenants folder.
    pub fn start_proxy(&self, tenants: &std::path::Path) -> Result<proxy::app::RunningProxy> {
        let urls: Vec<String> = self.lab.infra.iter().map(|p| p.url()).collect();
        self.start_proxy_over(tenants, &urls)
    }

    pub fn start_proxy_over(
        &self,
        tenants: &std::path::Path,
        backends: &[String],
    ) -> Result<proxy::app::RunningProxy> {
        self.block_on(start_proxy(tenants, backends))
    }

    /// A proxy in front of a recording fake backend: tests that bad input never goes upstream.
    pub fn start_proxy_with_fake_backend(&self) -> Result<(proxy::app::RunningProxy, FakeBackend)> {
        let fake = self.block_on(FakeBackend::start())?;
        let proxy =
            self.start_proxy_over(&workspace_root().join("fixtures/tenants"), &[fake.url()])?;
        Ok((proxy, fake))
    }

    /// A dedicated HA pair with a little data, for tests that kill members.
    pub fn start_small_pair(&self) -> Result<(Vec<e2e::Prometheus>, e2e::seed::SeedWindow)> {
        let w = e2e::seed::SeedWindow::last_hour();
        let defs: Vec<&e2e::workload::SeriesDef> = self
            .lab
            .series
            .iter()
            .filter(|d| d.name() == "up")
            .collect();
        let mut members = Vec::new();
        for name in ["ha-a", "ha-b"] {
            let p = e2e::Prometheus::start(name, None)?;
            e2e::seed::seed(&p.url(), &defs, &w)?;
            members.push(p);
        }
        Ok((members, w))
    }
}

fn request_via(
    http: &reqwest::Client,
    base: &str,
    tenant: Option<&str>,
    path: &str,
    params: &[(&str, String)],
    post: bool,
) -> reqwest::RequestBuilder {
    let url = format!("{base}{path}");
    let req = if post {
        http.post(url).form(params)
    } else {
        http.get(url).query(params)
    };
    match tenant {
        Some(t) => req.header("X-Tenant-Namespace", t),
        None => req,
    }
}

async fn text(req: reqwest::RequestBuilder) -> Result<(u16, String)> {
    let resp = req.send().await?;
    Ok((resp.status().as_u16(), resp.text().await?))
}

/// Start the proxy in-process: header auth, the given tenants folder and backend members.
pub async fn start_proxy(
    tenants: &std::path::Path,
    backends: &[String],
) -> Result<proxy::app::RunningProxy> {
    start_proxy_timeout(tenants, backends, "10s").await
}

/// One request the fake backend received: its parameters (URL and form body) and headers.
type Recorded = (Vec<(String, String)>, Vec<(String, String)>);

/// A fake Prometheus that records every request except health probes.
pub struct FakeBackend {
    addr: std::net::SocketAddr,
    calls: std::sync::Arc<std::sync::Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeBackend {
    async fn start() -> Result<FakeBackend> {
        use axum::extract::Request;
        let calls: std::sync::Arc<std::sync::Mutex<Vec<_>>> = Default::default();
        let rec = calls.clone();
        let app = axum::Router::new()
            .route("/-/ready", axum::routing::get(|| async { "ready" }))
            .fallback(move |req: Request| {
                let rec = rec.clone();
                async move {
                    let headers: Vec<(String, String)> = req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                        .collect();
                    let query = req.uri().query().unwrap_or("").to_string();
                    let body = axum::body::to_bytes(req.into_body(), 1 << 20).await.unwrap_or_default();
                    let mut params: Vec<(String, String)> = Vec::new();
                    for raw in [query.as_bytes(), &body[..]] {
                        params.extend(form_urlencoded::parse(raw).map(|(k, v)| (k.into_owned(), v.into_owned())));
                    }
                    if let Ok(mut c) = rec.lock() {
                        c.push((params, headers));
                    }
                    axum::Json(serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": []}}))
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeBackend { addr, calls, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn api_calls(&self) -> usize {
        self.calls.lock().map(|c| c.len()).unwrap_or(0)
    }

    pub fn last_params(&self) -> Vec<(String, String)> {
        self.calls
            .lock()
            .ok()
            .and_then(|c| c.last().map(|l| l.0.clone()))
            .unwrap_or_default()
    }

    pub fn last_headers(&self) -> Vec<(String, String)> {
        self.calls
            .lock()
            .ok()
            .and_then(|c| c.last().map(|l| l.1.clone()))
            .unwrap_or_default()
    }
}

// ---- Fault injection and soak helpers (e2e/tests/faults.rs, e2e/tests/soak.rs) ----

/// Start the proxy in-process as [`start_proxy`] does, with the given `proxy.backend_timeout`.
pub async fn start_proxy_timeout(
    tenants: &std::path::Path,
    backends: &[String],
    backend_timeout: &str,
) -> Result<proxy::app::RunningProxy> {
    let members: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\ntenants:\n  directory: {:?}\nproxy:\n  backend_timeout: {backend_timeout}\nbackends:\n  probe_interval: 500ms\n  probe_timeout: 500ms\n  groups:\n    - name: infra\n      members: [{}]\nauth:\n  mode: header\n",
        tenants.display().to_string(),
        members.join(", ")
    );
    let config = proxy::config::Config::from_yaml(&yaml, "e2e")?;
    let running = proxy::app::start(config, None).await?;
    running
        .wait_ready(Duration::from_secs(15))
        .await
        .map_err(|e| anyhow::anyhow!("proxy not ready: {e}"))?;
    Ok(running)
}

/// SIGKILL a process this test started (by its PID): a crash, no graceful shutdown.
pub fn sigkill(pid: u32) -> Result<()> {
    ensure!(pid != 0, "no process to kill");
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()?;
    ensure!(status.success(), "kill -KILL {pid} failed");
    Ok(())
}

/// An axum app served on an ephemeral loopback port of the shared runtime, stopped on drop.
pub struct Served {
    pub addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Served {
    pub fn start(env: &Env, app: axum::Router) -> Result<Served> {
        let listener = env.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let task = env.rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Served { addr, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// The proxy binary: `PROXY_BIN`, else `$CARGO_TARGET_DIR/debug/…`, else `<workspace>/target/debug/…`.
pub fn proxy_bin() -> std::path::PathBuf {
    if let Some(bin) = std::env::var_os("PROXY_BIN") {
        return bin.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("debug/prometheus-multi-tenant-proxy")
}

/// [`proxy_bin`] when it is built; else skipped loudly (a failure in CI) and `None`.
pub fn built_proxy_bin() -> Option<std::path::PathBuf> {
    let bin = proxy_bin();
    if bin.exists() {
        return Some(bin);
    }
    e2e::tools::skip_or_fail(&format!(
        "{} is not built: run `cargo xtask test`",
        bin.display()
    ));
    None
}

// ---- Enforcement bypass catalogue and differential fuzzing (issue #8) ----

/// What a tenant may and may not see, from the oracle (its series) and the lab workload (every
/// series): a series of an answer is outside the policy when it is another tenant's series, or
/// when it carries a label pair that only other tenants' series carry.
pub struct PolicyView {
    pub tenant: &'static str,
    pub own: BTreeSet<LabelSet>,
    pub others: BTreeSet<LabelSet>,
    pub foreign_pairs: BTreeSet<(String, String)>,
}

impl PolicyView {
    pub fn new(env: &Env, tenant: &'static str) -> Result<PolicyView> {
        let own = env.oracle_series(tenant)?;
        let own_pairs: BTreeSet<(String, String)> = own
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let all: BTreeSet<LabelSet> = env
            .lab
            .series
            .iter()
            .map(|d| d.labels.iter().cloned().collect())
            .collect();
        let foreign_pairs = all
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .filter(|p| !own_pairs.contains(p))
            .collect();
        let others = all.difference(&own).cloned().collect();
        Ok(PolicyView {
            tenant,
            own,
            others,
            foreign_pairs,
        })
    }

    /// Why `labels` is outside the policy, if it is.
    pub fn outside(&self, labels: &LabelSet) -> Option<String> {
        if self.others.contains(labels) {
            return Some(format!("another tenant's series {labels:?}"));
        }
        labels
            .iter()
            .find(|(k, v)| self.foreign_pairs.contains(&((*k).clone(), (*v).clone())))
            .map(|(k, v)| format!("{k}={v:?} only on other tenants' series, in {labels:?}"))
    }

    /// Every series of the proxy's answer `got` that is outside the policy. A label pair only
    /// other tenants' series carry is allowed when the tenant's oracle gave that very series
    /// too (`absent(x{namespace="team-b"})` echoes the query), or, when the oracle refused,
    /// when the value is a literal of the query.
    pub fn leaks(&self, got: &Answer, want: &Answer, query: &str) -> Vec<String> {
        let oracle = want.error_type().is_none().then(|| answer_series(want));
        answer_series(got)
            .iter()
            .filter_map(|s| {
                if let Some(why) = self.outside(s).filter(|_| self.others.contains(s)) {
                    return Some(why);
                }
                let why = self.outside(s)?;
                let echoed = match &oracle {
                    Some(w) => w.contains(s),
                    None => s
                        .iter()
                        .filter(|(k, v)| self.foreign_pairs.contains(&((*k).clone(), (*v).clone())))
                        .all(|(_, v)| query.contains(&format!("\"{v}\""))),
                };
                (!echoed).then_some(why)
            })
            .map(|why| format!("{}: {why}", self.tenant))
            .collect()
    }
}

/// The label sets of a vector or matrix answer (empty for errors, scalars and strings).
pub fn answer_series(a: &Answer) -> BTreeSet<LabelSet> {
    if a.error_type().is_some() {
        return BTreeSet::new();
    }
    match a.body["data"]["resultType"].as_str() {
        Some("vector") | Some("matrix") => a.body["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| label_set(&s["metric"]))
            .collect(),
        _ => BTreeSet::new(),
    }
}

/// One request of [`proxy_and_oracle`]: tenant, path, parameters.
pub type Job = (&'static str, &'static str, Vec<(&'static str, String)>);

/// Send each (tenant, path, params) to the proxy as the tenant and to the tenant's oracle,
/// `parallel` at a time; the answers in job order.
pub fn proxy_and_oracle(
    env: &Env,
    jobs: &[Job],
    parallel: usize,
) -> Vec<(Result<Answer>, Result<Answer>)> {
    env.block_on(async {
        let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(parallel));
        let mut set = tokio::task::JoinSet::new();
        for (i, (tenant, path, params)) in jobs.iter().enumerate() {
            let got = env.tenant_request(Some(tenant), path, params);
            let want = env.oracle_request(tenant, path, params);
            let sem = sem.clone();
            set.spawn(async move {
                let _permit = sem.acquire_owned().await;
                (i, send(got).await, send(want).await)
            });
        }
        let mut out = Vec::new();
        while let Some(done) = set.join_next().await {
            out.push(done.expect("proxy_and_oracle task"));
        }
        out.sort_by_key(|(i, _, _)| *i);
        out.into_iter().map(|(_, g, w)| (g, w)).collect()
    })
}
