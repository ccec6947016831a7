//! `MetricAccess` (`observability.ethos.io/v1alpha1`): the tenant definition. Field names and
//! shapes follow the CRs written for the Go proxy, so those work unchanged; relabel rules use
//! prometheus-operator's field names.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod validate;

/// The rule type of `metricRelabelings`, owned by the relabel engine.
pub use crate::relabel::RelabelConfig;

/// What a tenant (the CR's namespace) may read, and where its series are copied.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "observability.ethos.io",
    version = "v1alpha1",
    kind = "MetricAccess",
    doc = "Which series a tenant (the CR's namespace) may read through the proxy, and where the collector copies them.",
    plural = "metricaccesses",
    shortname = "ma",
    namespaced,
    status = "MetricAccessStatus",
    printcolumn = r#"{"name":"Remote write","type":"boolean","jsonPath":".spec.remoteWrite.enabled"}"#,
    printcolumn = r#"{"name":"Valid","type":"string","jsonPath":".status.conditions[?(@.type==\"Valid\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MetricAccessSpec {
    /// Source identifier, usually the namespace (kept for compatibility; the tenant is the
    /// CR's namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// When true, every clause also requires `namespace="<the CR's namespace>"`.
    #[serde(default)]
    pub metric_isolation: bool,
    /// Patterns: an exact metric name, a regex on the name, or a PromQL selector (`{...}`).
    /// Empty: nothing is visible.
    #[serde(default)]
    pub metrics: Vec<String>,
    /// Label equalities ANDed into every pattern.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub label_selectors: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_write: Option<RemoteWriteSpec>,
}

/// Copy the tenant's series to its own targets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoteWriteSpec {
    #[serde(default)]
    pub enabled: bool,
    /// Collection interval, a Prometheus duration (`30s`); at least 5s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    pub target: TargetSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushgateway: Option<PushgatewayTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_write: Option<RemoteWriteEndpoint>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_labels: BTreeMap<String, String>,
    /// true: a collected label that clashes with an extra label is kept; false: it moves to
    /// `exported_<name>`.
    #[serde(default)]
    pub honor_labels: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metric_relabelings: Vec<RelabelConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetSpec {
    #[serde(rename = "type")]
    pub kind: TargetType,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TargetType {
    #[default]
    #[serde(rename = "prometheus")]
    Prometheus,
    #[serde(rename = "pushgateway")]
    Pushgateway,
    #[serde(rename = "remote_write")]
    RemoteWrite,
}

/// A tenant Prometheus with the remote-write receiver: one service, or every StatefulSet replica.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusTarget {
    pub service_name: String,
    #[serde(default = "default_prometheus_port")]
    pub service_port: u16,
    /// With `statefulSetName`: write to `<sts>-<i>.<serviceName>.<ns>.svc` for i in 0..replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stateful_set_name: Option<String>,
}

fn default_prometheus_port() -> u16 {
    9090
}

fn default_pushgateway_port() -> u16 {
    9091
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushgatewayTarget {
    pub service_name: String,
    #[serde(default = "default_pushgateway_port")]
    pub service_port: u16,
    pub job_name: String,
}

/// Any remote_write endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoteWriteEndpoint {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// Bearer token from a Secret in the CR's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_secret: Option<SecretKeyRef>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<TlsConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuth {
    pub username: String,
    /// A Secret in the CR's own namespace (there is no namespace field, by design).
    pub password_secret: SecretKeyRef,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Written by the proxy through the status subresource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricAccessStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_collection_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series_written: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    /// "True", "False" or "Unknown".
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

/// The CRD as YAML, generated from these types (`prometheus-multi-tenant-proxy crd`).
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    match serde_saphyr::to_string(&MetricAccess::crd()) {
        Ok(yaml) => yaml,
        // Serializing a value built from our own types cannot fail in practice; say so if it does.
        Err(e) => format!("# failed to render the CRD: {e}\n"),
    }
}

/// Fields of a CR object that the CRD schema does not know, as JSON paths (`spec.metricz`).
/// The API server prunes such fields silently; in file mode they are reported, because they are
/// almost always typos.
pub fn unknown_fields(object: &serde_json::Value) -> Vec<String> {
    use kube::CustomResourceExt;
    let crd = serde_json::to_value(MetricAccess::crd()).unwrap_or_default();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut out = Vec::new();
    for key in ["spec", "status"] {
        if let Some(v) = object.get(key) {
            walk_unknown(v, &schema["properties"][key], key, &mut out);
        }
    }
    out
}

fn walk_unknown(
    v: &serde_json::Value,
    schema: &serde_json::Value,
    path: &str,
    out: &mut Vec<String>,
) {
    match v {
        serde_json::Value::Object(map) => {
            let Some(props) = schema.get("properties").and_then(|p| p.as_object()) else {
                // A free-form map (labels, headers): any key is fine.
                return;
            };
            for (k, child) in map {
                match props.get(k) {
                    Some(s) => walk_unknown(child, s, &format!("{path}.{k}"), out),
                    None => out.push(format!("{path}.{k}")),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk_unknown(item, &schema["items"], &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `kustomize/base` applies the CRD to clusters: it must be the one these types generate.
    #[test]
    fn kustomize_base_holds_the_generated_crd() {
        let file = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../kustomize/base/metricaccess-crd.yaml"
        );
        let text = std::fs::read_to_string(file).unwrap();
        let body = text.split_once('\n').map(|(header, rest)| {
            assert!(
                header.starts_with("# Generated by `cargo xtask crd`"),
                "{header}"
            );
            rest
        });
        assert!(
            body == Some(crd_yaml().as_str()),
            "{file} is stale: run `cargo xtask crd`"
        );
    }

    #[test]
    fn crd_is_namespaced_with_status_and_every_field() {
        let yaml = crd_yaml();
        for needle in [
            "name: metricaccesses.observability.ethos.io",
            "group: observability.ethos.io",
            "scope: Namespaced",
            "status: {}",
            "metricIsolation",
            "labelSelectors",
            "statefulSetName",
            "passwordSecret",
            "metricRelabelings",
            "honorLabels",
            "extraLabels",
            "jobName",
            "sourceLabels",
            "observedGeneration",
        ] {
            assert!(yaml.contains(needle), "CRD lacks {needle}:\n{yaml}");
        }
        insta::assert_snapshot!(yaml);
    }

    #[test]
    fn unknown_fields_are_found_at_any_depth_but_maps_are_free() {
        let doc = serde_json::json!({"spec": {
            "metrics": ["up"], "metricz": [],
            "labelSelectors": {"anything": "goes"},
            "remoteWrite": {"target": {"type": "prometheus"}, "prometheus": {"serviceName": "p", "replica": 2},
                "metricRelabelings": [{"sourceLabels": ["a"], "targetlabel": "x"}]}
        }});
        assert_eq!(
            unknown_fields(&doc),
            [
                "spec.metricz",
                "spec.remoteWrite.metricRelabelings[0].targetlabel",
                "spec.remoteWrite.prometheus.replica"
            ]
        );
    }
}
