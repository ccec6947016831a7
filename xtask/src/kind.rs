//! `cargo xtask up|down|e2e --kind`: the Kubernetes lab on kind clusters. This module owns the
//! options, the [`Step`] type and its dry-run rendering (one shell line per step), and the
//! entry points; [`plan`] builds the plans — pure functions from the options to the ordered
//! steps, shared by `--dry-run` and the real run —, [`run`] executes a plan (preflight checks
//! first, so a missing tool stops before anything was created), [`secret`] turns a kind
//! kubeconfig into an ArgoCD cluster Secret.
//!
//! Cluster layout (kind cluster `pmtp-<role>`, kubectl context `kind-pmtp-<role>`):
//! - `control` (only with ArgoCD): ArgoCD, bootstrapped with `argocd/` (the AppProject and
//!   the app-of-apps root of every role), the clusters being registered as ArgoCD cluster
//!   Secrets named after their role (server: the node container's name on the `kind`
//!   Docker network, from `kind get kubeconfig --internal`);
//! - `monitoring`: the proxy, the infrastructure Prometheus, the tenants;
//! - `stage`, `prod`: workload clusters.
//!
//! With `--no-argocd` the monitoring cluster gets `kustomize/overlays/kind` and every
//! `gitops/tenants/<ns>` applied directly with `kubectl apply -k`.

mod plan;
mod run;
mod secret;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;

use anyhow::{Context, bail};

pub use plan::{plan_down, plan_e2e, plan_up, url};

/// The proxy image `docker build` tags and `kind load` copies into the clusters.
pub const IMAGE: &str = "ghcr.io/ethos/prometheus-multi-tenant-proxy:0.1.0";
/// The ArgoCD release installed in the control cluster (its install manifest, by tag).
pub const ARGOCD_VERSION: &str = "v3.0.6";
/// prometheus-operator release whose CRDs (ServiceMonitor, PrometheusRule, Prometheus, ...)
/// are installed into the monitoring cluster with `--no-argocd`.
pub const PROMETHEUS_OPERATOR_VERSION: &str = "v0.83.0";
/// Namespace of the proxy and the infrastructure Prometheus (kustomize/base).
pub const NAMESPACE: &str = "monitoring";
/// The proxy's Deployment and Service (kustomize/base).
pub const PROXY: &str = "prometheus-multi-tenant-proxy";
/// The proxy Service's API port.
pub const PROXY_PORT: u16 = 8080;
/// The infrastructure Prometheus Service (component infra-prometheus) and its port.
pub const INFRA_PROMETHEUS: &str = "prometheus-infra";
pub const INFRA_PROMETHEUS_PORT: u16 = 9090;
/// Local ports of the port-forwards (away from the loopback lab's 19080..19131).
pub const LOCAL_PROXY_PORT: u16 = 28080;
pub const LOCAL_PROMETHEUS_PORT: u16 = 29090;
pub const LOCAL_ARGOCD_PORT: u16 = 28443;
/// Bound of every wait (cluster creation, rollouts).
pub const WAIT: &str = "300s";
/// Where the run writes its generated files (kubeconfigs, cluster Secrets), relative to the
/// workspace root.
pub const WORK_DIR: &str = "target/kind";

/// A cluster role. `control` is implied by ArgoCD and not selectable.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Monitoring,
    Stage,
    Prod,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Monitoring, Role::Stage, Role::Prod];

    pub fn name(self) -> &'static str {
        match self {
            Role::Monitoring => "monitoring",
            Role::Stage => "stage",
            Role::Prod => "prod",
        }
    }
}

/// kind cluster name of a role (or `control`).
pub fn cluster_name(role: &str) -> String {
    format!("pmtp-{role}")
}

/// kubectl context kind writes for a role's cluster.
pub fn context(role: &str) -> String {
    format!("kind-pmtp-{role}")
}

/// Options of `cargo xtask up --kind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpOpts {
    /// Workload cluster roles, deduplicated, in [`Role`] order; always contains monitoring.
    pub roles: Vec<Role>,
    pub argocd: bool,
    /// `gitops/tenants/<ns>` dirs (relative, sorted) applied with `--no-argocd`.
    pub tenant_dirs: Vec<String>,
}

impl UpOpts {
    /// Validate the roles: monitoring is required (the proxy runs there).
    pub fn new(roles: &[Role], argocd: bool, tenant_dirs: Vec<String>) -> anyhow::Result<Self> {
        let mut roles = if roles.is_empty() {
            Role::ALL.to_vec()
        } else {
            roles.to_vec()
        };
        roles.sort();
        roles.dedup();
        if !roles.contains(&Role::Monitoring) {
            bail!("--clusters must include monitoring: the proxy and its Prometheus run there");
        }
        Ok(UpOpts {
            roles,
            argocd,
            tenant_dirs,
        })
    }

    /// Every cluster to create: control first when ArgoCD is used.
    fn clusters(&self) -> Vec<&'static str> {
        let mut all = Vec::new();
        if self.argocd {
            all.push("control");
        }
        all.extend(self.roles.iter().map(|r| r.name()));
        all
    }
}

/// What the runner does with a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// A precondition run before anything else; on failure the run stops, nothing created.
    Check(Check),
    /// Run, fail the whole run on a non-zero exit.
    Run,
    /// Run with stdout written to this file (relative to the workspace root).
    CaptureTo(String),
    /// Start in the background and wait until this local port accepts connections; stopped
    /// when the run ends (port-forwards).
    Background { port: u16 },
    /// Done by xtask itself (the printed command is the shell equivalent).
    Internal(Internal),
}

/// How a check judges its command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Exit status 0.
    Succeeds,
    /// `kind version` prints at least this (major, minor).
    KindAtLeast(u32, u32),
    /// The path exists (checked by xtask: `test -e`).
    Exists,
    /// `kind get clusters` lists none of these clusters.
    NoClusters(Vec<String>),
}

/// Work xtask does in-process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Internal {
    /// Write the ArgoCD cluster Secret for `role` from its internal kubeconfig.
    ClusterSecret {
        role: String,
        kubeconfig: String,
        out: String,
    },
}

/// One command of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub mode: Mode,
    pub description: String,
}

impl Step {
    fn new(program: &str, args: &[&str], description: impl Into<String>) -> Step {
        Step {
            program: program.to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
            mode: Mode::Run,
            description: description.into(),
        }
    }

    fn mode(mut self, mode: Mode) -> Step {
        self.mode = mode;
        self
    }

    fn check(program: &str, args: &[&str], check: Check, description: &str) -> Step {
        Step::new(program, args, description).mode(Mode::Check(check))
    }

    fn kubectl(ctx: &str, args: &[&str], description: impl Into<String>) -> Step {
        let mut all = vec!["--context", ctx];
        all.extend_from_slice(args);
        Step::new("kubectl", &all, description)
    }
}

/// Shell-quote an argument when it needs it.
fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

impl fmt::Display for Step {
    /// One shell line: `ENV=v program args [> file | &]  # description`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut words: Vec<String> = self
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", quote(v)))
            .collect();
        words.push(self.program.clone());
        words.extend(self.args.iter().map(|a| quote(a)));
        match &self.mode {
            Mode::CaptureTo(file) => words.push(format!("> {}", quote(file))),
            Mode::Background { .. } => words.push("&".to_string()),
            _ => {}
        }
        write!(f, "{}  # {}", words.join(" "), self.description)
    }
}

/// What to run after `up`: the endpoints, as port-forward commands.
pub fn endpoints(opts: &UpOpts) -> Vec<String> {
    let mon = context("monitoring");
    let mut lines = vec![
        format!(
            "proxy:            kubectl --context {mon} -n {NAMESPACE} port-forward svc/{PROXY} \
             {LOCAL_PROXY_PORT}:{PROXY_PORT}   -> {}",
            url(LOCAL_PROXY_PORT)
        ),
        format!(
            "infra Prometheus: kubectl --context {mon} -n {NAMESPACE} port-forward \
             svc/{INFRA_PROMETHEUS} {LOCAL_PROMETHEUS_PORT}:{INFRA_PROMETHEUS_PORT}   -> {}",
            url(LOCAL_PROMETHEUS_PORT)
        ),
    ];
    if opts.argocd {
        let ctl = context("control");
        lines.push(format!(
            "ArgoCD UI:        kubectl --context {ctl} -n argocd port-forward svc/argocd-server \
             {LOCAL_ARGOCD_PORT}:443   -> https://127.0.0.1:{LOCAL_ARGOCD_PORT} (user admin)"
        ));
        lines.push(format!(
            "ArgoCD password:  kubectl --context {ctl} -n argocd get secret \
             argocd-initial-admin-secret -o jsonpath='{{.data.password}}' | base64 -d"
        ));
    }
    lines.push(
        "e2e against it:   cargo xtask e2e --kind   (down: cargo xtask down --kind)".to_string(),
    );
    lines
}

/// Print a plan, one command per line.
fn print_plan(steps: &[Step]) {
    for s in steps {
        println!("{s}");
    }
}

/// `gitops/tenants/<ns>` dirs with a kustomization, relative to `root`, sorted.
pub fn tenant_dirs(root: &Path) -> anyhow::Result<Vec<String>> {
    let dir = root.join("gitops/tenants");
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if crate::validate::has_kustomization(&path)
            && let Some(name) = path.file_name()
        {
            out.push(format!("gitops/tenants/{}", name.to_string_lossy()));
        }
    }
    out.sort();
    Ok(out)
}

/// `cargo xtask up --kind`.
pub fn up(root: &Path, opts: &UpOpts, dry_run: bool) -> anyhow::Result<()> {
    let steps = plan_up(opts);
    if dry_run {
        print_plan(&steps);
        return Ok(());
    }
    run::Runner::new(root).run(&steps)?;
    println!("\nthe kind lab is up. Endpoints (run each in its own terminal):");
    for line in endpoints(opts) {
        println!("  {line}");
    }
    Ok(())
}

/// `cargo xtask down --kind`.
pub fn down(root: &Path, dry_run: bool) -> anyhow::Result<()> {
    let steps = plan_down();
    if dry_run {
        print_plan(&steps);
        return Ok(());
    }
    run::Runner::new(root).run(&steps)?;
    println!("the kind lab is down");
    Ok(())
}

/// Arguments of `cargo xtask e2e`.
#[derive(clap::Args, Debug)]
pub struct E2eArgs {
    /// Run against the kind lab (`cargo xtask up --kind`). Required for now: the local e2e
    /// runs with `cargo xtask test`.
    #[arg(long)]
    pub kind: bool,
    /// Print the commands, run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Extra arguments for `cargo test -p e2e`, after `--`.
    #[arg(last = true)]
    pub cargo_args: Vec<String>,
}

/// `cargo xtask e2e`.
pub fn e2e(root: &Path, args: &E2eArgs) -> anyhow::Result<()> {
    if !args.kind {
        bail!(
            "`cargo xtask e2e` needs --kind (the kind lab); the local e2e suite runs with \
             `cargo xtask test`"
        );
    }
    let steps = plan_e2e(&args.cargo_args);
    if args.dry_run {
        print_plan(&steps);
        return Ok(());
    }
    run::Runner::new(root).run(&steps)
}

/// `cargo xtask kind-secret ROLE KUBECONFIG OUT`.
pub fn write_secret(role: &str, kubeconfig: &Path, out: &Path) -> anyhow::Result<()> {
    secret::write(role, kubeconfig, out)
}
