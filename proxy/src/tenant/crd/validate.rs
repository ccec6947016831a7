//! What the CRD schema cannot say about a `MetricAccess`: durations, which target block goes
//! with which target type, URLs, label names, relabel rules. Each problem names its field.
//! The metric patterns and label selectors are checked by the policy compiler.

use std::time::Duration;

use super::{
    MetricAccess, MetricAccessSpec, PrometheusTarget, PushgatewayTarget, RelabelConfig,
    RemoteWriteEndpoint, RemoteWriteSpec, TargetType,
};
use crate::names::is_legacy_label_name;
use crate::relabel::RelabelProgram;

/// Collecting more often than this only loads infrastructure Prometheus.
const MIN_INTERVAL: Duration = Duration::from_secs(5);

/// Headers the remote-write protocol or the auth settings own (Prometheus refuses them too).
/// `X-Scope-OrgID` is the tenant header: the proxy sets it to the CR's namespace, so that a
/// namespace admin can't write into another tenant of a multi-tenant store.
const RESERVED_HEADERS: [&str; 7] = [
    "x-scope-orgid",
    "authorization",
    "content-encoding",
    "content-type",
    "host",
    "user-agent",
    "x-prometheus-remote-write-version",
];

impl MetricAccess {
    /// Every problem of this CR that the schema cannot catch, each naming its field.
    /// Empty: valid (the metric patterns are then checked by `Policy::from_spec`).
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.metadata.name.as_deref().unwrap_or_default().is_empty() {
            p.push("metadata.name: required".to_string());
        }
        if self
            .metadata
            .namespace
            .as_deref()
            .unwrap_or_default()
            .is_empty()
        {
            p.push("metadata.namespace: required (the namespace is the tenant)".to_string());
        }
        p.extend(self.spec.validate());
        p
    }
}

impl MetricAccessSpec {
    /// The spec's problems, each naming its field (`spec.remoteWrite.interval: ...`).
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let Some(rw) = &self.remote_write {
            remote_write(rw, &mut p);
        }
        p
    }

    /// The collection interval of an enabled `remoteWrite` (`default` when it sets none), if
    /// it is valid.
    pub fn collection_interval_or(&self, default: Duration) -> Option<Duration> {
        let rw = self.remote_write.as_ref().filter(|rw| rw.enabled)?;
        match rw.interval.as_deref() {
            None => Some(default),
            Some(s) => crate::config::parse_duration(s)
                .ok()
                .filter(|d| *d >= MIN_INTERVAL),
        }
    }
}

fn remote_write(rw: &RemoteWriteSpec, p: &mut Vec<String>) {
    const AT: &str = "spec.remoteWrite";
    if rw.enabled {
        if let Some(s) = rw.interval.as_deref() {
            match crate::config::parse_duration(s) {
                Err(e) => p.push(format!("{AT}.interval: {e}")),
                Ok(d) if d < MIN_INTERVAL => {
                    p.push(format!("{AT}.interval: {s:?} is too short; at least 5s"))
                }
                Ok(_) => {}
            }
        }
        let (wanted, present) = match rw.target.kind {
            TargetType::Prometheus => ("prometheus", rw.prometheus.is_some()),
            TargetType::Pushgateway => ("pushgateway", rw.pushgateway.is_some()),
            TargetType::RemoteWrite => ("remoteWrite", rw.remote_write.is_some()),
        };
        if !present {
            p.push(format!(
                "{AT}.{wanted}: required with target.type {:?}",
                type_name(rw.target.kind)
            ));
        }
        for (block, set) in [
            ("prometheus", rw.prometheus.is_some()),
            ("pushgateway", rw.pushgateway.is_some()),
            ("remoteWrite", rw.remote_write.is_some()),
        ] {
            if set && block != wanted {
                p.push(format!(
                    "{AT}.{block}: set, but target.type is {:?}; remove it or change the type",
                    type_name(rw.target.kind)
                ));
            }
        }
    }
    if let Some(t) = &rw.prometheus {
        prometheus(t, p);
    }
    if let Some(t) = &rw.pushgateway {
        pushgateway(t, p);
    }
    if let Some(t) = &rw.remote_write {
        endpoint(t, p);
    }
    for name in rw.extra_labels.keys() {
        if !is_legacy_label_name(name) || name.starts_with("__") {
            p.push(format!(
                "{AT}.extraLabels: {name:?} is not a label name a tenant may set ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"
            ));
        }
    }
    relabel(
        &rw.metric_relabelings,
        &format!("{AT}.metricRelabelings"),
        p,
    );
}

fn type_name(t: TargetType) -> &'static str {
    match t {
        TargetType::Prometheus => "prometheus",
        TargetType::Pushgateway => "pushgateway",
        TargetType::RemoteWrite => "remote_write",
    }
}

fn prometheus(t: &PrometheusTarget, p: &mut Vec<String>) {
    const AT: &str = "spec.remoteWrite.prometheus";
    if t.service_name.is_empty() {
        p.push(format!("{AT}.serviceName: must not be empty"));
    }
    if t.service_port == 0 {
        p.push(format!("{AT}.servicePort: must be 1-65535"));
    }
    match (t.replicas, t.stateful_set_name.as_deref()) {
        (Some(_), None) | (None, Some(_)) => p.push(format!(
            "{AT}: replicas and statefulSetName go together (one write per StatefulSet pod)"
        )),
        (Some(0), Some(_)) => p.push(format!("{AT}.replicas: must be at least 1")),
        (Some(_), Some("")) => p.push(format!("{AT}.statefulSetName: must not be empty")),
        _ => {}
    }
}

fn pushgateway(t: &PushgatewayTarget, p: &mut Vec<String>) {
    const AT: &str = "spec.remoteWrite.pushgateway";
    if t.service_name.is_empty() {
        p.push(format!("{AT}.serviceName: must not be empty"));
    }
    if t.service_port == 0 {
        p.push(format!("{AT}.servicePort: must be 1-65535"));
    }
    if t.job_name.is_empty() {
        p.push(format!("{AT}.jobName: must not be empty"));
    }
}

fn endpoint(t: &RemoteWriteEndpoint, p: &mut Vec<String>) {
    const AT: &str = "spec.remoteWrite.remoteWrite";
    let scheme_ok = t.url.starts_with("http://") || t.url.starts_with("https://");
    match t.url.parse::<http::Uri>() {
        Ok(u) if u.authority().is_some_and(|a| a.as_str().contains('@')) => p.push(format!(
            "{AT}.url: credentials in the URL are not allowed (they would show in logs); use basicAuth or bearerTokenSecret"
        )),
        Ok(u) if scheme_ok && u.host().is_some_and(|h| !h.is_empty()) => {}
        _ => p.push(format!(
            "{AT}.url: {:?} is not an http:// or https:// URL with a host",
            t.url
        )),
    }
    if let Some(b) = &t.basic_auth {
        if b.username.is_empty() {
            p.push(format!("{AT}.basicAuth.username: must not be empty"));
        }
        if b.password_secret.name.is_empty() || b.password_secret.key.is_empty() {
            p.push(format!(
                "{AT}.basicAuth.passwordSecret: name and key must not be empty"
            ));
        }
    }
    if let Some(s) = &t.bearer_token_secret {
        if s.name.is_empty() || s.key.is_empty() {
            p.push(format!(
                "{AT}.bearerTokenSecret: name and key must not be empty"
            ));
        }
        if t.basic_auth.is_some() {
            p.push(format!(
                "{AT}: set basicAuth or bearerTokenSecret, not both"
            ));
        }
    }
    for (name, value) in &t.headers {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            p.push(format!("{AT}.headers: {name:?} is not a valid header name"));
        } else if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            p.push(format!(
                "{AT}.headers: {name:?} is set by the proxy (X-Scope-OrgID is always the CR's namespace; use basicAuth or bearerTokenSecret for credentials)"
            ));
        }
        if http::HeaderValue::from_str(value).is_err() {
            p.push(format!(
                "{AT}.headers.{name}: the value is not a valid header value"
            ));
        }
    }
    if let Some(tls) = &t.tls_config
        && tls.ca_file.as_deref() == Some("")
    {
        p.push(format!("{AT}.tlsConfig.caFile: must not be empty when set"));
    }
}

/// The relabel compiler is the one judge of a rule; its problems name `{at}[i].field`.
fn relabel(rules: &[RelabelConfig], at: &str, p: &mut Vec<String>) {
    if let Err(errors) = RelabelProgram::compile_at(at, rules) {
        p.extend(errors.iter().map(ToString::to_string));
    }
}

#[cfg(test)]
mod tests;
