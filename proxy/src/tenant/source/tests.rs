use std::time::{Duration, Instant};

use super::*;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn cr(ns: &str, name: &str, metrics: &str) -> String {
    format!(
        "apiVersion: observability.ethos.io/v1alpha1\nkind: MetricAccess\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  metrics: [{metrics}]\n"
    )
}

fn workspace(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(p)
}

#[test]
fn fixture_tenants_all_load() {
    let dir = workspace("fixtures/tenants");
    if fingerprint(&dir).is_none_or(|files| files.is_empty()) {
        eprintln!("fixtures/tenants has no YAML files yet: skipped");
        return;
    }
    let snap = load_dir(&dir);
    assert!(snap.invalid.is_empty(), "{:?}", snap.invalid);
    assert!(!snap.tenants.is_empty());
    // Two CRs in team-b merge for reads.
    if let Some(b) = snap.tenants.get("team-b") {
        assert_eq!(b.resources, ["team-b-containers", "team-b-workloads"]);
    }
    if let Some(e) = snap.tenants.get("team-e") {
        assert!(e.policy.is_empty(), "no metrics: deny by default");
    }
}

#[test]
fn every_seed_example_parses_and_validates() {
    let snap = load_dir(&workspace("fixtures/tenants-examples"));
    assert!(snap.invalid.is_empty(), "{:?}", snap.invalid);
    let crs: usize = snap.tenants.values().map(|t| t.resources.len()).sum();
    assert_eq!(crs, 8);
}

#[test]
fn multi_document_files_and_an_invalid_cr_that_spares_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}---\n{}---\n{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\n",
        cr("a", "one", "up"),
        cr("b", "bad", "\"{a=\\\"1\\\" or b=\\\"2\\\"}\""),
        cr("c", "three", "\"http_.*\"")
    );
    write(dir.path(), "all.yaml", &text);
    let snap = load_dir(dir.path());
    assert_eq!(snap.tenants.keys().collect::<Vec<_>>(), ["a", "c"]);
    assert_eq!(snap.invalid.len(), 1, "{:?}", snap.invalid);
    let bad = &snap.invalid[0];
    assert_eq!(
        (bad.namespace.as_deref(), bad.name.as_deref()),
        (Some("b"), Some("bad"))
    );
    assert!(bad.error.contains("or b="), "{}", bad.error);
}

#[test]
fn reports_typos_missing_namespace_duplicates_and_broken_yaml() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.yaml",
        &cr("a", "x", "up").replace("metrics:", "metricz:"),
    );
    write(
        dir.path(),
        "b.yaml",
        &cr("b", "x", "up").replace("  namespace: b\n", ""),
    );
    write(dir.path(), "c1.yaml", &cr("c", "same", "up"));
    write(dir.path(), "c2.yaml", &cr("c", "same", "up"));
    write(dir.path(), "d.yaml", "kind: MetricAccess\nmetadata: [\n");
    write(
        dir.path(),
        "e.yaml",
        &cr("e", "x", "up").replace("v1alpha1", "v1"),
    );
    let snap = load_dir(dir.path());
    let errors: Vec<String> = snap
        .invalid
        .iter()
        .map(|i| format!("{:?}: {}", i.file, i.error))
        .collect();
    let all = errors.join("\n");
    assert!(all.contains("unknown field(s): spec.metricz"), "{all}");
    assert!(all.contains("metadata.namespace is required"), "{all}");
    let dup = snap
        .invalid
        .iter()
        .find(|i| i.namespace.as_deref() == Some("c"))
        .unwrap();
    assert!(dup.file.as_deref().unwrap().ends_with("c2.yaml"), "{dup:?}");
    assert!(
        dup.error
            .starts_with("duplicate MetricAccess c/same: already defined in")
            && dup.error.contains("c1.yaml"),
        "{dup:?}"
    );
    assert!(
        all.contains("d.yaml") && all.contains("not valid YAML: line"),
        "{all}"
    );
    assert!(all.contains("apiVersion"), "{all}");
    assert_eq!(snap.tenants.keys().collect::<Vec<_>>(), ["c"]);
}

#[test]
fn remote_write_problems_make_the_cr_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}  remoteWrite:\n    enabled: true\n    interval: 1s\n    target: {{type: pushgateway}}\n    metricRelabelings:\n      - regex: \"(\"\n",
        cr("a", "x", "up")
    );
    write(dir.path(), "a.yaml", &text);
    let snap = load_dir(dir.path());
    let e = &snap.invalid[0].error;
    assert!(
        e.contains("at least 5s")
            && e.contains("spec.remoteWrite.pushgateway")
            && e.contains("metricRelabelings[0].regex"),
        "{e}"
    );
}

#[test]
fn missing_folder_is_reported() {
    let snap = load_dir(Path::new("/nonexistent/tenants"));
    assert!(snap.loaded && snap.tenants.is_empty());
    assert!(
        snap.invalid[0]
            .error
            .contains("cannot read the tenants folder")
    );
}

async fn wait_for(store: &TenantStore, what: &str, f: impl Fn(&TenantSnapshot) -> bool) {
    let t0 = Instant::now();
    while !f(&store.snapshot()) {
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "{what} not applied within 2s: {:?}",
            store.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn watched_changes_apply_within_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &cr("a", "x", "up"));
    let store = Arc::new(TenantStore::new());
    let task = spawn_file_source(dir.path().to_path_buf(), store.clone());
    assert!(store.get("a").is_some(), "loaded before the task runs");

    write(dir.path(), "b.yaml", &cr("b", "bee", "up"));
    wait_for(&store, "a new file", |s| s.tenants.contains_key("b")).await;

    write(dir.path(), "a.yaml", &cr("a", "x", "up, node_load1"));
    wait_for(&store, "a modified file", |s| {
        s.tenants["a"]
            .policy
            .clause_selectors()
            .iter()
            .any(|c| c.contains("node_load1"))
    })
    .await;

    write(dir.path(), "a.yaml", "not: [valid");
    wait_for(&store, "a broken file", |s| {
        !s.tenants.contains_key("a") && s.invalid.len() == 1
    })
    .await;
    assert!(store.get("b").is_some(), "the other tenant keeps working");

    std::fs::remove_file(dir.path().join("b.yaml")).unwrap();
    wait_for(&store, "a deleted file", |s| !s.tenants.contains_key("b")).await;
    task.abort();
}

#[test]
fn errors_point_at_the_line_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // Second document: a typo at line 18; third: a wrong type at line 27 of the file.
    let text = format!(
        "{}---\n{}  remoteWrite:\n    enabled: true\n    targett: {{type: prometheus}}\n---\n{}  metricIsolation: maybe\n",
        cr("a", "one", "up"),
        cr("b", "two", "up"),
        cr("c", "three", "up"),
    );
    write(dir.path(), "t.yaml", &text);
    let snap = load_dir(dir.path());
    let errors: BTreeMap<_, _> = snap
        .invalid
        .iter()
        .map(|i| (i.namespace.clone().unwrap(), i.error.clone()))
        .collect();
    assert!(
        errors["b"].starts_with("unknown field(s): spec.remoteWrite.targett (line 18)"),
        "{errors:?}"
    );
    assert!(
        errors["c"].starts_with("invalid MetricAccess: line 27 column "),
        "{errors:?}"
    );
    assert_eq!(snap.tenants.keys().collect::<Vec<_>>(), ["a"]);
}

#[test]
fn documents_without_kind_or_with_a_misspelt_kind_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "# leading comment\n---\nmetadata: {{name: x, namespace: a}}\nspec: {{metrics: [up]}}\n---\n{}",
        cr("b", "y", "up").replace("kind: MetricAccess", "kind: MetricAcess")
    );
    write(dir.path(), "t.yaml", &text);
    // Hidden files and other extensions are not read.
    write(dir.path(), ".hidden.yaml", "not: [valid");
    write(dir.path(), "notes.txt", "not: [valid");
    let snap = load_dir(dir.path());
    let all: Vec<&str> = snap.invalid.iter().map(|i| i.error.as_str()).collect();
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(
        all[0].starts_with("document at line 2: not a Kubernetes object (no `kind`)"),
        "{all:?}"
    );
    assert!(all[1].contains("kind \"MetricAcess\" is not"), "{all:?}");
}

#[tokio::test]
async fn a_missing_folder_is_picked_up_when_it_appears() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("tenants");
    let store = Arc::new(TenantStore::new());
    let task = spawn_file_source(dir.clone(), store.clone());
    let snap = store.snapshot();
    assert!(snap.loaded && snap.tenants.is_empty() && snap.invalid.len() == 1);

    // An empty folder appearing clears the error.
    std::fs::create_dir(&dir).unwrap();
    wait_for(&store, "an empty folder", |s| s.invalid.is_empty()).await;
    write(&dir, "a.yaml", &cr("a", "x", "up"));
    wait_for(&store, "a file in the new folder", |s| {
        s.tenants.contains_key("a")
    })
    .await;

    // Deleted and created again: still followed.
    std::fs::remove_dir_all(&dir).unwrap();
    wait_for(&store, "the folder removed", |s| s.tenants.is_empty()).await;
    std::fs::create_dir(&dir).unwrap();
    write(&dir, "b.yaml", &cr("b", "x", "up"));
    wait_for(&store, "the folder back", |s| s.tenants.contains_key("b")).await;
    task.abort();
}

#[tokio::test]
async fn a_same_size_rewrite_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &cr("a", "x", "aa"));
    let store = Arc::new(TenantStore::new());
    let task = spawn_file_source(dir.path().to_path_buf(), store.clone());
    let before = std::fs::metadata(dir.path().join("a.yaml")).unwrap();
    write(dir.path(), "a.yaml", &cr("a", "x", "bb"));
    // Same length; keep the old mtime too, as a coarse-mtime filesystem would.
    let f = std::fs::File::options()
        .write(true)
        .open(dir.path().join("a.yaml"))
        .unwrap();
    f.set_modified(before.modified().unwrap()).unwrap();
    drop(f);
    wait_for(&store, "a same-size rewrite", |s| {
        s.tenants["a"].policy.clause_selectors()[0].contains("bb")
    })
    .await;
    task.abort();
}

#[test]
fn load_text_is_load_dir_without_the_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}---\n{}",
        cr("a", "one", "up"),
        cr("", "nameless-ns", "up")
    );
    write(dir.path(), "t.yaml", &text);
    let from_dir = load_dir(dir.path());
    let file = dir.path().join("t.yaml").display().to_string();
    let from_text = load_text(&file, &text);
    let json = |s: &TenantSnapshot| serde_json::to_value((&s.tenants, &s.invalid)).unwrap();
    assert_eq!(json(&from_text), json(&from_dir));
    assert_eq!(from_text.tenants.keys().collect::<Vec<_>>(), ["a"]);
    assert_eq!(from_text.invalid.len(), 1, "{:?}", from_text.invalid);
    assert_eq!(from_text.invalid[0].file.as_deref(), Some(file.as_str()));
}
