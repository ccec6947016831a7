//! Executing a kind plan: every [`Mode::Check`] step first (all of them, failures reported
//! together with what to install), then the other steps in order. Background steps
//! (port-forwards) live until the run ends.

use std::ffi::OsString;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{Check, Internal, Mode, Step, secret};

/// What the kind lab needs, said when a check fails.
pub const INSTALL_HINT: &str = "the kind lab needs Docker Engine (running; \
     https://docs.docker.com/engine/install/), kind >= 0.23 \
     (https://kind.sigs.k8s.io/docs/user/quick-start/#installation) and kubectl \
     (https://kubernetes.io/docs/tasks/tools/), plus internet access for the node, ArgoCD and \
     operator images. Repository files a check misses (Dockerfile, argocd/kustomization.yaml, \
     kustomize/overlays/kind) come with the reference deployment; `--no-argocd` needs no \
     argocd/. `--dry-run` prints the plan without any of them";

/// Runs plans in the workspace root.
pub struct Runner {
    root: PathBuf,
    /// PATH for the commands (tests: a PATH without docker); `None` inherits ours.
    path: Option<OsString>,
}

impl Runner {
    pub fn new(root: &Path) -> Runner {
        Runner {
            root: root.to_path_buf(),
            path: None,
        }
    }

    #[cfg(test)]
    pub fn with_path(root: &Path, path: OsString) -> Runner {
        Runner {
            root: root.to_path_buf(),
            path: Some(path),
        }
    }

    fn command(&self, step: &Step) -> Command {
        let program = if step.program == "cargo" {
            crate::test_cmd::cargo().into_os_string()
        } else {
            OsString::from(&step.program)
        };
        let mut cmd = Command::new(program);
        cmd.args(&step.args).current_dir(&self.root);
        if let Some(path) = &self.path {
            cmd.env("PATH", path);
        }
        for (k, v) in &step.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Run the checks, then the rest. Port-forwards are stopped when this returns.
    pub fn run(&self, steps: &[Step]) -> anyhow::Result<()> {
        let failures: Vec<String> = steps
            .iter()
            .filter_map(|s| match &s.mode {
                Mode::Check(check) => self.check(s, check).err().map(|e| format!("{e:#}")),
                _ => None,
            })
            .collect();
        if !failures.is_empty() {
            bail!(
                "preflight failed, nothing was created:\n  - {}\n{INSTALL_HINT}",
                failures.join("\n  - ")
            );
        }
        let mut background: Vec<Child> = Vec::new();
        let result = steps
            .iter()
            .filter(|s| !matches!(s.mode, Mode::Check(_)))
            .try_for_each(|s| self.step(s, &mut background));
        for mut child in background {
            let _ = child.kill();
            let _ = child.wait();
        }
        result
    }

    fn check(&self, step: &Step, check: &Check) -> anyhow::Result<()> {
        if let Check::Exists = check {
            let path = step.args.last().map(String::as_str).unwrap_or_default();
            if !self.root.join(path).exists() {
                bail!("{path} is missing ({})", step.description);
            }
            return Ok(());
        }
        let out = self
            .command(step)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("`{} {}` could not run", step.program, step.args.join(" ")))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "`{} {}` failed ({}): {}",
                step.program,
                step.args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        match check {
            Check::KindAtLeast(major, minor) => match kind_version(&stdout) {
                Some(v) if v >= (*major, *minor) => Ok(()),
                Some((a, b)) => bail!("kind v{a}.{b} is too old: need >= {major}.{minor}"),
                None => bail!("cannot read the kind version from {:?}", stdout.trim()),
            },
            Check::NoClusters(names) => {
                let existing: Vec<&str> = stdout
                    .lines()
                    .map(str::trim)
                    .filter(|l| names.iter().any(|n| n == l))
                    .collect();
                if existing.is_empty() {
                    Ok(())
                } else {
                    bail!(
                        "cluster(s) {} exist already: `cargo xtask down --kind` first",
                        existing.join(", ")
                    )
                }
            }
            Check::Succeeds | Check::Exists => Ok(()),
        }
    }

    fn step(&self, step: &Step, background: &mut Vec<Child>) -> anyhow::Result<()> {
        println!("+ {step}");
        let failed = |status: String| {
            anyhow::anyhow!(
                "`{} {}` failed ({status}). Fix the cause and retry; \
                 `cargo xtask down --kind` removes the clusters",
                step.program,
                step.args.join(" ")
            )
        };
        match &step.mode {
            Mode::Check(_) => Ok(()),
            Mode::Run => {
                let status = self.command(step).status().context("starting")?;
                if status.success() {
                    Ok(())
                } else {
                    Err(failed(status.to_string()))
                }
            }
            Mode::CaptureTo(file) => {
                let out = self.command(step).stderr(Stdio::inherit()).output()?;
                if !out.status.success() {
                    return Err(failed(out.status.to_string()));
                }
                let path = self.root.join(file);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::write(&path, &out.stdout)
                    .with_context(|| format!("writing {}", path.display()))
            }
            Mode::Internal(Internal::ClusterSecret {
                role,
                kubeconfig,
                out,
            }) => secret::write(role, &self.root.join(kubeconfig), &self.root.join(out)),
            Mode::Background { port } => {
                let mut child = self
                    .command(step)
                    .stdout(Stdio::null())
                    .spawn()
                    .context("starting")?;
                let addr = SocketAddr::from(([127, 0, 0, 1], *port));
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                        background.push(child);
                        return Ok(());
                    }
                    if let Some(status) = child.try_wait()? {
                        return Err(failed(status.to_string()));
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(failed(format!("{addr} not listening after 30s")));
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }
}

/// `kind v0.29.0 go1.24.2 linux/amd64` → (0, 29).
pub fn kind_version(out: &str) -> Option<(u32, u32)> {
    let word = out.split_whitespace().find(|w| w.starts_with('v'))?;
    let mut parts = word.trim_start_matches('v').split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}
