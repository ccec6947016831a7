//! The composition root: [`App`] builds and owns the running proxy (the runtime a reload
//! swaps, the collector, the ingest gateway, the shard, Kubernetes Secrets, the background
//! tasks), and [`start`] binds the listeners and starts it all, as main.rs and the e2e
//! harness do. The HTTP layer (`crate::http`) only routes requests to handlers over
//! `State<App>`.
//!
//! - [`settings`]: what the running proxy takes from the config ([`RuntimeSettings`]);
//! - [`reload`]: `POST /-/reload` and SIGHUP;
//! - [`discovered`]: backends from Kubernetes discovery;
//! - [`start`](mod@start): the listeners, the tenant source, Kubernetes mode, shutdown.

pub mod discovered;
pub mod reload;
pub mod settings;
pub mod start;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

pub use settings::{RuntimeSettings, SettingsError};
pub use start::{RunningProxy, StartOptions, start, start_with};

use crate::auth::Authenticator;
use crate::backend::BackendPool;
use crate::collector::Collector;
use crate::collector::target::SecretSource;
use crate::config::Config;
use crate::k8s::secrets::KubeSecrets;
use crate::k8s::shard::{Shard, ShardSettings};
use crate::promql::RewriteCache;
use crate::telemetry::Metrics;
use crate::tenant::TenantStore;

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

/// The running proxy, shared by both routers and the background tasks. Cheap to clone.
#[derive(Clone)]
pub struct App {
    inner: Arc<Shared>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("runtime", &self.inner.runtime.load())
            .field("config_path", &self.inner.config_path)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Build the backends and the authenticator from `config`. Must run inside a Tokio
    /// runtime (the backend probes start here). The tenant source is not started: see
    /// [`start()`] (or fill `tenants` yourself). Without a config path, reloads are refused.
    pub fn new(config: Config, tenants: Arc<TenantStore>) -> anyhow::Result<App> {
        let settings = RuntimeSettings::from_config(&config)?;
        Self::from_settings(settings, tenants, None)
    }

    /// Build from already-converted settings; `config_path` enables reloads.
    pub fn from_settings(
        settings: RuntimeSettings,
        tenants: Arc<TenantStore>,
        config_path: Option<PathBuf>,
    ) -> anyhow::Result<App> {
        Self::from_settings_with_kube(settings, tenants, config_path, None)
    }

    /// As [`App::from_settings`], with the Kubernetes API client of Kubernetes mode.
    pub fn from_settings_with_kube(
        settings: RuntimeSettings,
        tenants: Arc<TenantStore>,
        config_path: Option<PathBuf>,
        kube: Option<kube::Client>,
    ) -> anyhow::Result<App> {
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
        Ok(App {
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

    /// Start the proxy from `config`: build it, bind both listeners, start the tenant source
    /// and Kubernetes mode, serve (see [`start()`]).
    pub async fn start(
        config: Config,
        config_path: Option<PathBuf>,
    ) -> anyhow::Result<RunningProxy> {
        start(config, config_path).await
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

    /// Keep `task` running until the proxy stops (aborted by [`App::stop_background`]).
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
}
