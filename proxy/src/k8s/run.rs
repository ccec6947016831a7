//! What Kubernetes mode starts next to the listeners: backend discovery, the `MetricAccess`
//! watcher that fills the tenant store and the status writer. The API client is made once, at
//! start, when any feature needs it. [`start`] takes the parts it feeds or reads and hands the
//! tasks back: the caller owns them (and swaps in the discovered backends).

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backend::GroupSettings;
use crate::collector::Collector;
use crate::collector::job::JobStatus;
use crate::config::{AuthMode, Config, TenantSourceKind};
use crate::telemetry::Metrics;
use crate::tenant::TenantStore;

use super::shard::Shard;
use super::status::StatusInputs;

/// Whether `config` needs the Kubernetes API.
pub fn needs_api(config: &Config) -> bool {
    config.tenants.source == TenantSourceKind::Kubernetes
        || config.discovery.kubernetes.is_some()
        || config.auth.mode == Some(AuthMode::Kubernetes)
        || config.kubernetes.sharding.enabled
}

/// `check-config`'s lines for Kubernetes mode (nothing is asked of the API server).
pub fn describe(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if config.tenants.source == TenantSourceKind::Kubernetes {
        let scope = if config.tenants.watch_all_namespaces {
            "every namespace".to_string()
        } else {
            format!("namespaces {}", config.tenants.namespaces.join(", "))
        };
        out.push(format!(
            "tenants: MetricAccess from the Kubernetes API in {scope}; status {}; Secrets from each CR's namespace",
            if config.kubernetes.write_status { "written" } else { "not written" }
        ));
    }
    if let Some(d) = &config.discovery.kubernetes {
        let scope = if d.namespaces.is_empty() {
            "every namespace".to_string()
        } else {
            d.namespaces.join(", ")
        };
        let types: Vec<String> = d.resource_types.iter().map(|t| format!("{t:?}")).collect();
        out.push(format!(
            "backends: discovered from {} in {scope}, port {}, grouped by label {:?}, resync every {:?}",
            types.join(", "),
            d.port,
            d.group_by_label,
            config.discovery.refresh_interval
        ));
    }
    let s = &config.kubernetes.sharding;
    if s.enabled {
        out.push(format!(
            "collector sharding: Leases {}-<identity> in {}, lease {:?}",
            s.lease_prefix,
            s.namespace.as_deref().unwrap_or("$POD_NAMESPACE"),
            s.lease_duration
        ));
    }
    out
}

/// The status writer's view of the proxy.
struct StatusView {
    collector: Arc<Collector>,
    shard: Option<Arc<Shard>>,
}

impl StatusInputs for StatusView {
    fn job(&self, namespace: &str, name: &str) -> Option<JobStatus> {
        self.collector.job_status(namespace, name)
    }
    fn collector_enabled(&self) -> bool {
        self.collector.enabled()
    }
    fn owns(&self, namespace: &str, name: &str) -> bool {
        self.shard.as_ref().is_none_or(|s| s.owns(namespace, name))
    }
}

/// What Kubernetes mode works with: the API client and the parts of the proxy it fills or
/// reads.
pub struct Parts {
    pub client: kube::Client,
    /// Filled by the `MetricAccess` watcher.
    pub tenants: Arc<TenantStore>,
    pub metrics: Arc<Metrics>,
    /// Read by the status writer (each CR's last collection).
    pub collector: Arc<Collector>,
    /// This replica's share of the collection (`kubernetes.sharding`).
    pub shard: Option<Arc<Shard>>,
}

/// The tasks [`start`] started. The caller keeps them running until the proxy stops.
#[derive(Debug, Default)]
pub struct Started {
    /// Backend discovery: the groups it publishes (to be served from), and its task.
    pub discovery: Option<(watch::Receiver<Vec<GroupSettings>>, JoinHandle<()>)>,
    /// The `MetricAccess` watcher (Kubernetes tenant source).
    pub tenant_source: Option<JoinHandle<()>>,
    /// The status writer (`kubernetes.write_status`).
    pub status_writer: Option<JoinHandle<()>>,
}

/// Start what `config` asks of Kubernetes mode: backend discovery, the tenant source and the
/// status writer.
pub fn start(parts: Parts, config: &Config) -> Started {
    let Parts {
        client,
        tenants,
        metrics,
        collector,
        shard,
    } = parts;
    let mut started = Started::default();
    if let Some(discovery) = config.discovery.kubernetes.clone() {
        started.discovery = Some(super::discovery::spawn(
            client.clone(),
            discovery,
            config.discovery.refresh_interval,
        ));
    }
    if config.tenants.source != TenantSourceKind::Kubernetes {
        return started;
    }
    let (observed, watch) = super::tenants::spawn(
        client.clone(),
        config.tenants.watched_namespaces(),
        tenants.clone(),
        metrics.clone(),
    );
    started.tenant_source = Some(watch);
    if config.kubernetes.write_status {
        let view = Arc::new(StatusView { collector, shard });
        started.status_writer = Some(super::status::spawn(
            client,
            observed,
            tenants,
            view,
            config.kubernetes.status_interval,
            metrics,
        ));
    }
    started
}
