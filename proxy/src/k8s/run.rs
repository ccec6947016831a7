//! What Kubernetes mode starts next to the listeners: the `MetricAccess` watcher that fills
//! the tenant store and the status writer. The API client is made once, at start, when
//! any feature needs it.

use std::sync::Arc;

use crate::collector::Collector;
use crate::collector::job::JobStatus;
use crate::config::{AuthMode, Config, TenantSourceKind};
use crate::http::AppState;
use crate::tenant::TenantStore;

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
    shard: Option<Arc<super::shard::Shard>>,
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

/// Start what `config` asks of Kubernetes mode for `state`: backend discovery, the tenant
/// source and the status writer. Tasks stop with the proxy.
pub fn start(state: &AppState, tenants: &Arc<TenantStore>, config: &Config) {
    let Some(client) = state.kube().cloned() else {
        return;
    };
    if let Some(discovery) = config.discovery.kubernetes.clone() {
        let (groups, task) =
            super::discovery::spawn(client.clone(), discovery, config.discovery.refresh_interval);
        state.add_background(task);
        state.add_background(state.follow_discovered_backends(groups));
    }
    let settings = state.runtime().settings.clone();
    if settings.tenants_dir.is_some() {
        return;
    }
    let (observed, watch) = super::tenants::spawn(
        client.clone(),
        settings.tenant_namespaces.clone(),
        tenants.clone(),
        state.metrics().clone(),
    );
    state.set_tenant_source(watch);
    if settings.kubernetes.write_status {
        let view = Arc::new(StatusView {
            collector: state.collector().clone(),
            shard: state.shard().cloned(),
        });
        let writer = super::status::spawn(
            client,
            observed,
            tenants.clone(),
            view,
            settings.kubernetes.status_interval,
            state.metrics().clone(),
        );
        state.add_background(writer);
    }
}
