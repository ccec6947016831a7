//! The module dependency rules of docs/architecture.md, checked on the source: every top-level
//! module of `src/` may name (`crate::<module>`, in `use` lines or in paths) only the modules
//! [`ALLOWED`] lists for it. Test code (files declared under `#[cfg(test)]` and the inline
//! `#[cfg(test)] mod tests { .. }` at the end of a file) and comments are not checked: tests may
//! start the whole proxy.
//!
//! A new dependency is a design decision: add it here and to docs/architecture.md together,
//! and keep the table free of cycles (checked too).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each top-level module may import. A module imports only modules listed before it,
/// except the two of [`TOP`], which import each other.
const ALLOWED: &[(&str, &[&str])] = &[
    // Leaves: no import of the crate's other modules.
    ("names", &[]),
    ("time", &[]),
    ("client", &[]),
    ("telemetry", &[]),
    ("remote_write", &[]),
    // The domain.
    ("relabel", &["names", "remote_write"]),
    ("config", &["names", "relabel"]),
    ("tenant", &["config", "names", "relabel"]),
    ("promql", &["names", "tenant"]),
    ("auth", &["client", "names"]),
    ("backend", &["client", "telemetry", "time"]),
    (
        "delivery",
        &["client", "remote_write", "telemetry", "tenant", "time"],
    ),
    (
        "ingest",
        &[
            "config",
            "delivery",
            "promql",
            "relabel",
            "remote_write",
            "telemetry",
            "time",
        ],
    ),
    (
        "collector",
        &[
            "backend",
            "client",
            "config",
            "delivery",
            "relabel",
            "remote_write",
            "telemetry",
            "tenant",
            "time",
        ],
    ),
    (
        "k8s",
        &[
            "backend",
            "client",
            "collector",
            "config",
            "telemetry",
            "tenant",
            "time",
        ],
    ),
    // The top layer, two modules that know each other: `http` routes requests to handlers over
    // `State<App>`; `app` (the composition root) builds everything and serves `http`'s routers.
    (
        "http",
        &[
            "app",
            "auth",
            "backend",
            "client",
            "config",
            "ingest",
            "names",
            "promql",
            "telemetry",
            "tenant",
        ],
    ),
    (
        "app",
        &[
            "auth",
            "backend",
            "client",
            "collector",
            "config",
            "http",
            "ingest",
            "k8s",
            "promql",
            "telemetry",
            "tenant",
        ],
    ),
];

/// The top layer: the HTTP layer's handlers run over the composition root's `App`, and the
/// composition root serves the HTTP layer's routers. Nothing else may import either.
const TOP: [&str; 2] = ["http", "app"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, as paths relative to `src/`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path.strip_prefix(src()).expect("under src").to_path_buf());
        }
    }
}

/// The folder holding the submodules of the module in `file` (`a.rs` and `a/mod.rs`: `a/`).
fn module_dir(file: &Path) -> PathBuf {
    let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let parent = file.parent().unwrap_or(Path::new(""));
    match name {
        "lib" | "main" if parent.as_os_str().is_empty() => PathBuf::new(),
        "mod" => parent.to_path_buf(),
        _ => parent.join(name),
    }
}

/// `mod name;` (any visibility) declared on the line after `#[cfg(test)]`: the module's path
/// without extension (`k8s/simulated`).
fn test_modules(file: &Path, text: &str) -> Vec<PathBuf> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut out = Vec::new();
    for pair in lines.windows(2) {
        if pair[0] != "#[cfg(test)]" {
            continue;
        }
        let declaration = pair[1]
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub(super) ")
            .trim_start_matches("pub ");
        if let Some(name) = declaration
            .strip_prefix("mod ")
            .and_then(|rest| rest.strip_suffix(';'))
        {
            out.push(module_dir(file).join(name.trim()));
        }
    }
    out
}

/// The code of `text` that is checked: comment lines dropped, and nothing from an inline
/// `#[cfg(test)] mod tests {` on.
fn checked_code(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim();
        if trimmed == "#[cfg(test)]"
            && lines.get(i + 1).is_some_and(|next| {
                let next = next.trim();
                next.ends_with("mod tests {")
            })
        {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The top-level modules `code` names: `crate::a::..` and `crate::{a::.., b}`.
fn named_modules(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| is_ident(c) || c == ':' || c == '$') {
            // `$crate::`, `my_crate::`: not this crate's path.
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // A group: the first segment of each top-level item.
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && is_ident(c) => {
                        let name: String =
                            group[i..].chars().take_while(|c| is_ident(*c)).collect();
                        out.insert(name);
                        item_start = false;
                    }
                    c if c.is_whitespace() => {}
                    _ => item_start = false,
                }
            }
        } else {
            let name: String = rest.chars().take_while(|c| is_ident(*c)).collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// Each checked top-level module and the files naming each other module, from the source.
fn dependencies() -> BTreeMap<String, BTreeMap<String, Vec<PathBuf>>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let texts: Vec<(PathBuf, String)> = files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(src().join(&f))
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            (f, text)
        })
        .collect();
    let test_only: Vec<PathBuf> = texts
        .iter()
        .flat_map(|(f, text)| test_modules(f, text))
        .collect();
    let mut out: BTreeMap<String, BTreeMap<String, Vec<PathBuf>>> = BTreeMap::new();
    for (file, text) in &texts {
        let module = file.with_extension("");
        let module = if module.file_name().is_some_and(|n| n == "mod") {
            module.parent().unwrap_or(Path::new("")).to_path_buf()
        } else {
            module
        };
        if test_only.iter().any(|t| module.starts_with(t)) {
            continue;
        }
        let top = module
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or("")
            .to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let entry = out.entry(top.clone()).or_default();
        for name in named_modules(&checked_code(text)) {
            if name != top {
                entry.entry(name).or_default().push(file.clone());
            }
        }
    }
    out
}

fn allowed() -> BTreeMap<&'static str, &'static [&'static str]> {
    ALLOWED.iter().copied().collect()
}

#[test]
fn modules_import_only_what_the_architecture_allows() {
    let allowed = allowed();
    let mut violations = Vec::new();
    for (module, imports) in dependencies() {
        let Some(may) = allowed.get(module.as_str()) else {
            continue; // reported by every_module_has_a_place
        };
        for (import, files) in imports {
            if !may.contains(&import.as_str()) {
                let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
                violations.push(format!(
                    "{module} imports {import} (in {}); allowed: {may:?}",
                    files.join(", ")
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "forbidden dependencies (see docs/architecture.md):\n{}",
        violations.join("\n")
    );
}

#[test]
fn every_module_has_a_place() {
    let allowed = allowed();
    let missing: Vec<String> = dependencies()
        .into_keys()
        .filter(|m| !allowed.contains_key(m.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "modules without a row in ALLOWED (and in docs/architecture.md): {missing:?}"
    );
    for (module, may) in ALLOWED {
        for m in *may {
            assert!(
                allowed.contains_key(m),
                "{module} may import {m}, which has no row"
            );
        }
    }
}

/// Each module may import only modules listed before it (the two of [`TOP`] each other too):
/// the table has no other cycle, and nothing below the top imports the top.
#[test]
fn the_allowed_dependencies_have_no_cycle() {
    let mut seen = BTreeSet::new();
    for (module, may) in ALLOWED {
        for m in *may {
            let top_pair = TOP.contains(module) && TOP.contains(m);
            assert!(
                seen.contains(m) || top_pair,
                "{module} may import {m}, which is not listed before it: a cycle is possible"
            );
            assert!(
                !TOP.contains(m) || TOP.contains(module),
                "{module} may import {m}: only the top layer may"
            );
        }
        seen.insert(*module);
    }
}

#[test]
fn the_scanner_reads_paths_groups_and_skips_comments_and_tests() {
    let code = "use crate::a::B;\nuse crate::{b::C, c, d::{e, f}};\nlet x = crate::g::h();\n\
                // crate::not_a_comment_import\n$crate::macro_path\n#[cfg(test)]\nmod tests {\nuse crate::t;\n";
    let names = named_modules(&checked_code(code));
    let expected: BTreeSet<String> = ["a", "b", "c", "d", "g"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, expected);
    let declared = test_modules(
        Path::new("k8s/mod.rs"),
        "#[cfg(test)]\npub mod simulated;\nmod run;\n",
    );
    assert_eq!(declared, [PathBuf::from("k8s/simulated")]);
}
