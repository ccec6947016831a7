//! The `ingest` section: the remote-write gateway (DESIGN §6). Limits, the governance rules per
//! tenant, analytics, forwarding with its queue and disk spill.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration::serde_duration;
use crate::relabel::RelabelConfig;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Serve `POST /api/v1/write` (and `/api/v1/push`, `/write`) on the API listener.
    pub enabled: bool,
    /// With `auth.mode: header`, the tenant comes from this header (bearer mode: the token's
    /// tenant).
    pub tenant_header: String,
    /// Tenant of a request that names none; unset: such requests get 401.
    pub default_tenant: Option<String>,
    /// Largest compressed body accepted (413 above).
    pub max_body_bytes: usize,
    /// Largest decompressed body accepted, checked against snappy's declared length before
    /// anything is allocated.
    pub max_decompressed_bytes: usize,
    pub limits: IngestLimits,
    pub governance: GovernanceConfig,
    pub analytics: AnalyticsConfig,
    pub usage: UsageConfig,
    pub forward: ForwardConfig,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            tenant_header: "X-Scope-OrgID".into(),
            default_tenant: None,
            max_body_bytes: 10 * 1024 * 1024,
            max_decompressed_bytes: 64 * 1024 * 1024,
            limits: IngestLimits::default(),
            governance: GovernanceConfig::default(),
            analytics: AnalyticsConfig::default(),
            usage: UsageConfig::default(),
            forward: ForwardConfig::default(),
        }
    }
}

/// Checked on every series before any rule: a violation answers 400 with the reason.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestLimits {
    pub max_labels_per_series: usize,
    pub max_label_name_length: usize,
    pub max_label_value_length: usize,
    /// Samples further ahead of the gateway's clock are refused.
    #[serde(with = "serde_duration")]
    pub max_future: Duration,
}

impl Default for IngestLimits {
    fn default() -> Self {
        Self {
            max_labels_per_series: 64,
            max_label_name_length: 256,
            max_label_value_length: 2048,
            max_future: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GovernanceConfig {
    /// Rules of tenants without their own entry.
    pub default: TenantRules,
    /// Rules per tenant (replace `default` for that tenant).
    pub tenants: BTreeMap<String, TenantRules>,
}

/// One tenant's pipeline, applied in this order: naming, relabel, label drops, cardinality,
/// unused metrics.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantRules {
    /// Report what the rules would drop (counted with `dry_run="true"`) but forward everything.
    pub dry_run: bool,
    pub naming: Option<NamingRules>,
    /// Prometheus relabel rules (`metric_relabel_configs` spelling or the CR's camelCase).
    pub relabel: Vec<RelabelConfig>,
    /// Label names removed from every series.
    pub label_drops: Vec<String>,
    pub cardinality: CardinalityLimits,
    /// What to do with metrics nobody used for `usage.unused_after`: `off`, `report`, `drop`.
    pub unused_metrics: UnusedAction,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NamingRules {
    /// Metric names must match (anchored).
    pub metric_name_regex: Option<String>,
    pub required_labels: Vec<String>,
    pub forbidden_labels: Vec<String>,
    /// `drop`: drop the series and count it; `reject`: answer 400 for the request.
    pub action: NamingAction,
}

impl Default for NamingRules {
    fn default() -> Self {
        Self {
            metric_name_regex: None,
            required_labels: Vec::new(),
            forbidden_labels: Vec::new(),
            action: NamingAction::Drop,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NamingAction {
    #[default]
    Drop,
    Reject,
}

/// Active series (seen within `analytics.window`). Over a limit, new series are dropped;
/// series already active keep flowing. 0: no limit.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CardinalityLimits {
    pub max_series: usize,
    pub max_series_per_metric: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnusedAction {
    #[default]
    Off,
    Report,
    Drop,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyticsConfig {
    /// A series is active if it had a sample within this window (cardinality and top series).
    #[serde(with = "serde_duration")]
    pub window: Duration,
    /// `/metrics` shows per-metric figures for this many metrics per tenant only.
    pub top_k: usize,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(600),
            top_k: 10,
        }
    }
}

/// Which metric names are used: queries through the read path, plus the rule files and
/// Grafana dashboards named here.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsageConfig {
    /// Prometheus rule files (YAML with `groups[].rules[].expr`).
    pub rule_files: Vec<PathBuf>,
    /// Grafana dashboard JSON files (every `expr` of every panel target).
    pub dashboard_files: Vec<PathBuf>,
    /// A metric not used for this long counts as unused (after the gateway has run this long).
    #[serde(with = "serde_duration")]
    pub unused_after: Duration,
}

impl Default for UsageConfig {
    fn default() -> Self {
        Self {
            rule_files: Vec::new(),
            dashboard_files: Vec::new(),
            unused_after: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardConfig {
    pub destinations: Vec<Destination>,
    /// Series per forwarded request.
    pub batch_series: usize,
    /// Queues (each with one request in flight) per destination; series are spread by their
    /// label hash, so one series' samples stay in order.
    pub shards: usize,
    /// Requests buffered in memory per destination; full: the receiver answers 503.
    pub queue_capacity: usize,
    /// Accepted requests are written here before the 2xx, and deleted once delivered: a
    /// restart or a storage outage loses nothing within `spill_max_bytes`.
    pub spill_directory: Option<PathBuf>,
    pub spill_max_bytes: u64,
    #[serde(with = "serde_duration")]
    pub request_timeout: Duration,
    #[serde(with = "serde_duration")]
    pub min_backoff: Duration,
    #[serde(with = "serde_duration")]
    pub max_backoff: Duration,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        Self {
            destinations: Vec::new(),
            batch_series: 2000,
            shards: 2,
            queue_capacity: 1000,
            spill_directory: None,
            spill_max_bytes: 1024 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Destination {
    pub name: String,
    /// Full remote-write URL (`.../api/v1/write`, `.../api/v1/push`, `.../insert/0/prometheus/api/v1/write`).
    pub url: String,
    /// Header carrying the tenant, empty for none.
    pub tenant_header: Option<String>,
    /// Its value; `{tenant}` is replaced.
    pub tenant_value: Option<String>,
    pub headers: BTreeMap<String, String>,
}

impl IngestConfig {
    /// Problems, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !self.enabled {
            return p;
        }
        if self.forward.destinations.is_empty() {
            p.push("ingest.forward.destinations: at least one destination is required when ingest.enabled".into());
        }
        for (i, d) in self.forward.destinations.iter().enumerate() {
            let ok = (d.url.starts_with("http://") || d.url.starts_with("https://"))
                && d.url.parse::<http::Uri>().is_ok();
            if !ok {
                p.push(format!(
                    "ingest.forward.destinations[{i}].url: {:?} is not an http(s) URL",
                    d.url
                ));
            }
            if d.name.is_empty() {
                p.push(format!("ingest.forward.destinations[{i}].name: required"));
            }
        }
        for (key, n) in [
            ("ingest.max_body_bytes", self.max_body_bytes),
            ("ingest.max_decompressed_bytes", self.max_decompressed_bytes),
            ("ingest.forward.batch_series", self.forward.batch_series),
            ("ingest.forward.queue_capacity", self.forward.queue_capacity),
            ("ingest.forward.shards", self.forward.shards),
        ] {
            if n == 0 {
                p.push(format!("{key}: must be greater than 0"));
            }
        }
        if let Some(t) = &self.default_tenant
            && let Err(e) = crate::names::validate_tenant_id(t)
        {
            p.push(format!("ingest.default_tenant: {e}"));
        }
        let rules = std::iter::once(("default".to_string(), &self.governance.default)).chain(
            self.governance
                .tenants
                .iter()
                .map(|(t, r)| (format!("tenants.{t}"), r)),
        );
        for (at, r) in rules {
            let at = format!("ingest.governance.{at}");
            if let Err(errors) =
                crate::relabel::RelabelProgram::compile_at(&format!("{at}.relabel"), &r.relabel)
            {
                p.extend(errors.iter().map(ToString::to_string));
            }
            if let Some(re) = r.naming.as_ref().and_then(|n| n.metric_name_regex.as_ref())
                && let Err(e) = regex::Regex::new(&format!("^(?:{re})$"))
            {
                p.push(format!("{at}.naming.metric_name_regex: {e}"));
            }
        }
        p
    }
}
