//! HTTP layer: the shared state, the tenant-facing Prometheus API router (enforced routes
//! only, everything else 403), the admin router (metrics, debug, reload), and [`start`], the
//! entry point main.rs and the e2e harness use to run the proxy in-process.

pub mod admin;
pub mod discovered;
pub mod ingest;
pub mod listener;
pub mod metadata;
pub mod observe;
pub mod params;
pub mod prom_api;
mod refusal;
pub mod reload;
pub mod rules;
pub mod server;
pub mod settings;

#[cfg(test)]
pub(crate) mod tests;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub(crate) use refusal::Refusal;
pub use server::{RunningProxy, StartOptions, serve, start, start_with};
pub use settings::{RuntimeSettings, SettingsError};

use crate::auth::Authenticator;
use crate::backend::BackendPool;
use crate::collector::Collector;
use crate::collector::target::SecretSource;
use crate::config::Config;
use crate::error::ApiError;
use crate::k8s::secrets::KubeSecrets;
use crate::k8s::shard::{Shard, ShardSettings};
use crate::promql::RewriteCache;
use crate::telemetry::{Metrics, TenantLabels};
use crate::tenant::{Tenant, TenantStore};
use params::Params;

/// What a config reload swaps as a whole: a request sees one consistent set.
#[derive(Debug)]
pub struct Runtime {
    pub settings: RuntimeSettings,
    pub auth: Authenticator,
    pub backends: Arc<BackendPool>,
    /// Enforced queries and compiled tenant policies; kept across a reload or a discovery
    /// update unless `proxy.rewrite_cache_bytes` changes (entries are keyed by policy identity,
    /// so a tenant change never meets an old entry).
    pub rewrites: Arc<RewriteCache>,
}

impl Runtime {
    /// Build from settings and start the backend probes (needs a Tokio runtime). `kube` is
    /// the API server client in Kubernetes mode (TokenReview auth needs it).
    pub fn build(
        settings: RuntimeSettings,
        metrics: Arc<Metrics>,
        kube: Option<&kube::Client>,
    ) -> anyhow::Result<Runtime> {
        let auth = Authenticator::new(&settings.auth, kube)?;
        let rewrites = Arc::new(RewriteCache::with_counters(
            settings.rewrite_cache_bytes,
            metrics.rewrite_cache.hits.clone(),
            metrics.rewrite_cache.misses.clone(),
        ));
        let backends = Arc::new(BackendPool::new(settings.backends.clone(), metrics)?);
        Ok(Runtime::from_parts(settings, auth, backends, rewrites))
    }

    /// Assemble from parts already built (discovery swaps only the backends).
    pub fn from_parts(
        settings: RuntimeSettings,
        auth: Authenticator,
        backends: Arc<BackendPool>,
        rewrites: Arc<RewriteCache>,
    ) -> Runtime {
        Runtime {
            settings,
            auth,
            backends,
            rewrites,
        }
    }
}

/// The collector's view of the running settings: it follows reloads without holding the
/// whole state (which owns the collector).
struct CollectorInputs {
    runtime: Arc<ArcSwap<Runtime>>,
    secrets: Option<Arc<dyn SecretSource>>,
    shard: Option<Arc<Shard>>,
}

impl crate::collector::Inputs for CollectorInputs {
    fn config(&self) -> Arc<crate::config::RemoteWriteConfig> {
        self.runtime.load().settings.collector.clone()
    }
    fn backends(&self) -> Arc<BackendPool> {
        self.runtime.load().backends.clone()
    }
    fn secrets(&self) -> Option<Arc<dyn SecretSource>> {
        self.secrets.clone()
    }
    fn owns(&self, namespace: &str, name: &str) -> bool {
        self.shard.as_ref().is_none_or(|s| s.owns(namespace, name))
    }
    fn ownership_version(&self) -> u64 {
        self.shard.as_ref().map_or(0, |s| s.version())
    }
}

struct Shared {
    tenants: Arc<TenantStore>,
    runtime: Arc<ArcSwap<Runtime>>,
    collector: Arc<Collector>,
    ingest: Arc<crate::ingest::Ingest>,
    metrics: Arc<Metrics>,
    config_path: Option<PathBuf>,
    /// The Kubernetes API client (Kubernetes mode); fixed for the process's life.
    kube: Option<kube::Client>,
    /// This replica's share of the collection (`kubernetes.sharding`).
    shard: Option<Arc<Shard>>,
    /// Serialises reloads (SIGHUP and POST /-/reload may race).
    reload_lock: tokio::sync::Mutex<()>,
    /// The running tenant source, restarted when a reload changes its directory.
    source: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Other background tasks (Kubernetes mode: status writer, discovery, leases).
    background: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The last backend groups Kubernetes discovery published: a reload keeps them.
    discovered: Mutex<Option<Vec<crate::backend::GroupSettings>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(task) = self
            .source
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
        for task in self
            .background
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
    }
}

/// State shared by both routers. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Shared>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("runtime", &self.inner.runtime.load())
            .field("config_path", &self.inner.config_path)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Build the backends and the authenticator from `config`. Must run inside a Tokio
    /// runtime (the backend probes start here). The tenant source is not started: see
    /// [`start`] (or fill `tenants` yourself). Without a config path, reloads are refused.
    pub fn new(config: Config, tenants: Arc<TenantStore>) -> anyhow::Result<AppState> {
        let settings = RuntimeSettings::from_config(&config)?;
        Self::from_settings(settings, tenants, None)
    }

    /// Build from already-converted settings; `config_path` enables reloads.
    pub fn from_settings(
        settings: RuntimeSettings,
        tenants: Arc<TenantStore>,
        config_path: Option<PathBuf>,
    ) -> anyhow::Result<AppState> {
        Self::from_settings_with_kube(settings, tenants, config_path, None)
    }

    /// As [`AppState::from_settings`], with the Kubernetes API client of Kubernetes mode.
    pub fn from_settings_with_kube(
        settings: RuntimeSettings,
        tenants: Arc<TenantStore>,
        config_path: Option<PathBuf>,
        kube: Option<kube::Client>,
    ) -> anyhow::Result<AppState> {
        let metrics = Arc::new(Metrics::new());
        let runtime = Runtime::build(settings, metrics.clone(), kube.as_ref())?;
        runtime.backends.start_probes();
        let ingest = crate::ingest::Ingest::start(&runtime.settings.ingest, metrics.clone())
            .map_err(|e| anyhow::anyhow!("ingest: {e}"))?;
        let runtime = Arc::new(ArcSwap::from_pointee(runtime));
        // Kubernetes tenants name Secrets of their namespace: read them from the API server.
        let secrets = match (&kube, &runtime.load().settings.tenants_dir) {
            (Some(client), None) => Some(Arc::new(KubeSecrets::new(
                client.clone(),
                runtime.load().settings.kubernetes.secret_cache_ttl,
            )) as Arc<dyn SecretSource>),
            _ => None,
        };
        let sharding = &runtime.load().settings.kubernetes.sharding;
        let shard = match &kube {
            Some(client) if sharding.enabled => Some(Shard::spawn(
                client.clone(),
                ShardSettings::resolve(sharding).map_err(|e| e.context("kubernetes.sharding"))?,
            )),
            _ => None,
        };
        let collector = Collector::spawn(
            tenants.clone(),
            Arc::new(CollectorInputs {
                runtime: runtime.clone(),
                secrets,
                shard: shard.clone(),
            }),
            metrics.clone(),
        );
        Ok(AppState {
            inner: Arc::new(Shared {
                tenants,
                runtime,
                collector,
                ingest,
                metrics,
                config_path,
                kube,
                shard,
                reload_lock: tokio::sync::Mutex::new(()),
                source: Mutex::new(None),
                background: Mutex::new(Vec::new()),
                discovered: Mutex::new(None),
            }),
        })
    }

    pub fn tenants(&self) -> &Arc<TenantStore> {
        &self.inner.tenants
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The current runtime (settings, auth, backends); stable for the caller's lifetime.
    pub fn ingest(&self) -> &Arc<crate::ingest::Ingest> {
        &self.inner.ingest
    }

    pub fn collector(&self) -> &Arc<Collector> {
        &self.inner.collector
    }

    pub fn runtime(&self) -> Arc<Runtime> {
        self.inner.runtime.load_full()
    }

    /// The Kubernetes API client, in Kubernetes mode.
    pub fn kube(&self) -> Option<&kube::Client> {
        self.inner.kube.as_ref()
    }

    /// This replica's collector shard (`kubernetes.sharding.enabled`).
    pub fn shard(&self) -> Option<&Arc<Shard>> {
        self.inner.shard.as_ref()
    }

    pub fn config_path(&self) -> Option<&PathBuf> {
        self.inner.config_path.as_ref()
    }

    /// Remember the running tenant source task (aborted when the state drops or the
    /// directory changes on reload).
    pub fn set_tenant_source(&self, task: tokio::task::JoinHandle<()>) {
        let mut source = self
            .inner
            .source
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = source.replace(task) {
            old.abort();
        }
    }

    /// Keep `task` running until the proxy stops (aborted by [`AppState::stop_background`]).
    pub fn add_background(&self, task: tokio::task::JoinHandle<()>) {
        self.inner
            .background
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task);
    }

    /// Stop the background tasks (tenant source, backend probes): the proxy is going away.
    /// Requests still in flight keep working with the last known state.
    pub fn stop_background(&self) {
        for task in self
            .inner
            .background
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
        if let Some(task) = self
            .inner
            .source
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
        self.runtime().backends.stop_probes();
    }

    /// Why the proxy is not ready, if it isn't: tenants not loaded or no healthy backend.
    pub fn not_ready_reason(&self) -> Option<String> {
        if !self.inner.tenants.snapshot().loaded {
            return Some("tenants are not loaded yet".to_string());
        }
        self.runtime().backends.read_group_ready().err()
    }

    /// Authenticate the request and find its tenant in the store.
    pub(crate) async fn resolve_tenant(
        &self,
        runtime: &Runtime,
        headers: &HeaderMap,
        params: &Params,
    ) -> Result<Arc<Tenant>, Refusal> {
        let metrics = &self.inner.metrics;
        let param = runtime.auth.tenant_param().and_then(|p| params.get(p));
        let namespace = runtime
            .auth
            .identify(headers, param)
            .await
            .map_err(|error| {
                Metrics::inc_reason(&metrics.auth_failures, error.reason());
                Refusal::Auth(error)
            })?;
        let Some(tenant) = self.inner.tenants.get(&namespace) else {
            Metrics::inc_reason(&metrics.auth_failures, "unknown_tenant");
            let shown: String = namespace.chars().take(63).collect();
            return Err(ApiError::forbidden(format!(
                "unknown tenant {shown}: no valid MetricAccess"
            ))
            .into());
        };
        tracing::Span::current().record("tenant", tenant.namespace.as_str());
        metrics
            .tenant_requests
            .get_or_create(&TenantLabels {
                tenant: tenant.namespace.clone(),
            })
            .inc();
        if tenant.policy.clauses.is_empty() {
            Metrics::inc_reason(&metrics.auth_failures, "empty_policy");
            return Err(ApiError::forbidden(format!(
                "tenant {} may not read any metric: its MetricAccess lists no metrics",
                tenant.namespace
            ))
            .into());
        }
        Ok(tenant)
    }
}

/// The tenant-facing router: enforced Prometheus API routes and health; everything else 403.
pub fn api_router(state: AppState) -> Router {
    let router = prom_api::routes()
        .merge(rules::routes())
        .merge(ingest::api_routes())
        .merge(health_routes())
        .fallback(unsupported_path)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_deadline,
        ));
    observe::layer(router, state.clone()).with_state(state)
}

/// The admin router: health, `/metrics`, `/debug/*`, `POST /-/reload`.
pub fn admin_router(state: AppState) -> Router {
    let router = admin::routes()
        .merge(ingest::admin_routes())
        .merge(health_routes())
        .fallback(|| async { ApiError::not_found("no such admin endpoint") })
        .method_not_allowed_fallback(method_not_allowed);
    observe::layer(router, state.clone()).with_state(state)
}

/// `server.request_timeout`: the whole request, from its headers to the answer's headers.
async fn request_deadline(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let limit = state.runtime().settings.request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            Metrics::inc_reason(&state.metrics().bad_requests, "request_timeout");
            ApiError::timeout(format!(
                "the request was not answered within server.request_timeout ({})",
                crate::config::format_duration(limit)
            ))
            .into_response()
        }
    }
}

fn health_routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(healthy))
        .route("/-/healthy", get(healthy))
        .route("/ready", get(ready))
        .route("/-/ready", get(ready))
}

async fn healthy() -> &'static str {
    "OK\n"
}

async fn ready(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    match state.not_ready_reason() {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response(),
    }
}

async fn unsupported_path(uri: axum::http::Uri) -> ApiError {
    let path: String = uri.path().chars().take(200).collect();
    ApiError::forbidden(format!(
        "path {path} is not supported by the multi-tenant proxy (only enforced read endpoints are)"
    ))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    let path: String = uri.path().chars().take(200).collect();
    ApiError::method_not_allowed(format!("method {method} is not allowed on {path}"))
}
