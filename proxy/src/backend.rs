//! Backend pool: named groups (HA sets) of infrastructure Prometheus instances, their
//! readiness probes, round robin over healthy members with failover, a global concurrency
//! limit and the per-request timeout. Reads go to the first group.

pub mod health;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use health::{Health, HealthState, Member};

use crate::telemetry::{BackendLabels, Metrics};

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
    next: AtomicUsize,
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
            for url in &group.members {
                members.push(Arc::new(Member::new(normalize_url(&group.name, url)?)));
            }
            groups.push(Group {
                name: group.name.clone(),
                members,
                next: AtomicUsize::new(0),
            });
        }
        let client = reqwest::Client::builder()
            // A redirect would make the proxy fetch a URL nobody enforced (reliability §1.1/12).
            .redirect(reqwest::redirect::Policy::none())
            // Backends are in-cluster; environment proxies are not for them.
            .no_proxy()
            .user_agent(concat!(
                "prometheus-multi-tenant-proxy/",
                env!("CARGO_PKG_VERSION")
            ))
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
        let candidates: Vec<&Arc<Member>> = (0..n)
            .map(|i| &group.members[(start + i) % n])
            .filter(|m| m.is_routable())
            .collect();
        if candidates.is_empty() {
            return Err(UpstreamError::Unavailable(format!(
                "no healthy backend in group {}",
                group.name
            )));
        }
        let mut last_failure: Option<UpstreamError> = None;
        let mut last_5xx: Option<(StatusCode, Option<HeaderValue>, bytes::Bytes, String)> = None;
        for member in candidates {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
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
            let response = match builder.timeout(remaining).send().await {
                Ok(response) => response,
                Err(error) => {
                    let text = crate::client::describe(&error);
                    let outcome = if error.is_timeout() {
                        "timeout"
                    } else if error.is_connect() {
                        // Passive health: skip it until the next probe says otherwise.
                        member.record_failure(text.clone(), false);
                        "connect_error"
                    } else {
                        "error"
                    };
                    self.count(&group.name, &member.url, outcome);
                    tracing::warn!(member = %member.url, error = %text, "backend request failed, trying the next member");
                    last_failure = Some(if error.is_timeout() {
                        UpstreamError::Timeout(format!(
                            "backend {} did not answer in time ({text})",
                            member.url
                        ))
                    } else {
                        UpstreamError::Unavailable(format!(
                            "no healthy backend in group {}: last error from {}: {text}",
                            group.name, member.url
                        ))
                    });
                    continue;
                }
            };
            let status = response.status();
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .cloned();
            if status.is_server_error() {
                self.count(&group.name, &member.url, "http_5xx");
                tracing::warn!(member = %member.url, %status, "backend answered a server error, trying the next member");
                let body = read_reqwest(response, MAX_BUFFERED_BYTES)
                    .await
                    .unwrap_or_default();
                last_5xx = Some((status, content_type, body, member.url.clone()));
                continue;
            }
            let outcome = if status.is_client_error() {
                "http_4xx"
            } else {
                "ok"
            };
            self.count(&group.name, &member.url, outcome);
            if response
                .content_length()
                .is_some_and(|len| len > MAX_RESPONSE_BYTES as u64)
            {
                return Err(UpstreamError::TooLarge(format!(
                    "backend answer is larger than the proxy's limit of {MAX_RESPONSE_BYTES} bytes; narrow the request"
                )));
            }
            return Ok(UpstreamResponse {
                status,
                content_type,
                body: stream_body(response, MAX_RESPONSE_BYTES, permit),
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

/// Stream a reqwest body into an axum body as it comes, chunk by chunk (no copy), failing once
/// it passes `max` bytes. The upstream size hint is kept, so an answer with a Content-Length is
/// passed on with it instead of being re-chunked. The concurrency permit lives as long as the
/// body.
fn stream_body(response: reqwest::Response, max: usize, permit: OwnedSemaphorePermit) -> Body {
    Body::new(Upstream {
        inner: reqwest::Body::from(response),
        seen: 0,
        max,
        _permit: permit,
    })
}

struct Upstream {
    inner: reqwest::Body,
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
                return Poll::Ready(Some(Err(std::io::Error::other(crate::client::describe(
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

async fn read_reqwest(
    mut response: reqwest::Response,
    max: usize,
) -> Result<bytes::Bytes, UpstreamError> {
    let mut out = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if out.len() + chunk.len() > max {
                    return Err(UpstreamError::TooLarge(format!(
                        "backend answer is larger than {max} bytes"
                    )));
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(out.into()),
            Err(error) => {
                return Err(UpstreamError::Unavailable(format!(
                    "reading the backend answer failed: {}",
                    crate::client::describe(&error)
                )));
            }
        }
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
