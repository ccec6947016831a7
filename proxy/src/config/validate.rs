//! Semantic checks of a parsed [`Config`]: what serde cannot say (addresses that must differ,
//! URLs, token hashes, tenant ids, durations that must be positive). Every problem is reported,
//! not just the first.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{AuthMode, Config, TenantSourceKind};

impl Config {
    /// Every semantic problem at once, each naming its key (`backends.groups[0].members[1]: ...`).
    /// Empty: the config is usable. `from_yaml` and `load` call it; call it again after
    /// changing a loaded config (command-line overrides).
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        // Port 0 (pick any) is fine for both, as tests do.
        let (api, admin) = (self.server.listen, self.server.admin_listen);
        let same_port = api.port() == admin.port() && api.port() != 0;
        if same_port
            && (api.ip() == admin.ip() || api.ip().is_unspecified() || admin.ip().is_unspecified())
        {
            p.push("server.admin_listen: must differ from server.listen (the admin listener shows every tenant)".into());
        }
        if self.tenants.source == TenantSourceKind::File
            && self.tenants.directory.as_os_str().is_empty()
        {
            p.push("tenants.directory: required with tenants.source: file".into());
        }
        if !self.tenants.watch_all_namespaces && self.tenants.namespaces.is_empty() {
            p.push("tenants.namespaces: list the namespaces to watch, or set watch_all_namespaces: true".into());
        }
        if self.server.max_header_bytes < 8192 {
            p.push("server.max_header_bytes: must be at least 8192".into());
        }
        for (key, d) in [
            ("server.request_timeout", self.server.request_timeout),
            (
                "server.header_read_timeout",
                self.server.header_read_timeout,
            ),
            ("proxy.backend_timeout", self.proxy.backend_timeout),
            ("backends.probe_interval", self.backends.probe_interval),
            ("backends.probe_timeout", self.backends.probe_timeout),
            (
                "discovery.refresh_interval",
                self.discovery.refresh_interval,
            ),
            (
                "remote_write.collection_interval",
                self.remote_write.collection_interval,
            ),
            ("remote_write.max_window", self.remote_write.max_window),
            (
                "remote_write.request_timeout",
                self.remote_write.request_timeout,
            ),
            ("remote_write.min_backoff", self.remote_write.min_backoff),
        ] {
            if d.is_zero() {
                p.push(format!("{key}: must be greater than 0"));
            }
        }
        for (key, n) in [
            (
                "proxy.max_concurrent_requests",
                self.proxy.max_concurrent_requests,
            ),
            ("proxy.max_query_bytes", self.proxy.max_query_bytes),
            ("proxy.max_query_depth", self.proxy.max_query_depth),
            ("proxy.max_body_bytes", self.proxy.max_body_bytes),
            ("remote_write.batch_size", self.remote_write.batch_size),
            (
                "remote_write.queue_capacity",
                self.remote_write.queue_capacity,
            ),
        ] {
            if n == 0 {
                p.push(format!("{key}: must be greater than 0"));
            }
        }
        if self.proxy.rewrite_cache_bytes > super::MAX_REWRITE_CACHE_BYTES {
            p.push(format!(
                "proxy.rewrite_cache_bytes: {} is over the limit of {} (1 GiB); 16777216 (16 MiB) is plenty for thousands of dashboards, 0 turns the cache off",
                self.proxy.rewrite_cache_bytes,
                super::MAX_REWRITE_CACHE_BYTES
            ));
        }
        if self.remote_write.enabled
            && self.remote_write.collection_interval < Duration::from_secs(5)
        {
            p.push("remote_write.collection_interval: must be at least 5s".into());
        }
        p.extend(self.remote_write.problems());
        p.extend(self.ingest.problems());
        // With Kubernetes discovery the groups come from the cluster.
        if self.tenants.source == TenantSourceKind::File
            && self.backends.groups.is_empty()
            && self.discovery.kubernetes.is_none()
        {
            p.push(
                "backends.groups: at least one group with one member is required in file mode"
                    .into(),
            );
        }
        let mut names = BTreeSet::new();
        for (i, g) in self.backends.groups.iter().enumerate() {
            let mut members = BTreeSet::new();
            for (j, m) in g.members.iter().enumerate() {
                if !members.insert(m.trim_end_matches('/')) {
                    p.push(format!(
                        "backends.groups[{i}].members[{j}]: {m:?} is listed twice"
                    ));
                }
            }
            if g.name.is_empty() {
                p.push(format!("backends.groups[{i}].name: must not be empty"));
            } else if !names.insert(&g.name) {
                p.push(format!(
                    "backends.groups[{i}].name: duplicate group {:?}",
                    g.name
                ));
            }
            if g.members.is_empty() {
                p.push(format!(
                    "backends.groups[{i}].members: at least one member URL is required"
                ));
            }
            for (j, m) in g.members.iter().enumerate() {
                if let Err(e) = check_member_url(m) {
                    p.push(format!("backends.groups[{i}].members[{j}]: {e}"));
                }
            }
        }
        if self.auth.header.name.is_empty()
            || http::HeaderName::from_bytes(self.auth.header.name.as_bytes()).is_err()
        {
            p.push(format!(
                "auth.header.name: {:?} is not a valid header name",
                self.auth.header.name
            ));
        }
        if self.auth.mode.is_none() {
            p.push(super::AuthConfig::MODE_UNSET.into());
        }
        if self.auth.mode == Some(AuthMode::Bearer) && self.auth.bearer.tokens.is_empty() {
            p.push("auth.bearer.tokens: bearer mode needs at least one token".into());
        }
        for (i, t) in self.auth.bearer.tokens.iter().enumerate() {
            if let Err(e) = crate::names::validate_tenant_id(&t.tenant) {
                p.push(format!("auth.bearer.tokens[{i}].tenant: {e}"));
            }
            match (&t.sha256, &t.token_file) {
                (Some(h), None) => {
                    if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                        p.push(format!("auth.bearer.tokens[{i}].sha256: must be 64 hex digits (printf %s \"$TOKEN\" | sha256sum)"));
                    }
                }
                (None, Some(_)) => {}
                _ => p.push(format!(
                    "auth.bearer.tokens[{i}]: set exactly one of sha256 or token_file"
                )),
            }
        }
        p.extend(self.token_auth_problems());
        if self.auth.header.query_param.as_deref() == Some("") {
            p.push("auth.header.query_param: must not be empty; use null to disable it".into());
        }
        // One token (hash) naming two tenants would make the tenant depend on list order.
        let mut hashes: std::collections::BTreeMap<String, &str> = Default::default();
        for (i, t) in self.auth.bearer.tokens.iter().enumerate() {
            if let Some(h) = &t.sha256
                && let Some(other) = hashes.insert(h.to_ascii_lowercase(), &t.tenant)
                && other != t.tenant
            {
                p.push(format!(
                    "auth.bearer.tokens[{i}].sha256: the same token is also given to tenant {other:?}"
                ));
            }
        }
        if self.proxy.enable_caching && self.proxy.cache_ttl.is_zero() {
            p.push("proxy.cache_ttl: must be greater than 0 when enable_caching is true".into());
        }
        for (i, ns) in self.tenants.namespaces.iter().enumerate() {
            if let Err(e) = check_namespace(ns) {
                p.push(format!("tenants.namespaces[{i}]: {e}"));
            }
        }
        if let Some(k) = &self.discovery.kubernetes {
            for (i, ns) in k.namespaces.iter().enumerate() {
                if let Err(e) = check_namespace(ns) {
                    p.push(format!("discovery.kubernetes.namespaces[{i}]: {e}"));
                }
            }
            if let Err(e) = check_port(&k.port) {
                p.push(format!("discovery.kubernetes.port: {e}"));
            }
            if k.resource_types.is_empty() {
                p.push("discovery.kubernetes.resource_types: list at least one (Pod, Service, Endpoints, EndpointSlice)".into());
            }
        }
        p
    }
}

impl Config {
    /// `auth.kubernetes` / `auth.jwt`, checked when their mode is the one in use.
    fn token_auth_problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        match self.auth.mode {
            Some(AuthMode::Kubernetes) => {
                let k = &self.auth.kubernetes;
                if k.cache_ttl.is_zero() {
                    p.push("auth.kubernetes.cache_ttl: must be greater than 0 (every request would be a TokenReview)".into());
                }
                for (i, a) in k.audiences.iter().enumerate() {
                    if a.trim().is_empty() {
                        p.push(format!("auth.kubernetes.audiences[{i}]: must not be empty"));
                    }
                }
                if let Some(r) = &k.access_review {
                    if r.verb.trim().is_empty() {
                        p.push(
                            "auth.kubernetes.access_review.verb: must not be empty (e.g. get)"
                                .into(),
                        );
                    }
                    if r.resource.trim().is_empty() {
                        p.push("auth.kubernetes.access_review.resource: must not be empty".into());
                    }
                }
            }
            Some(AuthMode::Jwt) => {
                let j = &self.auth.jwt;
                if j.issuer.trim().is_empty() {
                    p.push("auth.jwt.issuer: required (the tokens' `iss`)".into());
                }
                if j.audiences.is_empty() {
                    p.push("auth.jwt.audiences: list at least one (a token's `aud` must hold one of them)".into());
                }
                for (i, a) in j.audiences.iter().enumerate() {
                    if a.trim().is_empty() {
                        p.push(format!("auth.jwt.audiences[{i}]: must not be empty"));
                    }
                }
                if j.tenant_claim.trim().is_empty() {
                    p.push("auth.jwt.tenant_claim: must not be empty (the claim naming the tenant, e.g. namespace)".into());
                }
                match (&j.jwks_file, &j.jwks_url) {
                    (Some(_), None) => {}
                    (None, Some(url)) => {
                        if !is_http_url(url) {
                            p.push(format!(
                                "auth.jwt.jwks_url: {url:?} is not an http:// or https:// URL"
                            ));
                        }
                        if j.jwks_refresh.is_zero() {
                            p.push("auth.jwt.jwks_refresh: must be greater than 0".into());
                        }
                    }
                    _ => p.push("auth.jwt: set exactly one of jwks_file or jwks_url".into()),
                }
            }
            Some(AuthMode::Header | AuthMode::Bearer) | None => {}
        }
        p
    }
}

fn check_member_url(m: &str) -> Result<(), String> {
    let rest = m
        .strip_prefix("http://")
        .or_else(|| m.strip_prefix("https://"))
        .ok_or_else(|| format!("{m:?} must start with http:// or https://"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{m:?} has no host"));
    }
    if m.parse::<http::Uri>().is_err() {
        return Err(format!("{m:?} is not a valid URL"));
    }
    Ok(())
}

/// A Kubernetes namespace name (RFC 1123 label).
fn check_namespace(ns: &str) -> Result<(), String> {
    let ok = !ns.is_empty()
        && ns.len() <= 63
        && ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !ns.starts_with('-')
        && !ns.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{ns:?} is not a namespace name (lowercase letters, digits and '-', at most 63)"
        ))
    }
}

/// A port number (1-65535) or a named port (`web`, `http-metrics`: IANA service name rules).
fn check_port(port: &str) -> Result<(), String> {
    if port.bytes().all(|b| b.is_ascii_digit()) && !port.is_empty() {
        return match port.parse::<u16>() {
            Ok(1..) => Ok(()),
            _ => Err(format!("{port:?} is not a port number (1-65535)")),
        };
    }
    let named = !port.is_empty()
        && port.len() <= 15
        && port
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && port.bytes().any(|b| b.is_ascii_lowercase())
        && !port.starts_with('-')
        && !port.ends_with('-')
        && !port.contains("--");
    if named {
        Ok(())
    } else {
        Err(format!(
            "{port:?} is neither a port number nor a port name (lowercase letters, digits, '-', at most 15)"
        ))
    }
}

impl super::RemoteWriteConfig {
    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.max_backoff < self.min_backoff {
            p.push("remote_write.max_backoff: must be at least remote_write.min_backoff".into());
        }
        let templates = [
            (
                "prometheus_address",
                &self.prometheus_address,
                &["service", "namespace", "port"][..],
            ),
            (
                "prometheus_replica_address",
                &self.prometheus_replica_address,
                &["service", "namespace", "port", "statefulset", "replica"][..],
            ),
            (
                "pushgateway_address",
                &self.pushgateway_address,
                &["service", "namespace", "port"][..],
            ),
        ];
        for (key, template, allowed) in templates {
            if let Err(e) = check_template(template, allowed) {
                p.push(format!("remote_write.{key}: {e}"));
            }
        }
        for (i, pattern) in self.allowed_urls.iter().enumerate() {
            if let Err(e) = regex::Regex::new(&format!("^(?:{pattern})$")) {
                p.push(format!("remote_write.allowed_urls[{i}]: not a regex: {e}"));
            }
        }
        if !self.prometheus_replica_address.contains("{replica}") {
            p.push("remote_write.prometheus_replica_address: must contain {replica}, or every replica gets the same address".into());
        }
        for (from, to) in &self.address_overrides {
            if !is_http_url(to) {
                p.push(format!(
                    "remote_write.address_overrides.{from}: {to:?} is not an http:// or https:// URL"
                ));
            }
        }
        if let Some(u) = &self.prom_label_proxy_url
            && !is_http_url(u)
        {
            p.push(format!(
                "remote_write.prom_label_proxy_url: {u:?} is not an http:// or https:// URL"
            ));
        }
        if http::HeaderName::from_bytes(self.prom_label_proxy_header.as_bytes()).is_err() {
            p.push("remote_write.prom_label_proxy_header: not a valid header name".into());
        }
        p
    }
}

fn is_http_url(s: &str) -> bool {
    (s.starts_with("http://") || s.starts_with("https://"))
        && s.parse::<http::Uri>()
            .is_ok_and(|u| u.host().is_some_and(|h| !h.is_empty()))
}

/// A URL template must start with http(s):// and use only the placeholders it is given.
fn check_template(template: &str, allowed: &[&str]) -> Result<(), String> {
    if !(template.starts_with("http://") || template.starts_with("https://")) {
        return Err(format!("{template:?} must start with http:// or https://"));
    }
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(len) = rest[open..].find('}') else {
            return Err(format!("{template:?} has an unclosed {{"));
        };
        let name = &rest[open + 1..open + len];
        if !allowed.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{name}}} (allowed: {})",
                allowed
                    .iter()
                    .map(|a| format!("{{{a}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        rest = &rest[open + len + 1..];
    }
    Ok(())
}
