//! Forwarding accepted series to storage: per request and tenant, series with identical labels
//! merged (one bad duplicate makes Prometheus refuse the whole request), batches of at most
//! `batch_series`, the tenant header on each request, and per destination `shards` delivery
//! queues (a series queued in one at a time, so its samples stay in order; a request goes whole
//! to one queue, as the body it came as when nothing changed it: see [`route`]).
//! A request is queued for every destination or for none, so the receiver can answer 503
//! without having half-accepted it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::cardinality::series_hash;

mod route;
use crate::config::ingest::ForwardConfig;
use crate::delivery::spill::SpillQueue;
use crate::delivery::{
    Delivery, DeliverySettings, DeliveryStats, Endpoint, Payload, Protocol, QueueFull,
};
use crate::remote_write::{MetricMetadata, Sample, TimeSeries, WriteRequest};
use crate::telemetry::{DeliveryFamilies, EndpointLabels};
use route::{Affinity, Plan};

struct Destination {
    tenant_header: Option<HeaderName>,
    tenant_value: String,
    /// One queue and worker per shard; a series is queued in one shard at a time, so its
    /// samples stay in order (see [`route`]).
    shards: Vec<(String, Arc<Delivery>)>,
    affinity: Mutex<Affinity>,
}

impl Destination {
    fn oldest(&self) -> Vec<Option<u64>> {
        self.shards.iter().map(|(_, d)| d.oldest_queued()).collect()
    }

    fn plan(&self, hashes: &[u64]) -> Plan {
        if self.shards.len() <= 1 {
            return Plan::Whole(0);
        }
        let depth: Vec<usize> = self.shards.iter().map(|(_, d)| d.depth()).collect();
        lock(&self.affinity).plan(hashes, &self.oldest(), &depth)
    }

    /// Where the series of the requests a previous process spilled are queued: read back once
    /// at start, so that new requests keep those series in their shards.
    fn recover_affinity(&self) {
        if self.shards.len() <= 1 {
            return;
        }
        let mut affinity = lock(&self.affinity);
        let mut requests = 0;
        for (shard, (_, delivery)) in self.shards.iter().enumerate() {
            let mut last = vec![None; self.shards.len()];
            for (seq, payload) in delivery.spilled() {
                let Ok(raw) = crate::remote_write::decompress(&payload.body, usize::MAX) else {
                    continue;
                };
                let Ok(scanned) = crate::remote_write::wire::scan(&raw, usize::MAX) else {
                    continue;
                };
                let hashes: Vec<u64> = scanned
                    .series
                    .iter()
                    .map(|s| s.labels_hash(scanned.labels_of(s)))
                    .collect();
                last[shard] = Some(seq);
                affinity.record(hashes, &Plan::Whole(shard), &last);
                requests += 1;
            }
        }
        if requests > 0 {
            tracing::info!(
                requests,
                "read the spilled requests' series back to keep them in their queues"
            );
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The destinations and their workers.
pub struct Forwarder {
    destinations: Vec<Destination>,
    batch_series: usize,
    /// Serialises `accept` so that "room everywhere, then queue everywhere" holds.
    accepting: Mutex<()>,
    /// Queues live on disk: nothing to drain at shutdown.
    spilled: bool,
    stop: watch::Sender<bool>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    /// The forwarding thread's runtime, where the workers run.
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field(
                "queues",
                &self
                    .destinations
                    .iter()
                    .flat_map(|d| d.shards.iter().map(|(n, _)| n))
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Forwarder {
    /// Build the destinations and start their workers (needs a Tokio runtime).
    pub fn start(config: &ForwardConfig, families: DeliveryFamilies) -> Result<Forwarder, String> {
        let client = crate::delivery::http_client()?;
        // The delivery workers get a thread of their own: request handling is CPU work, and on
        // the shared workers it left them so little time that queues grew while the gateway
        // went on accepting (the sink then received a tenth of what was accepted).
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("pmtp-forward")
            .enable_all()
            .build()
            .map_err(|e| format!("could not start the forwarding thread: {e}"))?;
        let (stop, stop_rx) = watch::channel(false);
        let mut destinations = Vec::new();
        let mut workers = Vec::new();
        for d in &config.destinations {
            let mut headers = HeaderMap::new();
            for (k, v) in &d.headers {
                let name = HeaderName::from_bytes(k.as_bytes())
                    .map_err(|_| format!("destination {}: bad header name {k:?}", d.name))?;
                let value = HeaderValue::from_str(v)
                    .map_err(|_| format!("destination {}: bad value of header {k}", d.name))?;
                headers.insert(name, value);
            }
            let tenant_header = match d.tenant_header.as_deref() {
                None => Some(HeaderName::from_static("x-scope-orgid")),
                Some("") => None,
                Some(h) => Some(
                    HeaderName::from_bytes(h.as_bytes())
                        .map_err(|_| format!("destination {}: bad tenant_header {h:?}", d.name))?,
                ),
            };
            let n = config.shards.max(1);
            let mut shards = Vec::with_capacity(n);
            for i in 0..n {
                let name = if n == 1 {
                    d.name.clone()
                } else {
                    format!("{}-{i}", d.name)
                };
                let labels = EndpointLabels {
                    namespace: String::new(),
                    resource: "ingest".into(),
                    target: name.clone(),
                };
                let endpoint = Endpoint {
                    name: name.clone(),
                    url: d.url.clone(),
                    protocol: Protocol::RemoteWrite,
                    headers: headers.clone(),
                    tls: None,
                };
                let settings = DeliverySettings {
                    capacity: config.queue_capacity,
                    request_timeout: config.request_timeout,
                    min_backoff: config.min_backoff,
                    max_backoff: config.max_backoff,
                };
                let delivery = match &config.spill_directory {
                    None => {
                        Delivery::new(labels, endpoint, client.clone(), settings, families.clone())
                    }
                    Some(dir) => {
                        let spill = SpillQueue::open(&dir.join(&name), config.spill_max_bytes)
                            .map_err(|e| format!("destination {name}: {e}"))?;
                        if !spill.is_empty() {
                            tracing::info!(destination = %name, requests = spill.len(), "sending what the spill kept from before the restart");
                        }
                        Delivery::with_spill(
                            labels,
                            endpoint,
                            client.clone(),
                            settings,
                            families.clone(),
                            spill,
                        )
                    }
                };
                workers.push(runtime.spawn(delivery.clone().run(stop_rx.clone())));
                shards.push((name, delivery));
            }
            let destination = Destination {
                tenant_header,
                tenant_value: d.tenant_value.clone().unwrap_or_else(|| "{tenant}".into()),
                shards,
                affinity: Mutex::default(),
            };
            destination.recover_affinity();
            destinations.push(destination);
        }
        Ok(Forwarder {
            destinations,
            batch_series: config.batch_series.max(1),
            accepting: Mutex::new(()),
            spilled: config.spill_directory.is_some(),
            stop,
            workers: Mutex::new(workers),
            runtime: Some(runtime),
        })
    }

    /// Queue one tenant's accepted series (and the request's metadata) for every destination,
    /// or for none when a queue has no room. Returns the number of series forwarded.
    pub fn accept(
        &self,
        tenant: &str,
        series: Vec<TimeSeries>,
        metadata: Vec<MetricMetadata>,
    ) -> Result<usize, QueueFull> {
        let series = series.into_iter().map(Outgoing::owned).collect();
        self.accept_batch(tenant, series, metadata, None)
    }

    /// [`Forwarder::accept`] for series still encoded as they came. `original` is the request's
    /// body when every one of its series is in `series` unchanged: when the request goes whole
    /// to one shard (see [`route`]) and fits one batch, that body is forwarded as it is,
    /// without encoding and compressing again.
    pub fn accept_batch(
        &self,
        tenant: &str,
        series: Vec<Outgoing<'_>>,
        metadata: Vec<MetricMetadata>,
        original: Option<bytes::Bytes>,
    ) -> Result<usize, QueueFull> {
        let (series, merged) = merge_outgoing(series);
        if series.is_empty() && metadata.is_empty() {
            return Ok(0);
        }
        let count = series.len();
        let hashes: Vec<u64> = series.iter().map(|s| s.hash).collect();
        let passable = original.filter(|_| {
            !merged && count <= self.batch_series && series.iter().all(Outgoing::is_encoded)
        });
        // One plan per destination; destinations that agree share the encoded bodies.
        let plans: Vec<Plan> = self.destinations.iter().map(|d| d.plan(&hashes)).collect();
        let mut encoded: Vec<(Plan, Vec<Vec<Body>>)> = Vec::new();
        for plan in &plans {
            if encoded.iter().any(|(p, _)| p == plan) {
                continue;
            }
            let shard_count = self.destinations.first().map_or(1, |d| d.shards.len());
            let bodies = match (plan, &passable) {
                (Plan::Whole(shard), Some(bytes)) => {
                    let mut bodies: Vec<Vec<Body>> = (0..shard_count).map(|_| Vec::new()).collect();
                    bodies[*shard].push(Body {
                        bytes: bytes.clone(),
                        series: count,
                        samples: series.iter().map(|s| s.samples).sum(),
                    });
                    bodies
                }
                _ => encode_bodies(&series, &metadata, plan, shard_count, self.batch_series),
            };
            encoded.push((plan.clone(), bodies));
        }
        let bodies_of = |plan: &Plan| -> &Vec<Vec<Body>> {
            let found = encoded.iter().find(|(p, _)| p == plan);
            // Every plan was encoded above.
            found.map_or(&encoded[0].1, |(_, b)| b)
        };
        let _serial = lock(&self.accepting);
        for (d, plan) in self.destinations.iter().zip(&plans) {
            for ((_, delivery), bodies) in d.shards.iter().zip(bodies_of(plan)) {
                let bytes: u64 = bodies.iter().map(|b| b.bytes.len() as u64 + 64).sum();
                if !delivery.has_room(bodies.len(), bytes) {
                    return Err(QueueFull {
                        depth: delivery.depth(),
                        capacity: delivery.capacity(),
                    });
                }
            }
        }
        let mut hashes = Some(hashes);
        let last_destination = self.destinations.len().saturating_sub(1);
        for (i, (d, plan)) in self.destinations.iter().zip(&plans).enumerate() {
            let headers: Vec<(HeaderName, HeaderValue)> = match &d.tenant_header {
                Some(name) => HeaderValue::from_str(&d.tenant_value.replace("{tenant}", tenant))
                    .map(|v| vec![(name.clone(), v)])
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            let mut last_seq = vec![None; d.shards.len()];
            for (shard, ((_, delivery), bodies)) in d.shards.iter().zip(bodies_of(plan)).enumerate()
            {
                if bodies.is_empty() {
                    continue;
                }
                let payloads = bodies
                    .iter()
                    .map(|b| Payload {
                        body: b.bytes.clone(),
                        series: b.series,
                        samples: b.samples,
                        headers: headers.clone(),
                    })
                    .collect();
                last_seq[shard] = Some(delivery.try_enqueue(payloads)?);
            }
            if d.shards.len() > 1 {
                let mine = if i == last_destination {
                    hashes.take()
                } else {
                    hashes.clone()
                };
                lock(&d.affinity).record(mine.unwrap_or_default(), plan, &last_seq);
            }
        }
        Ok(count)
    }

    /// Whether the queues are on disk.
    pub fn spills(&self) -> bool {
        self.spilled
    }

    /// Per destination: URL, queue depth, requests, last error.
    pub fn stats(&self) -> BTreeMap<String, DeliveryStats> {
        self.destinations
            .iter()
            .flat_map(|d| d.shards.iter())
            .map(|(name, delivery)| (name.clone(), delivery.stats()))
            .collect()
    }

    /// Stop taking work and let the queues drain for up to `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        let _ = self.stop.send(true);
        let workers =
            std::mem::take(&mut *self.workers.lock().unwrap_or_else(PoisonError::into_inner));
        // With a spill everything queued is on disk and is sent after the restart: waiting
        // for a storage that is down would only delay the shutdown.
        let grace = if self.spilled { Duration::ZERO } else { grace };
        let deadline = tokio::time::Instant::now() + grace;
        for mut w in workers {
            if tokio::time::timeout_at(deadline, &mut w).await.is_err() {
                w.abort();
            }
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        for w in self
            .workers
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            w.abort();
        }
        // Dropped from async code too: a runtime can't be dropped there, only let go.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The keys are already xxh3 hashes: hashing them again (SipHash) would be wasted work.
#[derive(Default, Clone, Copy)]
struct NoHash(u64);

impl std::hash::Hasher for NoHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type BuildNoHash = std::hash::BuildHasherDefault<NoHash>;

/// A series to forward: its bytes as they came in the request, or rebuilt by a rule.
pub struct Outgoing<'a> {
    series: Series<'a>,
    /// [`series_hash`] of its labels: picks the shard and finds duplicates.
    hash: u64,
    samples: usize,
}

enum Series<'a> {
    /// An encoded `TimeSeries` message, as it came in the request.
    Encoded(&'a [u8]),
    /// An encoded `TimeSeries` message built by a rule that changed its labels.
    Built(Vec<u8>),
    Owned(TimeSeries),
}

impl<'a> Outgoing<'a> {
    /// An encoded series (`hash` and `samples` as the scanner read them).
    pub fn encoded(bytes: &'a [u8], hash: u64, samples: usize) -> Outgoing<'a> {
        Outgoing {
            series: Series::Encoded(bytes),
            hash,
            samples,
        }
    }

    /// A series re-encoded with new labels (`hash` of those labels).
    pub fn built(bytes: Vec<u8>, hash: u64, samples: usize) -> Outgoing<'a> {
        Outgoing {
            series: Series::Built(bytes),
            hash,
            samples,
        }
    }

    pub fn owned(series: TimeSeries) -> Outgoing<'a> {
        Outgoing {
            hash: series_hash(&series.labels),
            samples: series.samples.len() + series.histograms.len(),
            series: Series::Owned(series),
        }
    }

    /// [`series_hash`] of its labels.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Kept as the bytes it came as.
    pub fn is_encoded(&self) -> bool {
        matches!(self.series, Series::Encoded(_))
    }

    /// Append to a `WriteRequest` body as field 1.
    fn write(&self, out: &mut Vec<u8>) {
        match &self.series {
            Series::Encoded(bytes) => crate::remote_write::wire::push_series(out, bytes),
            Series::Built(bytes) => crate::remote_write::wire::push_series(out, bytes),
            Series::Owned(t) => prost::encoding::message::encode(1, t, out),
        }
    }

    fn encoded_len(&self) -> usize {
        match &self.series {
            Series::Encoded(bytes) => {
                1 + prost::encoding::encoded_len_varint(bytes.len() as u64) + bytes.len()
            }
            Series::Built(bytes) => {
                1 + prost::encoding::encoded_len_varint(bytes.len() as u64) + bytes.len()
            }
            Series::Owned(t) => prost::encoding::message::encoded_len(1, t),
        }
    }

    fn into_owned(self) -> Option<TimeSeries> {
        match self.series {
            Series::Owned(t) => Some(t),
            // The scanner only hands over series prost decodes (tested in `wire`).
            Series::Encoded(bytes) => prost::Message::decode(bytes).ok(),
            Series::Built(bytes) => prost::Message::decode(bytes.as_slice()).ok(),
        }
    }
}

/// One series per label set (see [`merge_duplicates`]); the encoded series are decoded only
/// when the request has duplicates. Also says whether anything was merged.
fn merge_outgoing(series: Vec<Outgoing<'_>>) -> (Vec<Outgoing<'_>>, bool) {
    let mut seen: std::collections::HashSet<u64, BuildNoHash> =
        std::collections::HashSet::with_capacity_and_hasher(series.len(), BuildNoHash::default());
    if series.iter().all(|s| seen.insert(s.hash)) {
        return (series, false);
    }
    let owned = series
        .into_iter()
        .filter_map(Outgoing::into_owned)
        .collect();
    let merged = merge_duplicates(owned)
        .into_iter()
        .map(Outgoing::owned)
        .collect();
    (merged, true)
}

/// Per shard, the encoded batches of `series` as `plan` places them (at most `batch_series`
/// each), and the metadata in one request of its own on the plan's first shard.
fn encode_bodies(
    series: &[Outgoing<'_>],
    metadata: &[MetricMetadata],
    plan: &Plan,
    shard_count: usize,
    batch_series: usize,
) -> Vec<Vec<Body>> {
    let mut by_shard: Vec<Vec<&Outgoing<'_>>> = (0..shard_count).map(|_| Vec::new()).collect();
    for (i, t) in series.iter().enumerate() {
        if let Some(shard) = by_shard.get_mut(plan.shard_of(i)) {
            shard.push(t);
        }
    }
    let metadata_shard = plan.shard_of(0).min(shard_count.saturating_sub(1));
    let mut metadata = Some(metadata).filter(|m| !m.is_empty());
    by_shard
        .iter()
        .enumerate()
        .map(|(shard, series)| {
            let mut out: Vec<Body> = series
                .chunks(batch_series)
                .map(|chunk| Body {
                    bytes: compress_batch(chunk),
                    series: chunk.len(),
                    samples: chunk.iter().map(|t| t.samples).sum(),
                })
                .collect();
            if shard == metadata_shard
                && let Some(metadata) = metadata.take()
            {
                let request = WriteRequest {
                    timeseries: Vec::new(),
                    metadata: metadata.to_vec(),
                };
                out.push(Body {
                    bytes: crate::remote_write::encode_write_request(&request).into(),
                    series: 0,
                    samples: 0,
                });
            }
            out
        })
        .collect()
}

/// One batch as a snappy `WriteRequest`. The encoding and compression buffers are kept per
/// thread (they are the size of a request: allocating them afresh faults in new pages every
/// time); the result is copied out at its compressed size.
fn compress_batch(chunk: &[&Outgoing<'_>]) -> bytes::Bytes {
    thread_local! {
        static BUFFERS: std::cell::RefCell<(Vec<u8>, Vec<u8>)> =
            const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
    }
    BUFFERS.with(|b| {
        let mut b = b.borrow_mut();
        let (raw, packed) = &mut *b;
        raw.clear();
        raw.reserve(chunk.iter().map(|t| t.encoded_len()).sum());
        for t in chunk {
            t.write(raw);
        }
        packed.resize(snap::raw::max_compress_len(raw.len()), 0);
        let out = match snap::raw::Encoder::new().compress(raw, packed) {
            Ok(n) => bytes::Bytes::copy_from_slice(&packed[..n]),
            // Only an input over snappy's 4 GiB limit fails, which no batch comes near.
            Err(_) => bytes::Bytes::new(),
        };
        // A huge batch's buffers are not kept.
        if raw.capacity() > 32 << 20 {
            *raw = Vec::new();
            *packed = Vec::new();
        }
        out
    })
}

/// One encoded request of a shard.
struct Body {
    bytes: bytes::Bytes,
    series: usize,
    samples: usize,
}

/// One series per label set: samples merged in time order, the first of equal timestamps kept.
pub fn merge_duplicates(series: Vec<TimeSeries>) -> Vec<TimeSeries> {
    // Keyed by the label hash (no copy of the labels); equal hashes are compared in full, so a
    // collision never merges two different series.
    let mut index: HashMap<u64, Vec<usize>, BuildNoHash> =
        HashMap::with_capacity_and_hasher(series.len(), BuildNoHash::default());
    let mut out: Vec<TimeSeries> = Vec::with_capacity(series.len());
    let mut merged = false;
    for s in series {
        let slots = index.entry(series_hash(&s.labels)).or_default();
        match slots.iter().copied().find(|&i| out[i].labels == s.labels) {
            Some(i) => {
                merged = true;
                let t = &mut out[i];
                t.samples.extend(s.samples);
                t.histograms.extend(s.histograms);
                t.exemplars.extend(s.exemplars);
            }
            None => {
                slots.push(out.len());
                out.push(s);
            }
        }
    }
    if merged {
        for t in &mut out {
            t.samples.sort_by_key(|s: &Sample| s.timestamp);
            t.samples.dedup_by_key(|s| s.timestamp);
            t.histograms.sort_by_key(|h| h.timestamp);
            t.histograms.dedup_by_key(|h| h.timestamp);
        }
    }
    out
}

#[cfg(test)]
mod tests;
