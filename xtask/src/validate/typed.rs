//! Built-in Kubernetes kinds: deserialize into the k8s-openapi (v1_33) type, then serialize
//! back and report every field of the input the round trip lost. k8s-openapi ignores unknown
//! fields, so a field that disappears is one Kubernetes does not know: a typo, or a field at
//! the wrong level.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use k8s_openapi::api::{apps, autoscaling, batch, core, networking, policy, rbac};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;

fn round_trip<T: DeserializeOwned + Serialize>(obj: &Value) -> Vec<String> {
    let typed: T = match serde_json::from_value(obj.clone()) {
        Ok(t) => t,
        Err(e) => return vec![format!("does not parse as its Kubernetes type: {e}")],
    };
    let back = match serde_json::to_value(&typed) {
        Ok(v) => v,
        Err(e) => return vec![format!("does not serialize back: {e}")],
    };
    let mut lost = Vec::new();
    diff(obj, &back, "", &mut lost);
    lost.into_iter()
        .map(|path| {
            format!(
                "unknown field {path} (dropped by the {} schema: a typo?)",
                kind_of(obj)
            )
        })
        .collect()
}

fn kind_of(obj: &Value) -> &str {
    obj.get("kind").and_then(Value::as_str).unwrap_or("-")
}

/// Paths (`.spec.template...`) present in `orig` and missing in `back`. Nulls do not count.
fn diff(orig: &Value, back: &Value, path: &str, lost: &mut Vec<String>) {
    match (orig, back) {
        (Value::Object(o), Value::Object(b)) => {
            for (k, v) in o {
                let p = format!("{path}.{k}");
                match b.get(k) {
                    Some(bv) => diff(v, bv, &p, lost),
                    None if v.is_null() => {}
                    None => lost.push(p),
                }
            }
        }
        (Value::Array(o), Value::Array(b)) if o.len() == b.len() => {
            for (i, (ov, bv)) in o.iter().zip(b).enumerate() {
                diff(ov, bv, &format!("{path}[{i}]"), lost);
            }
        }
        _ => {}
    }
}

/// Findings for a built-in kind; empty for kinds without a type here (CRs, unknown kinds).
pub fn check(api_version: &str, kind: &str, obj: &Value) -> Vec<String> {
    macro_rules! table {
        ($( ($api:literal, $kind:literal) => $ty:ty ),* $(,)?) => {
            match (api_version, kind) {
                $( ($api, $kind) => round_trip::<$ty>(obj), )*
                _ => Vec::new(),
            }
        };
    }
    table! {
        ("v1", "Namespace") => core::v1::Namespace,
        ("v1", "ServiceAccount") => core::v1::ServiceAccount,
        ("v1", "ConfigMap") => core::v1::ConfigMap,
        ("v1", "Secret") => core::v1::Secret,
        ("v1", "Service") => core::v1::Service,
        ("v1", "Pod") => core::v1::Pod,
        ("v1", "PersistentVolumeClaim") => core::v1::PersistentVolumeClaim,
        ("v1", "ResourceQuota") => core::v1::ResourceQuota,
        ("v1", "LimitRange") => core::v1::LimitRange,
        ("apps/v1", "Deployment") => apps::v1::Deployment,
        ("apps/v1", "StatefulSet") => apps::v1::StatefulSet,
        ("apps/v1", "DaemonSet") => apps::v1::DaemonSet,
        ("batch/v1", "Job") => batch::v1::Job,
        ("batch/v1", "CronJob") => batch::v1::CronJob,
        ("policy/v1", "PodDisruptionBudget") => policy::v1::PodDisruptionBudget,
        ("networking.k8s.io/v1", "NetworkPolicy") => networking::v1::NetworkPolicy,
        ("networking.k8s.io/v1", "Ingress") => networking::v1::Ingress,
        ("rbac.authorization.k8s.io/v1", "Role") => rbac::v1::Role,
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => rbac::v1::RoleBinding,
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => rbac::v1::ClusterRole,
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => rbac::v1::ClusterRoleBinding,
        ("autoscaling/v2", "HorizontalPodAutoscaler") => autoscaling::v2::HorizontalPodAutoscaler,
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => apiext::CustomResourceDefinition,
    }
}
