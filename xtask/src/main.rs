//! `cargo xtask`: developer tasks for this workspace — installing the external tools the tests
//! need (Prometheus, Pushgateway), running the test suite with them, and running a local lab
//! (workload + two infra Prometheus + the proxy) as detached processes, the Kubernetes lab on
//! kind, and the offline manifest validation.

mod bench;
mod crd;
mod fuzz;
mod fuzz_oracle;
mod http;
mod kind;
mod lab;
mod pidfile;
mod procs;
mod render;
mod soak;
mod test_cmd;
mod tools;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Developer tasks for prometheus-multi-tenant-proxy.
#[derive(Parser, Debug)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Make `prometheus` and `prometheus-pushgateway` available in target/tools/bin.
    ///
    /// Order: already there → on PATH (symlinked) → `apt-get download` + `dpkg -x` (Debian/Ubuntu)
    /// → the official linux-amd64 release archive, verified against a pinned SHA-256.
    Tools(tools::ToolsArgs),
    /// Build the binaries and run `cargo test --workspace` with PROMETHEUS_BIN, PUSHGATEWAY_BIN
    /// and PROXY_BIN exported. Extra arguments after `--` go to `cargo test`.
    Test(test_cmd::TestArgs),
    /// Start the local lab (workload, infra Prometheus ×2, proxy) detached and wait until it works.
    Up(lab::UpArgs),
    /// Stop every lab process (SIGTERM, then SIGKILL after 10s) and remove the pidfiles
    /// (`--kind`: delete the kind clusters).
    Down(lab::DownArgs),
    /// Show each lab process: pid, alive, ready, URL. Exits 1 if one is dead or not ready.
    Status,
    /// Regenerate kustomize/base/metricaccess-crd.yaml from the Rust types (`--check`: exit 1
    /// when it is stale).
    Crd(crd::CrdArgs),
    /// Run the e2e suite against the kind lab (`--kind`): port-forwards the proxy and the infra
    /// Prometheus of the monitoring cluster, then `cargo test -p e2e` with PMTP_E2E_KIND=1.
    E2e(kind::E2eArgs),
    /// Offline manifest checks: render every kustomization (kustomize/, gitops/), parse every
    /// object as its Kubernetes type, MetricAccess against the CRD schema, ArgoCD paths,
    /// image tags, resources and securityContext. Needs kubectl.
    Validate,
    /// Measure the proxy beside its peers (vmagent, vmauth) on the harness of bench/harness:
    /// ingest | read | rewrite | collector | memory | all. Prints one table and writes
    /// docs/benchmarks.md.
    Bench(bench::BenchArgs),
    /// Bounded soak: the proxy binary (reads + collector + ingest) under steady load for
    /// `--minutes N` (fractions allowed); fails on a lost acknowledged sample, a cross-tenant
    /// series or a peak RSS over the bound, and prints a summary table.
    Soak(soak::SoakArgs),
    /// Differential fuzzing against the oracle: N generated PromQL queries through the proxy
    /// and straight to each tenant's oracle Prometheus (`bypass::differential` of the e2e
    /// suite). Prints queries tried, mismatches by class and leaks; fails on any leak.
    FuzzOracle(fuzz_oracle::FuzzOracleArgs),
    /// Run the cargo-fuzz targets of proxy/fuzz (rewrite, remote_write, relabel, config, crd)
    /// for `--seconds` each on the committed corpus, with RUSTC_BOOTSTRAP=1 on stable Rust;
    /// installs cargo-fuzz if missing. Prints executions and crashes per target.
    Fuzz(fuzz::FuzzArgs),
    /// Write the ArgoCD cluster Secret for a kind cluster from `kind get kubeconfig
    /// --internal` output (a step of `cargo xtask up --kind`).
    #[command(hide = true)]
    KindSecret {
        role: String,
        kubeconfig: PathBuf,
        out: PathBuf,
    },
}

/// The workspace root: the parent of this crate's manifest directory.
fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = workspace_root();
    let result = match cli.cmd {
        Cmd::Tools(args) => tools::run(&root, &args).map(|_| 0),
        Cmd::Test(args) => test_cmd::run(&root, &args),
        Cmd::Up(args) => lab::up(&root, &args).map(|_| 0),
        Cmd::Down(args) => lab::down(&root, &args).map(|_| 0),
        Cmd::Status => lab::status(&root).map(|_| 0),
        Cmd::Crd(args) => crd::run(&root, &args),
        Cmd::E2e(args) => kind::e2e(&root, &args).map(|_| 0),
        Cmd::Validate => validate::run(&root),
        Cmd::Bench(args) => bench::run(&root, &args),
        Cmd::Soak(args) => soak::run(&root, &args),
        Cmd::FuzzOracle(args) => fuzz_oracle::run(&root, &args),
        Cmd::Fuzz(args) => fuzz::run(&root, &args),
        Cmd::KindSecret {
            role,
            kubeconfig,
            out,
        } => kind::write_secret(&role, &root.join(kubeconfig), &root.join(out)).map(|_| 0),
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
