//! The collector's lab, started on first use by the collector tests and dropped with [`Env`]:
//! an in-process exposition server scraped every second by an HA pair of infrastructure
//! Prometheus, the tenants' targets as real processes (a tenant Prometheus, a two-replica
//! tenant Prometheus, a basic-auth remote-write receiver, a Pushgateway), and a proxy
//! in-process with the collector on, its address overrides pointing at those processes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::routing::get;
use serde_json::Value;

use crate::support::{Env, client, send};

/// Password of the basic-auth receiver (a throwaway test credential, written to a temp dir).
pub const AUTH_USER: &str = "collector";
const AUTH_PASSWORD: &str = "e2e-collector-password";

/// One series of the exposition: the text before the value, and how the value moves.
#[derive(Debug, Clone)]
pub struct ExposedSeries {
    pub text: String,
    /// Counter: value = rate × seconds since start. Gauge (rate 0): `constant`.
    pub rate: f64,
    pub constant: f64,
}

/// The series the "workload" exposes; tests may remove some (staleness).
pub struct Exposition {
    started: Instant,
    series: Mutex<BTreeMap<String, ExposedSeries>>,
}

impl Exposition {
    fn render(&self) -> String {
        let t = self.started.elapsed().as_secs_f64();
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        for s in series.values() {
            let v = if s.rate != 0.0 {
                s.rate * t
            } else {
                s.constant
            };
            out.push_str(&format!("{} {v}\n", s.text));
        }
        out
    }

    pub fn remove(&self, key: &str) -> bool {
        self.series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key)
            .is_some()
    }
}

fn exposed() -> BTreeMap<String, ExposedSeries> {
    let c = |labels: &str, name: &str, rate: f64| ExposedSeries {
        text: format!("{name}{{{labels},instance=\"src\"}}"),
        rate,
        constant: 0.0,
    };
    let g = |labels: &str, name: &str, v: f64| ExposedSeries {
        text: format!("{name}{{{labels},instance=\"src\"}}"),
        rate: 0.0,
        constant: v,
    };
    [
        (
            "a-200",
            c(
                r#"namespace="col-a",pod="a-1",code="200",job="app""#,
                "http_requests_total",
                10.0,
            ),
        ),
        (
            "a-503",
            c(
                r#"namespace="col-a",pod="a-2",code="503",job="app""#,
                "http_requests_total",
                1.0,
            ),
        ),
        (
            "c-200",
            c(
                r#"namespace="col-c",pod="c-1",code="200",job="app""#,
                "http_requests_total",
                5.0,
            ),
        ),
        (
            "x-200",
            c(
                r#"namespace="col-x",pod="x-1",code="200",job="app""#,
                "http_requests_total",
                3.0,
            ),
        ),
        (
            "a-secret",
            c(r#"namespace="col-a",job="app""#, "secret_debug_total", 1.0),
        ),
        (
            "a-vanishing",
            g(
                r#"namespace="col-a",id="vanishing",job="app""#,
                "temp_series",
                42.0,
            ),
        ),
        (
            "a-staying",
            g(
                r#"namespace="col-a",id="staying",job="app""#,
                "temp_series",
                7.0,
            ),
        ),
        (
            "b-cpu-1",
            c(
                r#"namespace="col-b",pod="b-1",container="app",job="kubelet""#,
                "container_cpu_usage_seconds_total",
                0.5,
            ),
        ),
        (
            "b-cpu-2",
            c(
                r#"namespace="col-b",pod="b-2",container="app",job="kubelet""#,
                "container_cpu_usage_seconds_total",
                0.25,
            ),
        ),
        (
            "x-cpu",
            c(
                r#"namespace="col-x",pod="x-1",container="app",job="kubelet""#,
                "container_cpu_usage_seconds_total",
                2.0,
            ),
        ),
        (
            "b-pods",
            g(
                r#"namespace="col-b",job="kubelet""#,
                "kubelet_running_pods",
                2.0,
            ),
        ),
        ("n1-load", g(r#"node="n1",job="node""#, "node_load1", 0.5)),
        ("n2-load", g(r#"node="n2",job="node""#, "node_load1", 1.5)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Scraped by infrastructure member A as job `relabel` with [`PROMETHEUS_RELABEL_RULES`] as its
/// `metric_relabel_configs`: what Prometheus stores is compared with the proxy's engine.
pub const RELABEL_EXPOSITION: &str = r#"rl_requests_total{code="200",pod="p-1",meta_owner="a",team="web",env="prod",expected_env="prod",digits="123",job="relabel",instance="src"} 1
rl_requests_total{code="503",pod="p-2",meta_owner="b",team="Db",env="prod",expected_env="prod",digits="١٢٣",job="relabel",instance="src"} 2
rl_requests_total{code="404",pod="p-3",team="ops",env="dev",expected_env="prod",job="relabel",instance="src"} 3
rl_dropped_total{pod="p-4",env="prod",expected_env="prod",job="relabel",instance="src"} 4
rl_gauge{pod="Mixed-Case_7",meta_zone="eu",env="prod",expected_env="prod",job="relabel",instance="src"} 5
"#;

/// Prometheus' own spelling (snake_case); the test renames the keys for the CR's camelCase.
pub const PROMETHEUS_RELABEL_RULES: &str = r#"
- source_labels: [__name__]
  regex: 'rl_(.*)_total'
  target_label: base
  replacement: '${1}'
- source_labels: [code]
  regex: '(\d)\d\d'
  target_label: class
  replacement: '${1}xx'
- source_labels: [pod]
  modulus: 4
  target_label: shard
  action: hashmod
- regex: 'meta_(.+)'
  replacement: 'm_$1'
  action: labelmap
- regex: 'meta_.*'
  action: labeldrop
- source_labels: [team]
  target_label: team_upper
  action: uppercase
- source_labels: [pod]
  target_label: pod_lower
  action: lowercase
- source_labels: [env]
  target_label: expected_env
  action: keepequal
- source_labels: [__name__]
  regex: 'rl_dropped.*'
  action: drop
- source_labels: [digits]
  regex: '\d+'
  target_label: ascii_digits
  replacement: 'yes'
- source_labels: [pod, env]
  separator: '@'
  target_label: pod_env
"#;

const TENANTS: &str = r#"
apiVersion: observability.ethos.io/v1alpha1
kind: MetricAccess
metadata: {name: app-metrics, namespace: col-a}
spec:
  metricIsolation: true
  metrics: [http_requests_total, temp_series, secret_debug_total]
  remoteWrite:
    enabled: true
    interval: 5s
    target: {type: prometheus}
    prometheus: {serviceName: prom, servicePort: 9090}
    extraLabels: {tenant: col-a, job: copied}
    honorLabels: false
    metricRelabelings:
      - {sourceLabels: [__name__], regex: "secret_.*", action: drop}
      - {sourceLabels: [code], regex: '(\d)..', targetLabel: status_class, replacement: '${1}xx'}
---
apiVersion: observability.ethos.io/v1alpha1
kind: MetricAccess
metadata: {name: containers, namespace: col-b}
spec:
  metricIsolation: true
  metrics: [container_cpu_usage_seconds_total, kubelet_running_pods]
  remoteWrite:
    enabled: true
    interval: 6s
    target: {type: prometheus}
    prometheus: {serviceName: prom-b, servicePort: 9090, replicas: 2, statefulSetName: prom-b}
    metricRelabelings:
      - {sourceLabels: [__name__], regex: "container_(.*)", targetLabel: metrics_path, replacement: "/metrics/cadvisor"}
      - {sourceLabels: [__name__], regex: "kubelet_(.*)", targetLabel: metrics_path, replacement: "/metrics"}
---
apiVersion: observability.ethos.io/v1alpha1
kind: MetricAccess
metadata: {name: good, namespace: col-c}
spec:
  metricIsolation: true
  metrics: [http_requests_total]
  remoteWrite:
    enabled: true
    interval: 5s
    target: {type: remote_write}
    remoteWrite:
      url: http://remote-write.col-c.svc:9090/api/v1/write
      basicAuth: {username: collector, passwordSecret: {name: rw-good, key: password}}
      headers: {X-Lab: collector}
---
apiVersion: observability.ethos.io/v1alpha1
kind: MetricAccess
metadata: {name: wrong-password, namespace: col-c}
spec:
  metricIsolation: true
  metrics: [http_requests_total]
  remoteWrite:
    enabled: true
    interval: 5s
    target: {type: remote_write}
    remoteWrite:
      url: http://remote-write.col-c.svc:9090/api/v1/write
      basicAuth: {username: collector, passwordSecret: {name: rw-bad, key: password}}
---
apiVersion: observability.ethos.io/v1alpha1
kind: MetricAccess
metadata: {name: missing-secret, namespace: col-c}
spec:
  metricIsolation: true
  metrics: [http_requests_total]
  remoteWrite:
    enabled: true
    interval: 5s
    target: {type: remote_write}
    remoteWrite:
      url: http://remote-write.col-c.svc:9090/api/v1/write
      basicAuth: {username: collector, passwordSecret: {name: absent, key: password}}
---
apiVersion: observability.ethos.io/v1alpha1
kind: MetricAccess
metadata: {name: nodes, namespace: col-d}
spec:
  metrics: [node_load1]
  remoteWrite:
    enabled: true
    interval: 5s
    target: {type: pushgateway}
    pushgateway: {serviceName: pushgateway, servicePort: 9091, jobName: col-d-nodes}
---
apiVersion: observability.ethos.io/v1alpha1
kind: MetricAccess
metadata: {name: unreachable, namespace: col-e}
spec:
  metrics: [node_load1]
  remoteWrite:
    enabled: true
    interval: 5s
    target: {type: prometheus}
    prometheus: {serviceName: gone, servicePort: 9090}
"#;

/// CRs that must be refused, each for one reason, while the others keep working.
pub const BAD_TENANTS: &str = r#"
apiVersion: observability.ethos.io/v1alpha1
kind: MetricAccess
metadata: {name: bad-regex, namespace: col-f}
spec:
  metrics: [up]
  remoteWrite:
    enabled: true
    target: {type: prometheus}
    prometheus: {serviceName: p}
    metricRelabelings:
      - {sourceLabels: [__name__], regex: "foo(", action: drop}
---
apiVersion: observability.ethos.io/v1alpha1
kind: MetricAccess
metadata: {name: too-often, namespace: col-f}
spec:
  metrics: [up]
  remoteWrite:
    enabled: true
    interval: 1s
    target: {type: prometheus}
    prometheus: {serviceName: p}
---
apiVersion: observability.ethos.io/v1alpha1
kind: MetricAccess
metadata: {name: unknown-type, namespace: col-f}
spec:
  metrics: [up]
  remoteWrite:
    enabled: true
    target: {type: kafka}
---
apiVersion: observability.ethos.io/v1alpha1
kind: MetricAccess
metadata: {name: tenant-header, namespace: col-f}
spec:
  metrics: [up]
  remoteWrite:
    enabled: true
    target: {type: remote_write}
    remoteWrite:
      url: http://store.example/api/v1/write
      headers: {X-Scope-OrgID: someone-else}
"#;

pub struct CollectorLab {
    pub exposition: Arc<Exposition>,
    pub _sources: Vec<e2e::Prometheus>,
    pub col_a: e2e::Prometheus,
    pub col_b: Mutex<Vec<e2e::Prometheus>>,
    pub auth: e2e::Prometheus,
    pub pushgateway: e2e::Pushgateway,
    pub proxy: proxy::app::RunningProxy,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl CollectorLab {
    pub fn start(env: &Env) -> Result<CollectorLab> {
        let t0 = Instant::now();
        let exposition = Arc::new(Exposition {
            started: Instant::now(),
            series: Mutex::new(exposed()),
        });
        let e = exposition.clone();
        let app = Router::new()
            .route("/metrics", get(move || async move { e.render() }))
            .route("/relabel", get(|| async { RELABEL_EXPOSITION }));
        let listener = env.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let exposition_addr = listener.local_addr()?;
        env.rt
            .spawn(async move { axum::serve(listener, app).await });
        let scrape = format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\nscrape_configs:\n  - job_name: src\n    honor_labels: true\n    static_configs: [{{targets: [\"{exposition_addr}\"]}}]\n"
        );
        let rules: String = PROMETHEUS_RELABEL_RULES
            .lines()
            .map(|l| format!("      {l}\n"))
            .collect();
        let scrape_a = format!(
            "{scrape}  - job_name: relabel\n    honor_labels: true\n    metrics_path: /relabel\n    static_configs: [{{targets: [\"{exposition_addr}\"]}}]\n    metric_relabel_configs:\n{rules}"
        );
        // Start the seven processes two at a time (two cores).
        let src_a =
            std::thread::spawn(move || e2e::Prometheus::start("col-src-a", Some(&scrape_a)));
        let src_b = std::thread::spawn(move || e2e::Prometheus::start("col-src-b", Some(&scrape)));
        let col_a = e2e::Prometheus::start("col-a", None)?;
        let b0 = std::thread::spawn(|| e2e::Prometheus::start("col-b-0", None));
        let b1 = e2e::Prometheus::start("col-b-1", None)?;
        let auth = e2e::Prometheus::start_with(
            "col-c-auth",
            None,
            &e2e::prometheus::StartOptions {
                basic_auth: Some((AUTH_USER.into(), AUTH_PASSWORD.into())),
                ..Default::default()
            },
        )?;
        let pushgateway = e2e::Pushgateway::start("col-d-pgw")?;
        let join = |h: std::thread::JoinHandle<Result<e2e::Prometheus>>| {
            h.join()
                .map_err(|_| anyhow::anyhow!("Prometheus start panicked"))?
        };
        let sources = vec![join(src_a)?, join(src_b)?];
        let col_b = vec![join(b0)?, b1];
        let tenants = tempfile::tempdir()?;
        std::fs::write(tenants.path().join("collector.yaml"), TENANTS)?;
        std::fs::write(tenants.path().join("bad.yaml"), BAD_TENANTS)?;
        let secrets = tempfile::tempdir()?;
        for (name, password) in [("rw-good", AUTH_PASSWORD), ("rw-bad", "not-the-password")] {
            let dir = secrets.path().join("col-c").join(name);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("password"), format!("{password}\n"))?;
        }
        let overrides = [
            ("prom.col-a.svc:9090", col_a.url()),
            ("prom-b-0.prom-b.col-b.svc:9090", col_b[0].url()),
            ("prom-b-1.prom-b.col-b.svc:9090", col_b[1].url()),
            ("remote-write.col-c.svc:9090", auth.url()),
            ("pushgateway.col-d.svc:9091", pushgateway.url()),
            // Nothing listens on port 1.
            ("gone.col-e.svc:9090", "http://127.0.0.1:1".to_string()),
        ]
        .iter()
        .map(|(k, v)| format!("    \"{k}\": \"{v}\"\n"))
        .collect::<String>();
        let config = format!(
            r#"server: {{listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}}
tenants: {{source: file, directory: "{tenants}"}}
proxy: {{enable_request_logging: false}}
backends:
  probe_interval: 1s
  groups: [{{name: infra, members: ["{a}", "{b}"]}}]
auth: {{mode: header}}
{collector}"#,
            collector = remote_write_section(&secrets.path().display().to_string(), &overrides),
            tenants = tenants.path().display(),
            a = sources[0].url(),
            b = sources[1].url(),
        );
        let config = proxy::config::Config::from_yaml(&config, "collector-lab")?;
        let proxy = env.block_on(proxy::app::start(config, None))?;
        env.block_on(proxy.wait_ready(Duration::from_secs(30)))
            .map_err(|e| anyhow::anyhow!("collector proxy not ready: {e}"))?;
        eprintln!("e2e: collector lab started in {:.1?}", t0.elapsed());
        Ok(CollectorLab {
            exposition,
            _sources: sources,
            col_a,
            col_b: Mutex::new(col_b),
            auth,
            pushgateway,
            proxy,
            _dirs: (tenants, secrets),
        })
    }

    /// `/collected-metrics` entry of one CR.
    pub fn job(&self, env: &Env, namespace: &str, name: &str) -> Result<Value> {
        let url = format!("{}/collected-metrics", self.proxy.admin_url());
        let answer = env.block_on(send(client().get(url)))?;
        answer.body["resources"]
            .as_array()
            .and_then(|all| {
                all.iter()
                    .find(|j| j["namespace"] == namespace && j["name"] == name)
            })
            .cloned()
            .with_context(|| {
                format!(
                    "{namespace}/{name} not in /collected-metrics: {}",
                    answer.body
                )
            })
    }

    /// Poll `/collected-metrics` until `ready(job)` holds for `namespace/name`.
    pub fn wait_job(
        &self,
        env: &Env,
        namespace: &str,
        name: &str,
        timeout: Duration,
        what: &str,
        ready: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let job = self.job(env, namespace, name);
            if let Ok(j) = &job
                && ready(j)
            {
                return Ok(j.clone());
            }
            if Instant::now() > deadline {
                bail!("timed out waiting for {namespace}/{name}: {what}; last status: {job:?}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// The `targets.<name>.<field>` number of a job status.
pub fn target_u64(job: &Value, target: &str, field: &str) -> u64 {
    job["targets"][target][field].as_u64().unwrap_or(0)
}

/// The basic-auth header for the receiver.
pub fn auth_header() -> String {
    e2e::prometheus::basic_auth_header(AUTH_USER, AUTH_PASSWORD)
}

/// The collector's `remote_write:` config section: fast retries, the Kubernetes service URLs
/// allowed, and `overrides` (YAML lines `    "host:port": "url"`) to reach the local processes.
pub fn remote_write_section(secrets: &str, overrides: &str) -> String {
    format!(
        r#"remote_write:
  enabled: true
  collection_lag: 2s
  min_backoff: 200ms
  max_backoff: 1s
  request_timeout: 5s
  secrets_directory: "{secrets}"
  allowed_urls: ['http://[a-z0-9-]+\.[a-z0-9-]+\.svc:9090/api/v1/write']
  address_overrides:
{overrides}"#
    )
}
