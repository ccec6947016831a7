//! The command line: `--help`, `crd`, `check-config` (exit codes and what it prints).

use std::path::Path;
use std::process::Command;

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_prometheus-multi-tenant-proxy"));
    command.env_remove("PMTP_CONFIG").env_remove("RUST_LOG");
    command
}

fn write_config(dir: &Path, tenant_yaml: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("tenants")).unwrap();
    std::fs::write(dir.join("tenants/t.yaml"), tenant_yaml).unwrap();
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        "server: { listen: \"127.0.0.1:1\", admin_listen: \"127.0.0.1:2\" }\n\
         backends: { groups: [ { name: infra, members: [\"http://127.0.0.1:9\"] } ] }\n\
         auth: { mode: header }\n",
    )
    .unwrap();
    path
}

const GOOD: &str = "apiVersion: observability.ethos.io/v1alpha1\nkind: MetricAccess\n\
metadata: { name: reads, namespace: team-a }\nspec: { metrics: [up] }\n";
const BAD: &str = "apiVersion: observability.ethos.io/v1alpha1\nkind: MetricAccess\n\
metadata: { name: broken, namespace: team-b }\nspec: { metrics: [\"{job=\"] }\n";

#[test]
fn help_shows_examples() {
    let out = binary().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "check-config",
        "crd",
        "--config",
        "PMTP_CONFIG",
        "Examples:",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}

#[test]
fn crd_prints_the_custom_resource_definition() {
    let out = binary().arg("crd").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("kind: CustomResourceDefinition"));
    assert!(text.contains("metricaccesses.observability.ethos.io"));
}

#[test]
fn check_config_summarises_a_good_setup() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), GOOD);
    let out = binary()
        .arg("--config")
        .arg(&config)
        .arg("check-config")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("1 valid, 0 invalid"), "{stdout}");
    assert!(stdout.contains("team-a: reads"), "{stdout}");
    assert!(stdout.contains("http://127.0.0.1:9"), "{stdout}");
}

#[test]
fn check_config_reports_every_error_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), BAD);
    let out = binary()
        .env("PMTP_CONFIG", &config)
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("team-b/broken"), "{stderr}");

    // A config that doesn't parse names the file.
    std::fs::write(&config, "server: { listen: nope }\n").unwrap();
    let out = binary()
        .arg("--config")
        .arg(&config)
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("config.yaml"), "{stderr}");
}

#[test]
fn port_override_that_clashes_with_the_admin_listener_is_refused_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), GOOD);
    let out = binary()
        .arg("--config")
        .arg(&config)
        .args(["--port", "2", "check-config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--port 2") && err.contains("admin_listen"),
        "{err}"
    );
}

#[test]
fn check_config_describes_the_collector_and_the_ingest_gateway_of_the_lab() {
    let lab = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/configs/lab.yaml");
    let out = binary()
        .arg("--config")
        .arg(&lab)
        .arg("check-config")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    for needle in [
        "collector: on, 4 CR(s)",
        "team-b/team-b-containers every 15s -> http://127.0.0.1:19111/api/v1/write, http://127.0.0.1:19112/api/v1/write",
        "team-d/platform-nodes every 30s -> http://127.0.0.1:19120/metrics/job/team-d-nodes",
        "ingest: on",
        "destination storage -> http://127.0.0.1:19130/api/v1/write",
        "rules: default + 1 tenant(s) of their own (platform)",
    ] {
        assert!(stdout.contains(needle), "{needle} not in:\n{stdout}");
    }
    assert!(
        !stdout.contains("warning: ingest.usage"),
        "the lab's rule files and dashboards parse:\n{stdout}"
    );
}

#[test]
fn check_config_describes_kubernetes_mode_without_an_api_server() {
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../kustomize/base/config/config.yaml");
    let out = binary()
        .arg("--config")
        .arg(&config)
        .arg("check-config")
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "auth: kubernetes (TokenReview for audiences prometheus-multi-tenant-proxy",
        "tenants: MetricAccess from the Kubernetes API in every namespace; status written",
        "backends: discovered from Pod in monitoring, port web, grouped by label \"prometheus\"",
        "collector sharding: Leases pmtp-collector-<identity> in $POD_NAMESPACE, lease 15s",
    ] {
        assert!(stdout.contains(needle), "{needle} not in:\n{stdout}");
    }
}

/// What the overlays deploy must be a config the proxy accepts.
#[test]
fn every_overlay_config_passes_check_config() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../kustomize/overlays");
    let mut checked = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let config = entry.unwrap().path().join("config.yaml");
        if !config.exists() {
            continue;
        }
        let out = binary()
            .arg("--config")
            .arg(&config)
            .arg("check-config")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}:\n{}{}",
            config.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert!(
        checked >= 3,
        "expected the kind, stage and prod configs, checked {checked}"
    );
}

/// Kills the serving binary when the test ends, passed or not.
struct Serving(std::process::Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binary turns transparent huge pages off for itself (mimalloc would ask for them, and
/// large answers would fault in whole zeroed 2 MiB pages): `/proc/<pid>/status` of the running
/// server says `THP_enabled: 0`, while this test process, which did not, says 1.
#[cfg(target_os = "linux")]
#[test]
fn the_server_runs_without_transparent_huge_pages() {
    let thp = |pid: u32| -> Option<String> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("THP_enabled:"))
            .map(|v| v.trim().to_string())
    };
    let Some(own) = thp(std::process::id()) else {
        eprintln!("this kernel's /proc/<pid>/status has no THP_enabled line; nothing to check");
        return;
    };
    assert_eq!(
        own, "1",
        "the test process itself must start with THP allowed"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), GOOD);
    // Ephemeral ports on two loopback addresses, so the listeners can't clash.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "listen: \"127.0.0.1:1\", admin_listen: \"127.0.0.1:2\"",
        "listen: \"127.0.0.1:0\", admin_listen: \"127.0.0.2:0\"",
    );
    std::fs::write(&config, text).unwrap();
    let mut serving = Serving(
        binary()
            .arg("--config")
            .arg(&config)
            .arg("run")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = serving.0.id();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let seen = loop {
        if let Some(status) = serving.0.try_wait().unwrap() {
            panic!("the server exited early: {status}");
        }
        match thp(pid) {
            Some(v) if v == "0" => break v,
            other if std::time::Instant::now() > deadline => {
                panic!("THP_enabled of the server is {other:?}, not 0")
            }
            _ => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    };
    assert_eq!(seen, "0");
    assert!(
        serving.0.try_wait().unwrap().is_none(),
        "the server still runs"
    );
}
