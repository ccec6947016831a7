//! File tenant source: a folder of `MetricAccess` YAML files (several documents per file
//! allowed), watched. A change takes effect within a second; an invalid CR is reported (log and
//! `/debug/tenants`) while every other CR keeps working.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::config::yaml::{line_of_key_path, located_message};

use super::{
    AccessResource, InvalidResource, MetricAccess, MetricAccessSpec, Policy, Tenant,
    TenantSnapshot, TenantStore,
};

const API_VERSION: &str = "observability.ethos.io/v1alpha1";
/// Fallback poll: catches what inotify misses (network filesystems, a folder created later).
const POLL: Duration = Duration::from_millis(500);

/// One valid CR read from a file or the API server, before merging.
pub(crate) struct Loaded {
    /// The file it came from (file mode).
    pub file: Option<String>,
    pub namespace: String,
    pub name: String,
    pub spec: MetricAccessSpec,
    pub policy: Policy,
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
                resources: Vec::new(),
                invalid,
                loaded: true,
            };
        }
    };
    let mut loaded: Vec<Loaded> = Vec::new();
    for file in &files {
        load_file(file, &mut loaded, &mut invalid);
    }
    build_snapshot(loaded, invalid)
}

/// Merge valid CRs into tenants (one per namespace). A second CR with the same namespace and
/// name (in path order) is reported, not merged.
pub(crate) fn build_snapshot(
    loaded: Vec<Loaded>,
    mut invalid: Vec<InvalidResource>,
) -> TenantSnapshot {
    let mut seen: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut by_ns: BTreeMap<String, Vec<Loaded>> = BTreeMap::new();
    for l in loaded {
        let key = (l.namespace.clone(), l.name.clone());
        if let Some(first) = seen.get(&key) {
            invalid.push(InvalidResource {
                error: format!(
                    "duplicate MetricAccess {}/{}: already defined in {first}; names are unique per namespace",
                    l.namespace, l.name
                ),
                file: l.file,
                namespace: Some(l.namespace),
                name: Some(l.name),
            });
            continue;
        }
        seen.insert(
            key,
            l.file.clone().unwrap_or_else(|| "the API server".into()),
        );
        by_ns.entry(l.namespace.clone()).or_default().push(l);
    }
    let mut resources = Vec::new();
    let tenants = by_ns
        .into_iter()
        .map(|(ns, mut crs)| {
            crs.sort_by(|a, b| a.name.cmp(&b.name));
            let names: Vec<String> = crs.iter().map(|l| l.name.clone()).collect();
            let mut policies = Vec::new();
            for l in crs {
                policies.push(l.policy.clone());
                resources.push(Arc::new(AccessResource {
                    namespace: l.namespace,
                    name: l.name,
                    file: l.file,
                    spec: l.spec,
                    policy: Arc::new(l.policy),
                }));
            }
            let resources = names;
            let policy = Policy::union(policies);
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
        resources,
        invalid,
        loaded: true,
    }
}

fn load_file(path: &Path, loaded: &mut Vec<Loaded>, invalid: &mut Vec<InvalidResource>) {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => load_documents(&file, &text, loaded, invalid),
        Err(e) => invalid.push(InvalidResource {
            file: Some(file),
            namespace: None,
            name: None,
            error: format!("cannot read: {e}"),
        }),
    }
}

/// The snapshot one file's text gives on its own (`file` names it in errors): the whole file
/// path — YAML documents, schema, validation, policy, merge — without the filesystem.
pub fn load_text(file: &str, text: &str) -> TenantSnapshot {
    let (mut loaded, mut invalid) = (Vec::new(), Vec::new());
    load_documents(file, text, &mut loaded, &mut invalid);
    build_snapshot(loaded, invalid)
}

fn load_documents(
    file: &str,
    text: &str,
    loaded: &mut Vec<Loaded>,
    invalid: &mut Vec<InvalidResource>,
) {
    let report = |invalid: &mut Vec<InvalidResource>,
                  ns: Option<String>,
                  name: Option<String>,
                  error: String| {
        invalid.push(InvalidResource {
            file: Some(file.to_string()),
            namespace: ns,
            name,
            error,
        });
    };
    let docs: Vec<Value> = match serde_saphyr::from_multiple(text) {
        Ok(d) => d,
        Err(e) => {
            let at = located_message(&e, text, 0);
            return report(invalid, None, None, format!("not valid YAML: {at}"));
        }
    };
    let texts = document_texts(text, &docs);
    for (i, doc) in docs.iter().enumerate() {
        if doc.is_null() {
            continue;
        }
        let kind = doc["kind"].as_str().unwrap_or_default();
        let api = doc["apiVersion"].as_str().unwrap_or_default();
        let ns = doc["metadata"]["namespace"].as_str().map(str::to_string);
        let name = doc["metadata"]["name"].as_str().map(str::to_string);
        let own_group = api.split('/').next() == API_VERSION.split('/').next();
        if kind != "MetricAccess" {
            // Other Kubernetes objects may share the folder (a kustomization's neighbours);
            // a document without a kind, or of our group with another kind, is a broken CR.
            if kind.is_empty() || own_group {
                let doc_line = texts.as_ref().map(|t| t[i].0);
                let at = doc_line
                    .map(|l| format!("document at line {l}: "))
                    .unwrap_or_default();
                let error = if kind.is_empty() {
                    format!("{at}not a Kubernetes object (no `kind`); expected kind: MetricAccess")
                } else {
                    format!("{at}kind {kind:?} is not \"MetricAccess\"")
                };
                report(invalid, ns, name, error);
            } else {
                tracing::debug!(file = %file, kind, "skipping a document that is not a MetricAccess");
            }
            continue;
        }
        let located = texts.as_ref().map(|t| t[i]);
        match check_document(doc, located, ns.as_deref(), name.as_deref()) {
            Ok((spec, policy)) => loaded.push(Loaded {
                file: Some(file.to_string()),
                namespace: ns.unwrap_or_default(),
                name: name.unwrap_or_default(),
                spec,
                policy,
            }),
            Err(e) => report(invalid, ns, name, e),
        }
    }
}

/// Each document's first line (1-based) and text, aligned with `docs` (what `from_multiple`
/// returned). `None` when the split by `---` lines does not reproduce `docs` (directives,
/// `...` markers): then errors go without line numbers rather than with wrong ones.
fn document_texts<'a>(text: &'a str, docs: &[Value]) -> Option<Vec<(u64, &'a str)>> {
    let mut chunks = Vec::new();
    let (mut start, mut start_line, mut offset) = (0usize, 1u64, 0usize);
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let is_start =
            line.starts_with("---") && line[3..].chars().next().is_none_or(char::is_whitespace);
        if is_start && offset > start {
            chunks.push((start_line, &text[start..offset]));
            start = offset;
            start_line = i as u64 + 1;
        }
        offset += line.len();
    }
    chunks.push((start_line, &text[start..]));
    let mut out = Vec::new();
    for (line, chunk) in chunks {
        let blank = chunk.lines().all(|l| {
            let l = l.trim();
            l.is_empty() || l.starts_with('#') || l == "---"
        });
        if blank {
            continue;
        }
        match serde_saphyr::from_str::<Value>(chunk) {
            Ok(Value::Null) => {}
            Ok(v) => out.push((v, (line, chunk))),
            Err(_) => return None,
        }
    }
    let aligned = out.len() == docs.len() && out.iter().zip(docs).all(|((v, _), d)| v == d);
    aligned.then(|| out.into_iter().map(|(_, t)| t).collect())
}

/// Everything that makes a CR unusable, as one message. `located`: the document's first line
/// and text, used to point at the line of a schema error.
pub(crate) fn check_document(
    doc: &Value,
    located: Option<(u64, &str)>,
    ns: Option<&str>,
    name: Option<&str>,
) -> Result<(MetricAccessSpec, Policy), String> {
    let api = doc["apiVersion"].as_str().unwrap_or_default();
    if api != API_VERSION {
        return Err(format!("apiVersion {api:?} is not {API_VERSION:?}"));
    }
    let ns = ns.ok_or("metadata.namespace is required: it names the tenant")?;
    crate::names::validate_tenant_id(ns).map_err(|e| format!("metadata.namespace: {e}"))?;
    name.filter(|n| !n.is_empty())
        .ok_or("metadata.name is required")?;
    // Parsing the document's own text again gives serde-saphyr's line and column.
    let at_line = || {
        let (line, text) = located?;
        let e = serde_saphyr::from_str::<MetricAccess>(text).err()?;
        Some(located_message(&e, text, line - 1))
    };
    let unknown = super::crd::unknown_fields(doc);
    if !unknown.is_empty() {
        let fields: Vec<String> = unknown
            .iter()
            .map(|path| {
                let line = located.and_then(|(first, text)| {
                    line_of_key_path(text, path).map(|l| l as u64 + first - 1)
                });
                match line {
                    Some(l) => format!("{path} (line {l})"),
                    None => path.clone(),
                }
            })
            .collect();
        return Err(format!(
            "unknown field(s): {}; the MetricAccess schema has no such field (a typo?)",
            fields.join(", ")
        ));
    }
    let cr: MetricAccess = serde_json::from_value(doc.clone()).map_err(|e| match at_line() {
        Some(at) => format!("invalid MetricAccess: {at}"),
        None => format!("invalid MetricAccess: {e}"),
    })?;
    let problems = cr.validate();
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let policy = Policy::from_spec(ns, &cr.spec).map_err(|e| e.to_string())?;
    Ok((cr.spec, policy))
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

/// What the folder looks like now (`None`: it cannot be read); the poll reloads when it changes.
type Fingerprint = Option<Vec<(PathBuf, u64, Option<SystemTime>)>>;

fn fingerprint(dir: &Path) -> Fingerprint {
    let files = yaml_files(dir).ok()?;
    Some(
        files
            .into_iter()
            .map(|p| {
                let meta = std::fs::metadata(&p).ok();
                let len = meta.as_ref().map_or(0, |m| m.len());
                let mtime = meta.and_then(|m| m.modified().ok());
                (p, len, mtime)
            })
            .collect(),
    )
}

/// Load `dir` into `store` now, then keep it in sync until the task is aborted.
///
/// Two triggers: file-system events (inotify; a change applies within ~0.2s) and a poll of
/// names, sizes and mtimes every 0.5s for where events do not arrive (network filesystems,
/// a folder that does not exist yet). Must be called within a Tokio runtime.
pub fn spawn_file_source(dir: PathBuf, store: Arc<TenantStore>) -> tokio::task::JoinHandle<()> {
    // Watch and fingerprint before the first load, so a change made meanwhile is not missed.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = Watch::new(tx);
    watcher.arm(&dir);
    let mut last = fingerprint(&dir);
    apply(&dir, &store);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let event = tokio::select! {
                _ = tick.tick() => false,
                Some(()) = rx.recv() => {
                    // Let an editor finish writing (several events) before reading.
                    tokio::time::sleep(DEBOUNCE).await;
                    while rx.try_recv().is_ok() {}
                    true
                }
            };
            watcher.arm(&dir);
            let now = fingerprint(&dir);
            // An event reloads even when sizes and mtimes look the same (coarse mtimes).
            if event || now != last {
                last = now;
                apply(&dir, &store);
            }
        }
    })
}

/// Time to let a burst of file-system events settle.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// The notify watcher, (re)armed once the folder exists.
struct Watch {
    watcher: Option<notify::RecommendedWatcher>,
    armed: Option<PathBuf>,
}

impl Watch {
    fn new(tx: tokio::sync::mpsc::UnboundedSender<()>) -> Watch {
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            // Our own reads show up as open/read events: only changes matter.
            if let Ok(event) = res
                && !is_read_only(&event.kind)
            {
                let _ = tx.send(());
            }
        })
        .map_err(
            |e| tracing::warn!(error = %e, "file watcher unavailable; polling the tenants folder"),
        )
        .ok();
        Watch {
            watcher,
            armed: None,
        }
    }

    /// Watch `dir` if it is not watched yet and exists; forget it when it is gone (a folder
    /// deleted and created again needs a new watch).
    fn arm(&mut self, dir: &Path) {
        use notify::Watcher;
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        let exists = dir.is_dir();
        if self.armed.is_some() && !exists {
            let _ = w.unwatch(dir);
            self.armed = None;
        }
        if self.armed.is_none() && exists {
            match w.watch(dir, notify::RecursiveMode::Recursive) {
                Ok(()) => self.armed = Some(dir.to_path_buf()),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the tenants folder; polling it");
                    // Do not retry every tick; the poll covers it.
                    self.watcher = None;
                }
            }
        }
    }
}

fn is_read_only(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => false,
        EventKind::Access(_) => true,
        _ => false,
    }
}

fn apply(dir: &Path, store: &TenantStore) {
    let snapshot = load_dir(dir);
    if !dir.is_dir() {
        tracing::error!(dir = %dir.display(), "the tenants folder does not exist or is not a folder: no tenant can read; waiting for it to appear");
    }
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
