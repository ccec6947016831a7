//! The settings the proxy runs with, converted from [`crate::config::Config`]: what a reload
//! swaps.

use std::path::PathBuf;
use std::sync::Arc;

use crate::auth::jwt::{JwksSource, JwtSettings};
use crate::auth::kubernetes::{AccessReviewSettings, KubernetesSettings};
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
    /// `server.request_timeout`: a tenant request not answered by then gets 503 `timeout`.
    pub request_timeout: std::time::Duration,
    /// `proxy.max_query_bytes` / `proxy.max_query_depth`: enforcement limits.
    pub max_query_bytes: usize,
    pub max_query_depth: usize,
    /// `proxy.rewrite_cache_bytes`: size of the cache of enforced queries (0: off).
    pub rewrite_cache_bytes: usize,
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

/// A config the proxy can't run with (beyond what `Config` validation catches).
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("auth.jwt: set exactly one of jwks_file or jwks_url")]
    JwksSource,
    #[error("auth.bearer.tokens[{0}]: set exactly one of sha256 or token_file")]
    TokenSource(usize),
    #[error("{}", crate::config::AuthConfig::MODE_UNSET)]
    AuthModeUnset,
}

impl RuntimeSettings {
    pub fn from_config(config: &Config) -> Result<RuntimeSettings, SettingsError> {
        let tenants_dir = match config.tenants.source {
            TenantSourceKind::File => Some(config.tenants.directory.clone()),
            TenantSourceKind::Kubernetes => None,
        };
        let tenant_namespaces = config.tenants.watched_namespaces();
        let Some(mode) = config.auth.mode else {
            return Err(SettingsError::AuthModeUnset);
        };
        let auth = match mode {
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
            AuthMode::Kubernetes => {
                let k = &config.auth.kubernetes;
                AuthSettings::Kubernetes(KubernetesSettings {
                    audiences: k.audiences.clone(),
                    cache_ttl: k.cache_ttl,
                    access_review: k.access_review.as_ref().map(|a| AccessReviewSettings {
                        verb: a.verb.clone(),
                        group: a.group.clone(),
                        resource: a.resource.clone(),
                    }),
                })
            }
            AuthMode::Jwt => {
                let j = &config.auth.jwt;
                let jwks = match (&j.jwks_file, &j.jwks_url) {
                    (Some(file), None) => JwksSource::File(file.clone()),
                    (None, Some(url)) => JwksSource::Url(url.clone()),
                    _ => return Err(SettingsError::JwksSource),
                };
                AuthSettings::Jwt(JwtSettings {
                    issuer: j.issuer.clone(),
                    audiences: j.audiences.clone(),
                    tenant_claim: j.tenant_claim.clone(),
                    jwks,
                    jwks_refresh: j.jwks_refresh,
                    leeway: j.leeway,
                })
            }
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
            request_timeout: config.server.request_timeout,
            max_query_bytes: config.proxy.max_query_bytes,
            max_query_depth: config.proxy.max_query_depth,
            rewrite_cache_bytes: config.proxy.rewrite_cache_bytes,
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
    fn a_config_without_auth_mode_is_refused() {
        // A config built in code (not read from a file, which checks it) can't be run either.
        let e = RuntimeSettings::from_config(&Config::default()).unwrap_err();
        assert!(e.to_string().starts_with("auth.mode is not set"), "{e}");
    }

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

    #[test]
    fn converts_token_auth_modes() {
        let base = "tenants: { directory: /srv/tenants }\nbackends: { groups: [{ name: infra, members: [\"http://a:9090\"] }] }\n";
        let k8s = Config::from_yaml(
            &format!("{base}auth:\n  mode: kubernetes\n  kubernetes: {{ audiences: [proxy], cache_ttl: 10s, access_review: {{ verb: get, resource: metrics }} }}\n"),
            "test",
        )
        .unwrap();
        let AuthSettings::Kubernetes(k) = RuntimeSettings::from_config(&k8s).unwrap().auth else {
            panic!("kubernetes expected");
        };
        assert_eq!(k.audiences, vec!["proxy".to_string()]);
        assert_eq!(k.cache_ttl.as_secs(), 10);
        let review = k.access_review.unwrap();
        assert_eq!(
            (
                review.verb.as_str(),
                review.group.as_str(),
                review.resource.as_str()
            ),
            ("get", "", "metrics")
        );

        let jwt = Config::from_yaml(
            &format!("{base}auth:\n  mode: jwt\n  jwt: {{ issuer: i, audiences: [a], jwks_url: \"https://i/jwks\", leeway: 1s }}\n"),
            "test",
        )
        .unwrap();
        let AuthSettings::Jwt(j) = RuntimeSettings::from_config(&jwt).unwrap().auth else {
            panic!("jwt expected");
        };
        assert_eq!(j.jwks, JwksSource::Url("https://i/jwks".into()));
        assert_eq!(j.tenant_claim, "namespace");
        assert_eq!(j.leeway.as_secs(), 1);
    }
}
