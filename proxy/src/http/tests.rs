//! Router tests: `oneshot` requests against the API and admin routers, with a fake upstream
//! Prometheus on 127.0.0.1 that records every request it receives. Fixtures here; the
//! cases in `api` (enforced routes) and `access` (auth, errors, metadata, admin).

mod access;
mod api;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use tower::ServiceExt;

use super::*;
use crate::app::{App, RuntimeSettings};
use crate::auth::{AuthSettings, TokenSetting, TokenSource};
use crate::backend::{BackendSettings, GroupSettings};
use crate::promql::{EnforceLimits, enforce_match_selectors, enforce_query};
use crate::tenant::{Clause, LabelMatcher, MatchKind, Policy, Tenant, TenantSnapshot, TenantStore};

#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: String,
}

/// A fake Prometheus: records requests, answers like Prometheus would (roughly).
pub(crate) struct FakeUpstream {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeUpstream {
    pub async fn start() -> FakeUpstream {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        let app = Router::new().fallback(move |request: Request<Body>| {
            let log = log.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
                let body = String::from_utf8(body.to_vec()).unwrap();
                let path = parts.uri.path().to_string();
                if path != "/-/ready" {
                    log.lock().unwrap().push(Recorded {
                        method: parts.method.clone(),
                        path: path.clone(),
                        query: parts.uri.query().unwrap_or_default().to_string(),
                        headers: parts.headers.clone(),
                        body: body.clone(),
                    });
                }
                answer(&path, &body)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeUpstream {
            url,
            requests,
            task,
        }
    }

    pub fn take(&self) -> Vec<Recorded> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}

fn answer(path: &str, body: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    let json = |status: StatusCode, text: &str| {
        (
            status,
            [("content-type", "application/json")],
            text.to_string(),
        )
            .into_response()
    };
    match path {
        "/-/ready" => "ready".into_response(),
        _ if body.contains("boom") => json(
            StatusCode::UNPROCESSABLE_ENTITY,
            r#"{"status":"error","errorType":"execution","error":"boom"}"#,
        ),
        "/api/v1/label/__name__/values" => json(
            StatusCode::OK,
            r#"{"status":"success","data":["http_requests_total","up"]}"#,
        ),
        "/api/v1/rules" => json(StatusCode::OK, RULES_ANSWER),
        "/api/v1/metadata" => json(
            StatusCode::OK,
            r#"{"status":"success","data":{
                "up":[{"type":"gauge","help":"up","unit":""}],
                "secret_total":[{"type":"counter","help":"other tenant","unit":""}],
                "http_requests_total":[{"type":"counter","help":"requests","unit":""}]}}"#,
        ),
        "/federate" => (
            StatusCode::OK,
            [("content-type", "text/plain; version=0.0.4")],
            "up{namespace=\"team-a\"} 1\n",
        )
            .into_response(),
        _ => json(
            StatusCode::OK,
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
        ),
    }
}

/// A `/api/v1/rules` answer with team-a's rules, team-b's, and one mixed group.
pub(crate) const RULES_ANSWER: &str = r#"{"status":"success","data":{"groups":[
  {"name":"team-a","file":"/rules/a.yml","interval":15,"rules":[
    {"type":"recording","name":"team_a:up","query":"sum(up{namespace=\"team-a\"})","health":"ok"},
    {"type":"alerting","name":"TeamAErrors","query":"rate(http_requests_total{namespace=\"team-a\",code=\"500\"}[5m]) > 0","duration":0,"labels":{},"annotations":{},
     "alerts":[{"labels":{"alertname":"TeamAErrors","namespace":"team-a"},"annotations":{},"state":"firing","activeAt":"2024-01-01T00:00:00Z","value":"1e+00"},
               {"labels":{"alertname":"TeamAErrors","namespace":"team-b"},"annotations":{},"state":"firing","activeAt":"2024-01-01T00:00:00Z","value":"1e+00"}],
     "health":"ok","state":"firing"}]},
  {"name":"team-b","file":"/rules/b.yml","interval":15,"rules":[
    {"type":"alerting","name":"TeamBDown","query":"up{namespace=\"team-b\"} == 0","duration":0,"labels":{},"annotations":{},
     "alerts":[{"labels":{"alertname":"TeamBDown","namespace":"team-b"},"annotations":{},"state":"firing","activeAt":"2024-01-01T00:00:00Z","value":"0e+00"}],
     "health":"ok","state":"firing"}]},
  {"name":"mixed","file":"/rules/m.yml","interval":15,"rules":[
    {"type":"alerting","name":"Always","query":"vector(1)","duration":0,"labels":{"namespace":"team-a"},"annotations":{},
     "alerts":[{"labels":{"alertname":"Always","namespace":"team-a"},"annotations":{},"state":"firing","activeAt":"2024-01-01T00:00:00Z","value":"1e+00"}],
     "health":"ok","state":"firing"},
    {"type":"recording","name":"all:up","query":"sum(up)","health":"ok"}]}
]}}"#;

pub(crate) fn team_a_policy() -> Policy {
    Policy {
        clauses: vec![Clause {
            matchers: vec![
                LabelMatcher {
                    name: "__name__".into(),
                    kind: MatchKind::Regex,
                    value: "up|http_requests_total".into(),
                },
                LabelMatcher {
                    name: "namespace".into(),
                    kind: MatchKind::Equal,
                    value: "team-a".into(),
                },
            ],
        }],
    }
}

pub(crate) fn snapshot() -> TenantSnapshot {
    let mut tenants = BTreeMap::new();
    tenants.insert(
        "team-a".to_string(),
        Arc::new(Tenant {
            namespace: "team-a".into(),
            resources: vec!["team-a/reads".into()],
            policy: Arc::new(team_a_policy()),
        }),
    );
    tenants.insert(
        "team-empty".to_string(),
        Arc::new(Tenant {
            namespace: "team-empty".into(),
            resources: vec!["team-empty/nothing".into()],
            policy: Arc::new(Policy::default()),
        }),
    );
    TenantSnapshot {
        resources: Vec::new(),
        tenants,
        invalid: vec![],
        loaded: true,
    }
}

pub(crate) fn settings(members: Vec<String>, auth: AuthSettings) -> RuntimeSettings {
    RuntimeSettings {
        auth,
        backends: BackendSettings {
            groups: vec![GroupSettings {
                name: "infra".into(),
                members,
            }],
            probe_interval: Duration::from_millis(50),
            probe_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            max_concurrent_requests: 10,
        },
        max_body_bytes: 1024,
        request_timeout: Duration::from_secs(60),
        max_query_bytes: 64 * 1024,
        max_query_depth: 100,
        rewrite_cache_bytes: 1 << 20,
        request_logging: false,
        metrics_enabled: true,
        tenants_dir: None,
        tenant_namespaces: None,
        kubernetes: Default::default(),
        collector: Default::default(),
        ingest: Default::default(),
    }
}

pub(crate) fn header_auth() -> AuthSettings {
    AuthSettings::Header {
        header: "X-Tenant-Namespace".into(),
        query_param: Some("namespace".into()),
    }
}

pub(crate) struct Fixture {
    pub upstream: FakeUpstream,
    pub state: App,
}

pub(crate) async fn fixture_with(auth: AuthSettings) -> Fixture {
    let upstream = FakeUpstream::start().await;
    let tenants = Arc::new(TenantStore::new());
    tenants.replace(snapshot());
    let state =
        App::from_settings(settings(vec![upstream.url.clone()], auth), tenants, None).unwrap();
    Fixture { upstream, state }
}

pub(crate) async fn fixture() -> Fixture {
    fixture_with(header_auth()).await
}

pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

pub(crate) async fn call(router: Router, request: Request<Body>) -> Answer {
    let response = router.oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

pub(crate) fn get(uri: &str) -> Request<Body> {
    Request::get(uri)
        .header("X-Tenant-Namespace", "team-a")
        .body(Body::empty())
        .unwrap()
}

pub(crate) fn post(uri: &str, body: &str) -> Request<Body> {
    Request::post(uri)
        .header("X-Tenant-Namespace", "team-a")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body.to_string()))
        .unwrap()
}

pub(crate) fn limits() -> EnforceLimits {
    EnforceLimits {
        max_query_bytes: 64 * 1024,
        max_depth: 100,
    }
}

pub(crate) fn form(body: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(body.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub(crate) fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
