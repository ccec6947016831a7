//! Backend pool: named groups (HA sets) of infrastructure Prometheus instances, their
//! readiness probes, round robin over healthy members with failover, a global concurrency
//! limit and the per-request timeout. Reads go to the first group.

pub mod health;
mod http1;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use health::{Health, HealthState, Member};
use http1::Http1Pool;

use crate::telemetry::{BackendLabels, Metrics};

/// The `User-Agent` of every request to a backend.
const USER_AGENT: &str = concat!("prometheus-multi-tenant-proxy/", env!("CARGO_PKG_VERSION"));

/// Upper bound of an upstream answer passed to a client.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;
/// Upper bound of an upstream answer the proxy reads itself (error bodies, metadata).
pub const MAX_BUFFERED_BYTES: usize = 64 * 1024 * 1024;

/// What the pool is built from (taken from `config.backends` and `config.proxy`).
#[derive(Debug, Clone)]
pub struct BackendSettings {
    pub groups: Vec<GroupSettings>,
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
    /// Deadline of one proxied request, failovers included.
    pub request_timeout: Duration,
    pub max_concurrent_requests: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSettings {
    pub name: String,
    pub members: Vec<String>,
}

/// Why the pool got no answer to pass on. The HTTP layer answers it (`http::refusal`): 503
/// `unavailable`, 503 `timeout`, 500 `internal`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// No member could answer: none healthy, every one failing, the pool saturated or stopping.
    #[error("{0}")]
    Unavailable(String),
    /// No member answered in time.
    #[error("{0}")]
    Timeout(String),
    /// An answer over the proxy's size limit.
    #[error("{0}")]
    TooLarge(String),
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("backend group {group:?}: invalid member URL {url:?}: {reason}")]
    InvalidMember {
        group: String,
        url: String,
        reason: String,
    },
    #[error("backend group {0:?} has no members")]
    EmptyGroup(String),
    #[error("could not build the HTTP client: {0}")]
    Client(String),
}

/// The request sent upstream: always built fresh by the proxy from enforced parameters.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    pub method: Method,
    /// Path below the member's base URL, e.g. `/api/v1/query`.
    pub path: String,
    /// `application/x-www-form-urlencoded` parameters: the POST body, or the GET query string.
    pub form: String,
}

/// An upstream answer, streamed.
#[derive(Debug)]
pub struct UpstreamResponse {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub body: Body,
    /// URL of the member that answered.
    pub member: String,
}

#[derive(Debug)]
struct Group {
    name: String,
    members: Vec<Arc<Member>>,
    /// Per member: its own connections when it is plain http, else `None` (reqwest, for TLS).
    connections: Vec<Option<Arc<Http1Pool>>>,
    next: AtomicUsize,
}

/// One member's answer head and its body, not yet limited.
struct Answer {
    status: StatusCode,
    content_type: Option<HeaderValue>,
    content_length: Option<u64>,
    body: Body,
}

/// Why one member gave no answer.
enum Failure {
    Timeout(String),
    Connect(String),
    Other(String),
}

#[derive(Debug)]
pub struct BackendPool {
    groups: Vec<Group>,
    client: reqwest::Client,
    semaphore: Arc<Semaphore>,
    settings: BackendSettings,
    metrics: Arc<Metrics>,
    probes: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for BackendPool {
    fn drop(&mut self) {
        for probe in self
            .probes
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
        {
            probe.abort();
        }
    }
}

impl BackendPool {
    /// Build the pool; probes start with [`BackendPool::start_probes`].
    pub fn new(settings: BackendSettings, metrics: Arc<Metrics>) -> Result<Self, BackendError> {
        crate::client::install_crypto_provider();
        let mut groups = Vec::new();
        for group in &settings.groups {
            if group.members.is_empty() {
                return Err(BackendError::EmptyGroup(group.name.clone()));
            }
            let mut members = Vec::new();
            let mut connections = Vec::new();
            for url in &group.members {
                let url = normalize_url(&group.name, url)?;
                connections.push(
                    reqwest::Url::parse(&url)
                        .ok()
                        .and_then(|parsed| Http1Pool::for_url(&parsed))
                        .map(Arc::new),
                );
                members.push(Arc::new(Member::new(url)));
            }
            groups.push(Group {
                name: group.name.clone(),
                members,
                connections,
                next: AtomicUsize::new(0),
            });
        }
        let client = reqwest::Client::builder()
            // A redirect would make the proxy fetch a URL nobody enforced (reliability §1.1/12).
            .redirect(reqwest::redirect::Policy::none())
            // Backends are in-cluster; environment proxies are not for them.
            .no_proxy()
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| BackendError::Client(e.to_string()))?;
        Ok(Self {
            groups,
            client,
            semaphore: Arc::new(Semaphore::new(settings.max_concurrent_requests.max(1))),
            settings,
            metrics,
            probes: Mutex::new(Vec::new()),
        })
    }

    /// Start one probe task per member (needs a Tokio runtime). Aborted when the pool drops.
    pub fn start_probes(&self) {
        let mut probes = self.probes.lock().unwrap_or_else(PoisonError::into_inner);
        for member in self.groups.iter().flat_map(|g| &g.members) {
            probes.push(tokio::spawn(health::probe_loop(
                member.clone(),
                self.client.clone(),
                self.settings.probe_interval,
                self.settings.probe_timeout,
            )));
        }
    }

    /// Stop the probe tasks (also done when the pool drops).
    pub fn stop_probes(&self) {
        for probe in self
            .probes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            probe.abort();
        }
    }

    /// Carry the health of members that also exist in `old` over (config reload).
    pub fn inherit_health(&self, old: &BackendPool) {
        for (group, member) in self.members() {
            if let Some(previous) = old
                .members()
                .find(|(g, m)| *g == group && m.url == member.url)
                .map(|(_, m)| m)
            {
                member.set_state(previous.state());
            }
        }
    }

    /// Every (group name, member).
    pub fn members(&self) -> impl Iterator<Item = (&str, &Arc<Member>)> {
        self.groups
            .iter()
            .flat_map(|g| g.members.iter().map(move |m| (g.name.as_str(), m)))
    }

    /// True when some member of the read group passed its last probe.
    pub fn read_group_ready(&self) -> Result<(), String> {
        let Some(group) = self.groups.first() else {
            return Err("no backend group configured".to_string());
        };
        if group.members.iter().any(|m| m.health() == Health::Up) {
            Ok(())
        } else {
            Err(format!(
                "no backend of group {} passed its readiness probe yet",
                group.name
            ))
        }
    }

    pub fn settings(&self) -> &BackendSettings {
        &self.settings
    }

    /// `/debug/targets` JSON.
    pub fn targets_json(&self) -> serde_json::Value {
        let groups: Vec<_> = self
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| {
                serde_json::json!({
                    "name": g.name,
                    "role": if i == 0 { "read" } else { "standby" },
                    "members": g.members.iter().map(|m| m.to_json()).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::json!({ "groups": groups })
    }

    fn count(&self, group: &str, member: &str, outcome: &'static str) {
        self.metrics
            .backend_requests
            .get_or_create(&BackendLabels {
                group: group.to_string(),
                member: member.to_string(),
                outcome,
            })
            .inc();
    }

    /// The read group's routable members in round-robin order (the next one first), for
    /// callers that speak another protocol to them (the collector's remote read).
    pub fn routable_read_members(&self) -> Vec<Arc<Member>> {
        let Some(group) = self.groups.first() else {
            return Vec::new();
        };
        let n = group.members.len();
        let start = group.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| group.members[(start + i) % n].clone())
            .filter(|m| m.is_routable())
            .collect()
    }

    /// The pool's HTTP client (rustls, connection pooling).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Send `request` to the read group: round robin over routable members, each tried at
    /// most once, failing over on connection errors, timeouts and 5xx.
    pub async fn send(&self, request: &UpstreamRequest) -> Result<UpstreamResponse, UpstreamError> {
        let deadline = Instant::now() + self.settings.request_timeout;
        let permit = self.acquire(deadline).await?;
        self.send_with_permit(request, deadline, permit).await
    }

    /// Send and read the whole answer (at most [`MAX_BUFFERED_BYTES`]).
    pub async fn send_buffered(
        &self,
        request: &UpstreamRequest,
    ) -> Result<(StatusCode, Option<HeaderValue>, bytes::Bytes), UpstreamError> {
        let response = self.send(request).await?;
        let bytes = read_body(response.body, MAX_BUFFERED_BYTES).await?;
        Ok((response.status, response.content_type, bytes))
    }

    async fn acquire(&self, deadline: Instant) -> Result<OwnedSemaphorePermit, UpstreamError> {
        match tokio::time::timeout_at(deadline, self.semaphore.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(UpstreamError::Unavailable(
                "backend pool is shutting down".into(),
            )),
            Err(_) => Err(UpstreamError::Unavailable(format!(
                "too many concurrent requests (limit {}); try again later",
                self.settings.max_concurrent_requests
            ))),
        }
    }

    async fn send_with_permit(
        &self,
        request: &UpstreamRequest,
        deadline: Instant,
        permit: OwnedSemaphorePermit,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let Some(group) = self.groups.first() else {
            return Err(UpstreamError::Unavailable(
                "no backend group configured".into(),
            ));
        };
        let n = group.members.len();
        let start = group.next.fetch_add(1, Ordering::Relaxed);
        let candidates: Vec<usize> = (0..n)
            .map(|i| (start + i) % n)
            .filter(|&i| group.members[i].is_routable())
            .collect();
        if candidates.is_empty() {
            return Err(UpstreamError::Unavailable(format!(
                "no healthy backend in group {}",
                group.name
            )));
        }
        let mut last_failure: Option<UpstreamError> = None;
        let mut last_5xx: Option<(StatusCode, Option<HeaderValue>, bytes::Bytes, String)> = None;
        for index in candidates {
            let member = &group.members[index];
            if deadline <= Instant::now() {
                break;
            }
            let answer = match &group.connections[index] {
                Some(connections) => send_http1(connections, request, deadline).await,
                None => self.send_reqwest(member, request, deadline).await,
            };
            let answer = match answer {
                Ok(answer) => answer,
                Err(failure) => {
                    let (outcome, text) = match &failure {
                        Failure::Timeout(text) => ("timeout", text),
                        Failure::Connect(text) => {
                            // Passive health: skip it until the next probe says otherwise.
                            member.record_failure(text.clone(), false);
                            ("connect_error", text)
                        }
                        Failure::Other(text) => ("error", text),
                    };
                    self.count(&group.name, &member.url, outcome);
                    tracing::warn!(member = %member.url, error = %text, "backend request failed, trying the next member");
                    last_failure = Some(match failure {
                        Failure::Timeout(text) => UpstreamError::Timeout(format!(
                            "backend {} did not answer in time ({text})",
                            member.url
                        )),
                        Failure::Connect(text) | Failure::Other(text) => {
                            UpstreamError::Unavailable(format!(
                                "no healthy backend in group {}: last error from {}: {text}",
                                group.name, member.url
                            ))
                        }
                    });
                    continue;
                }
            };
            let status = answer.status;
            if status.is_server_error() {
                self.count(&group.name, &member.url, "http_5xx");
                tracing::warn!(member = %member.url, %status, "backend answered a server error, trying the next member");
                let body = read_body(answer.body, MAX_BUFFERED_BYTES)
                    .await
                    .unwrap_or_default();
                last_5xx = Some((status, answer.content_type, body, member.url.clone()));
                continue;
            }
            let outcome = if status.is_client_error() {
                "http_4xx"
            } else {
                "ok"
            };
            self.count(&group.name, &member.url, outcome);
            if answer
                .content_length
                .is_some_and(|len| len > MAX_RESPONSE_BYTES as u64)
            {
                return Err(UpstreamError::TooLarge(format!(
                    "backend answer is larger than the proxy's limit of {MAX_RESPONSE_BYTES} bytes; narrow the request"
                )));
            }
            return Ok(UpstreamResponse {
                status,
                content_type: answer.content_type,
                body: limit_body(answer.body, MAX_RESPONSE_BYTES, permit),
                member: member.url.clone(),
            });
        }
        // Every member answered 5xx: that's the backend's own answer (e.g. a query timeout),
        // so pass the last one on rather than hiding it.
        if let Some((status, content_type, body, member)) = last_5xx {
            return Ok(UpstreamResponse {
                status,
                content_type,
                body: Body::from(body),
                member,
            });
        }
        Err(last_failure.unwrap_or_else(|| {
            UpstreamError::Timeout(format!(
                "no backend of group {} answered within {:?}",
                group.name, self.settings.request_timeout
            ))
        }))
    }
}

impl BackendPool {
    /// One member through the reqwest client (https members).
    async fn send_reqwest(
        &self,
        member: &Member,
        request: &UpstreamRequest,
        deadline: Instant,
    ) -> Result<Answer, Failure> {
        let url = format!("{}{}", member.url, request.path);
        let builder = if request.method == Method::GET {
            let url = if request.form.is_empty() {
                url
            } else {
                format!("{url}?{}", request.form)
            };
            self.client.get(url)
        } else {
            self.client
                .post(url)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(request.form.clone())
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        let response = builder.timeout(remaining).send().await.map_err(|error| {
            let text = crate::client::describe(&error);
            if error.is_timeout() {
                Failure::Timeout(text)
            } else if error.is_connect() {
                Failure::Connect(text)
            } else {
                Failure::Other(text)
            }
        })?;
        Ok(Answer {
            status: response.status(),
            content_type: response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .cloned(),
            content_length: response.content_length(),
            body: Body::new(reqwest::Body::from(response)),
        })
    }
}

/// One plain-http member through its own connections.
async fn send_http1(
    connections: &Arc<Http1Pool>,
    request: &UpstreamRequest,
    deadline: Instant,
) -> Result<Answer, Failure> {
    let (path, form) = if request.method == Method::GET {
        let path = if request.form.is_empty() {
            request.path.clone()
        } else {
            format!("{}?{}", request.path, request.form)
        };
        (path, None)
    } else {
        (
            request.path.clone(),
            Some(bytes::Bytes::from(request.form.clone())),
        )
    };
    let response = connections
        .send(&path, form, deadline)
        .await
        .map_err(|error| match error {
            http1::SendError::Timeout => Failure::Timeout("timeout".to_string()),
            http1::SendError::Connect(text) => {
                Failure::Connect(format!("connection failed: {text}"))
            }
            http1::SendError::Request(text) => Failure::Other(format!("request failed: {text}")),
        })?;
    let content_length = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let content_type = response.headers().get(http::header::CONTENT_TYPE).cloned();
    Ok(Answer {
        status: response.status(),
        content_type,
        content_length,
        body: Body::new(response.into_body()),
    })
}

fn normalize_url(group: &str, url: &str) -> Result<String, BackendError> {
    let invalid = |reason: &str| BackendError::InvalidMember {
        group: group.to_string(),
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("scheme must be http or https"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid("a member URL can't have a query or fragment"));
    }
    if parsed.host_str().is_none() {
        return Err(invalid("missing host"));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_string())
}

/// Pass an upstream body on chunk by chunk as it comes (no copy), failing once it passes `max`
/// bytes. The upstream size hint is kept, so an answer with a Content-Length is passed on with
/// it instead of being re-chunked. The concurrency permit lives as long as the body.
fn limit_body(body: Body, max: usize, permit: OwnedSemaphorePermit) -> Body {
    Body::new(Upstream {
        inner: body,
        seen: 0,
        max,
        _permit: permit,
    })
}

struct Upstream {
    inner: Body,
    seen: usize,
    max: usize,
    _permit: OwnedSemaphorePermit,
}

impl http_body::Body for Upstream {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
        use std::task::Poll;
        let frame = match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Ready(Some(Err(error))) => {
                return Poll::Ready(Some(Err(std::io::Error::other(crate::client::chain(
                    &error,
                )))));
            }
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        if let Some(data) = frame.data_ref() {
            self.seen = self.seen.saturating_add(data.len());
            if self.seen > self.max {
                let max = self.max;
                return Poll::Ready(Some(Err(std::io::Error::other(format!(
                    "backend answer exceeds the proxy's limit of {max} bytes"
                )))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Read an axum body completely, up to `max` bytes.
pub async fn read_body(body: Body, max: usize) -> Result<bytes::Bytes, UpstreamError> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| UpstreamError::Unavailable(format!("backend answer: {e}")))?;
        if out.len() + chunk.len() > max {
            return Err(UpstreamError::TooLarge(format!(
                "backend answer is larger than {max} bytes"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.into())
}

#[cfg(test)]
mod tests;
