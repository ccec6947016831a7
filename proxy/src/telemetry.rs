//! Logs and self metrics: the tracing subscriber (JSON or text, `EnvFilter`) and the proxy's
//! own `/metrics` registry. Label sets stay bounded: routes are templates, tenants are only
//! those in the store (else `unknown`), reasons are fixed strings.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter {filter:?}: {reason}")]
    Filter { filter: String, reason: String },
    #[error("a tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Install the global tracing subscriber. `level` (from `--log-level`) wins over `RUST_LOG`;
/// with neither, `info`.
pub fn init_tracing(level: Option<&str>, format: LogFormat) -> Result<(), TelemetryError> {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(level) => EnvFilter::try_new(level).map_err(|e| TelemetryError::Filter {
            filter: level.to_string(),
            reason: e.to_string(),
        })?,
        None => match std::env::var("RUST_LOG") {
            Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(&directives)
                .map_err(|e| TelemetryError::Filter {
                    filter: directives.clone(),
                    reason: e.to_string(),
                })?,
            _ => EnvFilter::new("info"),
        },
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    result.map_err(|_| TelemetryError::AlreadyInstalled)
}

/// Route templates and methods are from fixed lists, so the labels borrow them: counting a
/// request allocates nothing.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: &'static str,
    pub method: &'static str,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub group: String,
    pub member: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemberLabels {
    pub group: String,
    pub member: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

/// One collector job (a `MetricAccess`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    pub namespace: String,
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CycleLabels {
    pub namespace: String,
    pub resource: String,
    pub outcome: String,
}

/// One endpoint of a collector job (a replica, a Pushgateway group, a URL).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub namespace: String,
    pub resource: String,
    pub target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointOutcomeLabels {
    pub namespace: String,
    pub resource: String,
    pub target: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    pub code: String,
}

/// A governance drop. `tenant` is a tenant with its own rules, or `_other` (senders choose
/// tenant names, so they can't be labels unbounded).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub tenant: String,
    pub reason: String,
    pub dry_run: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopLabels {
    pub tenant: String,
    pub metric: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ])
}

/// The proxy's own metrics (`pmtp_*`). One per running proxy, so tests don't share counters.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: HistogramFamily<RouteLabels>,
    pub backend_requests: Family<BackendLabels, Counter>,
    pub backend_up: Family<MemberLabels, Gauge>,
    pub tenant_requests: Family<TenantLabels, Counter>,
    pub rewrite_errors: Family<ReasonLabels, Counter>,
    pub auth_failures: Family<ReasonLabels, Counter>,
    pub tenants: Family<StateLabels, Gauge>,
    pub config_reloads: Family<ResultLabels, Counter>,
    pub bad_requests: Family<ReasonLabels, Counter>,
    pub rewrite_cache: RewriteCacheMetrics,
    pub collector: CollectorMetrics,
    pub ingest: IngestMetrics,
    pub kubernetes: KubernetesMetrics,
}

/// The read path's cache of enforced queries (`pmtp_rewrite_cache_*`): the counters are
/// counted by the cache itself, the gauges set at scrape time.
#[derive(Debug, Default)]
pub struct RewriteCacheMetrics {
    pub hits: Counter,
    pub misses: Counter,
    pub entries: Gauge,
    pub bytes: Gauge,
    pub compiled_policies: Gauge,
}

impl RewriteCacheMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "pmtp_rewrite_cache_hits",
            "Queries and match[] lists answered from the cache of enforced queries",
            self.hits.clone(),
        );
        registry.register(
            "pmtp_rewrite_cache_misses",
            "Queries and match[] lists enforced afresh (not in the cache)",
            self.misses.clone(),
        );
        registry.register(
            "pmtp_rewrite_cache_entries",
            "Enforced queries and match[] lists in the cache",
            self.entries.clone(),
        );
        registry.register(
            "pmtp_rewrite_cache_bytes",
            "Weight of the cache of enforced queries (query texts and bookkeeping), bounded by proxy.rewrite_cache_bytes",
            self.bytes.clone(),
        );
        registry.register(
            "pmtp_compiled_policies",
            "Tenant policies kept compiled for enforcement (tenants that sent a request)",
            self.compiled_policies.clone(),
        );
    }
}

/// Kubernetes mode's families (`pmtp_kubernetes_*`).
#[derive(Debug, Default)]
pub struct KubernetesMetrics {
    /// Failed list/watch calls (the watcher backs off and retries), by watched resource.
    pub watch_errors: Family<ResourceKindLabels, Counter>,
    /// Status patches of MetricAccess resources, by result (ok, error).
    pub status_patches: Family<ResultLabels, Counter>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceKindLabels {
    pub resource: String,
}

impl KubernetesMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "pmtp_kubernetes_watch_errors",
            "Failed list/watch calls to the Kubernetes API, by resource (retried with backoff)",
            self.watch_errors.clone(),
        );
        registry.register(
            "pmtp_kubernetes_status_patches",
            "MetricAccess status patches, by result (ok, error)",
            self.status_patches.clone(),
        );
    }
}

/// The ingest gateway's families (`pmtp_ingest_*`).
#[derive(Debug, Default)]
pub struct IngestMetrics {
    pub requests: Family<CodeLabels, Counter>,
    pub refused_series: Family<ReasonLabels, Counter>,
    pub dropped_series: Family<DropLabels, Counter>,
    pub forwarded_series: Counter,
    pub top_active_series: Family<TopLabels, Gauge>,
    pub top_samples_rate: Family<TopLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub forward: DeliveryFamilies,
}

impl IngestMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "pmtp_ingest_requests",
            "Remote-write requests received, by status code",
            self.requests.clone(),
        );
        registry.register(
            "pmtp_ingest_refused_series",
            "Series refused by the limits (answered 400), by reason",
            self.refused_series.clone(),
        );
        registry.register(
            "pmtp_ingest_dropped_series",
            "Series dropped by governance rules, by tenant (own rules, else _other), reason and dry_run",
            self.dropped_series.clone(),
        );
        registry.register(
            "pmtp_ingest_forwarded_series",
            "Series queued for storage",
            self.forwarded_series.clone(),
        );
        registry.register(
            "pmtp_ingest_top_active_series",
            "Active series of the top metrics per tenant (analytics.top_k)",
            self.top_active_series.clone(),
        );
        registry.register(
            "pmtp_ingest_top_samples_per_second",
            "Samples per second of the top metrics per tenant (analytics.top_k)",
            self.top_samples_rate.clone(),
        );
        self.forward
            .register(registry, "pmtp_ingest_forward", "storage destinations");
    }
}

/// The collector's families (`pmtp_collector_*`), bounded by CRs × endpoints.
#[derive(Debug, Default)]
pub struct CollectorMetrics {
    pub cycles: Family<CycleLabels, Counter>,
    pub series_collected: Family<ResourceLabels, Counter>,
    pub samples_collected: Family<ResourceLabels, Counter>,
    pub stale_markers: Family<ResourceLabels, Counter>,
    pub last_success: Family<ResourceLabels, Gauge>,
    pub delivery: DeliveryFamilies,
}

/// What a delivery queue reports (`crate::delivery`), registered under a prefix per user
/// (`pmtp_collector_*`, `pmtp_ingest_forward_*`). Families share their storage when cloned.
#[derive(Debug, Default, Clone)]
pub struct DeliveryFamilies {
    pub requests: Family<EndpointOutcomeLabels, Counter>,
    pub samples_written: Family<EndpointLabels, Counter>,
    pub dropped_requests: Family<EndpointOutcomeLabels, Counter>,
    pub queue_depth: Family<EndpointLabels, Gauge>,
}

impl DeliveryFamilies {
    fn register(&self, registry: &mut Registry, prefix: &str, what: &str) {
        registry.register(
            format!("{prefix}_requests"),
            format!("Write requests to {what}, by outcome (ok, retry, rejected)"),
            self.requests.clone(),
        );
        registry.register(
            format!("{prefix}_samples_written"),
            format!("Samples accepted by {what}"),
            self.samples_written.clone(),
        );
        registry.register(
            format!("{prefix}_dropped_requests"),
            "Encoded requests given up, by reason (queue_full, rejected, superseded)",
            self.dropped_requests.clone(),
        );
        registry.register(
            format!("{prefix}_queue_depth"),
            format!("Encoded requests waiting for {what}"),
            self.queue_depth.clone(),
        );
    }
}

impl CollectorMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "pmtp_collector_cycles",
            "Collection cycles per MetricAccess, by outcome (ok, read_error, skipped)",
            self.cycles.clone(),
        );
        registry.register(
            "pmtp_collector_series_collected",
            "Series read from infrastructure Prometheus per MetricAccess (summed over cycles)",
            self.series_collected.clone(),
        );
        registry.register(
            "pmtp_collector_samples_collected",
            "Samples read from infrastructure Prometheus per MetricAccess",
            self.samples_collected.clone(),
        );
        registry.register(
            "pmtp_collector_stale_markers",
            "Staleness markers written for series that vanished",
            self.stale_markers.clone(),
        );
        registry.register(
            "pmtp_collector_last_success_timestamp_seconds",
            "End of the last window collected successfully per MetricAccess (Unix seconds)",
            self.last_success.clone(),
        );
        self.delivery
            .register(registry, "pmtp_collector", "tenant targets");
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration =
            HistogramFamily::<RouteLabels>::new_with_constructor(duration_histogram);
        let backend_requests = Family::<BackendLabels, Counter>::default();
        let backend_up = Family::<MemberLabels, Gauge>::default();
        let tenant_requests = Family::<TenantLabels, Counter>::default();
        let rewrite_errors = Family::<ReasonLabels, Counter>::default();
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        let tenants = Family::<StateLabels, Gauge>::default();
        let config_reloads = Family::<ResultLabels, Counter>::default();
        let bad_requests = Family::<ReasonLabels, Counter>::default();
        // Counter names are registered without `_total`: the encoder appends it.
        registry.register(
            "pmtp_http_requests",
            "HTTP requests answered, by route template, method and status code",
            http_requests.clone(),
        );
        registry.register(
            "pmtp_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template",
            http_duration.clone(),
        );
        registry.register(
            "pmtp_backend_requests",
            "Requests sent to backend members, by outcome (ok, http_5xx, http_4xx, connect_error, timeout, error)",
            backend_requests.clone(),
        );
        registry.register(
            "pmtp_backend_up",
            "1 if the last readiness probe of a backend member succeeded (or none ran yet)",
            backend_up.clone(),
        );
        registry.register(
            "pmtp_tenant_requests",
            "Authenticated API requests per tenant",
            tenant_requests.clone(),
        );
        registry.register(
            "pmtp_rewrite_errors",
            "Queries or selectors the enforcement refused, by reason",
            rewrite_errors.clone(),
        );
        registry.register(
            "pmtp_auth_failures",
            "Requests refused by authentication, by reason",
            auth_failures.clone(),
        );
        registry.register(
            "pmtp_tenants",
            "Tenants in the store (valid) and MetricAccess resources refused (invalid)",
            tenants.clone(),
        );
        registry.register(
            "pmtp_config_reloads",
            "Config reloads by result (success, failure)",
            config_reloads.clone(),
        );
        registry.register(
            "pmtp_bad_requests",
            "Requests refused before enforcement (parameters, body), by reason",
            bad_requests.clone(),
        );
        let rewrite_cache = RewriteCacheMetrics::default();
        rewrite_cache.register(&mut registry);
        let collector = CollectorMetrics::default();
        collector.register(&mut registry);
        let ingest = IngestMetrics::default();
        ingest.register(&mut registry);
        let kubernetes = KubernetesMetrics::default();
        kubernetes.register(&mut registry);
        Self {
            registry,
            rewrite_cache,
            collector,
            ingest,
            kubernetes,
            http_requests,
            http_duration,
            backend_requests,
            backend_up,
            tenant_requests,
            rewrite_errors,
            auth_failures,
            tenants,
            config_reloads,
            bad_requests,
        }
    }

    /// OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String can't fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn inc_reason(family: &Family<ReasonLabels, Counter>, reason: &str) {
        family
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_are_pmtp_prefixed_and_encoded() {
        let metrics = Metrics::new();
        metrics
            .http_requests
            .get_or_create(&HttpLabels {
                route: "/api/v1/query",
                method: "GET",
                code: 200,
            })
            .inc();
        Metrics::inc_reason(&metrics.auth_failures, "missing");
        metrics
            .http_duration
            .get_or_create(&RouteLabels {
                route: "/api/v1/query",
            })
            .observe(0.2);
        let text = metrics.encode();
        assert!(
            text.contains(
                "pmtp_http_requests_total{route=\"/api/v1/query\",method=\"GET\",code=\"200\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("pmtp_auth_failures_total{reason=\"missing\"} 1"));
        assert!(text.contains("pmtp_http_request_duration_seconds_bucket"));
        assert!(text.trim_end().ends_with("# EOF"));
    }
}
