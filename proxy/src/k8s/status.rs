//! The `status` of each `MetricAccess`, written through the status subresource: conditions
//! `Valid` and `Collecting` (reason, message, transition time), `observedGeneration`, the last
//! collection time, series written by the last cycle and the last error.
//!
//! No hot loop: a patch is sent only when the wanted status differs from the one the API
//! server holds (as the tenant watcher last saw it), and changes that move every cycle (the
//! collection time, the series count) are sent at most once per `interval`. The patch comes
//! back as a watch event that changes nothing but `status`, which does not rebuild the tenant
//! store. With sharding, only the replica that collects a CR writes its status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use super::tenants::{Key, Observed, ObservedCrs};
use crate::collector::job::JobStatus;
use crate::telemetry::{Metrics, ResultLabels};
use crate::tenant::crd::{Condition, MetricAccessStatus};
use crate::tenant::{MetricAccess, TenantStore};

/// How often the wanted statuses are compared with the API server's.
const EVERY: Duration = Duration::from_secs(1);
/// How long our own patch may take to come back through the watch.
const WATCH_LAG: Duration = Duration::from_secs(10);

/// What the status writer reads from the running proxy.
pub trait StatusInputs: Send + Sync + 'static {
    /// The collector job of a CR, if one runs here.
    fn job(&self, namespace: &str, name: &str) -> Option<JobStatus>;
    /// `remote_write.enabled` in the proxy config.
    fn collector_enabled(&self) -> bool;
    /// Whether this replica collects (and so reports on) the CR.
    fn owns(&self, namespace: &str, name: &str) -> bool;
}

/// The status the proxy wants a CR to have. `previous` keeps transition times of conditions
/// whose status did not change.
pub fn desired(
    observed: &Observed,
    invalid: Option<&str>,
    collector_enabled: bool,
    job: Option<&JobStatus>,
    now: &str,
) -> MetricAccessStatus {
    let previous = observed.status.as_ref();
    let condition = |kind: &str, status: &str, reason: &str, message: String| {
        let since = previous
            .and_then(|p| p.conditions.iter().find(|c| c.kind == kind))
            .filter(|c| c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.to_string());
        Condition {
            kind: kind.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message),
            last_transition_time: Some(since),
        }
    };
    let valid = match invalid {
        Some(error) => condition("Valid", "False", "InvalidSpec", error.to_string()),
        None => condition("Valid", "True", "Accepted", "the policy compiled".into()),
    };
    let collecting = if let Some(error) = invalid {
        condition("Collecting", "False", "InvalidSpec", error.to_string())
    } else if !observed.remote_write_enabled {
        condition(
            "Collecting",
            "False",
            "Disabled",
            "spec.remoteWrite.enabled is not true".into(),
        )
    } else if !collector_enabled {
        condition(
            "Collecting",
            "False",
            "CollectorDisabled",
            "the proxy runs with remote_write.enabled: false".into(),
        )
    } else {
        match job {
            None => condition(
                "Collecting",
                "Unknown",
                "Pending",
                "waiting for the collector".into(),
            ),
            Some(j) => match j.state.as_str() {
                "ok" => condition(
                    "Collecting",
                    "True",
                    "Collected",
                    format!("collecting every {}s", j.interval_seconds),
                ),
                "read_error" => condition(
                    "Collecting",
                    "False",
                    "ReadError",
                    j.last_error.clone().unwrap_or_default(),
                ),
                "target_error" => condition(
                    "Collecting",
                    "False",
                    "TargetError",
                    j.last_error.clone().unwrap_or_default(),
                ),
                _ => condition(
                    "Collecting",
                    "Unknown",
                    "Starting",
                    "first cycle pending".into(),
                ),
            },
        }
    };
    MetricAccessStatus {
        conditions: vec![valid, collecting],
        observed_generation: observed.generation,
        last_collection_time: job.and_then(|j| j.last_cycle.clone()),
        series_written: job.and_then(|j| j.last_shape.map(|s| s.series_out as u64)),
        last_error: invalid
            .map(str::to_string)
            .or_else(|| job.and_then(|j| j.last_error.clone())),
    }
}

/// Whether `wanted` must be sent now. Conditions, generation and errors go at once; the
/// collection time and count ride along at most every `interval`.
pub fn needs_patch(
    current: Option<&MetricAccessStatus>,
    wanted: &MetricAccessStatus,
    last_patch: Option<Instant>,
    interval: Duration,
) -> bool {
    let Some(current) = current else {
        return true;
    };
    let strip = |s: &MetricAccessStatus| {
        let conditions: Vec<(String, String, Option<String>, Option<String>)> = s
            .conditions
            .iter()
            .map(|c| {
                (
                    c.kind.clone(),
                    c.status.clone(),
                    c.reason.clone(),
                    c.message.clone(),
                )
            })
            .collect();
        (conditions, s.observed_generation, s.last_error.clone())
    };
    if strip(current) != strip(wanted) {
        return true;
    }
    let moving = (&current.last_collection_time, current.series_written)
        != (&wanted.last_collection_time, wanted.series_written);
    moving && last_patch.is_none_or(|at| at.elapsed() >= interval)
}

/// The merge patch: absent optional fields are sent as `null` so they are cleared.
pub fn patch_body(status: &MetricAccessStatus) -> Value {
    json!({"status": {
        "conditions": status.conditions,
        "observedGeneration": status.observed_generation,
        "lastCollectionTime": status.last_collection_time,
        "seriesWritten": status.series_written,
        "lastError": status.last_error,
    }})
}

/// Keep every CR's status current until the task is aborted.
pub fn spawn(
    client: kube::Client,
    observed: Arc<ObservedCrs>,
    tenants: Arc<TenantStore>,
    inputs: Arc<dyn StatusInputs>,
    interval: Duration,
    metrics: Arc<Metrics>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last_patch: BTreeMap<Key, Instant> = BTreeMap::new();
        let mut last_failure: BTreeMap<Key, String> = BTreeMap::new();
        // What was sent last: until the watch event of our own patch arrives, the watcher's
        // copy is older than the API server's, and must not cause the same patch again.
        let mut sent: BTreeMap<Key, MetricAccessStatus> = BTreeMap::new();
        loop {
            tokio::time::sleep(EVERY).await;
            let snapshot = tenants.snapshot();
            if !snapshot.loaded {
                continue;
            }
            let invalid: BTreeMap<Key, &str> = snapshot
                .invalid
                .iter()
                .filter_map(|r| Some(((r.namespace.clone()?, r.name.clone()?), r.error.as_str())))
                .collect();
            let crs = observed.snapshot();
            last_patch.retain(|k, _| crs.contains_key(k));
            sent.retain(|k, _| crs.contains_key(k));
            let now = crate::time::rfc3339(std::time::SystemTime::now());
            for ((ns, name), o) in &crs {
                if !inputs.owns(ns, name) {
                    continue;
                }
                let key = (ns.clone(), name.clone());
                let job = inputs.job(ns, name);
                let wanted = desired(
                    o,
                    invalid.get(&key).copied(),
                    inputs.collector_enabled(),
                    job.as_ref(),
                    &now,
                );
                let patched_at = last_patch.get(&key).copied();
                let recent = patched_at.is_some_and(|at| at.elapsed() < WATCH_LAG);
                let current = match sent.get(&key) {
                    Some(s) if recent => Some(s),
                    _ => o.status.as_ref(),
                };
                if !needs_patch(current, &wanted, patched_at, interval) {
                    continue;
                }
                let api: Api<MetricAccess> = Api::namespaced(client.clone(), ns);
                let body = patch_body(&wanted);
                let result = api
                    .patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
                    .await;
                metrics
                    .kubernetes
                    .status_patches
                    .get_or_create(&ResultLabels {
                        result: if result.is_ok() { "ok" } else { "error" }.into(),
                    })
                    .inc();
                match result {
                    Ok(_) => {
                        last_patch.insert(key.clone(), Instant::now());
                        sent.insert(key.clone(), wanted);
                        last_failure.remove(&key);
                    }
                    Err(error) => {
                        // Logged once per distinct error, not every second.
                        let text = error.to_string();
                        if last_failure.get(&key) != Some(&text) {
                            tracing::warn!(namespace = %ns, resource = %name, error = %text, "cannot write MetricAccess status");
                            last_failure.insert(key, text);
                        }
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests;
