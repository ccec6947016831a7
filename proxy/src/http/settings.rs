//! The settings the HTTP layer runs with, converted from [`crate::config::Config`]: what a
//! reload swaps.

use std::path::PathBuf;
use std::sync::Arc;

use crate::auth::{AuthSettings, TokenSetting, TokenSource};
use crate::backend::{BackendSettings, GroupSettings};
use crate::config::{AuthMode, Config, RemoteWriteConfig, TenantSourceKind};

/// Everything a request needs from the config, resolved (token files are read later, when
/// the authenticator is built).
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    pub auth: AuthSettings,
    pub backends: BackendSettings,
    /// `proxy.max_body_bytes`: larger POST bodies get 413.
    pub max_body_bytes: usize,
    /// `proxy.max_query_bytes` / `proxy.max_query_depth`: enforcement limits.
    pub max_query_bytes: usize,
    pub max_query_depth: usize,
    /// `proxy.enable_request_logging`: one info line per request.
    pub request_logging: bool,
    /// `proxy.enable_metrics`: serve `/metrics` on the admin listener.
    pub metrics_enabled: bool,
    /// Tenant folder (file source), already resolved against the config file's folder.
    pub tenants_dir: Option<PathBuf>,
    /// Kubernetes tenant source: the namespaces watched (`None`: all). Unused in file mode.
    pub tenant_namespaces: Option<Vec<String>>,
    /// Kubernetes mode settings (status, Secrets, sharding).
    pub kubernetes: Arc<crate::config::KubernetesConfig>,
    /// The collector's settings (`remote_write`).
    pub collector: Arc<RemoteWriteConfig>,
    /// The ingest gateway's settings (`ingest`).
    pub ingest: Arc<crate::config::ingest::IngestConfig>,
}

/// A config the HTTP layer can't run with (beyond what `Config` validation catches).
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("auth.mode {0}: not implemented yet")]
    AuthModeNotBuilt(&'static str),
    #[error("auth.bearer.tokens[{0}]: set exactly one of sha256 or token_file")]
    TokenSource(usize),
}

impl RuntimeSettings {
    pub fn from_config(config: &Config) -> Result<RuntimeSettings, SettingsError> {
        let tenants_dir = match config.tenants.source {
            TenantSourceKind::File => Some(config.tenants.directory.clone()),
            TenantSourceKind::Kubernetes => None,
        };
        let tenant_namespaces =
            (!config.tenants.watch_all_namespaces).then(|| config.tenants.namespaces.clone());
        let auth = match config.auth.mode {
            AuthMode::Header => AuthSettings::Header {
                header: config.auth.header.name.clone(),
                query_param: config.auth.header.query_param.clone(),
            },
            AuthMode::Bearer => {
                let mut tokens = Vec::new();
                for (i, token) in config.auth.bearer.tokens.iter().enumerate() {
                    let source = match (&token.sha256, &token.token_file) {
                        (Some(hash), None) => TokenSource::Sha256(hash.clone()),
                        (None, Some(file)) => TokenSource::File(file.clone()),
                        _ => return Err(SettingsError::TokenSource(i)),
                    };
                    tokens.push(TokenSetting {
                        tenant: token.tenant.clone(),
                        source,
                    });
                }
                AuthSettings::Bearer { tokens }
            }
            AuthMode::Kubernetes => return Err(SettingsError::AuthModeNotBuilt("kubernetes")),
            AuthMode::Jwt => return Err(SettingsError::AuthModeNotBuilt("jwt")),
        };
        let backends = BackendSettings {
            groups: config
                .backends
                .groups
                .iter()
                .map(|g| GroupSettings {
                    name: g.name.clone(),
                    members: g.members.clone(),
                })
                .collect(),
            probe_interval: config.backends.probe_interval,
            probe_timeout: config.backends.probe_timeout,
            request_timeout: config.proxy.backend_timeout,
            max_concurrent_requests: config.proxy.max_concurrent_requests,
        };
        Ok(RuntimeSettings {
            auth,
            backends,
            max_body_bytes: config.proxy.max_body_bytes,
            max_query_bytes: config.proxy.max_query_bytes,
            max_query_depth: config.proxy.max_query_depth,
            request_logging: config.proxy.enable_request_logging,
            metrics_enabled: config.proxy.enable_metrics,
            tenants_dir,
            tenant_namespaces,
            kubernetes: Arc::new(config.kubernetes.clone()),
            collector: Arc::new(config.remote_write.clone()),
            ingest: Arc::new(config.ingest.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_every_section() {
        let config = Config::from_yaml(
            r#"
tenants: { directory: /srv/tenants }
proxy: { backend_timeout: 7s, max_concurrent_requests: 3, max_body_bytes: 10, enable_request_logging: false }
backends:
  probe_interval: 1s
  groups: [{ name: infra, members: ["http://a:9090", "http://b:9090"] }]
auth:
  mode: bearer
  bearer:
    tokens:
      - { tenant: team-a, sha256: "0000000000000000000000000000000000000000000000000000000000000000" }
      - { tenant: team-b, token_file: /run/b.token }
"#,
            "test",
        )
        .unwrap();
        let settings = RuntimeSettings::from_config(&config).unwrap();
        assert_eq!(settings.tenants_dir, Some(PathBuf::from("/srv/tenants")));
        assert_eq!(settings.backends.request_timeout.as_secs(), 7);
        assert_eq!(settings.backends.max_concurrent_requests, 3);
        assert_eq!(settings.backends.groups[0].members.len(), 2);
        assert_eq!(settings.max_body_bytes, 10);
        assert!(!settings.request_logging);
        let AuthSettings::Bearer { tokens } = &settings.auth else {
            panic!("bearer expected");
        };
        assert_eq!(tokens[1].source, TokenSource::File("/run/b.token".into()));
    }
}
