//! Where a CR's series go: the endpoints of its `remoteWrite` target (every StatefulSet replica
//! of a tenant Prometheus, a Pushgateway group, or a remote_write URL), with their credentials.
//! Addresses come from the configured templates, then `address_overrides` (the lab and tests
//! map in-cluster names to loopback ports). Secrets are read from the CR's own namespace only.

use std::collections::BTreeMap;
use std::path::PathBuf;

use futures::future::BoxFuture;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::pushgateway::group_path;
use crate::config::RemoteWriteConfig;
use crate::delivery::{Endpoint, Protocol};
use crate::tenant::crd::{RemoteWriteSpec, SecretKeyRef, TargetType};

/// The tenant header a multi-tenant store (Mimir, Cortex, Thanos receive) files writes under.
/// The proxy always sets it to the CR's namespace; a CR can't set it.
pub const TENANT_HEADER: &str = "X-Scope-OrgID";

/// Where a CR's Secret values come from while its endpoints are built.
pub trait SecretLookup {
    fn get(&self, namespace: &str, secret: &SecretKeyRef) -> Result<String, String>;
}

/// Where Secrets are read from in Kubernetes mode: the API server, through the Kubernetes
/// module (`k8s::secrets`), which implements this so the collector does not depend on it.
pub trait SecretSource: Send + Sync {
    /// The value of `reference.key` in Secret `reference.name` of `namespace`; the error says
    /// why, never what was found.
    fn read<'a>(
        &'a self,
        namespace: &'a str,
        reference: &'a SecretKeyRef,
    ) -> BoxFuture<'a, Result<String, String>>;
}

/// Secrets read from a [`SecretSource`] just before the endpoints are built (Kubernetes mode):
/// `endpoints` is synchronous, the API call is not.
#[derive(Default)]
pub struct FetchedSecrets(BTreeMap<(String, String, String), Result<String, String>>);

impl FetchedSecrets {
    /// Read every Secret `rw` refers to, from `namespace` only; none for a URL the operator
    /// does not allow (the endpoint is refused anyway).
    pub async fn fetch(
        secrets: &dyn SecretSource,
        namespace: &str,
        rw: &RemoteWriteSpec,
        allowed_urls: &[String],
    ) -> FetchedSecrets {
        let mut out = BTreeMap::new();
        let Some(t) = rw.remote_write.as_ref() else {
            return FetchedSecrets(out);
        };
        if check_allowed(&t.url, allowed_urls).is_err() {
            return FetchedSecrets(out);
        }
        let refs = t
            .basic_auth
            .as_ref()
            .map(|a| &a.password_secret)
            .into_iter()
            .chain(t.bearer_token_secret.as_ref());
        for r in refs {
            let value = secrets.read(namespace, r).await;
            out.insert(
                (namespace.to_string(), r.name.clone(), r.key.clone()),
                value,
            );
        }
        FetchedSecrets(out)
    }
}

impl SecretLookup for FetchedSecrets {
    fn get(&self, namespace: &str, secret: &SecretKeyRef) -> Result<String, String> {
        self.0
            .get(&(
                namespace.to_string(),
                secret.name.clone(),
                secret.key.clone(),
            ))
            .cloned()
            .unwrap_or_else(|| Err(format!("Secret {namespace}/{} was not read", secret.name)))
    }
}

/// Reads Secrets in file mode.
#[derive(Debug, Clone, Default)]
pub struct FileSecrets {
    pub directory: Option<PathBuf>,
}

impl SecretLookup for FileSecrets {
    /// `<dir>/<namespace>/<name>/<key>`, else `PMTP_SECRET_<NAMESPACE>_<NAME>_<KEY>`. Trailing
    /// newlines of a file are trimmed (editors add one). The error says where it looked,
    /// never what it found.
    fn get(&self, namespace: &str, secret: &SecretKeyRef) -> Result<String, String> {
        let mut looked = Vec::new();
        if let Some(dir) = &self.directory {
            let path = dir.join(namespace).join(&secret.name).join(&secret.key);
            match std::fs::read_to_string(&path) {
                Ok(text) => return Ok(text.trim_end_matches(['\n', '\r']).to_string()),
                Err(e) => looked.push(format!("{} ({e})", path.display())),
            }
        }
        let var = secret_env_var(namespace, secret);
        if let Ok(value) = std::env::var(&var) {
            return Ok(value);
        }
        looked.push(format!("${var} (not set)"));
        Err(format!(
            "Secret {namespace}/{} key {:?} not found: looked in {}",
            secret.name,
            secret.key,
            looked.join(", ")
        ))
    }
}

/// `PMTP_SECRET_<NAMESPACE>_<NAME>_<KEY>`, upper case, other characters as `_`.
pub fn secret_env_var(namespace: &str, secret: &SecretKeyRef) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!(
        "PMTP_SECRET_{}_{}_{}",
        clean(namespace),
        clean(&secret.name),
        clean(&secret.key)
    )
}

/// Render a template: `{name}` placeholders from `values` (validated by the config).
pub fn render(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (name, value) in values {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

/// Apply `address_overrides` to a URL: its `host:port` (as written, default port not added)
/// is looked up; a hit replaces scheme and authority, the path is kept.
pub fn override_address(url: &str, overrides: &BTreeMap<String, String>) -> String {
    let Some((scheme_end, rest)) = url.split_once("://").map(|(s, r)| (s.len() + 3, r)) else {
        return url.to_string();
    };
    let authority_len = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    match overrides.get(authority) {
        Some(base) => format!(
            "{}{}",
            base.trim_end_matches('/'),
            &url[scheme_end + authority_len..]
        ),
        None => url.to_string(),
    }
}

/// The endpoints of a CR's target. Errors name the field and say what is missing.
pub fn endpoints(
    namespace: &str,
    rw: &RemoteWriteSpec,
    config: &RemoteWriteConfig,
    secrets: &dyn SecretLookup,
) -> Result<Vec<Endpoint>, String> {
    let overrides = &config.address_overrides;
    let mut base_headers = HeaderMap::new();
    let tenant = HeaderValue::from_str(namespace)
        .map_err(|_| format!("namespace {namespace:?} is not a valid header value"))?;
    base_headers.insert(HeaderName::from_static("x-scope-orgid"), tenant);
    match rw.target.kind {
        TargetType::Prometheus => {
            let t = rw
                .prometheus
                .as_ref()
                .ok_or("spec.remoteWrite.prometheus: required with target.type prometheus")?;
            let port = t.service_port.to_string();
            let common = [
                ("service", t.service_name.as_str()),
                ("namespace", namespace),
                ("port", port.as_str()),
            ];
            match (t.replicas, t.stateful_set_name.as_deref()) {
                (Some(n), Some(sts)) => Ok((0..n)
                    .map(|i| {
                        let replica = i.to_string();
                        let mut values = common.to_vec();
                        values.push(("statefulset", sts));
                        values.push(("replica", replica.as_str()));
                        let base = render(&config.prometheus_replica_address, &values);
                        Endpoint {
                            name: format!("{sts}-{i}"),
                            url: override_address(&format!("{base}/api/v1/write"), overrides),
                            protocol: Protocol::RemoteWrite,
                            headers: base_headers.clone(),
                            tls: None,
                        }
                    })
                    .collect()),
                _ => {
                    let base = render(&config.prometheus_address, &common);
                    Ok(vec![Endpoint {
                        name: t.service_name.clone(),
                        url: override_address(&format!("{base}/api/v1/write"), overrides),
                        protocol: Protocol::RemoteWrite,
                        headers: base_headers,
                        tls: None,
                    }])
                }
            }
        }
        TargetType::Pushgateway => {
            let t = rw
                .pushgateway
                .as_ref()
                .ok_or("spec.remoteWrite.pushgateway: required with target.type pushgateway")?;
            let port = t.service_port.to_string();
            let base = render(
                &config.pushgateway_address,
                &[
                    ("service", t.service_name.as_str()),
                    ("namespace", namespace),
                    ("port", port.as_str()),
                ],
            );
            let path = group_path(&t.job_name, &[]);
            Ok(vec![Endpoint {
                name: "pushgateway".into(),
                url: override_address(&format!("{base}{path}"), overrides),
                protocol: Protocol::Pushgateway,
                headers: base_headers,
                tls: None,
            }])
        }
        TargetType::RemoteWrite => {
            let t = rw
                .remote_write
                .as_ref()
                .ok_or("spec.remoteWrite.remoteWrite: required with target.type remote_write")?;
            check_allowed(&t.url, &config.allowed_urls)?;
            let mut headers = HeaderMap::new();
            for (name, value) in &t.headers {
                // Validation refuses these already; checked again so that no path can set them.
                if name.eq_ignore_ascii_case(TENANT_HEADER)
                    || name.eq_ignore_ascii_case("authorization")
                {
                    continue;
                }
                let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    format!("spec.remoteWrite.remoteWrite.headers: {name:?} is not a header name")
                })?;
                let value = HeaderValue::from_str(value).map_err(|_| {
                    format!("spec.remoteWrite.remoteWrite.headers.{name}: not a valid header value")
                })?;
                headers.insert(name, value);
            }
            if let Some(auth) = &t.basic_auth {
                let password = secrets.get(namespace, &auth.password_secret)?;
                headers.insert(
                    http::header::AUTHORIZATION,
                    sensitive(&basic_auth(&auth.username, &password))?,
                );
            }
            if let Some(secret) = &t.bearer_token_secret {
                let token = secrets.get(namespace, secret)?;
                headers.insert(
                    http::header::AUTHORIZATION,
                    sensitive(&format!("Bearer {}", token.trim()))?,
                );
            }
            headers.extend(base_headers);
            Ok(vec![Endpoint {
                name: "remote_write".into(),
                url: override_address(&t.url, overrides),
                protocol: Protocol::RemoteWrite,
                headers,
                tls: t.tls_config.clone(),
            }])
        }
    }
}

/// A CR's own URL must match an operator's pattern: CRs are written by tenants.
pub fn check_allowed(url: &str, allowed: &[String]) -> Result<(), String> {
    let anchored = allowed.iter().map(|p| format!("^(?:{p})$"));
    // Validation refuses patterns that don't compile; one that slips through allows nothing.
    let allowed_now = regex::RegexSet::new(anchored).is_ok_and(|set| set.is_match(url));
    if allowed_now {
        return Ok(());
    }
    Err(if allowed.is_empty() {
        format!(
            "spec.remoteWrite.remoteWrite.url {url:?}: remote_write targets are off until the operator lists allowed URLs (remote_write.allowed_urls in the proxy config)"
        )
    } else {
        format!(
            "spec.remoteWrite.remoteWrite.url {url:?} matches none of remote_write.allowed_urls"
        )
    })
}

fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

fn sensitive(value: &str) -> Result<HeaderValue, String> {
    let mut v = HeaderValue::from_str(value)
        .map_err(|_| "the credential holds characters not allowed in a header".to_string())?;
    v.set_sensitive(true);
    Ok(v)
}

#[cfg(test)]
mod tests;
