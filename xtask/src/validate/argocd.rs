//! ArgoCD objects: the repository paths an Application or ApplicationSet points at exist.
//! Checked: `spec.source.path`, `spec.sources[].path`, the same under `spec.template.spec`,
//! and the git generators' `directories[].path` / `files[].path` (globs such as
//! `gitops/tenants/*` must match at least one entry), matrix/merge generators included.
//! Sources of another repository (a `repoURL` not naming this one) and templated paths
//! (`{{...}}`) are skipped. Other ArgoCD kinds: only the generic apiVersion/kind/name check.

use std::path::Path;

use serde_json::Value;

/// A `repoURL` is this repository's when it names it (or when there is none).
const REPO_NAME: &str = "prometheus-multi-tenant-proxy";

fn ours(source: &Value) -> bool {
    source
        .get("repoURL")
        .and_then(Value::as_str)
        .is_none_or(|u| u.contains(REPO_NAME))
}

/// `(where, path)` of every source path of an Application spec.
fn source_paths(spec: &Value, at: &str, out: &mut Vec<(String, String)>) {
    let mut sources: Vec<(String, &Value)> = Vec::new();
    if let Some(s) = spec.get("source") {
        sources.push((format!("{at}.source.path"), s));
    }
    for (i, s) in spec
        .get("sources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        sources.push((format!("{at}.sources[{i}].path"), s));
    }
    for (field, s) in sources {
        if let Some(p) = s.get("path").and_then(Value::as_str)
            && ours(s)
        {
            out.push((field, p.to_string()));
        }
    }
}

/// Paths of git generators, recursing into matrix and merge generators.
fn generator_paths(generators: &Value, at: &str, out: &mut Vec<(String, String)>) {
    for (i, g) in generators.as_array().into_iter().flatten().enumerate() {
        let here = format!("{at}[{i}]");
        if let Some(git) = g.get("git")
            && ours(git)
        {
            for list in ["directories", "files"] {
                for (j, d) in git
                    .get(list)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    let excluded = d.get("exclude").and_then(Value::as_bool) == Some(true);
                    if let (Some(p), false) = (d.get("path").and_then(Value::as_str), excluded) {
                        out.push((format!("{here}.git.{list}[{j}].path"), p.to_string()));
                    }
                }
            }
        }
        for nested in ["matrix", "merge"] {
            if let Some(inner) = g.pointer(&format!("/{nested}/generators")) {
                generator_paths(inner, &format!("{here}.{nested}.generators"), out);
            }
        }
    }
}

/// One path segment with `*`, `?` or `[...]` as a regex (Go's path.Match, without escapes).
fn segment_regex(seg: &str) -> Option<regex::Regex> {
    let mut re = String::from("^");
    for c in seg.chars() {
        match c {
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '[' | ']' => re.push(c),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re).ok()
}

/// Whether `pattern` (relative to `root`, may hold globs) matches something.
pub fn matches_something(root: &Path, pattern: &str) -> bool {
    let pattern = pattern.trim_start_matches("./").trim_end_matches('/');
    if pattern.is_empty() || pattern == "." {
        return root.is_dir();
    }
    let mut current = vec![root.to_path_buf()];
    for seg in pattern.split('/') {
        let mut next = Vec::new();
        if !seg.contains(['*', '?', '[']) {
            next.extend(current.iter().map(|d| d.join(seg)).filter(|p| p.exists()));
        } else if let Some(re) = segment_regex(seg) {
            for d in &current {
                let Ok(entries) = std::fs::read_dir(d) else {
                    continue;
                };
                next.extend(
                    entries
                        .filter_map(|e| e.ok())
                        .filter(|e| re.is_match(&e.file_name().to_string_lossy()))
                        .map(|e| e.path()),
                );
            }
        }
        if next.is_empty() {
            return false;
        }
        current = next;
    }
    true
}

/// Findings for one object (empty for non-ArgoCD objects).
pub fn check(root: &Path, api_version: &str, kind: &str, obj: &Value) -> Vec<String> {
    if !api_version.starts_with("argoproj.io/") {
        return Vec::new();
    }
    let mut paths = Vec::new();
    match kind {
        "Application" => {
            if let Some(spec) = obj.get("spec") {
                source_paths(spec, "spec", &mut paths);
            }
        }
        "ApplicationSet" => {
            if let Some(spec) = obj.pointer("/spec/template/spec") {
                source_paths(spec, "spec.template.spec", &mut paths);
            }
            if let Some(g) = obj.pointer("/spec/generators") {
                generator_paths(g, "spec.generators", &mut paths);
            }
        }
        _ => {}
    }
    paths
        .into_iter()
        .filter(|(_, p)| !p.contains("{{"))
        .filter(|(_, p)| !matches_something(root, p))
        .map(|(field, p)| format!("{field} {p:?} does not exist in the repository"))
        .collect()
}
