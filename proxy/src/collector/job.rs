//! One collector job: a `MetricAccess` with `remoteWrite.enabled`. Every interval it reads the
//! window since the last one and, series by series as the answer streams in, shapes it and
//! queues remote-write batches for every endpoint of the CR's target (see [`output`] for the
//! batches, the Pushgateway group and the wait for queue room). The window only advances when
//! the read succeeded and the target resolved, so a failed cycle is retried by the next one (no
//! gap); a read that fails half-way has queued part of the window, which the next cycle sends
//! again (identical samples, which Prometheus accepts).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Inputs;
use super::shape::{ShapeStats, Shaper};
use super::source::{self, Opened, Upstream, Window};
use super::state::StateDir;
use super::stream::ReadStats;
use super::target::{self, FetchedSecrets, FileSecrets, SecretLookup};
use crate::config::RemoteWriteConfig;
use crate::delivery::{Delivery, DeliverySettings, Endpoint, Payload};
use crate::relabel::RelabelProgram;
use crate::remote_write::{TimeSeries, encode_series};
use crate::time::rfc3339;

pub mod output;
use crate::telemetry::{CycleLabels, EndpointLabels, Metrics, ResourceLabels};
use crate::tenant::AccessResource;
use output::Output;

/// What `/collected-metrics` shows of a job.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct JobStatus {
    pub namespace: String,
    pub name: String,
    pub interval_seconds: u64,
    /// `starting`, `ok`, `read_error`, `target_error`.
    pub state: String,
    pub last_cycle: Option<String>,
    pub last_cycle_duration_ms: Option<u64>,
    /// The last window read (inclusive, Unix ms).
    pub last_window: Option<(i64, i64)>,
    /// Samples up to this time (Unix ms) have been read.
    pub collected_until_ms: Option<i64>,
    /// Start of the first window this job read (Unix ms): with `collected_until_ms`, the range
    /// the targets hold.
    pub first_window_start_ms: Option<i64>,
    /// The infrastructure member that answered last.
    pub source: Option<String>,
    pub last_shape: Option<ShapeStats>,
    /// How the last window was read (streamed or not, frames, skipped histogram chunks).
    pub last_read: Option<ReadStats>,
    /// Series written last cycle, remembered as hashes to find the ones that vanish.
    pub series_remembered: usize,
    pub cycles_ok: u64,
    pub cycles_failed: u64,
    /// Milliseconds of source data skipped because a window exceeded `max_window`.
    pub skipped_ms: i64,
    pub last_error: Option<String>,
}

/// A running job and what the manager needs to stop or replace it.
pub struct Job {
    pub fingerprint: String,
    pub status: Arc<Mutex<JobStatus>>,
    pub deliveries: Arc<Mutex<BTreeMap<String, Arc<Delivery>>>>,
    stop: watch::Sender<bool>,
    cycle_task: JoinHandle<()>,
    workers: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// Everything a job is started with.
pub struct JobStart {
    pub resource: Arc<AccessResource>,
    pub interval: Duration,
    pub program: RelabelProgram,
    pub config: Arc<RemoteWriteConfig>,
    pub inputs: Arc<dyn Inputs>,
    pub metrics: Arc<Metrics>,
    pub client: reqwest::Client,
    pub fingerprint: String,
    /// Continue after this time (Unix ms) instead of one interval ago: the job replaces one
    /// that read up to there.
    pub resume_after_ms: Option<i64>,
}

impl Job {
    pub fn start(s: JobStart) -> Job {
        let status = Arc::new(Mutex::new(JobStatus {
            namespace: s.resource.namespace.clone(),
            name: s.resource.name.clone(),
            interval_seconds: s.interval.as_secs(),
            state: "starting".into(),
            ..Default::default()
        }));
        let deliveries = Arc::new(Mutex::new(BTreeMap::new()));
        let workers = Arc::new(Mutex::new(Vec::new()));
        let (stop, stop_rx) = watch::channel(false);
        let fingerprint = s.fingerprint.clone();
        let runner = Runner {
            shaper: Shaper::new(
                s.program.clone(),
                s.resource
                    .spec
                    .remote_write
                    .as_ref()
                    .map(|rw| &rw.extra_labels)
                    .unwrap_or(&BTreeMap::new()),
                s.resource
                    .spec
                    .remote_write
                    .as_ref()
                    .is_some_and(|rw| rw.honor_labels),
            ),
            start: s,
            preferred: None,
            avoid: None,
            status: status.clone(),
            deliveries: deliveries.clone(),
            workers: workers.clone(),
            stop_rx: stop_rx.clone(),
        };
        let cycle_task = tokio::spawn(runner.run(stop_rx));
        Job {
            fingerprint,
            status,
            deliveries,
            stop,
            cycle_task,
            workers,
        }
    }

    /// Samples up to this time were read (for a replacement job to continue from).
    pub fn collected_until_ms(&self) -> Option<i64> {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .collected_until_ms
    }

    /// Stop collecting; queues drain in the background for up to `grace`, then are dropped.
    pub fn stop(self, grace: Duration) -> JoinHandle<()> {
        let _ = self.stop.send(true);
        self.cycle_task.abort();
        let workers: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.workers.lock().unwrap_or_else(PoisonError::into_inner));
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + grace;
            for mut worker in workers {
                if tokio::time::timeout_at(deadline, &mut worker)
                    .await
                    .is_err()
                {
                    worker.abort();
                }
            }
        })
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

struct Runner {
    start: JobStart,
    shaper: Shaper,
    preferred: Option<String>,
    /// A member whose answer broke off last cycle: tried last.
    avoid: Option<String>,
    status: Arc<Mutex<JobStatus>>,
    deliveries: Arc<Mutex<BTreeMap<String, Arc<Delivery>>>>,
    workers: Arc<Mutex<Vec<JoinHandle<()>>>>,
    stop_rx: watch::Receiver<bool>,
}

impl Runner {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let s = &self.start;
        let lag = s.config.collection_lag.as_millis() as i64;
        let interval_ms = s.interval.as_millis() as i64;
        let (ns, name) = (&s.resource.namespace, &s.resource.name);
        let saved = || {
            let dir = s.config.state_directory.as_deref()?;
            StateDir::new(dir).load(ns, name)
        };
        let mut last_end = match s.resume_after_ms.or_else(saved) {
            Some(at) => {
                tracing::info!(namespace = %ns, resource = %name, collected_until_ms = at, "collector continues where it stopped");
                at
            }
            None => now_ms() - lag - interval_ms,
        };
        let mut ticker = tokio::time::interval(s.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => return,
            }
            let end = self.cycle(last_end).await;
            if end != last_end
                && let Some(dir) = self.start.config.state_directory.as_deref()
                && let Err(error) = StateDir::new(dir).save(
                    &self.start.resource.namespace,
                    &self.start.resource.name,
                    end,
                )
            {
                tracing::warn!(dir = %dir.display(), %error, "can't save the collector position; a restart will leave a gap");
            }
            last_end = end;
        }
    }

    /// One cycle; returns the new end of the collected range.
    async fn cycle(&mut self, last_end: i64) -> i64 {
        let started = std::time::Instant::now();
        let s = &self.start;
        let ns = s.resource.namespace.clone();
        let labels = ResourceLabels {
            namespace: ns.clone(),
            resource: s.resource.name.clone(),
        };
        let end = now_ms() - s.config.collection_lag.as_millis() as i64;
        let max_window = s.config.max_window.as_millis() as i64;
        let mut start = last_end + 1;
        let mut skipped = 0;
        if end - start + 1 > max_window {
            skipped = end - max_window + 1 - start;
            start = end - max_window + 1;
        }
        if end < start {
            return last_end;
        }
        let Some(rw) = s.resource.spec.remote_write.as_ref() else {
            return last_end;
        };
        let files = FileSecrets {
            directory: s.config.secrets_directory.clone(),
        };
        let fetched;
        let secrets: &dyn SecretLookup = match s.inputs.secrets() {
            Some(source) => {
                fetched =
                    FetchedSecrets::fetch(source.as_ref(), &ns, rw, &s.config.allowed_urls).await;
                &fetched
            }
            None => &files,
        };
        let endpoints = match target::endpoints(&ns, rw, &s.config, secrets) {
            Ok(e) => e,
            Err(error) => {
                // The window does not advance: once the target resolves (a Secret appears),
                // the data since then is still collected, up to `max_window`.
                tracing::warn!(namespace = %ns, resource = %s.resource.name, %error, "collector target unusable");
                self.finish(&labels, "target_error", started, Some(error), None);
                return last_end;
            }
        };
        let upstream = match &s.config.prom_label_proxy_url {
            Some(url) => Upstream::LabelProxy {
                url: url.clone(),
                header: s.config.prom_label_proxy_header.clone(),
                client: s.client.clone(),
            },
            None => Upstream::Backends(s.inputs.backends()),
        };
        let window = Window {
            start_ms: start,
            end_ms: end,
        };
        let deliveries: Vec<Arc<Delivery>> =
            endpoints.into_iter().map(|e| self.delivery(e)).collect();
        let opened = source::open(
            &upstream,
            &ns,
            &s.resource.policy,
            window,
            s.config.request_timeout,
            self.preferred.as_deref(),
            self.avoid.as_deref(),
            s.config.collection_method,
        )
        .await;
        let Opened {
            mut reader,
            member,
            failed,
        } = match opened {
            Ok(o) => o,
            Err(error) => {
                tracing::warn!(namespace = %ns, resource = %s.resource.name, %error, "collection failed; the next cycle reads this window again");
                self.finish(
                    &labels,
                    "read_error",
                    started,
                    Some(error.to_string()),
                    None,
                );
                return last_end;
            }
        };
        // Waiting for room in a healthy target's queue is bounded per cycle: a cycle never
        // stalls longer than its interval, whatever the number of batches.
        let deadline = tokio::time::Instant::now() + s.interval;
        let mut out = Output::new(&deliveries, deadline);
        let mut cycle =
            self.shaper
                .begin(end, s.resource.policy.clauses.len(), s.config.batch_size);
        let streamed = loop {
            match reader.next().await {
                Ok(Some(series)) => {
                    if let Some(batch) = cycle.push(&self.shaper, series) {
                        out.send(&batch).await;
                        cycle.recycle(batch);
                    }
                }
                Ok(None) => break Ok(()),
                Err(error) => break Err(error),
            }
        };
        if let Err(error) = streamed {
            let error = format!(
                "reading the answer of {member} failed after {} series: {error}; the next cycle reads this window again (from another member first)",
                reader.stats.series
            );
            tracing::warn!(namespace = %ns, resource = %s.resource.name, %error, "collection failed");
            self.avoid = Some(member);
            self.preferred = None;
            self.finish(&labels, "read_error", started, Some(error), None);
            return last_end;
        }
        let (last, written, mut stats) = cycle.finish();
        out.send(&last).await;
        let read_stats = reader.stats.clone();
        drop(reader);

        // Staleness: the series written last cycle and missing now, found by hash; their
        // labels come from reading again, from the member that answered them, the part of
        // the last windows where they still had samples.
        let previous_member = self.preferred.clone().unwrap_or_else(|| member.clone());
        let mut vanished = self.shaper.vanished(&written);
        let mut marker_error = None;
        if let Some(oldest) = vanished.oldest_ms()
            && oldest < start
        {
            let again = Window {
                start_ms: oldest,
                end_ms: start - 1,
            };
            match source::open(
                &upstream,
                &ns,
                &s.resource.policy,
                again,
                s.config.request_timeout,
                Some(&previous_member),
                None,
                s.config.collection_method,
            )
            .await
            {
                Ok(mut o) => loop {
                    match o.reader.next().await {
                        Ok(Some(series)) => {
                            if let Some(batch) = vanished.push(&self.shaper, series) {
                                out.send(&batch).await;
                            }
                            if vanished.is_empty() {
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            marker_error = Some(format!("{}: {e}", o.member));
                            break;
                        }
                    }
                },
                Err(e) => marker_error = Some(e.to_string()),
            }
            out.send(&vanished.take_markers()).await;
        }
        stats.stale_markers = vanished.written();
        stats.series_out += stats.stale_markers;
        let unmarked = match &marker_error {
            Some(error) => {
                tracing::warn!(namespace = %ns, resource = %s.resource.name, %error, waiting = vanished.len(), "can't read vanished series again for their staleness markers; trying next cycle");
                Some(vanished)
            }
            None => None,
        };
        self.shaper.commit(written, unmarked);
        out.finish();
        self.preferred = Some(member.clone());
        self.avoid = None;

        let m = &s.metrics.collector;
        m.series_collected
            .get_or_create(&labels)
            .inc_by(stats.series_in as u64);
        m.samples_collected
            .get_or_create(&labels)
            .inc_by(stats.samples_in as u64);
        m.stale_markers
            .get_or_create(&labels)
            .inc_by(stats.stale_markers as u64);
        m.last_success.get_or_create(&labels).set(end / 1000);
        let skipped_chunks =
            read_stats.histogram_chunks_skipped + read_stats.unknown_chunks_skipped;
        if skipped_chunks > 0 {
            tracing::warn!(
                namespace = %ns, resource = %s.resource.name,
                histogram_chunks = read_stats.histogram_chunks_skipped,
                unknown_chunks = read_stats.unknown_chunks_skipped,
                "native-histogram (or unknown) chunks in the window were not copied: the collector copies float samples"
            );
        }
        {
            let mut st = self.status.lock().unwrap_or_else(PoisonError::into_inner);
            st.collected_until_ms = Some(end);
            st.first_window_start_ms.get_or_insert(start);
            st.last_window = Some((start, end));
            st.source = Some(member);
            st.skipped_ms += skipped;
            st.last_read = Some(read_stats);
            st.series_remembered = self.shaper.remembered();
        }
        let mut notes: Vec<String> = Vec::new();
        if !failed.is_empty() {
            notes.push(format!(
                "failed over: {}",
                failed
                    .iter()
                    .map(|(m, e)| format!("{m}: {e}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        if let Some(e) = marker_error {
            notes.push(format!("staleness markers postponed: {e}"));
        }
        let error = (!notes.is_empty()).then(|| notes.join("; "));
        self.finish(&labels, "ok", started, error, Some(stats));
        end
    }

    fn finish(
        &self,
        labels: &ResourceLabels,
        state: &str,
        started: std::time::Instant,
        error: Option<String>,
        shape: Option<ShapeStats>,
    ) {
        self.start
            .metrics
            .collector
            .cycles
            .get_or_create(&CycleLabels {
                namespace: labels.namespace.clone(),
                resource: labels.resource.clone(),
                outcome: state.to_string(),
            })
            .inc();
        let mut st = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        st.state = state.to_string();
        st.last_cycle = Some(rfc3339(SystemTime::now()));
        st.last_cycle_duration_ms = Some(started.elapsed().as_millis() as u64);
        if state == "ok" {
            st.cycles_ok += 1;
        } else {
            st.cycles_failed += 1;
        }
        if error.is_some() || state == "ok" {
            st.last_error = error;
        }
        if shape.is_some() {
            st.last_shape = shape;
        }
    }

    /// The endpoint's delivery, created (with its worker) on first use, updated afterwards.
    fn delivery(&self, endpoint: Endpoint) -> Arc<Delivery> {
        let s = &self.start;
        let existing = self
            .deliveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&endpoint.name)
            .cloned();
        if let Some(d) = &existing
            && let Some(client) = d.client_for_tls(&endpoint.tls)
        {
            d.update(endpoint, client);
            return d.clone();
        }
        let client = match client_for(&endpoint, &s.client) {
            Ok(c) => c,
            Err(error) => {
                tracing::warn!(url = %endpoint.url, %error, "TLS settings unusable; using the default client");
                s.client.clone()
            }
        };
        let mut deliveries = self
            .deliveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(d) = deliveries.get(&endpoint.name) {
            d.update(endpoint, client);
            return d.clone();
        }
        let name = endpoint.name.clone();
        let d = Delivery::new(
            EndpointLabels {
                namespace: s.resource.namespace.clone(),
                resource: s.resource.name.clone(),
                target: name.clone(),
            },
            endpoint,
            client,
            DeliverySettings {
                capacity: s.config.queue_capacity,
                request_timeout: s.config.request_timeout,
                min_backoff: s.config.min_backoff,
                max_backoff: s.config.max_backoff,
            },
            s.metrics.collector.delivery.clone(),
        );
        let worker = tokio::spawn(d.clone().run(self.stop_rx.clone()));
        self.workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(worker);
        deliveries.insert(name, d.clone());
        d
    }
}

/// Remote-write requests of at most `batch_size` series each (tests and tools; a cycle encodes
/// each batch as it fills, see [`output`]).
pub fn encode_batches(series: &[TimeSeries], batch_size: usize) -> Vec<Payload> {
    series
        .chunks(batch_size.max(1))
        .map(|chunk| Payload {
            body: encode_series(chunk).into(),
            series: chunk.len(),
            samples: chunk.iter().map(|t| t.samples.len()).sum(),
            headers: Vec::new(),
        })
        .collect()
}

/// An endpoint with TLS options gets its own client (CA file, skip-verify).
fn client_for(endpoint: &Endpoint, default: &reqwest::Client) -> Result<reqwest::Client, String> {
    let Some(tls) = &endpoint.tls else {
        return Ok(default.clone());
    };
    let mut builder =
        reqwest::Client::builder().danger_accept_invalid_certs(tls.insecure_skip_verify);
    if let Some(ca) = &tls.ca_file {
        let pem = std::fs::read(ca).map_err(|e| format!("tlsConfig.caFile {ca}: {e}"))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| format!("tlsConfig.caFile {ca}: not a PEM certificate: {e}"))?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
