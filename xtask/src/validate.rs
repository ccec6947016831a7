//! `cargo xtask validate`: offline checks of the deployment manifests. This module owns the
//! discovery (which dirs and files are checked) and the per-object dispatch; the checks live in
//! [`typed`] (Kubernetes types and unknown fields), [`schema`] (MetricAccess against the CRD's
//! openAPIV3Schema), [`workload`] (images, resources, securityContext), [`argocd`] (paths
//! an Application or ApplicationSet points at) and [`reach`] (who reaches the proxy's admin and
//! tenant ports under each overlay's NetworkPolicies, decided by [`netpol`]).
//!
//! What is checked:
//! - every dir with a kustomization under `kustomize/` and `gitops/` (except `kind: Component`
//!   dirs, rendered through the overlays that use them), rendered with `kubectl kustomize`;
//! - every YAML file under `argocd/`, and under `gitops/` outside any kustomization dir;
//! - every YAML under `fixtures/tenants/` and `fixtures/tenants-examples/` with MetricAccess.
//!
//! All findings are collected, each as `<file or dir>: <Kind/name>: <reason>`.

mod argocd;
mod netpol;
mod reach;
mod schema;
#[cfg(test)]
mod tests;
mod typed;
mod workload;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use serde_json::Value;

/// The CRD the MetricAccess objects are checked against, relative to the root.
pub const CRD: &str = crate::crd::CRD_PATH;

/// One problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The file or the rendered dir, relative to the root.
    pub place: String,
    /// `Kind/name` (or `-` when the document has none).
    pub object: String,
    pub reason: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.place, self.object, self.reason)
    }
}

/// What the checks of one object need to know about the tree.
pub struct Cx<'a> {
    pub root: &'a Path,
    pub crd: &'a schema::CrdSchemas,
}

/// The file names kustomize accepts.
const KUSTOMIZATION_FILES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

fn kustomization_file(dir: &Path) -> Option<PathBuf> {
    KUSTOMIZATION_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
}

/// Whether `dir` holds a kustomization.
pub fn has_kustomization(dir: &Path) -> bool {
    kustomization_file(dir).is_some()
}

fn is_component(dir: &Path) -> bool {
    kustomization_file(dir)
        .and_then(|f| std::fs::read_to_string(f).ok())
        .is_some_and(|text| {
            text.lines()
                .any(|l| l.trim_end() == "kind: Component" || l.trim_end() == "kind: \"Component\"")
        })
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// Every dir under `dir` (itself included), sorted, depth first; hidden dirs skipped.
fn walk_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    if !dir.is_dir() {
        return;
    }
    out.push(dir.to_path_buf());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut subdirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    subdirs.sort();
    for d in subdirs {
        walk_dirs(&d, out);
    }
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_yaml(p))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The dirs to render: every non-component kustomization under kustomize/ and gitops/.
pub fn render_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for top in ["kustomize", "gitops"] {
        walk_dirs(&root.join(top), &mut dirs);
    }
    dirs.retain(|d| has_kustomization(d) && !is_component(d));
    dirs
}

/// The YAML files checked as they are: argocd/**, gitops/** outside kustomization dirs, and
/// the MetricAccess fixtures.
pub fn raw_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    walk_dirs(&root.join("argocd"), &mut dirs);
    for d in &dirs {
        files.extend(
            yaml_files(d)
                .into_iter()
                .filter(|f| !KUSTOMIZATION_FILES.iter().any(|k| f.ends_with(k))),
        );
    }
    dirs.clear();
    let gitops = root.join("gitops");
    walk_dirs(&gitops, &mut dirs);
    for d in &dirs {
        let in_kustomization = d
            .ancestors()
            .take_while(|a| a.starts_with(&gitops))
            .any(has_kustomization);
        if !in_kustomization {
            files.extend(yaml_files(d));
        }
    }
    for fixtures in ["fixtures/tenants", "fixtures/tenants-examples"] {
        files.extend(yaml_files(&root.join(fixtures)).into_iter().filter(|f| {
            std::fs::read_to_string(f).is_ok_and(|t| t.contains("kind: MetricAccess"))
        }));
    }
    files
}

fn rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// `Kind/name` of an object.
pub fn object_id(obj: &Value) -> String {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("-");
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("-");
    format!("{kind}/{name}")
}

/// Parse a multi-document YAML stream into its (non-empty) documents.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, String> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| e.to_string())?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// `kubectl kustomize <dir>`.
fn render(kubectl: &Path, dir: &Path) -> Result<String, String> {
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .map_err(|e| format!("could not run {}: {e}", kubectl.display()))?;
    if !out.status.success() {
        return Err(format!(
            "`kubectl kustomize` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("kubectl output is not UTF-8: {e}"))
}

/// Every check of one object.
fn check_object(cx: &Cx, place: &str, obj: &Value, out: &mut Vec<Finding>) {
    let mut reasons = Vec::new();
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    if !obj.is_object() {
        reasons.push("not a mapping".to_string());
    } else {
        for (what, ok) in [
            ("apiVersion", !api_version.is_empty()),
            ("kind", !kind.is_empty()),
            (
                "metadata.name",
                obj.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| !n.is_empty()),
            ),
        ] {
            if !ok {
                reasons.push(format!("missing {what}"));
            }
        }
    }
    if reasons.is_empty() {
        reasons.extend(typed::check(api_version, kind, obj));
        reasons.extend(workload::check(kind, obj));
        reasons.extend(argocd::check(cx.root, api_version, kind, obj));
        if kind == "MetricAccess" {
            reasons.extend(cx.crd.check(api_version, obj));
        }
    }
    let object = object_id(obj);
    out.extend(reasons.into_iter().map(|reason| Finding {
        place: place.to_string(),
        object: object.clone(),
        reason,
    }));
}

fn check_documents(cx: &Cx, place: &str, text: &str, out: &mut Vec<Finding>) {
    match parse_documents(text) {
        Ok(docs) => {
            for doc in &docs {
                // Kustomize's own files are not cluster objects.
                let api = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
                if !api.starts_with("kustomize.config.k8s.io/") {
                    check_object(cx, place, doc, out);
                }
            }
        }
        Err(e) => out.push(Finding {
            place: place.to_string(),
            object: "-".into(),
            reason: format!("not valid YAML: {e}"),
        }),
    }
}

/// Validate the tree at `root`, MetricAccess against the CRD at `crd`. `Err` only when the CRD
/// itself cannot be read.
pub fn validate_tree(root: &Path, crd: &Path, kubectl: &Path) -> anyhow::Result<Vec<Finding>> {
    let crd_text =
        std::fs::read_to_string(crd).with_context(|| format!("reading {}", crd.display()))?;
    let schemas = schema::CrdSchemas::from_crd_yaml(&crd_text).map_err(|e| {
        anyhow::anyhow!(
            "{}: no usable openAPIV3Schema ({e}); regenerate it: `cargo xtask crd`",
            crd.display()
        )
    })?;
    let cx = Cx {
        root,
        crd: &schemas,
    };
    let mut out = Vec::new();
    for dir in render_dirs(root) {
        let place = rel(root, &dir);
        match render(kubectl, &dir) {
            Ok(text) => check_documents(&cx, &place, &text, &mut out),
            Err(reason) => out.push(Finding {
                place,
                object: "-".into(),
                reason,
            }),
        }
    }
    for file in raw_files(root) {
        let place = rel(root, &file);
        match std::fs::read_to_string(&file) {
            Ok(text) => check_documents(&cx, &place, &text, &mut out),
            Err(e) => out.push(Finding {
                place,
                object: "-".into(),
                reason: format!("unreadable: {e}"),
            }),
        }
    }
    Ok(out)
}

/// kubectl on PATH (or `$KUBECTL`), if it runs.
pub fn find_kubectl() -> Option<PathBuf> {
    let candidate = std::env::var_os("KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("kubectl"));
    let ok = Command::new(&candidate)
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(candidate)
}

/// `cargo xtask validate`: print every finding; exit 1 when there is one.
pub fn run(root: &Path) -> anyhow::Result<i32> {
    let Some(kubectl) = find_kubectl() else {
        anyhow::bail!(
            "kubectl not found (or $KUBECTL does not run): install kubectl >= 1.27 \
             (https://kubernetes.io/docs/tasks/tools/); it renders the kustomizations offline"
        );
    };
    let mut findings = validate_tree(root, &root.join(CRD), &kubectl)?;
    let reach = reach::check_overlays(root, &kubectl);
    findings.extend(reach.findings);
    let dirs = render_dirs(root).len();
    let files = raw_files(root).len();
    if findings.is_empty() {
        println!("manifests OK: {dirs} kustomization dir(s) rendered, {files} file(s) checked");
        println!(
            "network policies OK: {} connection(s) to the proxy's admin and tenant ports decided in {} overlay(s)",
            reach.connections, reach.overlays
        );
        return Ok(0);
    }
    for f in &findings {
        eprintln!("{f}");
    }
    eprintln!(
        "{} problem(s) in {dirs} kustomization dir(s) and {files} file(s)",
        findings.len()
    );
    Ok(1)
}
