//! File tenant source: a folder of `MetricAccess` YAML files (several documents per file
//! allowed), watched. A change takes effect within a second; an invalid CR is reported (log and
//! `/debug/tenants`) while every other CR keeps working.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::{InvalidResource, MetricAccess, Policy, Tenant, TenantSnapshot, TenantStore};

const API_VERSION: &str = "observability.ethos.io/v1alpha1";
/// Fallback poll: catches what inotify misses (network filesystems, ConfigMap symlink swaps).
const POLL: Duration = Duration::from_millis(500);

/// One CR read from a file, before merging.
struct Loaded {
    file: String,
    namespace: String,
    name: String,
    policy: Policy,
}

/// Read every `*.yaml`/`*.yml` under `dir` and build the snapshot.
pub fn load_dir(dir: &Path) -> TenantSnapshot {
    let mut invalid = Vec::new();
    let files = match yaml_files(dir) {
        Ok(f) => f,
        Err(e) => {
            invalid.push(InvalidResource {
                file: Some(dir.display().to_string()),
                namespace: None,
                name: None,
                error: format!("cannot read the tenants folder: {e}"),
            });
            return TenantSnapshot {
                tenants: BTreeMap::new(),
                invalid,
                loaded: true,
            };
        }
    };
    let mut loaded: Vec<Loaded> = Vec::new();
    for file in &files {
        load_file(file, &mut loaded, &mut invalid);
    }
    // Duplicates: the first (in path order) wins, the second is reported.
    let mut seen = std::collections::BTreeSet::new();
    let mut by_ns: BTreeMap<String, Vec<Loaded>> = BTreeMap::new();
    for l in loaded {
        if !seen.insert((l.namespace.clone(), l.name.clone())) {
            invalid.push(InvalidResource {
                file: Some(l.file),
                namespace: Some(l.namespace.clone()),
                name: Some(l.name.clone()),
                error: format!(
                    "duplicate MetricAccess {}/{} (already defined in another document)",
                    l.namespace, l.name
                ),
            });
            continue;
        }
        by_ns.entry(l.namespace.clone()).or_default().push(l);
    }
    let tenants = by_ns
        .into_iter()
        .map(|(ns, crs)| {
            let mut resources: Vec<String> = crs.iter().map(|l| l.name.clone()).collect();
            resources.sort();
            let policy = Policy::union(crs.into_iter().map(|l| l.policy));
            (
                ns.clone(),
                Arc::new(Tenant {
                    namespace: ns,
                    resources,
                    policy: Arc::new(policy),
                }),
            )
        })
        .collect();
    TenantSnapshot {
        tenants,
        invalid,
        loaded: true,
    }
}

fn load_file(path: &Path, loaded: &mut Vec<Loaded>, invalid: &mut Vec<InvalidResource>) {
    let file = path.display().to_string();
    let report = |invalid: &mut Vec<InvalidResource>,
                  ns: Option<String>,
                  name: Option<String>,
                  error: String| {
        invalid.push(InvalidResource {
            file: Some(file.clone()),
            namespace: ns,
            name,
            error,
        });
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return report(invalid, None, None, format!("cannot read: {e}")),
    };
    let docs: Vec<Value> = match serde_saphyr::from_multiple(&text) {
        Ok(d) => d,
        Err(e) => {
            let at = e
                .location()
                .map(|l| format!("line {} column {}: ", l.line(), l.column()))
                .unwrap_or_default();
            let msg = e.to_string();
            let first = msg
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ");
            return report(invalid, None, None, format!("not valid YAML: {at}{first}"));
        }
    };
    for doc in docs {
        if doc.is_null() {
            continue;
        }
        let kind = doc["kind"].as_str().unwrap_or_default();
        if kind != "MetricAccess" {
            tracing::debug!(file = %file, kind, "skipping a document that is not a MetricAccess");
            continue;
        }
        let ns = doc["metadata"]["namespace"].as_str().map(str::to_string);
        let name = doc["metadata"]["name"].as_str().map(str::to_string);
        match check_document(&doc, ns.as_deref(), name.as_deref()) {
            Ok(policy) => loaded.push(Loaded {
                file: file.clone(),
                namespace: ns.unwrap_or_default(),
                name: name.unwrap_or_default(),
                policy,
            }),
            Err(e) => report(invalid, ns, name, e),
        }
    }
}

/// Everything that makes a CR unusable, as one message.
fn check_document(doc: &Value, ns: Option<&str>, name: Option<&str>) -> Result<Policy, String> {
    let api = doc["apiVersion"].as_str().unwrap_or_default();
    if api != API_VERSION {
        return Err(format!("apiVersion {api:?} is not {API_VERSION:?}"));
    }
    let ns = ns.ok_or("metadata.namespace is required in file mode: it names the tenant")?;
    super::validate_tenant_id(ns).map_err(|e| format!("metadata.namespace: {e}"))?;
    name.filter(|n| !n.is_empty())
        .ok_or("metadata.name is required")?;
    let unknown = super::crd::unknown_fields(doc);
    if !unknown.is_empty() {
        return Err(format!("unknown field(s): {}", unknown.join(", ")));
    }
    let cr: MetricAccess =
        serde_json::from_value(doc.clone()).map_err(|e| format!("invalid MetricAccess: {e}"))?;
    let problems = cr.spec.validate();
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    Policy::from_spec(ns, &cr.spec).map_err(|e| e.to_string())
}

fn yaml_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let path = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            // Kubernetes ConfigMap mounts keep the real files in `..data`: follow the visible
            // symlinks, skip hidden entries.
            if hidden {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// What the folder looks like now: reload when it changes.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    yaml_files(dir)
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            let len = meta.as_ref().map_or(0, |m| m.len());
            let mtime = meta.and_then(|m| m.modified().ok());
            (p, len, mtime)
        })
        .collect()
}

/// Load `dir` into `store` now, then keep it in sync until the task is aborted.
pub fn spawn_file_source(dir: PathBuf, store: Arc<TenantStore>) -> tokio::task::JoinHandle<()> {
    // Watch and fingerprint before the first load, so a change made meanwhile is not missed.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    // inotify makes changes apply at once; the poll below is the safety net.
    let watcher = watch(&dir, tx);
    let mut last = fingerprint(&dir);
    apply(&dir, &store);
    tokio::spawn(async move {
        let _watcher = watcher;
        let mut tick = tokio::time::interval(POLL);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                Some(()) = rx.recv() => {
                    // Let an editor finish writing before reading.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    while rx.try_recv().is_ok() {}
                }
            }
            let now = fingerprint(&dir);
            if now != last {
                last = now;
                apply(&dir, &store);
            }
        }
    })
}

fn watch(
    dir: &Path,
    tx: tokio::sync::mpsc::UnboundedSender<()>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok() {
            let _ = tx.send(());
        }
    })
    .map_err(|e| tracing::warn!(error = %e, "file watcher unavailable; polling the tenants folder"))
    .ok()?;
    if let Err(e) = w.watch(dir, notify::RecursiveMode::Recursive) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the tenants folder; polling it");
    }
    Some(w)
}

fn apply(dir: &Path, store: &TenantStore) {
    let snapshot = load_dir(dir);
    for bad in &snapshot.invalid {
        tracing::warn!(
            file = bad.file.as_deref().unwrap_or(""),
            namespace = bad.namespace.as_deref().unwrap_or(""),
            name = bad.name.as_deref().unwrap_or(""),
            error = %bad.error,
            "invalid MetricAccess ignored"
        );
    }
    tracing::info!(
        dir = %dir.display(),
        tenants = snapshot.tenants.len(),
        invalid = snapshot.invalid.len(),
        "tenants loaded"
    );
    store.replace(snapshot);
}

#[cfg(test)]
mod tests;
