//! The ingest gateway (DESIGN §6): agents send remote_write; the proxy checks limits, applies
//! each tenant's governance rules, counts what it drops and forwards the rest to storage with
//! the tenant header, through queues that lose nothing they acknowledged.
//!
//! - [`limits`]: decoding and the per-series checks that answer 400;
//! - [`pipeline`]: a tenant's rules: naming, relabel, label drops, cardinality, unused metrics;
//! - [`cardinality`]: active series per tenant and metric; [`analytics`]: rates, drops, top;
//! - [`usage`]: which metrics are queried or referenced by rules and dashboards;
//! - [`forward`]: batching and queueing per destination (with `crate::delivery`'s disk spill);
//! - [`receiver`]: one request from body to answer.

pub mod analytics;
pub mod buffers;
pub mod cardinality;
pub mod forward;
pub mod limits;
pub mod pipeline;
pub mod receiver;
pub mod usage;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use tokio::task::JoinHandle;

use crate::config::ingest::IngestConfig;
use crate::telemetry::{Metrics, TopLabels};
use analytics::{Analytics, TopBy};
use cardinality::SeriesTracker;
use forward::Forwarder;
use pipeline::Governance;
use usage::Usage;

/// Per-tenant state behind one lock per tenant: the read lock of the map is held only to find
/// the tenant, so tenants don't contend with each other.
pub(crate) type TenantMap<T> = std::sync::RwLock<std::collections::HashMap<String, Arc<Mutex<T>>>>;

/// The tenant's entry, created on first use.
pub(crate) fn tenant_entry<T: Default>(map: &TenantMap<T>, tenant: &str) -> Arc<Mutex<T>> {
    if let Some(t) = map
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(tenant)
    {
        return t.clone();
    }
    map.write()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(tenant.to_owned())
        .or_default()
        .clone()
}

/// Every tenant's entry, copied out so that each can be locked in turn without the map lock.
pub(crate) fn tenant_entries<T>(map: &TenantMap<T>) -> Vec<(String, Arc<Mutex<T>>)> {
    map.read()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// How often idle series expire and analytics are pruned.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(10);

/// What a reload swaps: limits, rules, the tenant header.
struct Settings {
    config: Arc<IngestConfig>,
    governance: Governance,
}

/// The gateway's state: rules (reloadable), series tracking, analytics, usage, forwarding.
pub struct Ingest {
    settings: ArcSwap<Settings>,
    pub tracker: SeriesTracker,
    pub analytics: Analytics,
    pub usage: Usage,
    /// `None` when `ingest.enabled` was false at start (destinations need a restart).
    forwarder: Option<Forwarder>,
    /// Kept request buffers (see [`buffers`]).
    buffers: buffers::BufferPool,
    metrics: Arc<Metrics>,
    housekeeping: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("forwarder", &self.forwarder)
            .finish_non_exhaustive()
    }
}

impl Ingest {
    /// Build the gateway from `config` (needs a Tokio runtime when enabled).
    pub fn start(config: &IngestConfig, metrics: Arc<Metrics>) -> Result<Arc<Ingest>, String> {
        let governance = Governance::compile(&config.governance).map_err(|e| e.join("; "))?;
        let forwarder = if config.enabled {
            Some(Forwarder::start(
                &config.forward,
                metrics.ingest.forward.clone(),
            )?)
        } else {
            None
        };
        let usage = Usage::new(config.usage.unused_after, SystemTime::now());
        let ingest = Arc::new(Ingest {
            settings: ArcSwap::from_pointee(Settings {
                config: Arc::new(config.clone()),
                governance,
            }),
            tracker: SeriesTracker::new(config.analytics.window),
            analytics: Analytics::new(),
            usage,
            forwarder,
            buffers: Default::default(),
            metrics,
            housekeeping: Mutex::new(None),
        });
        ingest.load_static_usage(config);
        if config.enabled {
            let weak = Arc::downgrade(&ingest);
            let task = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(HOUSEKEEPING_EVERY).await;
                    let Some(i) = weak.upgrade() else { return };
                    let now = Instant::now();
                    i.tracker.expire(now);
                    i.analytics.prune(&i.tracker, now);
                }
            });
            *ingest
                .housekeeping
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(task);
        }
        Ok(ingest)
    }

    /// Whether accepted requests are written to a disk spill before they are acknowledged.
    pub fn spills(&self) -> bool {
        self.forwarder.as_ref().is_some_and(|f| f.spills())
    }

    pub fn enabled(&self) -> bool {
        self.forwarder.is_some()
    }

    /// The current settings (shared, not copied: read on every request).
    pub fn config(&self) -> Arc<IngestConfig> {
        self.settings.load().config.clone()
    }

    fn load_static_usage(&self, config: &IngestConfig) {
        let (used, problems) =
            usage::load_static(&config.usage.rule_files, &config.usage.dashboard_files);
        for problem in problems {
            tracing::warn!(%problem, "ingest.usage: a rule file or dashboard could not be fully read");
        }
        self.usage.set_static(used);
    }

    /// Swap limits and rules. Destinations and the queue are built at start only: a change
    /// there is reported and needs a restart.
    pub fn reload(&self, config: &IngestConfig) -> Result<(), String> {
        let governance = Governance::compile(&config.governance).map_err(|e| e.join("; "))?;
        let old = self.settings.load();
        if serde_json::to_string(&old.config.forward).ok()
            != serde_json::to_string(&config.forward).ok()
            || old.config.enabled != config.enabled
        {
            tracing::warn!(
                "ingest.enabled or ingest.forward changed: restart the proxy to apply it; rules and limits are reloaded"
            );
        }
        self.load_static_usage(config);
        self.settings.store(Arc::new(Settings {
            config: Arc::new(config.clone()),
            governance,
        }));
        Ok(())
    }

    /// Record a read-path query's metric names (for the unused-metric rules).
    pub fn record_query(&self, tenant: &str, query: &str) {
        if !self.enabled() {
            return;
        }
        if let Ok(names) = usage::names_in_query(query) {
            self.usage.stats().record(tenant, &names, SystemTime::now());
        }
    }

    /// `GET /api/v1/governance/top`.
    pub fn top(&self, tenant: Option<&str>, by: TopBy, limit: usize) -> Vec<analytics::TopEntry> {
        self.analytics
            .top(&self.tracker, tenant, by, limit, Instant::now())
    }

    /// Set the top-K gauges (called when `/metrics` is scraped).
    pub fn export_top_k(&self) {
        let k = self.settings.load().config.analytics.top_k;
        let m = &self.metrics.ingest;
        m.top_active_series.clear();
        m.top_samples_rate.clear();
        let now = Instant::now();
        for tenant in self.tracker.tenants() {
            for by in [TopBy::Series, TopBy::Samples] {
                for e in self.analytics.top(&self.tracker, Some(&tenant), by, k, now) {
                    let labels = TopLabels {
                        tenant: e.tenant.clone(),
                        metric: e.metric.clone(),
                    };
                    m.top_active_series
                        .get_or_create(&labels)
                        .set(e.active_series as i64);
                    m.top_samples_rate
                        .get_or_create(&labels)
                        .set(e.samples_per_second);
                }
            }
        }
    }

    /// Forwarding queues per destination.
    pub fn forward_stats(&self) -> serde_json::Value {
        match &self.forwarder {
            Some(f) => serde_json::to_value(f.stats()).unwrap_or_default(),
            None => serde_json::Value::Null,
        }
    }

    /// Drain the queues for up to `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        if let Some(task) = self
            .housekeeping
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
        if let Some(f) = &self.forwarder {
            f.shutdown(grace).await;
        }
    }
}

/// `check-config`'s view: destinations, tenants with own rules, the spill; and warnings for
/// rule files or dashboards that can't be fully read.
pub fn describe(config: &IngestConfig) -> (Vec<String>, Vec<String>) {
    if !config.enabled {
        return (
            vec!["ingest: off (ingest.enabled: false)".into()],
            Vec::new(),
        );
    }
    let mut lines = vec![format!(
        "ingest: on, tenant from {} (else {})",
        config.tenant_header,
        config.default_tenant.as_deref().unwrap_or("401")
    )];
    for d in &config.forward.destinations {
        lines.push(format!("  destination {} -> {}", d.name, d.url));
    }
    let tenants: Vec<&str> = config
        .governance
        .tenants
        .keys()
        .map(String::as_str)
        .collect();
    lines.push(format!(
        "  rules: default + {} tenant(s) of their own{}",
        tenants.len(),
        if tenants.is_empty() {
            String::new()
        } else {
            format!(" ({})", tenants.join(", "))
        }
    ));
    match &config.forward.spill_directory {
        Some(dir) => lines.push(format!("  spill: {}", dir.display())),
        None => lines.push("  spill: none (memory queues)".into()),
    }
    let (used, problems) =
        usage::load_static(&config.usage.rule_files, &config.usage.dashboard_files);
    lines.push(format!(
        "  usage: {} metric name(s) and {} pattern(s) from rule files and dashboards",
        used.names.len(),
        used.patterns.len()
    ));
    (
        lines,
        problems
            .into_iter()
            .map(|p| format!("ingest.usage: {p}"))
            .collect(),
    )
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if let Some(task) = self
            .housekeeping
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}
