//! The collector (DESIGN §5): for every `MetricAccess` with `remoteWrite.enabled`, copy the
//! tenant's allowed series from infrastructure Prometheus to the tenant's own targets.
//!
//! - [`source`]: remote read of a contiguous window, with HA failover;
//! - [`stream`]: the streamed answer, frame by frame, series by series;
//! - [`labels`]: a collected series' labels, held in one string;
//! - [`xor`]: Prometheus' XOR chunk codec;
//! - [`shape`]: `metricRelabelings`, `extraLabels`/`honorLabels`, staleness markers, series by
//!   series, remembering series as hashes;
//! - [`target`]: endpoint addresses (every StatefulSet replica), credentials from Secrets;
//! - [`pushgateway`]: the text format and group path of Pushgateway targets;
//! - [`state`]: where each job stopped reading, kept across restarts;
//! - [`job`]: the per-CR cycle (batches queued as they fill); this module reconciles jobs with
//!   the tenant store.

pub mod job;
pub mod labels;
pub mod pushgateway;
pub mod shape;
pub mod source;
pub mod state;
pub mod stream;
pub mod target;
pub mod xor;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::backend::BackendPool;
use crate::config::RemoteWriteConfig;
use crate::relabel::RelabelProgram;
use crate::telemetry::Metrics;
use crate::tenant::{AccessResource, TenantSnapshot, TenantStore};
use job::{Job, JobStart};
use target::SecretSource;

/// How often the tenant store and the settings are compared with the running jobs.
const RECONCILE_EVERY: Duration = Duration::from_millis(500);

/// What the collector reads from the running proxy; swapped by a config reload.
pub trait Inputs: Send + Sync + 'static {
    fn config(&self) -> Arc<RemoteWriteConfig>;
    fn backends(&self) -> Arc<BackendPool>;
    /// Kubernetes mode: Secrets come from the API server instead of files.
    fn secrets(&self) -> Option<Arc<dyn SecretSource>> {
        None
    }
    /// Whether this replica collects the CR `namespace/name` (`k8s::shard`); every CR when
    /// there is no sharding.
    fn owns(&self, _namespace: &str, _name: &str) -> bool {
        true
    }
    /// Moves whenever [`Inputs::owns`] may answer differently: the jobs are reconciled again.
    fn ownership_version(&self) -> u64 {
        0
    }
}

/// What the jobs were last reconciled with: tenants, settings, ownership version.
type Reconciled = (Arc<TenantSnapshot>, Arc<RemoteWriteConfig>, u64);

/// Runs one [`Job`] per enabled CR, restarting a job when its CR or the settings change.
pub struct Collector {
    tenants: Arc<TenantStore>,
    inputs: Arc<dyn Inputs>,
    metrics: Arc<Metrics>,
    client: reqwest::Client,
    jobs: Mutex<BTreeMap<(String, String), Job>>,
    /// The tenant snapshot, settings and ownership version the jobs were last reconciled
    /// with: when none changed there is nothing to compare. The Arcs are held (not just their
    /// addresses) so that a freed snapshot's address can't come back as a new one.
    reconciled: Mutex<Option<Reconciled>>,
    loop_task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector").finish_non_exhaustive()
    }
}

impl Collector {
    /// Start reconciling in the background.
    pub fn spawn(
        tenants: Arc<TenantStore>,
        inputs: Arc<dyn Inputs>,
        metrics: Arc<Metrics>,
    ) -> Arc<Collector> {
        crate::client::install_crypto_provider();
        let collector = Arc::new(Collector {
            tenants,
            inputs,
            metrics,
            client: crate::delivery::http_client().unwrap_or_default(),
            jobs: Mutex::new(BTreeMap::new()),
            reconciled: Mutex::new(None),
            loop_task: Mutex::new(None),
        });
        let weak = Arc::downgrade(&collector);
        let task = tokio::spawn(async move {
            loop {
                match weak.upgrade() {
                    Some(c) => c.reconcile(),
                    None => return,
                }
                tokio::time::sleep(RECONCILE_EVERY).await;
            }
        });
        *collector
            .loop_task
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(task);
        collector
    }

    /// Bring the jobs in line with the store, the settings and the CRs this replica owns: start
    /// new ones, restart changed ones (continuing from where the old one stopped reading), stop
    /// removed ones and ones that moved to another replica.
    pub fn reconcile(&self) {
        let config = self.inputs.config();
        let snapshot = self.tenants.snapshot();
        // Read before `owns` is asked: a change that lands in between moves the version again
        // and the next round reconciles once more.
        let ownership = self.inputs.ownership_version();
        {
            let mut last = self
                .reconciled
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some((s, c, o)) = last.as_ref()
                && Arc::ptr_eq(s, &snapshot)
                && Arc::ptr_eq(c, &config)
                && *o == ownership
            {
                return;
            }
            *last = Some((snapshot.clone(), config.clone(), ownership));
        }
        let desired = desired(&config, &snapshot.resources, |ns, name| {
            self.inputs.owns(ns, name)
        });
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        let stale: Vec<(String, String)> = jobs
            .iter()
            .filter(|(key, job)| desired.get(*key).is_none_or(|(_, f)| *f != job.fingerprint))
            .map(|(key, _)| key.clone())
            .collect();
        let mut resume = BTreeMap::new();
        for key in stale {
            if let Some(job) = jobs.remove(&key) {
                tracing::info!(namespace = %key.0, resource = %key.1, "stopping collector job");
                if let Some(until) = job.collected_until_ms() {
                    resume.insert(key.clone(), until);
                }
                job.stop(config.shutdown_grace);
            }
        }
        for (key, (resource, fingerprint)) in desired {
            if jobs.contains_key(&key) {
                continue;
            }
            let Some(interval) = resource
                .spec
                .collection_interval_or(config.collection_interval)
            else {
                continue;
            };
            let rules = resource
                .spec
                .remote_write
                .as_ref()
                .map(|rw| rw.metric_relabelings.as_slice())
                .unwrap_or_default();
            // The source refuses CRs with invalid rules; this only guards the invariant.
            let Ok(program) = RelabelProgram::compile(rules) else {
                continue;
            };
            tracing::info!(namespace = %key.0, resource = %key.1, interval_s = interval.as_secs(), "starting collector job");
            let job = Job::start(JobStart {
                resource,
                interval,
                program,
                config: config.clone(),
                inputs: self.inputs.clone(),
                metrics: self.metrics.clone(),
                client: self.client.clone(),
                fingerprint,
                resume_after_ms: resume.get(&key).copied(),
            });
            jobs.insert(key, job);
        }
    }

    /// `/collected-metrics`: per CR, the last cycle and every endpoint's delivery.
    pub fn status_json(&self) -> serde_json::Value {
        let jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        let list: Vec<serde_json::Value> = jobs
            .values()
            .map(|job| {
                let status = job
                    .status
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                let targets: BTreeMap<String, crate::delivery::DeliveryStats> = job
                    .deliveries
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .iter()
                    .map(|(name, d)| (name.clone(), d.stats()))
                    .collect();
                let mut v = serde_json::to_value(status).unwrap_or_default();
                v["targets"] = serde_json::to_value(targets).unwrap_or_default();
                v
            })
            .collect();
        serde_json::json!({
            "enabled": self.inputs.config().enabled,
            "resources": list,
        })
    }

    /// `remote_write.enabled` of the running config.
    pub fn enabled(&self) -> bool {
        self.inputs.config().enabled
    }

    /// The last cycle of the job collecting `namespace/name`, if one runs here.
    pub fn job_status(&self, namespace: &str, name: &str) -> Option<job::JobStatus> {
        let jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        let job = jobs.get(&(namespace.to_string(), name.to_string()))?;
        let status = job.status.lock().unwrap_or_else(PoisonError::into_inner);
        Some(status.clone())
    }

    /// Stop every job and give queues `grace` to drain.
    pub async fn shutdown(&self) {
        if let Some(task) = self
            .loop_task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
        let grace = self.inputs.config().shutdown_grace;
        let jobs = std::mem::take(&mut *self.jobs.lock().unwrap_or_else(PoisonError::into_inner));
        let drains: Vec<JoinHandle<()>> = jobs.into_values().map(|j| j.stop(grace)).collect();
        for d in drains {
            let _ = d.await;
        }
    }
}

/// The jobs that should run: one per enabled CR this replica owns, with the fingerprint that
/// restarts the job when its CR or the settings change.
fn desired(
    config: &Arc<RemoteWriteConfig>,
    resources: &[Arc<AccessResource>],
    owns: impl Fn(&str, &str) -> bool,
) -> BTreeMap<(String, String), (Arc<AccessResource>, String)> {
    let mut desired = BTreeMap::new();
    if !config.enabled {
        return desired;
    }
    for r in resources {
        if r.spec.remote_write.as_ref().is_some_and(|rw| rw.enabled) && owns(&r.namespace, &r.name)
        {
            let fingerprint =
                serde_json::to_string(&(&r.spec, &r.policy, &**config)).unwrap_or_default();
            desired.insert(
                (r.namespace.clone(), r.name.clone()),
                (r.clone(), fingerprint),
            );
        }
    }
    desired
}

/// `check-config`'s view: one line per collecting CR with its endpoints, and warnings for
/// targets that can't be resolved now (a missing Secret).
pub fn describe(
    config: &RemoteWriteConfig,
    resources: &[Arc<AccessResource>],
) -> (Vec<String>, Vec<String>) {
    let mut lines = Vec::new();
    let mut warnings = Vec::new();
    let collecting: Vec<&Arc<AccessResource>> = resources
        .iter()
        .filter(|r| r.spec.remote_write.as_ref().is_some_and(|rw| rw.enabled))
        .collect();
    if !config.enabled {
        lines.push(format!(
            "collector: off (remote_write.enabled: false); {} CR(s) ask for it",
            collecting.len()
        ));
        return (lines, warnings);
    }
    lines.push(format!("collector: on, {} CR(s)", collecting.len()));
    let secrets = target::FileSecrets {
        directory: config.secrets_directory.clone(),
    };
    for r in collecting {
        let Some(rw) = r.spec.remote_write.as_ref() else {
            continue;
        };
        let every = r
            .spec
            .collection_interval_or(config.collection_interval)
            .map(crate::config::format_duration)
            .unwrap_or_else(|| "?".into());
        match target::endpoints(&r.namespace, rw, config, &secrets) {
            Ok(endpoints) => {
                let urls: Vec<&str> = endpoints.iter().map(|e| e.url.as_str()).collect();
                lines.push(format!(
                    "  {}/{} every {every} -> {}",
                    r.namespace,
                    r.name,
                    urls.join(", ")
                ));
            }
            Err(e) => {
                lines.push(format!(
                    "  {}/{} every {every} -> (unresolved)",
                    r.namespace, r.name
                ));
                warnings.push(format!("collector {}/{}: {e}", r.namespace, r.name));
            }
        }
    }
    (lines, warnings)
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(task) = self
            .loop_task
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests;
