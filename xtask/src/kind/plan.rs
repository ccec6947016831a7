//! The plans: pure functions from the options to the ordered [`Step`]s that `--dry-run`
//! prints and [`super::run::Runner`] executes.

use super::*;

fn kind_checks() -> Vec<Step> {
    vec![
        Step::check(
            "docker",
            &["info", "--format", "{{.ServerVersion}}"],
            Check::Succeeds,
            "check: Docker Engine is installed and running",
        ),
        Step::check(
            "kind",
            &["version"],
            Check::KindAtLeast(0, 23),
            "check: kind >= 0.23",
        ),
        Step::check(
            "kubectl",
            &["version", "--client"],
            Check::Succeeds,
            "check: kubectl is installed",
        ),
    ]
}

fn exists(path: &str, why: &str) -> Step {
    Step::check(
        "test",
        &["-e", path],
        Check::Exists,
        &format!("check: {why}"),
    )
}

/// The plan of `cargo xtask up --kind`.
pub fn plan_up(opts: &UpOpts) -> Vec<Step> {
    let clusters = opts.clusters();
    let names: Vec<String> = clusters.iter().map(|c| cluster_name(c)).collect();
    let mut steps = kind_checks();
    steps.push(Step::check(
        "kind",
        &["get", "clusters"],
        Check::NoClusters(names.clone()),
        "check: none of the lab clusters exists yet (else `cargo xtask down --kind`)",
    ));
    steps.push(exists("Dockerfile", "the proxy image's Dockerfile"));
    for c in &clusters {
        steps.push(exists(
            &format!("fixtures/kind/{c}.yaml"),
            &format!("kind config of cluster {c}"),
        ));
    }
    if opts.argocd {
        steps.push(exists(
            "argocd/kustomization.yaml",
            "the ArgoCD bootstrap (AppProject and one app-of-apps root per cluster role)",
        ));
    } else {
        steps.push(exists("kustomize/overlays/kind", "the kind overlay"));
    }

    for (c, name) in clusters.iter().zip(&names) {
        let config = format!("fixtures/kind/{c}.yaml");
        steps.push(Step::new(
            "kind",
            &[
                "create", "cluster", "--name", name, "--config", &config, "--wait", WAIT,
            ],
            format!("create cluster {c}"),
        ));
    }
    steps.push(Step::new(
        "docker",
        &["build", "-t", IMAGE, "."],
        "build the proxy image",
    ));
    for r in &opts.roles {
        steps.push(Step::new(
            "kind",
            &[
                "load",
                "docker-image",
                IMAGE,
                "--name",
                &cluster_name(r.name()),
            ],
            format!("copy the image into cluster {}", r.name()),
        ));
    }
    if opts.argocd {
        steps.extend(argocd_steps(opts));
    } else {
        steps.extend(direct_steps(opts));
    }
    let mon = context("monitoring");
    let deploy = format!("deployment/{PROXY}");
    let timeout = format!("--timeout={WAIT}");
    steps.push(Step::kubectl(
        &mon,
        &["-n", NAMESPACE, "wait", "--for=create", &deploy, &timeout],
        "wait until the proxy Deployment exists",
    ));
    steps.push(Step::kubectl(
        &mon,
        &["-n", NAMESPACE, "rollout", "status", &deploy, &timeout],
        "wait until the proxy is rolled out",
    ));
    steps
}

/// Install ArgoCD in the control cluster, register the other clusters, apply the roots.
fn argocd_steps(opts: &UpOpts) -> Vec<Step> {
    let ctl = context("control");
    let url = format!(
        "https://raw.githubusercontent.com/argoproj/argo-cd/{ARGOCD_VERSION}/manifests/install.yaml"
    );
    let timeout = format!("--timeout={WAIT}");
    let mut steps = vec![
        Step::kubectl(
            &ctl,
            &["create", "namespace", "argocd"],
            "namespace for ArgoCD",
        ),
        Step::kubectl(
            &ctl,
            &[
                "-n",
                "argocd",
                "apply",
                "--server-side",
                "--force-conflicts",
                "-f",
                &url,
            ],
            format!("install ArgoCD {ARGOCD_VERSION}"),
        ),
    ];
    for d in ["argocd-server", "argocd-repo-server"] {
        steps.push(Step::kubectl(
            &ctl,
            &[
                "-n",
                "argocd",
                "rollout",
                "status",
                &format!("deployment/{d}"),
                &timeout,
            ],
            format!("wait for {d}"),
        ));
    }
    for r in &opts.roles {
        let role = r.name();
        let kubeconfig = format!("{WORK_DIR}/{role}.internal.kubeconfig");
        let out = format!("{WORK_DIR}/argocd-cluster-{role}.json");
        steps.push(
            Step::new(
                "kind",
                &[
                    "get",
                    "kubeconfig",
                    "--internal",
                    "--name",
                    &cluster_name(role),
                ],
                format!("kubeconfig of {role} as seen from the control cluster"),
            )
            .mode(Mode::CaptureTo(kubeconfig.clone())),
        );
        steps.push(
            Step::new(
                "cargo",
                &["xtask", "kind-secret", role, &kubeconfig, &out],
                format!("(done in-process) ArgoCD cluster Secret `{role}`"),
            )
            .mode(Mode::Internal(Internal::ClusterSecret {
                role: role.to_string(),
                kubeconfig: kubeconfig.clone(),
                out: out.clone(),
            })),
        );
        steps.push(Step::kubectl(
            &ctl,
            &["-n", "argocd", "apply", "-f", &out],
            format!("register cluster {role} with ArgoCD"),
        ));
    }
    // The AppProject and the roots; root-control brings the ApplicationSets, which pick each
    // registered cluster's overlay by its `env` label.
    steps.push(Step::kubectl(
        &ctl,
        &["-n", "argocd", "apply", "-k", "argocd"],
        "the AppProject and the app-of-apps roots (argocd/)".to_string(),
    ));
    steps
}

/// Without ArgoCD: the operator CRDs, the kind overlay and the tenants, straight to monitoring.
fn direct_steps(opts: &UpOpts) -> Vec<Step> {
    let mon = context("monitoring");
    let crds = format!(
        "https://github.com/prometheus-operator/prometheus-operator/releases/download/\
         {PROMETHEUS_OPERATOR_VERSION}/stripped-down-crds.yaml"
    );
    let mut steps = vec![
        Step::kubectl(
            &mon,
            &["apply", "--server-side", "-f", &crds],
            format!("prometheus-operator {PROMETHEUS_OPERATOR_VERSION} CRDs (ServiceMonitor, ...)"),
        ),
        Step::kubectl(
            &mon,
            &[
                "wait",
                "--for=condition=established",
                "crd/servicemonitors.monitoring.coreos.com",
                "crd/prometheusrules.monitoring.coreos.com",
                &format!("--timeout={WAIT}"),
            ],
            "wait until the operator CRDs are served",
        ),
        Step::kubectl(
            &mon,
            &["apply", "-k", "kustomize/overlays/kind"],
            "the proxy, its CRD and Prometheus (kind overlay)",
        ),
        Step::kubectl(
            &mon,
            &[
                "wait",
                "--for=condition=established",
                "crd/metricaccesses.observability.ethos.io",
                &format!("--timeout={WAIT}"),
            ],
            "wait until the MetricAccess CRD is served",
        ),
    ];
    for dir in &opts.tenant_dirs {
        steps.push(Step::kubectl(
            &mon,
            &["apply", "-k", dir],
            format!("tenant {}", dir.rsplit('/').next().unwrap_or(dir)),
        ));
    }
    steps
}

/// The plan of `cargo xtask down --kind`: delete every lab cluster (absent ones are no-ops).
pub fn plan_down() -> Vec<Step> {
    let mut steps = vec![Step::check(
        "kind",
        &["version"],
        Check::KindAtLeast(0, 23),
        "check: kind >= 0.23",
    )];
    for c in ["control", "monitoring", "stage", "prod"] {
        steps.push(Step::new(
            "kind",
            &["delete", "cluster", "--name", &cluster_name(c)],
            format!("delete cluster {c}"),
        ));
    }
    steps
}

/// The plan of `cargo xtask e2e --kind`: port-forward the proxy and the infra Prometheus of
/// the monitoring cluster, run the e2e crate against them.
pub fn plan_e2e(cargo_args: &[String]) -> Vec<Step> {
    let mon = context("monitoring");
    let forward = |svc: &str, local: u16, remote: u16, what: &str| {
        Step::kubectl(
            &mon,
            &[
                "-n",
                NAMESPACE,
                "port-forward",
                &format!("svc/{svc}"),
                &format!("{local}:{remote}"),
            ],
            format!("port-forward {what}"),
        )
        .mode(Mode::Background { port: local })
    };
    let mut test = Step::new(
        "cargo",
        &["test", "-p", "e2e", "--test", "kind"],
        "the e2e suite against kind",
    );
    test.args.extend(cargo_args.iter().cloned());
    // The kind tests are ignored unless a cluster is there to run them against.
    if !cargo_args.iter().any(|a| a == "--") {
        test.args.push("--".into());
    }
    test.args.push("--include-ignored".into());
    test.env = vec![
        ("PMTP_E2E_KIND".into(), "1".into()),
        ("PMTP_E2E_PROXY_URL".into(), url(LOCAL_PROXY_PORT)),
        ("PMTP_E2E_PROMETHEUS_URL".into(), url(LOCAL_PROMETHEUS_PORT)),
    ];
    vec![
        Step::check(
            "kubectl",
            &["version", "--client"],
            Check::Succeeds,
            "check: kubectl is installed",
        ),
        Step::check(
            "kubectl",
            &["--context", &mon, "get", "--raw", "/readyz"],
            Check::Succeeds,
            "check: the monitoring cluster answers (`cargo xtask up --kind` first)",
        ),
        forward(PROXY, LOCAL_PROXY_PORT, PROXY_PORT, "the proxy"),
        forward(
            INFRA_PROMETHEUS,
            LOCAL_PROMETHEUS_PORT,
            INFRA_PROMETHEUS_PORT,
            "the infra Prometheus",
        ),
        test,
    ]
}

pub fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}
