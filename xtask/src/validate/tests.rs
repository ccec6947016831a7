//! The real repository validates clean; the miniature broken repository
//! (xtask/tests/fixtures/validate) makes each check fail with the file and the reason.
//! Without kubectl: a loud SKIP locally, a failure under CI (`$CI` set), like the e2e suite
//! without Prometheus.

use std::path::PathBuf;

use serde_json::json;

use super::*;

fn workspace() -> PathBuf {
    crate::workspace_root()
}

fn kubectl_or_skip() -> Option<PathBuf> {
    let found = find_kubectl();
    if found.is_none() {
        let msg = "kubectl not found: the manifest validation needs it (`kubectl kustomize`); \
                   install kubectl or set $KUBECTL";
        if std::env::var_os("CI").is_some() {
            panic!("{msg} (CI is set, so this is a failure, not a skip)");
        }
        let bar = "!".repeat(72);
        eprintln!("\n{bar}\n!! SKIP: {msg}\n{bar}\n");
    }
    found
}

#[test]
fn the_repository_manifests_validate_clean() {
    let Some(kubectl) = kubectl_or_skip() else {
        return;
    };
    let root = workspace();
    let findings = validate_tree(&root, &root.join(CRD), &kubectl).unwrap();
    let text: Vec<String> = findings.iter().map(ToString::to_string).collect();
    assert!(text.is_empty(), "manifest problems:\n{}", text.join("\n"));
    // What was covered, so that a discovery bug cannot pass silently.
    assert!(render_dirs(&root).contains(&root.join("kustomize/base")));
    let files = raw_files(&root);
    assert!(
        files.contains(&root.join("fixtures/tenants/team-a.yaml")),
        "{files:?}"
    );
    assert!(
        files.contains(&root.join("fixtures/tenants-examples/seed-examples.yaml")),
        "{files:?}"
    );
}

fn broken_findings() -> Option<Vec<String>> {
    let kubectl = kubectl_or_skip()?;
    let root = workspace().join("xtask/tests/fixtures/validate");
    let findings = validate_tree(&root, &workspace().join(CRD), &kubectl).unwrap();
    Some(findings.iter().map(ToString::to_string).collect())
}

fn assert_has(findings: &[String], wanted: &str) {
    assert!(
        findings.iter().any(|f| f.contains(wanted)),
        "no finding contains {wanted:?}; findings:\n{}",
        findings.join("\n")
    );
}

#[test]
fn the_broken_sample_fails_every_check_with_file_and_reason() {
    let Some(findings) = broken_findings() else {
        return;
    };
    assert!(
        !findings
            .iter()
            .any(|f| f.starts_with("kustomize/overlays/good")),
        "false positives:\n{}",
        findings.join("\n")
    );
    assert!(
        !findings
            .iter()
            .any(|f| f.starts_with("kustomize/components"))
    );
    for wanted in [
        "kustomize/overlays/broken: Deployment/broken-app: unknown field .spec.replica ",
        "kustomize/overlays/broken: Deployment/broken-app: container \"app\": image \"nginx:latest\" uses the `latest` tag",
        "kustomize/overlays/broken: Deployment/broken-app: container \"sidecar\": no resources.requests",
        "kustomize/overlays/broken: Deployment/broken-app: container \"shell\": image \"registry.local:5000/tools/shell\" has no tag",
        "kustomize/overlays/broken: Deployment/broken-app: container \"shell\": securityContext.allowPrivilegeEscalation is not false",
        "kustomize/overlays/unrenderable: -: `kubectl kustomize` failed: ",
        "argocd/apps.yaml: Application/monitoring-root: spec.source.path \"gitops/clusters/monitoring\" does not exist",
        "argocd/apps.yaml: ApplicationSet/tenants: spec.generators[0].matrix.generators[1].git.directories[0].path \"gitops/teams/*\" does not exist",
        "gitops/tenants/team-x: MetricAccess/team-x: .spec.metricIsolation: expected boolean, got string",
        "gitops/tenants/team-x: MetricAccess/team-x: .spec.metricz: unknown field",
        "fixtures/tenants/bad.yaml: MetricAccess/bad: .spec.remoteWrite.interval: expected string, got integer",
        "fixtures/tenants/bad.yaml: MetricAccess/bad: .spec.remoteWrite.prometheus.statefullSetName: unknown field",
        "fixtures/tenants/bad.yaml: MetricAccess/bad: .spec.remoteWrite.prometheus.replicas: -1 is below the minimum",
        "fixtures/tenants/bad.yaml: MetricAccess/future: apiVersion observability.ethos.io/v1beta9: the CRD has no version v1beta9",
    ] {
        assert_has(&findings, wanted);
    }
    // Paths that exist, helm sources and templated paths are not reported.
    assert!(
        !findings
            .iter()
            .any(|f| f.contains("Application/kind-overlay"))
    );
    assert!(!findings.iter().any(|f| f.contains("gitops/tenants/*")));
    assert!(!findings.iter().any(|f| f.contains("{{path}}")));
}

/// The whole report, kubectl's own wording redacted.
#[test]
fn the_broken_sample_report() {
    let Some(findings) = broken_findings() else {
        return;
    };
    let report: Vec<String> = findings
        .iter()
        .map(|f| match f.split_once("`kubectl kustomize` failed: ") {
            Some((head, _)) => format!("{head}`kubectl kustomize` failed: [kubectl's message]"),
            None => f.clone(),
        })
        .collect();
    insta::assert_snapshot!(report.join("\n"));
}

#[test]
fn image_pins() {
    use workload::image_problem;
    for ok in [
        "nginx:1.27",
        "ghcr.io/ethos/pmtp:0.1.0",
        "registry.local:5000/a/b:v1",
        "quay.io/x@sha256:abcd",
        "quay.io/x:1@sha256:abcd",
    ] {
        assert_eq!(image_problem(ok), None, "{ok}");
    }
    for bad in ["nginx", "nginx:latest", "registry.local:5000/a/b", ""] {
        assert!(image_problem(bad).is_some(), "{bad}");
    }
}

#[test]
fn schema_walker() {
    let schema = json!({
        "type": "object",
        "required": ["a"],
        "properties": {
            "a": {"type": "string", "enum": ["x", "y"]},
            "n": {"type": "integer", "format": "int32", "minimum": 1},
            "p": {"type": "string", "pattern": "^[a-z]+$"},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {}},
            "m": {"type": "object", "additionalProperties": {"type": "integer"}},
            "ios": {"x-kubernetes-int-or-string": true},
            "opt": {"type": "string", "nullable": true},
            "list": {"type": "array", "maxItems": 1, "items": {"type": "boolean"}}
        }
    });
    let mut errs = Vec::new();
    schema::walk(
        &schema,
        &json!({"a": "x", "n": 3, "p": "abc", "free": {"any": 1}, "m": {"k": 1},
                "ios": "50%", "opt": null, "list": [true]}),
        "",
        &mut errs,
    );
    assert!(errs.is_empty(), "{errs:?}");
    schema::walk(
        &schema,
        &json!({"a": "z", "n": 0, "p": "ABC", "m": {"k": "1"}, "ios": 1.5, "list": [true, 1],
                "typo": 1}),
        "",
        &mut errs,
    );
    insta::assert_debug_snapshot!(errs);
}

#[test]
fn globs_match_existing_entries() {
    let root = workspace();
    assert!(argocd::matches_something(&root, "kustomize/base"));
    assert!(argocd::matches_something(&root, "fixtures/tenants/*"));
    assert!(argocd::matches_something(
        &root,
        "./fixtures/tenant?/team-a.yaml"
    ));
    assert!(!argocd::matches_something(&root, "fixtures/nothing/*"));
    assert!(!argocd::matches_something(
        &root,
        "kustomize/overlays/nowhere"
    ));
}

#[test]
fn components_are_not_rendered_alone() {
    let root = workspace().join("xtask/tests/fixtures/validate");
    let dirs: Vec<String> = render_dirs(&root).iter().map(|d| rel(&root, d)).collect();
    assert_eq!(
        dirs,
        [
            "kustomize/overlays/broken",
            "kustomize/overlays/good",
            "kustomize/overlays/unrenderable",
            "gitops/tenants/team-x"
        ]
    );
    let files: Vec<String> = raw_files(&root).iter().map(|f| rel(&root, f)).collect();
    assert_eq!(files, ["argocd/apps.yaml", "fixtures/tenants/bad.yaml"]);
}

/// The rendered clusters of the real overlays, by overlay name.
fn real_clusters() -> Option<Vec<(String, Vec<serde_json::Value>)>> {
    let kubectl = kubectl_or_skip()?;
    let root = workspace();
    let overlays = reach::overlays(&root);
    Some(
        overlays
            .iter()
            .map(|o| {
                let name = o.file_name().unwrap().to_string_lossy().to_string();
                (name, reach::cluster_documents(&root, &kubectl, o).unwrap())
            })
            .collect(),
    )
}

fn reasons(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn under_every_overlay_only_the_scraper_and_the_operators_reach_the_admin_port() {
    let Some(kubectl) = kubectl_or_skip() else {
        return;
    };
    let report = reach::check_overlays(&workspace(), &kubectl);
    assert!(report.findings.is_empty(), "{}", reasons(&report.findings));
    // kind, stage and prod, each with tenants, unrelated pods, the scraper and the operators.
    assert_eq!(report.overlays, 3);
    assert!(report.connections >= 30, "{}", report.connections);
}

/// Drop the objects `remove` picks, or change them, and check again.
fn check_changed(
    docs: &[serde_json::Value],
    change: impl Fn(&mut serde_json::Value) -> bool,
) -> Vec<Finding> {
    let docs: Vec<_> = docs
        .iter()
        .cloned()
        .filter_map(|mut d| change(&mut d).then_some(d))
        .collect();
    reach::check_cluster("test", &docs).0
}

fn is_proxy_policy(d: &serde_json::Value) -> bool {
    d["kind"] == "NetworkPolicy" && d["metadata"]["name"] == "prometheus-multi-tenant-proxy"
}

#[test]
fn the_reach_check_fails_without_the_proxy_policy() {
    let Some(clusters) = real_clusters() else {
        return;
    };
    for (overlay, docs) in &clusters {
        assert!(docs.iter().any(is_proxy_policy), "{overlay}");
        let findings = check_changed(docs, |d| !is_proxy_policy(d));
        let text = reasons(&findings);
        assert!(
            text.contains("any pod in namespace unrelated-app reaches the admin port 9091"),
            "{overlay}: {text}"
        );
        assert!(
            text.contains("any pod in namespace unrelated-app reaches the http port 8080"),
            "{overlay}: {text}"
        );
        if overlay == "kind" {
            assert!(
                text.contains("Deployment/grafana in namespace monitoring reaches the admin port"),
                "{text}"
            );
        }
    }
}

#[test]
fn the_proxy_policy_alone_keeps_tenants_off_the_admin_port() {
    let Some(clusters) = real_clusters() else {
        return;
    };
    for (overlay, docs) in &clusters {
        // Without the tenants' own egress policies, the proxy's policy still refuses them.
        let findings = check_changed(docs, |d| {
            !(d["kind"] == "NetworkPolicy" && d["metadata"]["name"] == "egress-to-proxy-only")
        });
        assert!(findings.is_empty(), "{overlay}: {}", reasons(&findings));
        // And a widened admin rule is caught, for every tenant namespace (their egress
        // policies, which allow only the tenant port, taken away too).
        let findings = check_changed(docs, |d| {
            if is_proxy_policy(d) {
                d["spec"]["ingress"][1]["from"][1] = json!({"namespaceSelector": {}});
            }
            !(d["kind"] == "NetworkPolicy" && d["metadata"]["name"] == "egress-to-proxy-only")
        });
        let text = reasons(&findings);
        for tenant in ["team-a", "team-b"] {
            assert!(
                text.contains(&format!(
                    "a pod labelled app.kubernetes.io/name: prometheus in namespace {tenant} reaches the admin port 9091"
                )),
                "{overlay}: {text}"
            );
        }
    }
}
