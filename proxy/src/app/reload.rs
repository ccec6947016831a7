//! Config reload (`POST|PUT /-/reload` and SIGHUP): a bad config is refused and the running
//! one keeps serving; a good one swaps auth, backends and limits at once.

use std::path::PathBuf;
use std::sync::Arc;

use super::{App, Runtime, RuntimeSettings};
use crate::config::Config;
use crate::telemetry::ResultLabels;

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the proxy was started without a config file; nothing to reload")]
    NoConfigFile,
    #[error("config not reloaded, the previous one keeps serving: {0}")]
    Invalid(String),
}

impl App {
    /// Reload the config file: a bad config is refused and the running one keeps serving; a
    /// good one swaps auth, backends and limits at once. Listen addresses are not rebound.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        let _guard = self.inner.reload_lock.lock().await;
        let result = self.try_reload();
        let label = if result.is_ok() { "success" } else { "failure" };
        self.metrics()
            .config_reloads
            .get_or_create(&ResultLabels {
                result: label.to_string(),
            })
            .inc();
        match &result {
            Ok(()) => tracing::info!("config reloaded"),
            Err(error) => tracing::error!(%error, "config reload failed"),
        }
        result
    }

    fn try_reload(&self) -> Result<(), ReloadError> {
        let path: PathBuf = self
            .config_path()
            .cloned()
            .ok_or(ReloadError::NoConfigFile)?;
        let config = Config::load(&path).map_err(|e| ReloadError::Invalid(e.to_string()))?;
        let mut settings = RuntimeSettings::from_config(&config)
            .map_err(|e| ReloadError::Invalid(e.to_string()))?;
        // With discovery on, the backends are what was discovered, not `backends.groups`.
        if config.discovery.kubernetes.is_some()
            && let Some(groups) = self.discovered_backends()
        {
            settings.backends.groups = groups;
        }
        let mut new = Runtime::build(settings, self.metrics().clone(), self.kube())
            .map_err(|e| ReloadError::Invalid(format!("{e:#}")))?;
        let old = self.runtime();
        if new.settings.rewrite_cache_bytes == old.settings.rewrite_cache_bytes {
            new.rewrites = old.rewrites.clone();
        }
        if new.settings.tenants_dir.is_some() != old.settings.tenants_dir.is_some()
            || new.settings.tenant_namespaces != old.settings.tenant_namespaces
        {
            return Err(ReloadError::Invalid(
                "tenants.source and tenants.namespaces apply at start: restart the proxy to change them".into(),
            ));
        }
        new.backends.inherit_health(&old.backends);
        new.backends.start_probes();
        if new.settings.tenants_dir != old.settings.tenants_dir
            && let Some(dir) = new.settings.tenants_dir.clone()
        {
            tracing::info!(dir = %dir.display(), "tenant directory changed, restarting the tenant source");
            let task = crate::tenant::source::spawn_file_source(dir, self.tenants().clone());
            self.set_tenant_source(task);
        }
        self.ingest()
            .reload(&new.settings.ingest)
            .map_err(ReloadError::Invalid)?;
        self.inner.runtime.store(Arc::new(new));
        // Requests in flight may still hold the old pool; its members need no more probing.
        old.backends.stop_probes();
        Ok(())
    }
}
