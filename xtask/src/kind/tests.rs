//! The kind plans as snapshots (what `--dry-run` prints), and the runner's preflight without
//! Docker.

use std::ffi::OsString;
use std::path::Path;

use super::run::{Runner, kind_version};
use super::secret::cluster_secret;
use super::*;

fn render(steps: &[Step]) -> String {
    steps.iter().map(|s| format!("{s}\n")).collect()
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
}

#[test]
fn up_kind_dry_run_with_argocd() {
    let opts = UpOpts::new(&[], true, Vec::new()).unwrap();
    insta::assert_snapshot!(render(&plan_up(&opts)));
}

#[test]
fn up_kind_dry_run_without_argocd() {
    let tenants = vec![
        "gitops/tenants/team-a".into(),
        "gitops/tenants/team-b".into(),
    ];
    let opts = UpOpts::new(&[Role::Monitoring], false, tenants).unwrap();
    insta::assert_snapshot!(render(&plan_up(&opts)));
}

#[test]
fn down_kind_dry_run() {
    insta::assert_snapshot!(render(&plan_down()));
}

#[test]
fn e2e_kind_dry_run() {
    insta::assert_snapshot!(render(&plan_e2e(&[])));
}

#[test]
fn endpoints_after_up() {
    let opts = UpOpts::new(&[], true, Vec::new()).unwrap();
    insta::assert_snapshot!(endpoints(&opts).join("\n"));
}

#[test]
fn clusters_are_deduplicated_ordered_and_need_monitoring() {
    let opts = UpOpts::new(&[Role::Prod, Role::Monitoring, Role::Prod], true, vec![]).unwrap();
    assert_eq!(opts.roles, vec![Role::Monitoring, Role::Prod]);
    assert_eq!(opts.clusters(), vec!["control", "monitoring", "prod"]);
    let err = UpOpts::new(&[Role::Stage], true, vec![]).unwrap_err();
    assert!(err.to_string().contains("must include monitoring"), "{err}");
}

#[test]
fn checks_come_first() {
    let opts = UpOpts::new(&[], true, Vec::new()).unwrap();
    let steps = plan_up(&opts);
    let first_action = steps
        .iter()
        .position(|s| !matches!(s.mode, Mode::Check(_)))
        .unwrap();
    assert!(
        steps[first_action..]
            .iter()
            .all(|s| !matches!(s.mode, Mode::Check(_)))
    );
    assert_eq!(steps[0].program, "docker");
}

/// A PATH without docker: the real run stops in preflight with the install message, and runs
/// nothing else (the fake kind/kubectl would leave a trace file).
#[test]
fn up_without_docker_says_what_to_install() {
    let bin = tempfile::tempdir().unwrap();
    let trace = bin.path().join("trace");
    for tool in ["kind", "kubectl"] {
        let script = bin.path().join(tool);
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"{tool} $*\" >> {}\necho 'kind v0.29.0 go1.24 linux/amd64'\n",
                trace.display()
            ),
        )
        .unwrap();
        make_executable(&script);
    }
    let opts = UpOpts::new(&[], true, Vec::new()).unwrap();
    let runner = Runner::with_path(repo_root(), OsString::from(bin.path()));
    let err = format!("{:#}", runner.run(&plan_up(&opts)).unwrap_err());
    assert!(
        err.contains("preflight failed, nothing was created"),
        "{err}"
    );
    assert!(
        err.contains("`docker info --format {{.ServerVersion}}` could not run"),
        "{err}"
    );
    for needed in ["Docker Engine", "kind >= 0.23", "kubectl"] {
        assert!(err.contains(needed), "{needed} missing in: {err}");
    }
    // Only the read-only checks ran.
    let calls = std::fs::read_to_string(&trace).unwrap_or_default();
    assert!(
        calls.lines().all(|l| l == "kind version"
            || l == "kind get clusters"
            || l == "kubectl version --client"),
        "{calls}"
    );
}

/// A docker that is installed but has no daemon (like the stub here) fails the same way.
#[test]
fn up_with_a_dead_docker_daemon_says_what_to_install() {
    let bin = tempfile::tempdir().unwrap();
    let docker = bin.path().join("docker");
    std::fs::write(
        &docker,
        "#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n",
    )
    .unwrap();
    make_executable(&docker);
    let runner = Runner::with_path(repo_root(), OsString::from(bin.path()));
    let opts = UpOpts::new(&[], false, Vec::new()).unwrap();
    let err = format!("{:#}", runner.run(&plan_up(&opts)).unwrap_err());
    assert!(err.contains("Cannot connect to the Docker daemon"), "{err}");
    assert!(err.contains("Docker Engine (running"), "{err}");
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn kind_versions() {
    assert_eq!(
        kind_version("kind v0.29.0 go1.24.2 linux/amd64"),
        Some((0, 29))
    );
    assert_eq!(
        kind_version("kind v0.22.1 go1.21 linux/amd64"),
        Some((0, 22))
    );
    assert_eq!(kind_version("garbage"), None);
}

#[test]
fn cluster_secret_from_an_internal_kubeconfig() {
    let kubeconfig = "\
apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: Q0E=
    server: https://pmtp-stage-control-plane:6443
  name: kind-pmtp-stage
users:
- name: kind-pmtp-stage
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
";
    let secret = cluster_secret("stage", kubeconfig).unwrap();
    insta::assert_json_snapshot!(secret);
    let err = cluster_secret("stage", "apiVersion: v1\nkind: Config\n").unwrap_err();
    assert!(
        err.to_string().contains("/clusters/0/cluster/server"),
        "{err}"
    );
}
