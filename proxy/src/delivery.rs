//! Delivery to one endpoint (a collector target replica, a Pushgateway group, an ingest
//! destination): a bounded queue of encoded requests and a worker that sends them oldest first. An endpoint that is down only
//! holds back its own queue; when it returns it catches up in order. 5xx, 429 and connection
//! errors are retried with capped exponential backoff and jitter (honouring `Retry-After`);
//! other 4xx are dropped and counted with the endpoint's message. A full queue either drops its
//! oldest ([`Delivery::enqueue`]; the collector first waits a bounded time for room with
//! [`Delivery::enqueue_waiting`] while the endpoint is healthy) or refuses new requests
//! ([`Delivery::try_enqueue`], the ingest gateway, which then answers 503).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use http::{HeaderMap, StatusCode};
use tokio::sync::{Notify, watch};

mod payload;
pub mod spill;

pub use payload::Payload;
use payload::{spill_decode, spill_encode};

use crate::client::describe;
use crate::remote_write::{
    CONTENT_ENCODING, CONTENT_ENCODING_SNAPPY, CONTENT_TYPE, CONTENT_TYPE_PROTOBUF,
    REMOTE_WRITE_VERSION, REMOTE_WRITE_VERSION_HEADER,
};
use crate::telemetry::{DeliveryFamilies, EndpointLabels, EndpointOutcomeLabels};
use crate::tenant::crd::TlsConfig;
use crate::time::rfc3339;

/// The HTTP client of tenant targets and ingest destinations: no redirects (a redirect would
/// send a tenant's series, and credentials, somewhere nobody configured), our user agent.
pub fn http_client() -> Result<reqwest::Client, String> {
    crate::client::install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!(
            "prometheus-multi-tenant-proxy/",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
        .map_err(|e| format!("could not build the HTTP client: {e}"))
}

/// How an endpoint is written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Snappy protobuf POST, every sample.
    RemoteWrite,
    /// Text exposition PUT of the latest values (replaces the group).
    Pushgateway,
}

/// One place series are written to: a replica of a CR's target, a Pushgateway group, an ingest
/// destination.
#[derive(Clone)]
pub struct Endpoint {
    /// Stable name within the CR: `prometheus`, `prometheus-<sts>-<i>`, `pushgateway`,
    /// `remote_write`.
    pub name: String,
    pub url: String,
    pub protocol: Protocol,
    /// Sent with every request: credentials, the CR's headers, the tenant header.
    pub headers: HeaderMap,
    pub tls: Option<TlsConfig>,
}

impl std::fmt::Debug for Endpoint {
    // Headers hold credentials: never print them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

/// Longest `Retry-After` honoured: a misbehaving endpoint must not park its queue for hours.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// [`Delivery::try_enqueue`] found no room: nothing was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("queue full ({depth} of {capacity} requests)")]
pub struct QueueFull {
    pub depth: usize,
    pub capacity: usize,
}

/// Retry and timeout settings of a worker.
#[derive(Debug, Clone, Copy)]
pub struct DeliverySettings {
    pub capacity: usize,
    pub request_timeout: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

/// What `/collected-metrics` shows of an endpoint.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DeliveryStats {
    pub url: String,
    pub queue_depth: usize,
    pub requests_ok: u64,
    pub requests_retried: u64,
    pub requests_rejected: u64,
    pub dropped_queue_full: u64,
    pub series_written: u64,
    pub samples_written: u64,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub last_success: Option<String>,
}

struct Target {
    endpoint: Endpoint,
    client: reqwest::Client,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<(u64, Payload)>,
    next_seq: u64,
}

/// An endpoint's queue and the state its worker reports.
pub struct Delivery {
    labels: EndpointLabels,
    /// With a spill, every queued request is on disk until delivered, and the memory queue
    /// is unused: acknowledged data survives a restart.
    spill: Option<spill::SpillQueue>,
    target: ArcSwap<Target>,
    queue: Mutex<Queue>,
    notify: Notify,
    /// Signalled whenever a request leaves the queue (room for [`Delivery::enqueue_waiting`]).
    room: Notify,
    /// The last attempt failed and is being retried: nobody waits for room then.
    failing: AtomicBool,
    stats: Mutex<DeliveryStats>,
    settings: DeliverySettings,
    metrics: DeliveryFamilies,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("target", &self.labels.target)
            .finish_non_exhaustive()
    }
}

/// How one attempt ended.
enum Attempt {
    Sent(StatusCode),
    Retry(String, Option<Duration>),
    Rejected(StatusCode, String),
}

impl Delivery {
    pub fn new(
        labels: EndpointLabels,
        endpoint: Endpoint,
        client: reqwest::Client,
        settings: DeliverySettings,
        metrics: DeliveryFamilies,
    ) -> Arc<Delivery> {
        Self::build(labels, endpoint, client, settings, metrics, None)
    }

    /// A delivery whose queue is `spill` (what a previous process left there is sent first).
    pub fn with_spill(
        labels: EndpointLabels,
        endpoint: Endpoint,
        client: reqwest::Client,
        settings: DeliverySettings,
        metrics: DeliveryFamilies,
        spill: spill::SpillQueue,
    ) -> Arc<Delivery> {
        Self::build(labels, endpoint, client, settings, metrics, Some(spill))
    }

    fn build(
        labels: EndpointLabels,
        endpoint: Endpoint,
        client: reqwest::Client,
        settings: DeliverySettings,
        metrics: DeliveryFamilies,
        spill: Option<spill::SpillQueue>,
    ) -> Arc<Delivery> {
        let stats = DeliveryStats {
            url: endpoint.url.clone(),
            ..Default::default()
        };
        let d = Arc::new(Delivery {
            labels,
            spill,
            target: ArcSwap::from_pointee(Target { endpoint, client }),
            queue: Mutex::new(Queue::default()),
            notify: Notify::new(),
            room: Notify::new(),
            failing: AtomicBool::new(false),
            stats: Mutex::new(stats),
            settings,
            metrics,
        });
        d.set_depth(d.depth());
        d
    }

    /// Swap the endpoint (new credentials, a new address); queued requests go to the new one.
    pub fn update(&self, endpoint: Endpoint, client: reqwest::Client) {
        self.lock_stats().url = endpoint.url.clone();
        self.target.store(Arc::new(Target { endpoint, client }));
    }

    /// The client in use, if the endpoint's TLS settings are still `tls` (clients keep their
    /// connection pool across cycles).
    pub fn client_for_tls(&self, tls: &Option<TlsConfig>) -> Option<reqwest::Client> {
        let target = self.target.load();
        (target.endpoint.tls == *tls).then(|| target.client.clone())
    }

    pub fn protocol(&self) -> Protocol {
        self.target.load().endpoint.protocol
    }

    /// Queue requests; when full the oldest go first (a Pushgateway keeps only the newest:
    /// each request replaces the whole group).
    pub fn enqueue(&self, payloads: Vec<Payload>) {
        let capacity = match self.protocol() {
            Protocol::Pushgateway => 1,
            Protocol::RemoteWrite => self.settings.capacity,
        };
        let mut dropped = 0u64;
        let depth = {
            let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            for p in payloads {
                while q.items.len() >= capacity {
                    q.items.pop_front();
                    dropped += 1;
                }
                let seq = q.next_seq;
                q.next_seq += 1;
                q.items.push_back((seq, p));
            }
            q.items.len()
        };
        if dropped > 0 {
            let reason = match self.protocol() {
                Protocol::Pushgateway => "superseded",
                Protocol::RemoteWrite => {
                    self.lock_stats().dropped_queue_full += dropped;
                    tracing::warn!(
                        namespace = %self.labels.namespace, resource = %self.labels.resource,
                        target = %self.labels.target, dropped,
                        "collector queue full: dropped the oldest requests"
                    );
                    "queue_full"
                }
            };
            self.outcome_counter(&self.metrics.dropped_requests, reason)
                .inc_by(dropped);
        }
        self.set_depth(depth);
        self.notify.notify_one();
    }

    /// Queue `payload`, first waiting (until `deadline` at the latest) for room while the queue
    /// is full and the endpoint is healthy, so that a target that is only slower than the
    /// source loses nothing; past the deadline, or while the endpoint's writes fail, it is
    /// [`Delivery::enqueue`]: the oldest request goes.
    pub async fn enqueue_waiting(&self, payload: Payload, deadline: tokio::time::Instant) {
        if self.spill.is_none() && self.protocol() == Protocol::RemoteWrite {
            loop {
                let room = self.room.notified();
                tokio::pin!(room);
                // Registered before the check: a request leaving in between still wakes us.
                room.as_mut().enable();
                if self.depth() < self.settings.capacity
                    || self.failing.load(Ordering::Relaxed)
                    || tokio::time::Instant::now() >= deadline
                {
                    break;
                }
                if tokio::time::timeout_at(deadline, room).await.is_err() {
                    break;
                }
            }
        }
        self.enqueue(vec![payload]);
    }

    /// Queue all of `payloads`, or none of them if they don't fit. Returns the sequence number
    /// of the last one queued (see [`Delivery::oldest_queued`]).
    pub fn try_enqueue(&self, payloads: Vec<Payload>) -> Result<u64, QueueFull> {
        if let Some(spill) = &self.spill {
            let blobs: Vec<Vec<u8>> = payloads.iter().map(spill_encode).collect();
            let bytes: u64 = blobs.iter().map(|b| b.len() as u64).sum();
            if spill.bytes() + bytes > spill.max_bytes() {
                return Err(QueueFull {
                    depth: spill.len(),
                    capacity: spill.len(),
                });
            }
            let mut last = 0;
            for blob in blobs {
                match spill.push(&blob) {
                    Ok(seq) => last = seq,
                    Err(error) => {
                        // Earlier payloads of this call stay queued: they are delivered, and
                        // the sender's retry of the whole request only duplicates samples,
                        // which storage accepts.
                        tracing::error!(target = %self.labels.target, %error, "can't write to the spill");
                        return Err(QueueFull {
                            depth: spill.len(),
                            capacity: spill.len(),
                        });
                    }
                }
            }
            self.set_depth(spill.len());
            self.notify.notify_one();
            return Ok(last);
        }
        let depth = {
            let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            if q.items.len() + payloads.len() > self.settings.capacity {
                return Err(QueueFull {
                    depth: q.items.len(),
                    capacity: self.settings.capacity,
                });
            }
            for p in payloads {
                let seq = q.next_seq;
                q.next_seq += 1;
                q.items.push_back((seq, p));
            }
            (q.items.len(), q.next_seq.saturating_sub(1))
        };
        let (depth, last) = depth;
        self.set_depth(depth);
        self.notify.notify_one();
        Ok(last)
    }

    /// The sequence number of the oldest request still queued (in flight included), if any:
    /// requests are completed in order, so every one queued with a lower number has left.
    pub fn oldest_queued(&self) -> Option<u64> {
        if let Some(spill) = &self.spill {
            return spill.oldest();
        }
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .items
            .front()
            .map(|(seq, _)| *seq)
    }

    /// The queued requests, oldest first (memory queue only; tests).
    #[cfg(test)]
    pub fn queue_snapshot(&self) -> Vec<Payload> {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .items
            .iter()
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// The requests a previous process left in the spill, with their sequence numbers, oldest
    /// first (none without a spill). Read one at a time: the spill may be large.
    pub fn spilled(&self) -> impl Iterator<Item = (u64, Payload)> + '_ {
        let seqs = self
            .spill
            .as_ref()
            .map(|s| s.sequences())
            .unwrap_or_default();
        seqs.into_iter().filter_map(move |seq| {
            let blob = self.spill.as_ref()?.read(seq)?;
            Some((seq, spill_decode(blob)?))
        })
    }

    pub fn capacity(&self) -> usize {
        self.settings.capacity
    }

    /// Room for `n` more requests of `bytes` in all right now.
    pub fn has_room(&self, n: usize, bytes: u64) -> bool {
        match &self.spill {
            Some(spill) => spill.bytes() + bytes <= spill.max_bytes(),
            None => self.depth() + n <= self.settings.capacity,
        }
    }

    pub fn stats(&self) -> DeliveryStats {
        let mut s = self.lock_stats().clone();
        s.queue_depth = self.depth();
        s
    }

    pub fn depth(&self) -> usize {
        if let Some(spill) = &self.spill {
            return spill.len();
        }
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .items
            .len()
    }

    fn lock_stats(&self) -> std::sync::MutexGuard<'_, DeliveryStats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_depth(&self, depth: usize) {
        self.metrics
            .queue_depth
            .get_or_create(&self.labels)
            .set(depth as i64);
    }

    fn outcome_counter(
        &self,
        family: &prometheus_client::metrics::family::Family<
            EndpointOutcomeLabels,
            prometheus_client::metrics::counter::Counter,
        >,
        outcome: &str,
    ) -> prometheus_client::metrics::counter::Counter {
        family
            .get_or_create(&EndpointOutcomeLabels {
                namespace: self.labels.namespace.clone(),
                resource: self.labels.resource.clone(),
                target: self.labels.target.clone(),
                outcome: outcome.to_string(),
            })
            .clone()
    }

    /// Remove the request `seq` if it is still queued (the queue may have dropped it while it
    /// was in flight).
    fn complete(&self, seq: u64) {
        if let Some(spill) = &self.spill {
            if let Err(error) = spill.remove(seq) {
                tracing::error!(target = %self.labels.target, %error, "can't remove a delivered request from the spill; it will be sent again");
            }
            self.set_depth(spill.len());
            return;
        }
        let depth = {
            let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            if q.items.front().is_some_and(|(s, _)| *s == seq) {
                q.items.pop_front();
            }
            q.items.len()
        };
        self.set_depth(depth);
        self.room.notify_waiters();
    }

    /// Send queued requests until `stop` turns true and the queue is empty. The owner aborts
    /// the task when its shutdown grace period ends.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut failures: u32 = 0;
        loop {
            let next = match &self.spill {
                None => {
                    let q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                    q.items.front().cloned()
                }
                Some(spill) => match spill.front() {
                    Ok(None) => None,
                    Ok(Some((seq, blob))) => match spill_decode(blob) {
                        Some(p) => Some((seq, p)),
                        None => {
                            tracing::error!(target = %self.labels.target, seq, "unreadable spilled request; dropped");
                            self.complete(seq);
                            continue;
                        }
                    },
                    Err(error) => {
                        tracing::error!(target = %self.labels.target, %error, "can't read the spill; retrying");
                        tokio::time::sleep(self.settings.max_backoff).await;
                        continue;
                    }
                },
            };
            let Some((seq, payload)) = next else {
                if *stop.borrow() {
                    return;
                }
                tokio::select! {
                    _ = self.notify.notified() => {}
                    changed = stop.changed() => if changed.is_err() { return },
                }
                continue;
            };
            match self.attempt(&payload).await {
                Attempt::Sent(status) => {
                    failures = 0;
                    self.failing.store(false, Ordering::Relaxed);
                    self.complete(seq);
                    let mut s = self.lock_stats();
                    s.requests_ok += 1;
                    s.series_written += payload.series as u64;
                    s.samples_written += payload.samples as u64;
                    s.last_status = Some(status.as_u16());
                    s.last_success = Some(rfc3339(SystemTime::now()));
                    drop(s);
                    self.outcome_counter(&self.metrics.requests, "ok").inc();
                    self.metrics
                        .samples_written
                        .get_or_create(&self.labels)
                        .inc_by(payload.samples as u64);
                }
                Attempt::Rejected(status, message) => {
                    failures = 0;
                    self.failing.store(false, Ordering::Relaxed);
                    self.complete(seq);
                    tracing::warn!(
                        namespace = %self.labels.namespace, resource = %self.labels.resource,
                        target = %self.labels.target, status = status.as_u16(), %message,
                        "tenant target rejected a write; dropped (not retried: a 4xx would fail again)"
                    );
                    let mut s = self.lock_stats();
                    s.requests_rejected += 1;
                    s.last_status = Some(status.as_u16());
                    s.last_error = Some(format!("HTTP {}: {message}", status.as_u16()));
                    drop(s);
                    self.outcome_counter(&self.metrics.requests, "rejected")
                        .inc();
                    self.outcome_counter(&self.metrics.dropped_requests, "rejected")
                        .inc();
                }
                Attempt::Retry(why, retry_after) => {
                    failures = failures.saturating_add(1);
                    self.failing.store(true, Ordering::Relaxed);
                    // Whoever waits for room stops waiting: this endpoint won't make room soon.
                    self.room.notify_waiters();
                    let delay = retry_after
                        .map(|d| d.min(MAX_RETRY_AFTER))
                        .unwrap_or_else(|| backoff(&self.settings, failures));
                    tracing::warn!(
                        namespace = %self.labels.namespace, resource = %self.labels.resource,
                        target = %self.labels.target, error = %why, retry_in_ms = delay.as_millis() as u64,
                        "write to tenant target failed; will retry"
                    );
                    {
                        let mut s = self.lock_stats();
                        s.requests_retried += 1;
                        s.last_error = Some(why);
                    }
                    self.outcome_counter(&self.metrics.requests, "retry").inc();
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn attempt(&self, payload: &Payload) -> Attempt {
        let target = self.target.load_full();
        let endpoint = &target.endpoint;
        let request = match endpoint.protocol {
            Protocol::RemoteWrite => target
                .client
                .post(&endpoint.url)
                .header(CONTENT_ENCODING, CONTENT_ENCODING_SNAPPY)
                .header(CONTENT_TYPE, CONTENT_TYPE_PROTOBUF)
                .header(REMOTE_WRITE_VERSION_HEADER, REMOTE_WRITE_VERSION),
            Protocol::Pushgateway => target
                .client
                .put(&endpoint.url)
                .header(CONTENT_TYPE, "text/plain; version=0.0.4"),
        };
        let mut headers = endpoint.headers.clone();
        for (name, value) in &payload.headers {
            headers.insert(name.clone(), value.clone());
        }
        let response = request
            .headers(headers)
            .timeout(self.settings.request_timeout)
            .body(payload.body.clone())
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => return Attempt::Retry(describe(&e), None),
        };
        let status = response.status();
        if status.is_success() {
            return Attempt::Sent(status);
        }
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.bytes().await.unwrap_or_default();
        let message = String::from_utf8_lossy(&body[..body.len().min(512)])
            .trim()
            .to_string();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Attempt::Retry(format!("HTTP {}: {message}", status.as_u16()), retry_after)
        } else {
            Attempt::Rejected(status, message)
        }
    }
}

/// `min * 2^(n-1)`, capped at `max`, then a random point in its upper half (jitter keeps many
/// CRs that failed together from retrying together).
pub fn backoff(settings: &DeliverySettings, failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    let base = settings
        .min_backoff
        .saturating_mul(1u32 << exp)
        .min(settings.max_backoff);
    let half = base / 2;
    half + half.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests;
