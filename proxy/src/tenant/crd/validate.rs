//! What the CRD schema cannot say about a `MetricAccess`: durations, which target block goes
//! with which target type, URLs, label names, relabel rules. Each problem names its field.
//! The metric patterns and label selectors are checked by the policy compiler.

use std::time::Duration;

use super::{
    MetricAccess, MetricAccessSpec, PrometheusTarget, PushgatewayTarget, RelabelConfig,
    RemoteWriteEndpoint, RemoteWriteSpec, TargetType,
};
use crate::tenant::policy::is_legacy_label_name;

/// Collecting more often than this only loads infrastructure Prometheus.
const MIN_INTERVAL: Duration = Duration::from_secs(5);

/// Relabel actions Prometheus knows (matched case-insensitively, as Prometheus does).
pub const RELABEL_ACTIONS: [&str; 11] = [
    "replace",
    "keep",
    "drop",
    "keepequal",
    "dropequal",
    "hashmod",
    "labelmap",
    "labeldrop",
    "labelkeep",
    "lowercase",
    "uppercase",
];

/// Headers the remote-write protocol or the auth settings own (Prometheus refuses them too).
const RESERVED_HEADERS: [&str; 6] = [
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

    /// The collection interval of an enabled `remoteWrite` (default 30s), if it is valid.
    pub fn collection_interval(&self) -> Option<Duration> {
        let rw = self.remote_write.as_ref().filter(|rw| rw.enabled)?;
        match rw.interval.as_deref() {
            None => Some(Duration::from_secs(30)),
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
    for (i, r) in rw.metric_relabelings.iter().enumerate() {
        relabel(r, &format!("{AT}.metricRelabelings[{i}]"), p);
    }
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
                "{AT}.headers: {name:?} is set by the proxy (use basicAuth or bearerTokenSecret for credentials)"
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

fn relabel(r: &RelabelConfig, at: &str, p: &mut Vec<String>) {
    let action = r
        .action
        .as_deref()
        .unwrap_or("replace")
        .to_ascii_lowercase();
    if !RELABEL_ACTIONS.contains(&action.as_str()) {
        p.push(format!(
            "{at}.action: unknown action {:?} (one of: {})",
            r.action.as_deref().unwrap_or_default(),
            RELABEL_ACTIONS.join(", ")
        ));
        return;
    }
    if let Some(re) = &r.regex
        && let Err(e) = regex::Regex::new(&format!("^(?:{re})$"))
    {
        p.push(format!("{at}.regex: not a valid regex: {e}"));
    }
    for (j, l) in r.source_labels.iter().enumerate() {
        if !is_legacy_label_name(l) {
            p.push(format!("{at}.sourceLabels[{j}]: {l:?} is not a label name"));
        }
    }
    let needs_target = matches!(
        action.as_str(),
        "replace" | "hashmod" | "lowercase" | "uppercase" | "keepequal" | "dropequal"
    );
    match r.target_label.as_deref() {
        None | Some("") if needs_target => {
            p.push(format!("{at}.targetLabel: required with action {action}"))
        }
        // `replace` may build the target name from capture groups (`${1}`).
        Some(t)
            if !(t.is_empty()
                || is_legacy_label_name(t)
                || action == "replace" && t.contains('$')) =>
        {
            p.push(format!("{at}.targetLabel: {t:?} is not a label name"))
        }
        _ => {}
    }
    if action == "hashmod" && r.modulus.unwrap_or(0) == 0 {
        p.push(format!("{at}.modulus: required (> 0) with action hashmod"));
    }
}

#[cfg(test)]
mod tests;
