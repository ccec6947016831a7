//! Pod-spec rules for workloads (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob,
//! Pod): every container and
//! initContainer has an image pinned by a tag other than `latest` or by a digest,
//! `resources.requests`, and a securityContext that runs as non-root (pod or container level)
//! and forbids privilege escalation (container level).

use serde_json::Value;

/// Where the pod spec of `kind` is.
fn pod_spec<'a>(kind: &str, obj: &'a Value) -> Option<&'a Value> {
    match kind {
        "Pod" => obj.get("spec"),
        "CronJob" => obj.pointer("/spec/jobTemplate/spec/template/spec"),
        "Deployment" | "StatefulSet" | "DaemonSet" | "Job" | "ReplicaSet" => {
            obj.pointer("/spec/template/spec")
        }
        _ => None,
    }
}

/// Why `image` is not pinned, if it is not.
pub fn image_problem(image: &str) -> Option<String> {
    if image.is_empty() {
        return Some("has no image".into());
    }
    if image.contains('@') {
        return None;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        None => Some(format!(
            "image {image:?} has no tag (means `latest`): pin a version or a digest"
        )),
        Some((_, "latest")) => Some(format!(
            "image {image:?} uses the `latest` tag: pin a version or a digest"
        )),
        Some(_) => None,
    }
}

fn is_true(v: Option<&Value>) -> bool {
    v.and_then(Value::as_bool) == Some(true)
}

/// Findings for one object (empty for non-workloads).
pub fn check(kind: &str, obj: &Value) -> Vec<String> {
    let Some(spec) = pod_spec(kind, obj) else {
        return Vec::new();
    };
    let pod_non_root = is_true(spec.pointer("/securityContext/runAsNonRoot"));
    let mut out = Vec::new();
    for list in ["initContainers", "containers"] {
        for c in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("?");
            let what = if list == "containers" {
                format!("container {name:?}")
            } else {
                format!("initContainer {name:?}")
            };
            let image = c.get("image").and_then(Value::as_str).unwrap_or("");
            if let Some(p) = image_problem(image) {
                out.push(format!("{what}: {p}"));
            }
            let requests = c.pointer("/resources/requests").and_then(Value::as_object);
            if requests.is_none_or(|r| r.is_empty()) {
                out.push(format!(
                    "{what}: no resources.requests (set cpu and memory requests)"
                ));
            }
            let sc = c.get("securityContext");
            let non_root = pod_non_root || is_true(sc.and_then(|s| s.get("runAsNonRoot")));
            if !non_root {
                out.push(format!(
                    "{what}: securityContext.runAsNonRoot is not true (pod or container level)"
                ));
            }
            let no_escalation = sc
                .and_then(|s| s.get("allowPrivilegeEscalation"))
                .and_then(Value::as_bool)
                == Some(false);
            if !no_escalation {
                out.push(format!(
                    "{what}: securityContext.allowPrivilegeEscalation is not false"
                ));
            }
        }
    }
    out
}
