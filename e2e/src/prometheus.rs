//! A throwaway Prometheus server: its own temporary TSDB and config, a free port on 127.0.0.1,
//! the remote-write receiver enabled, killed on drop. Optionally behind HTTP basic auth
//! ([`StartOptions::basic_auth`], through `--web.config.file`).

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;
use tempfile::TempDir;

use crate::process::{ChildGuard, free_port};
use crate::tools::require_prometheus;

/// Config used when the caller gives none: no scrape jobs, data only arrives by remote write.
pub const DEFAULT_CONFIG: &str = "global:\n  scrape_interval: 15s\n";

/// How long a fresh Prometheus may take to answer `/-/ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts when another process grabs the port between `free_port` and Prometheus' bind.
const PORT_ATTEMPTS: usize = 3;

/// bcrypt cost of the `web.yml` password hash: the minimum bcrypt accepts, so hashing and every
/// authenticated request stay fast (test credentials only).
const BCRYPT_COST: u32 = 4;

/// Optional settings of [`Prometheus::start_with`].
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// `(user, password)`: serve the whole API behind HTTP basic auth (a `web.yml` with
    /// `basic_auth_users`, passed as `--web.config.file`).
    pub basic_auth: Option<(String, String)>,
    /// Appended to the command line after the harness flags.
    pub extra_args: Vec<String>,
    /// Agent mode (`--enable-feature=agent`): scrape and remote-write only, no TSDB, no query
    /// API, no remote-write receiver.
    pub agent: bool,
}

/// The `Authorization` header value for HTTP basic auth.
pub fn basic_auth_header(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

/// YAML double-quoted scalar (JSON strings are valid YAML).
fn yaml_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// A running Prometheus process.
#[derive(Debug)]
pub struct Prometheus {
    /// `None` between [`Prometheus::stop_keeping_data`] and [`Prometheus::restart`].
    guard: Option<ChildGuard>,
    url: String,
    name: String,
    command: Vec<String>,
    authorization: Option<String>,
    // Dropped after `guard` (field order), so the process is gone before its TSDB is deleted.
    _dir: TempDir,
}

impl Prometheus {
    /// Start Prometheus named `name` (log file prefix) with `config_yaml` (or [`DEFAULT_CONFIG`])
    /// and wait until it is ready. Flags: 30d retention, 5m lookback, remote-write receiver on.
    pub fn start(name: &str, config_yaml: Option<&str>) -> anyhow::Result<Prometheus> {
        Prometheus::start_with(name, config_yaml, &StartOptions::default())
    }

    /// [`Prometheus::start`] with [`StartOptions`]. With `basic_auth`, readiness is probed with
    /// the credentials.
    pub fn start_with(
        name: &str,
        config_yaml: Option<&str>,
        opts: &StartOptions,
    ) -> anyhow::Result<Prometheus> {
        let bin = require_prometheus()?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("e2e-{name}-"))
            .tempdir()
            .context("creating the Prometheus temp dir")?;
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, config_yaml.unwrap_or(DEFAULT_CONFIG))
            .with_context(|| format!("writing {}", config.display()))?;
        let data = dir.path().join("data");
        let mut web_config = None;
        let mut authorization = None;
        if let Some((user, password)) = &opts.basic_auth {
            let hash = bcrypt::hash(password, BCRYPT_COST).context("hashing the password")?;
            let path = dir.path().join("web.yml");
            let yaml = format!(
                "basic_auth_users:\n  {}: {}\n",
                yaml_str(user),
                yaml_str(&hash)
            );
            std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
            web_config = Some(path);
            authorization = Some(basic_auth_header(user, password));
        }
        let mut last_err = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            if port == 0 {
                bail!("no free port on 127.0.0.1");
            }
            let mut command = vec![
                bin.display().to_string(),
                format!("--config.file={}", config.display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--log.level=warn".into(),
            ];
            if opts.agent {
                command.push("--enable-feature=agent".into());
                command.push(format!("--storage.agent.path={}", data.display()));
            } else {
                command.push(format!("--storage.tsdb.path={}", data.display()));
                command.push("--web.enable-remote-write-receiver".into());
                command.push("--storage.tsdb.retention.time=30d".into());
                command.push("--query.lookback-delta=5m".into());
            }
            if let Some(path) = &web_config {
                command.push(format!("--web.config.file={}", path.display()));
            }
            command.extend(opts.extra_args.iter().cloned());
            let mut guard = ChildGuard::spawn(name, to_command(&command))?;
            let url = format!("http://127.0.0.1:{port}");
            let ready = guard.wait_ready_with(
                &format!("{url}/-/ready"),
                READY_TIMEOUT,
                authorization.as_deref(),
            );
            match ready {
                Ok(()) => {
                    return Ok(Prometheus {
                        guard: Some(guard),
                        url,
                        name: name.to_string(),
                        command,
                        authorization,
                        _dir: dir,
                    });
                }
                Err(e) => {
                    let port_race = guard.exited().is_some()
                        && guard.log_tail(20).contains("address already in use");
                    if !port_race {
                        return Err(e);
                    }
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("Prometheus did not start")))
    }

    /// Base URL, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// PID of the running process (0 while stopped).
    pub fn pid(&self) -> u32 {
        self.guard.as_ref().map_or(0, ChildGuard::pid)
    }

    /// The process log (stdout and stderr) of the current run.
    pub fn log_path(&self) -> &std::path::Path {
        self.guard
            .as_ref()
            .map_or(std::path::Path::new(""), ChildGuard::log_path)
    }

    /// Stop the process (SIGTERM, then SIGKILL after 5 s) but keep its TSDB, port and config,
    /// so that [`Prometheus::restart`] brings the same server back, as a pod restart would.
    pub fn stop_keeping_data(&mut self) {
        if let Some(guard) = self.guard.take() {
            guard.stop();
        }
    }

    /// Start the stopped process again with the same flags and data, and wait until ready.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop_keeping_data();
        let mut guard = ChildGuard::spawn(&self.name, to_command(&self.command))?;
        guard.wait_ready_with(
            &format!("{}/-/ready", self.url),
            READY_TIMEOUT,
            self.authorization.as_deref(),
        )?;
        self.guard = Some(guard);
        Ok(())
    }

    /// Stop the process now (SIGTERM, then SIGKILL after 5 s) and delete its data.
    pub fn kill(self) {
        drop(self);
    }
}

fn to_command(command: &[String]) -> Command {
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..]);
    cmd
}

/// Where harness processes run. Local processes today; a container launcher (testcontainers) can
/// implement the same trait for users with Docker.
pub trait Launcher: Send + Sync {
    /// Start a Prometheus as [`Prometheus::start`] does.
    fn prometheus(&self, name: &str, config_yaml: Option<&str>) -> anyhow::Result<Prometheus>;

    /// Start a Prometheus as [`Prometheus::start_with`] does.
    fn prometheus_with(
        &self,
        name: &str,
        config_yaml: Option<&str>,
        opts: &StartOptions,
    ) -> anyhow::Result<Prometheus>;
}

/// Runs everything as local child processes (binary from [`crate::tools::prometheus_bin`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalProcessLauncher;

impl Launcher for LocalProcessLauncher {
    fn prometheus(&self, name: &str, config_yaml: Option<&str>) -> anyhow::Result<Prometheus> {
        Prometheus::start(name, config_yaml)
    }

    fn prometheus_with(
        &self,
        name: &str,
        config_yaml: Option<&str>,
        opts: &StartOptions,
    ) -> anyhow::Result<Prometheus> {
        Prometheus::start_with(name, config_yaml, opts)
    }
}
