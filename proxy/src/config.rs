//! The config file: the Go proxy's keys (`discovery`, `tenants`, `proxy`, `remote_write`) plus
//! `server`, `backends` and `auth`. Owns parsing (unknown keys are errors that name the file,
//! line and key), defaults, and semantic validation that reports every problem at once.

mod duration;
mod error;
pub mod ingest;
#[cfg(test)]
mod tests;
mod validate;
pub(crate) mod yaml;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use duration::{format_duration, parse_duration};
pub use error::ConfigError;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub discovery: DiscoveryConfig,
    pub tenants: TenantsConfig,
    pub proxy: ProxyConfig,
    pub remote_write: RemoteWriteConfig,
    pub ingest: ingest::IngestConfig,
    pub backends: BackendsConfig,
    pub auth: AuthConfig,
    pub kubernetes: KubernetesConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Tenant-facing Prometheus API.
    pub listen: SocketAddr,
    /// Admin listener: `/metrics`, `/debug/*`, `/-/reload`. It shows every tenant.
    pub admin_listen: SocketAddr,
    /// A tenant request not answered within this long (from its headers to the answer's
    /// headers) gets 503 `timeout`. Keep it above `proxy.backend_timeout`.
    #[serde(with = "duration::serde_duration")]
    pub request_timeout: Duration,
    /// A connection that has not sent a request's complete headers within this long is
    /// closed (both listeners; against slow-header clients).
    #[serde(with = "duration::serde_duration")]
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers) read, in bytes (both listeners);
    /// larger gets 431. At least 8192.
    pub max_header_bytes: usize,
    /// Serve the tenant listener over TLS (rustls). Unset: plain HTTP.
    pub tls: Option<TlsServerConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9091)),
            request_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            tls: None,
        }
    }
}

/// `server.tls`: PEM files, read at start (relative paths: against the config file).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    /// Certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// Kubernetes discovery of Prometheus backends (Go proxy keys). Parsed and validated here;
/// run by [`crate::k8s::discovery`] (docs/discovery.md). When set, discovered groups replace
/// `backends.groups` once the first result arrives.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoveryConfig {
    pub kubernetes: Option<KubernetesDiscovery>,
    #[serde(with = "duration::serde_duration")]
    pub refresh_interval: Duration,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            kubernetes: None,
            refresh_interval: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesDiscovery {
    pub namespaces: Vec<String>,
    pub label_selectors: BTreeMap<String, String>,
    pub annotation_selectors: BTreeMap<String, String>,
    /// Port name or number.
    pub port: String,
    pub resource_types: Vec<ResourceType>,
    /// Discovered members with the same value of this label form one HA group (for example
    /// `prometheus`, the Prometheus CR name the operator puts on its pods). Members without
    /// it form the group `default`. Reads go to the first group in name order, or to
    /// `read_group` when set.
    pub group_by_label: String,
    /// The group that serves reads; unset: the first group in name order.
    pub read_group: Option<String>,
}

impl Default for KubernetesDiscovery {
    fn default() -> Self {
        Self {
            namespaces: Vec::new(),
            label_selectors: BTreeMap::new(),
            annotation_selectors: BTreeMap::new(),
            port: "9090".into(),
            resource_types: vec![ResourceType::Pod],
            group_by_label: "prometheus".into(),
            read_group: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum ResourceType {
    Pod,
    Service,
    Endpoints,
    EndpointSlice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantSourceKind {
    #[default]
    File,
    Kubernetes,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantsConfig {
    pub source: TenantSourceKind,
    /// Folder of MetricAccess YAML files (file source); relative to the config file.
    pub directory: PathBuf,
    pub watch_all_namespaces: bool,
    pub namespaces: Vec<String>,
}

impl TenantsConfig {
    /// The namespaces the Kubernetes tenant source watches (`None`: all).
    pub fn watched_namespaces(&self) -> Option<Vec<String>> {
        (!self.watch_all_namespaces).then(|| self.namespaces.clone())
    }
}

impl Default for TenantsConfig {
    fn default() -> Self {
        Self {
            source: TenantSourceKind::File,
            directory: PathBuf::from("./tenants"),
            watch_all_namespaces: true,
            namespaces: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    pub enable_caching: bool,
    #[serde(with = "duration::serde_duration")]
    pub cache_ttl: Duration,
    pub enable_metrics: bool,
    pub enable_request_logging: bool,
    pub max_concurrent_requests: usize,
    #[serde(with = "duration::serde_duration")]
    pub backend_timeout: Duration,
    pub max_query_bytes: usize,
    pub max_query_depth: usize,
    pub max_body_bytes: usize,
    /// Bytes of enforced queries kept, to skip the rewrite of repeated queries; 0: no cache.
    pub rewrite_cache_bytes: usize,
}

/// The largest `proxy.rewrite_cache_bytes` accepted (1 GiB).
pub const MAX_REWRITE_CACHE_BYTES: usize = 1 << 30;

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            enable_caching: false,
            cache_ttl: Duration::from_secs(300),
            enable_metrics: true,
            enable_request_logging: true,
            max_concurrent_requests: 100,
            backend_timeout: Duration::from_secs(30),
            max_query_bytes: 64 * 1024,
            max_query_depth: 100,
            max_body_bytes: 1024 * 1024,
            rewrite_cache_bytes: 16 * 1024 * 1024,
        }
    }
}

/// The collector (DESIGN §5): copies each `MetricAccess` with `remoteWrite.enabled` from
/// infrastructure Prometheus to the tenant's own targets.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteWriteConfig {
    /// Run the collector at all (the Go proxy's key).
    pub enabled: bool,
    /// Interval of a CR that sets none.
    #[serde(with = "duration::serde_duration")]
    pub collection_interval: Duration,
    /// At most this many series per remote-write request.
    pub batch_size: usize,
    /// A window ends this long before now, so samples of scrapes still being appended are not
    /// missed (a sample's timestamp is its scrape's start).
    #[serde(with = "duration::serde_duration")]
    pub collection_lag: Duration,
    /// Longest window one cycle reads; after a long outage older data is skipped (and counted).
    #[serde(with = "duration::serde_duration")]
    pub max_window: Duration,
    /// `remote_read` (`/api/v1/read`, the default) or `query` (range selectors through
    /// `/api/v1/query`, for sources without remote read).
    pub collection_method: CollectionMethod,
    /// Read through this URL (a prom-label-proxy in front of infrastructure Prometheus) instead
    /// of the backend group, always with `query` (prom-label-proxy has no remote read); the
    /// tenant goes in `prom_label_proxy_header`.
    pub prom_label_proxy_url: Option<String>,
    pub prom_label_proxy_header: String,
    /// Target address of a `prometheus` target without replicas. Placeholders: `{service}`,
    /// `{namespace}`, `{port}`.
    pub prometheus_address: String,
    /// Address of one StatefulSet replica: adds `{statefulset}` and `{replica}`.
    pub prometheus_replica_address: String,
    /// Address of a `pushgateway` target.
    pub pushgateway_address: String,
    /// Regexes (fully anchored) a `type: remote_write` URL of a CR must match. Empty (the
    /// default): such targets are refused, because a tenant who writes CRs could otherwise
    /// make the proxy send its series anywhere the proxy can reach (metadata endpoints,
    /// internal services). Templated targets (`prometheus`, `pushgateway`) are not affected.
    pub allowed_urls: Vec<String>,
    /// Rendered address (`host:port` as the template produced it) → base URL to use instead.
    /// The local lab and the tests map in-cluster names to loopback ports with it.
    pub address_overrides: BTreeMap<String, String>,
    /// File mode: Secrets as files `<dir>/<namespace>/<secret name>/<key>` (the layout of a
    /// mounted Secret per namespace). Falls back to the environment variable
    /// `PMTP_SECRET_<NAMESPACE>_<NAME>_<KEY>` (upper case, other characters as `_`).
    pub secrets_directory: Option<PathBuf>,
    /// Where each CR's collection stopped is saved here after every cycle, so a restarted
    /// proxy continues without a gap (up to `max_window`). Unset: a restart starts one
    /// interval back and the time the proxy was down is not collected.
    pub state_directory: Option<PathBuf>,
    /// Encoded requests buffered per target (and per replica) while it is down; the oldest is
    /// dropped (and counted) when full.
    pub queue_capacity: usize,
    #[serde(with = "duration::serde_duration")]
    pub request_timeout: Duration,
    #[serde(with = "duration::serde_duration")]
    pub min_backoff: Duration,
    #[serde(with = "duration::serde_duration")]
    pub max_backoff: Duration,
    /// On shutdown, queues get this long to drain.
    #[serde(with = "duration::serde_duration")]
    pub shutdown_grace: Duration,
}

/// How the collector reads samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CollectionMethod {
    /// `/api/v1/read`: raw samples, staleness markers included, one request per window.
    #[default]
    RemoteRead,
    /// `/api/v1/query` with `{clause}[<window>ms]` at the window's end: raw samples too (range
    /// selectors return them unchanged), one request per clause; staleness markers are not
    /// returned, so only the collector's own markers reach the target.
    Query,
}

impl Default for RemoteWriteConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            collection_interval: Duration::from_secs(30),
            batch_size: 1000,
            collection_lag: Duration::from_secs(15),
            max_window: Duration::from_secs(3600),
            collection_method: Default::default(),
            prom_label_proxy_url: None,
            prom_label_proxy_header: "X-Tenant-Namespace".into(),
            prometheus_address: "http://{service}.{namespace}.svc:{port}".into(),
            prometheus_replica_address:
                "http://{statefulset}-{replica}.{service}.{namespace}.svc:{port}".into(),
            pushgateway_address: "http://{service}.{namespace}.svc:{port}".into(),
            allowed_urls: Vec::new(),
            address_overrides: BTreeMap::new(),
            secrets_directory: None,
            state_directory: None,
            queue_capacity: 1000,
            request_timeout: Duration::from_secs(30),
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendsConfig {
    #[serde(with = "duration::serde_duration")]
    pub probe_interval: Duration,
    #[serde(with = "duration::serde_duration")]
    pub probe_timeout: Duration,
    /// Reads go to the first group: an HA set.
    pub groups: Vec<BackendGroup>,
}

impl Default for BackendsConfig {
    fn default() -> Self {
        Self {
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(2),
            groups: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackendGroup {
    pub name: String,
    pub members: Vec<String>,
}

/// How a request names its tenant. There is no default: a config must say which one, because
/// `header` trusts whatever the client sends and is only safe behind a gateway that sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// The tenant header (`auth.header.name`) names the tenant: only behind a trusted gateway.
    Header,
    Bearer,
    /// A service-account token checked with a TokenReview; its namespace is the tenant.
    Kubernetes,
    /// A JWT checked against keys from a JWKS; a claim names the tenant.
    Jwt,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Required: a config without it is refused (see [`AuthConfig::MODE_UNSET`]).
    pub mode: Option<AuthMode>,
    pub header: HeaderAuthConfig,
    pub bearer: BearerAuthConfig,
    pub kubernetes: KubernetesAuthConfig,
    pub jwt: JwtAuthConfig,
}

impl AuthConfig {
    /// The error of a config that does not set `auth.mode`.
    pub const MODE_UNSET: &'static str = "auth.mode is not set: set it to bearer, kubernetes or jwt, or to header only behind a trusted gateway that sets X-Tenant-Namespace (header mode believes whatever tenant the client names)";
}

/// `auth.mode: kubernetes`: `Authorization: Bearer <service-account token>`, validated with a
/// TokenReview; the tenant is the token's service-account namespace.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesAuthConfig {
    /// Audiences the token must carry (TokenReview `spec.audiences`); empty: the API server's.
    pub audiences: Vec<String>,
    /// How long a review's answer (accepted or rejected) is reused for the same token.
    #[serde(with = "duration::serde_duration")]
    pub cache_ttl: Duration,
    /// When set, the token's user must also be allowed this verb on this resource in the
    /// tenant namespace (a SubjectAccessReview).
    pub access_review: Option<AccessReviewConfig>,
}

impl Default for KubernetesAuthConfig {
    fn default() -> Self {
        Self {
            audiences: Vec::new(),
            cache_ttl: Duration::from_secs(60),
            access_review: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccessReviewConfig {
    pub verb: String,
    #[serde(default)]
    pub group: String,
    pub resource: String,
}

/// `auth.mode: jwt`: `Authorization: Bearer <JWT>` signed by a key of the JWKS.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtAuthConfig {
    /// Required `iss`.
    pub issuer: String,
    /// `aud` must hold one of these.
    pub audiences: Vec<String>,
    /// Claim naming the tenant; a dotted path reaches into objects
    /// (`kubernetes.io.namespace` is tried as one key first).
    pub tenant_claim: String,
    /// JWKS from a file (re-read on change) ...
    pub jwks_file: Option<PathBuf>,
    /// ... or from a URL (fetched at start and every `jwks_refresh`).
    pub jwks_url: Option<String>,
    #[serde(with = "duration::serde_duration")]
    pub jwks_refresh: Duration,
    /// Clock skew allowed on `exp`/`nbf`.
    #[serde(with = "duration::serde_duration")]
    pub leeway: Duration,
}

impl Default for JwtAuthConfig {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            audiences: Vec::new(),
            tenant_claim: "namespace".into(),
            jwks_file: None,
            jwks_url: None,
            jwks_refresh: Duration::from_secs(300),
            leeway: Duration::from_secs(30),
        }
    }
}

/// Kubernetes mode (DESIGN §8): what the proxy does with the API server beyond reading CRs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesConfig {
    /// Write `status` on each MetricAccess (conditions, last collection, errors).
    pub write_status: bool,
    /// A CR's status is patched at most this often unless a condition changes.
    #[serde(with = "duration::serde_duration")]
    pub status_interval: Duration,
    /// How long a Secret read from the API server is reused before it is read again.
    #[serde(with = "duration::serde_duration")]
    pub secret_cache_ttl: Duration,
    pub sharding: ShardingConfig,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            write_status: true,
            status_interval: Duration::from_secs(30),
            secret_cache_ttl: Duration::from_secs(30),
            sharding: ShardingConfig::default(),
        }
    }
}

/// Collector ownership across proxy replicas: each replica holds a Lease; every CR is
/// collected by the live replica that wins rendezvous hashing over the live leases.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShardingConfig {
    pub enabled: bool,
    /// Namespace of the Leases; unset: `POD_NAMESPACE`, else the service account's namespace.
    pub namespace: Option<String>,
    /// Lease names are `<prefix>-<identity>`; they carry the label `app.kubernetes.io/name=<prefix>`.
    pub lease_prefix: String,
    /// This replica's identity; unset: `POD_NAME`, else the host name.
    pub identity: Option<String>,
    /// A replica that has not renewed its Lease for this long is dead; its CRs move.
    #[serde(with = "duration::serde_duration")]
    pub lease_duration: Duration,
}

impl Default for ShardingConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            namespace: None,
            lease_prefix: "pmtp-collector".into(),
            identity: None,
            lease_duration: Duration::from_secs(15),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderAuthConfig {
    pub name: String,
    /// Query parameter accepted instead of the header (Go proxy compatible); `null` disables.
    pub query_param: Option<String>,
}

impl Default for HeaderAuthConfig {
    fn default() -> Self {
        Self {
            name: "X-Tenant-Namespace".into(),
            query_param: Some("namespace".into()),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BearerAuthConfig {
    pub tokens: Vec<BearerToken>,
}

/// A tenant's token, as its SHA-256 (hex) or a file holding the raw token. Never the token.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BearerToken {
    pub tenant: String,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

impl Config {
    /// Keys accepted for compatibility with the Go proxy whose feature is not built yet: the
    /// proxy warns about each at start (and `check-config` lists them) instead of ignoring them.
    pub fn unimplemented_settings(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.proxy.enable_caching {
            out.push(
                "proxy.enable_caching: answers are not cached yet; every query goes to a backend",
            );
        }
        out
    }

    /// Read, parse and validate a config file. Relative paths in it resolve against its folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            file: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut config = Self::from_yaml(&text, &path.display().to_string())?;
        if let Some(dir) = path.parent() {
            config.resolve_paths(dir);
        }
        Ok(config)
    }

    /// Parse and validate config text; `origin` names it in errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| error::from_yaml_error(&e, text, origin))?
        };
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                file: origin.to_string(),
                problems,
            })
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.tenants.directory);
        if let Some(tls) = self.server.tls.as_mut() {
            resolve(&mut tls.cert_file);
            resolve(&mut tls.key_file);
        }
        for d in [
            self.remote_write.secrets_directory.as_mut(),
            self.remote_write.state_directory.as_mut(),
            self.ingest.forward.spill_directory.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            resolve(d);
        }
        let usage = &mut self.ingest.usage;
        for f in usage
            .rule_files
            .iter_mut()
            .chain(usage.dashboard_files.iter_mut())
        {
            resolve(f);
        }
        if let Some(f) = self.auth.jwt.jwks_file.as_mut() {
            resolve(f);
        }
        for t in &mut self.auth.bearer.tokens {
            if let Some(f) = t.token_file.as_mut() {
                resolve(f);
            }
        }
    }
}
