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
    let snap = load_dir(&workspace("fixtures/tenants"));
    assert!(snap.invalid.is_empty(), "{:?}", snap.invalid);
    let names: Vec<&String> = snap.tenants.keys().collect();
    assert_eq!(names, ["team-a", "team-b", "team-c", "team-d", "team-e"]);
    // Two CRs in team-b merge for reads.
    assert_eq!(
        snap.tenants["team-b"].resources,
        ["team-b-containers", "team-b-workloads"]
    );
    assert!(
        snap.tenants["team-e"].policy.is_empty(),
        "no metrics: deny by default"
    );
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
    assert!(all.contains("duplicate MetricAccess c/same"), "{all}");
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
