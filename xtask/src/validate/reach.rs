//! Who reaches the proxy's ports in each overlay, decided offline from the rendered
//! manifests ([`super::netpol`] is the NetworkPolicy semantics). The cluster of an overlay is
//! what would run together: `kustomize/overlays/<env>`, every tenant folder
//! `gitops/tenants/*` and, when there is one, `gitops/clusters/<env>/cluster-config` (the
//! proxy namespace's labels).
//!
//! What must hold, for the proxy's pods (the Deployment labelled
//! `app.kubernetes.io/name: prometheus-multi-tenant-proxy`), on the ports its container names
//! `admin` and `http`:
//! - no pod of a tenant namespace reaches `admin` (neither its workloads, nor any pod, nor one
//!   that calls itself `app.kubernetes.io/name: prometheus`); any pod of a tenant reaches
//!   `http`;
//! - a pod of an unrelated namespace reaches neither;
//! - in the proxy's namespace every pod reaches `http` (Grafana in the lab) and only Prometheus
//!   pods reach `admin`: the overlay's own ones, and the prometheus-operator's when the overlay
//!   has a ServiceMonitor;
//! - a pod of a namespace labelled `observability.ethos.io/proxy-admin: "true"` (the
//!   operators') reaches `admin`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::netpol::{Cluster, Labels, Pod};
use super::{Finding, parse_documents, rel, render};

/// The label every tenant folder puts on its namespace.
pub const TENANT_LABEL: &str = "observability.ethos.io/tenant";
/// The label of the namespace the operators use.
pub const ADMIN_LABEL: &str = "observability.ethos.io/proxy-admin";
const PROXY_NAME: &str = "prometheus-multi-tenant-proxy";

/// What one overlay's check found, and how many connections it decided.
#[derive(Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub overlays: usize,
    pub connections: usize,
}

/// The overlays under `root/kustomize/overlays`, sorted.
pub fn overlays(root: &Path) -> Vec<PathBuf> {
    let mut overlays: Vec<PathBuf> = std::fs::read_dir(root.join("kustomize/overlays"))
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    overlays.retain(|d| super::has_kustomization(d));
    overlays.sort();
    overlays
}

/// The rendered objects of the cluster `overlay` would run in: the overlay, every tenant
/// folder and the environment's cluster-config.
pub fn cluster_documents(
    root: &Path,
    kubectl: &Path,
    overlay: &Path,
) -> Result<Vec<Value>, String> {
    let mut dirs = vec![overlay.to_path_buf()];
    let mut tenant_dirs: Vec<PathBuf> = std::fs::read_dir(root.join("gitops/tenants"))
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    tenant_dirs.retain(|d| super::has_kustomization(d));
    tenant_dirs.sort();
    dirs.extend(tenant_dirs);
    if let Some(env) = overlay.file_name() {
        let config = root
            .join("gitops/clusters")
            .join(env)
            .join("cluster-config");
        if super::has_kustomization(&config) {
            dirs.push(config);
        }
    }
    let mut docs = Vec::new();
    for dir in &dirs {
        let text = render(kubectl, dir).map_err(|e| format!("{}: {e}", rel(root, dir)))?;
        docs.extend(parse_documents(&text).map_err(|e| format!("{}: {e}", rel(root, dir)))?);
    }
    Ok(docs)
}

/// Check every overlay under `root/kustomize/overlays` that renders the proxy.
pub fn check_overlays(root: &Path, kubectl: &Path) -> Report {
    let mut report = Report::default();
    for overlay in overlays(root) {
        let place = rel(root, &overlay);
        let docs = match cluster_documents(root, kubectl, &overlay) {
            Ok(docs) => docs,
            Err(reason) => {
                report.findings.push(Finding {
                    place,
                    object: "-".into(),
                    reason,
                });
                continue;
            }
        };
        // Overlays without the proxy (test samples) have nothing to check.
        if !docs.iter().any(is_proxy_deployment) {
            continue;
        }
        report.overlays += 1;
        let (findings, connections) = check_cluster(&place, &docs);
        report.findings.extend(findings);
        report.connections += connections;
    }
    report
}

fn is_proxy_deployment(doc: &Value) -> bool {
    doc["kind"] == "Deployment"
        && doc.pointer("/spec/template/metadata/labels/app.kubernetes.io~1name")
            == Some(&Value::from(PROXY_NAME))
}

/// One connection to decide and what it must come to.
struct Expect {
    src: Pod,
    port: &'static str,
    allowed: bool,
}

/// The checks over one cluster's objects: the findings and the number of connections decided.
pub fn check_cluster(place: &str, docs: &[Value]) -> (Vec<Finding>, usize) {
    let finding = |object: &str, reason: String| Finding {
        place: place.to_string(),
        object: object.to_string(),
        reason,
    };
    let mut cluster = Cluster::default();
    let mut pods = Vec::new();
    for doc in docs {
        let kind = doc["kind"].as_str().unwrap_or("");
        let name = doc.pointer("/metadata/name").and_then(Value::as_str);
        let namespace = doc
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default");
        match kind {
            "Namespace" => {
                cluster.namespace(name.unwrap_or("-"), labels_at(doc, "/metadata/labels"))
            }
            "NetworkPolicy" => match serde_json::from_value(doc.clone()) {
                Ok(policy) => cluster.policies.push(policy),
                Err(e) => {
                    return (
                        vec![finding(
                            &super::object_id(doc),
                            format!("not a NetworkPolicy: {e}"),
                        )],
                        0,
                    );
                }
            },
            _ => {}
        }
        let template = match kind {
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
                doc.pointer("/spec/template")
            }
            "CronJob" => doc.pointer("/spec/jobTemplate/spec/template"),
            _ => None,
        };
        if let Some(template) = template {
            pods.push((
                kind == "Deployment" && is_proxy_deployment(doc),
                pod(doc, namespace, template),
            ));
        }
    }
    let Some(proxy) = pods
        .iter()
        .find(|(is_proxy, _)| *is_proxy)
        .map(|(_, p)| p.clone())
    else {
        return (vec![finding("-", "no proxy Deployment rendered".into())], 0);
    };
    let mut out = Vec::new();
    for port in ["http", "admin"] {
        if !proxy.ports.contains_key(port) {
            out.push(finding(
                &proxy.name,
                format!("the proxy's container names no port {port:?}"),
            ));
        }
    }
    if !out.is_empty() {
        return (out, 0);
    }

    let tenants: Vec<String> = cluster
        .namespaces
        .iter()
        .filter(|(_, l)| l.contains_key(TENANT_LABEL))
        .map(|(n, _)| n.clone())
        .collect();
    if tenants.is_empty() {
        out.push(finding(
            "-",
            format!(
                "no tenant namespace (label {TENANT_LABEL}) rendered: nothing to check against"
            ),
        ));
        return (out, 0);
    }
    let synthetic = |name: &str, namespace: &str, labels: &[(&str, &str)]| Pod {
        name: name.to_string(),
        namespace: namespace.to_string(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ports: BTreeMap::new(),
    };
    let mut expect = Vec::new();
    let mut both = |src: Pod, http: Option<bool>, admin: bool| {
        if let Some(allowed) = http {
            expect.push(Expect {
                src: src.clone(),
                port: "http",
                allowed,
            });
        }
        expect.push(Expect {
            src,
            port: "admin",
            allowed: admin,
        });
    };
    for ns in &tenants {
        both(synthetic("any pod", ns, &[]), Some(true), false);
        both(
            synthetic(
                "a pod labelled app.kubernetes.io/name: prometheus",
                ns,
                &[("app.kubernetes.io/name", "prometheus")],
            ),
            None,
            false,
        );
        for (_, p) in pods.iter().filter(|(_, p)| &p.namespace == ns) {
            both(p.clone(), None, false);
        }
    }
    cluster.namespace("unrelated-app", Labels::new());
    both(
        synthetic("any pod", "unrelated-app", &[]),
        Some(false),
        false,
    );
    cluster.namespace(
        "operators",
        Labels::from([(ADMIN_LABEL.to_string(), "true".to_string())]),
    );
    both(synthetic("any pod", "operators", &[]), None, true);
    let is_prometheus =
        |p: &Pod| p.labels.get("app.kubernetes.io/name").map(String::as_str) == Some("prometheus");
    for (is_proxy, p) in &pods {
        if !is_proxy && p.namespace == proxy.namespace {
            both(p.clone(), Some(true), is_prometheus(p));
        }
    }
    if docs.iter().any(|d| d["kind"] == "ServiceMonitor") {
        both(
            synthetic(
                "the prometheus-operator's Prometheus (the ServiceMonitor's scraper)",
                &proxy.namespace,
                &[
                    ("app.kubernetes.io/name", "prometheus"),
                    ("prometheus", "k8s"),
                ],
            ),
            None,
            true,
        );
    }
    if !pods
        .iter()
        .any(|(_, p)| is_prometheus(p) && p.namespace == proxy.namespace)
        && !docs.iter().any(|d| d["kind"] == "ServiceMonitor")
    {
        out.push(finding(
            &proxy.name,
            "nothing scrapes the admin port: no Prometheus in the proxy's namespace and no ServiceMonitor".into(),
        ));
    }

    for e in &expect {
        let (number, _) = proxy.ports[e.port];
        let verdict = cluster.verdict(&e.src, &proxy, number);
        if verdict.allowed != e.allowed {
            let (got, want) = if verdict.allowed {
                ("reaches", "refused")
            } else {
                ("is refused", "allowed")
            };
            out.push(finding(
                &proxy.name,
                format!(
                    "{} in namespace {} {got} the {} port {number} (it must be {want}): {}",
                    e.src.name, e.src.namespace, e.port, verdict.why
                ),
            ));
        }
    }
    (out, expect.len())
}

fn labels_at(doc: &Value, pointer: &str) -> Labels {
    doc.pointer(pointer)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn pod(doc: &Value, namespace: &str, template: &Value) -> Pod {
    let mut ports = BTreeMap::new();
    for container in template
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for port in container["ports"].as_array().into_iter().flatten() {
            let (Some(name), Some(number)) =
                (port["name"].as_str(), port["containerPort"].as_u64())
            else {
                continue;
            };
            let protocol = port["protocol"].as_str().unwrap_or("TCP");
            if let Ok(number) = u16::try_from(number) {
                ports.insert(name.to_string(), (number, protocol.to_string()));
            }
        }
    }
    Pod {
        name: super::object_id(doc),
        namespace: namespace.to_string(),
        labels: labels_at(template, "/metadata/labels"),
        ports,
    }
}
