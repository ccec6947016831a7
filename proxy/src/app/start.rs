//! Running the proxy: bind both listeners, start the tenant source, Kubernetes mode and the
//! backend probes, serve (`crate::http::serve`) until shut down. [`start`] is what main.rs and
//! the e2e harness call.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{App, RuntimeSettings};
use crate::config::Config;
use crate::http::listener::ListenerOptions;
use crate::http::serve;
use crate::tenant::TenantStore;

/// How long [`start`] waits for the tenant folder's first load before returning.
const FIRST_LOAD_WAIT: Duration = Duration::from_secs(5);
/// How long [`RunningProxy::shutdown`] lets in-flight requests finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of [`start_with`].
#[derive(Clone, Default)]
pub struct StartOptions {
    /// Reload the config file on SIGHUP (main.rs sets it; tests leave it off).
    pub reload_on_sighup: bool,
    /// The Kubernetes API client to use instead of the environment's (tests point it at a
    /// simulated API server).
    pub kube_client: Option<kube::Client>,
}

impl std::fmt::Debug for StartOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartOptions")
            .field("reload_on_sighup", &self.reload_on_sighup)
            .field("kube_client", &self.kube_client.is_some())
            .finish()
    }
}

/// A proxy serving in the background. Dropping it aborts everything; prefer
/// [`RunningProxy::shutdown`] to let requests finish.
pub struct RunningProxy {
    /// Tenant-facing API listener (the bound address: port 0 is resolved).
    pub api_addr: SocketAddr,
    /// The tenant listener serves TLS (`server.tls`).
    pub api_tls: bool,
    /// Admin listener (`/metrics`, `/debug/*`, `/-/reload`).
    pub admin_addr: SocketAddr,
    pub tenants: Arc<TenantStore>,
    pub state: App,
    shutdown: Option<watch::Sender<bool>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    sighup: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RunningProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningProxy")
            .field("api_addr", &self.api_addr)
            .field("admin_addr", &self.admin_addr)
            .finish_non_exhaustive()
    }
}

impl RunningProxy {
    /// `http://<api_addr>`, or `https://` with `server.tls`.
    pub fn api_url(&self) -> String {
        let scheme = if self.api_tls { "https" } else { "http" };
        format!("{scheme}://{}", self.api_addr)
    }

    /// `http://<admin_addr>`.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr)
    }

    /// Wait until `/-/ready` would answer 200 (tenants loaded, a backend probed healthy).
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.state.not_ready_reason() {
                None => return Ok(()),
                Some(reason) if tokio::time::Instant::now() >= deadline => return Err(reason),
                Some(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// Wait until the servers stop on their own (a listener error).
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        match self.server.as_mut() {
            Some(server) => {
                let result = server.await.context("server task failed");
                self.server = None;
                result?
            }
            None => Ok(()),
        }
    }

    /// Stop accepting, let in-flight requests finish (up to 10 s), stop everything.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        if let Some(task) = self.sighup.take() {
            task.abort();
        }
        // Hand this replica's CRs over at once rather than after the lease expires.
        if let Some(shard) = self.state.shard() {
            shard.stop().await;
        }
        self.state.collector().shutdown().await;
        // The receiver stops with the listeners below; then the forwarding queues drain.
        let ingest = self.state.ingest().clone();
        self.state.stop_background();
        let Some(mut server) = self.server.take() else {
            return Ok(());
        };
        let served = match tokio::time::timeout(DRAIN_TIMEOUT, &mut server).await {
            Ok(joined) => joined.context("server task failed"),
            Err(_) => {
                server.abort();
                tracing::warn!("in-flight requests did not finish in time; aborted");
                Ok(Ok(()))
            }
        };
        ingest.shutdown(DRAIN_TIMEOUT).await;
        served?
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        // Signal first: open connections are served by their own tasks, which only the
        // graceful-shutdown signal closes (aborting the accept loop does not).
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        self.state.stop_background();
        if let Some(task) = self.server.take() {
            task.abort();
        }
        if let Some(task) = self.sighup.take() {
            task.abort();
        }
    }
}

/// Start the proxy from `config` (listeners may use port 0). `config_path` is where
/// `POST /-/reload` re-reads the config from; without it reloads are refused.
pub async fn start(config: Config, config_path: Option<PathBuf>) -> anyhow::Result<RunningProxy> {
    start_with(config, config_path, StartOptions::default()).await
}

pub async fn start_with(
    config: Config,
    config_path: Option<PathBuf>,
    options: StartOptions,
) -> anyhow::Result<RunningProxy> {
    crate::client::install_crypto_provider();
    for warning in config.unimplemented_settings() {
        tracing::warn!("{warning}");
    }
    let settings = RuntimeSettings::from_config(&config)?;
    let api_options = ListenerOptions::tenant(&config.server)?;
    let admin_options = ListenerOptions::plain(&config.server);
    let api_tls = api_options.tls.is_some();
    let api = TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("can't listen on server.listen {}", config.server.listen))?;
    let admin = TcpListener::bind(config.server.admin_listen)
        .await
        .with_context(|| {
            format!(
                "can't listen on server.admin_listen {}",
                config.server.admin_listen
            )
        })?;
    let api_addr = api.local_addr()?;
    let admin_addr = admin.local_addr()?;
    let kube = match options.kube_client.clone() {
        Some(client) => Some(client),
        None if crate::k8s::run::needs_api(&config) => Some(crate::k8s::client().await?),
        None => None,
    };
    let tenants = Arc::new(TenantStore::new());
    let state = App::from_settings_with_kube(settings, tenants.clone(), config_path, kube)?;
    if let Some(dir) = state.runtime().settings.tenants_dir.clone() {
        let task = crate::tenant::source::spawn_file_source(dir, tenants.clone());
        state.set_tenant_source(task);
    }
    start_kubernetes(&state, &tenants, &config);
    wait_first_load(&tenants).await;
    let (tx, mut rx) = watch::channel(false);
    let server = tokio::spawn(serve(
        (api, api_options),
        (admin, admin_options),
        state.clone(),
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        },
    ));
    let sighup = if options.reload_on_sighup {
        spawn_sighup(state.clone())
    } else {
        None
    };
    tracing::info!(%api_addr, %admin_addr, "proxy listening");
    Ok(RunningProxy {
        api_addr,
        api_tls,
        admin_addr,
        tenants,
        state,
        shutdown: Some(tx),
        server: Some(server),
        sighup,
    })
}

/// Start what `config` asks of Kubernetes mode, and keep its tasks with the state: they stop
/// with the proxy. Discovered backends are served from as they are published.
fn start_kubernetes(state: &App, tenants: &Arc<TenantStore>, config: &Config) {
    let Some(client) = state.kube().cloned() else {
        return;
    };
    let parts = crate::k8s::run::Parts {
        client,
        tenants: tenants.clone(),
        metrics: state.metrics().clone(),
        collector: state.collector().clone(),
        shard: state.shard().cloned(),
    };
    let started = crate::k8s::run::start(parts, config);
    if let Some((groups, task)) = started.discovery {
        state.add_background(task);
        state.add_background(state.follow_discovered_backends(groups));
    }
    if let Some(task) = started.tenant_source {
        state.set_tenant_source(task);
    }
    if let Some(task) = started.status_writer {
        state.add_background(task);
    }
}

async fn wait_first_load(tenants: &TenantStore) {
    let deadline = tokio::time::Instant::now() + FIRST_LOAD_WAIT;
    while !tenants.snapshot().loaded {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!("tenants not loaded yet; serving anyway (not ready)");
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(unix)]
fn spawn_sighup(state: App) -> Option<JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(error) => {
            tracing::warn!(%error, "can't handle SIGHUP; reload with POST /-/reload");
            return None;
        }
    };
    Some(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the config");
            // The outcome is logged and counted by reload().
            let _ = state.reload().await;
        }
    }))
}

#[cfg(not(unix))]
fn spawn_sighup(_state: App) -> Option<JoinHandle<()>> {
    None
}
