//! A throwaway Prometheus server: its own temporary TSDB and config, a free port on 127.0.0.1,
//! the remote-write receiver enabled, killed on drop.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use tempfile::TempDir;

use crate::process::{ChildGuard, free_port};
use crate::tools::require_prometheus;

/// Config used when the caller gives none: no scrape jobs, data only arrives by remote write.
pub const DEFAULT_CONFIG: &str = "global:\n  scrape_interval: 15s\n";

/// How long a fresh Prometheus may take to answer `/-/ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts when another process grabs the port between `free_port` and Prometheus' bind.
const PORT_ATTEMPTS: usize = 3;

/// A running Prometheus process.
#[derive(Debug)]
pub struct Prometheus {
    guard: ChildGuard,
    url: String,
    // Dropped after `guard` (field order), so the process is gone before its TSDB is deleted.
    _dir: TempDir,
}

impl Prometheus {
    /// Start Prometheus named `name` (log file prefix) with `config_yaml` (or [`DEFAULT_CONFIG`])
    /// and wait until it is ready. Flags: 30d retention, 5m lookback, remote-write receiver on.
    pub fn start(name: &str, config_yaml: Option<&str>) -> anyhow::Result<Prometheus> {
        let bin = require_prometheus()?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("e2e-{name}-"))
            .tempdir()
            .context("creating the Prometheus temp dir")?;
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, config_yaml.unwrap_or(DEFAULT_CONFIG))
            .with_context(|| format!("writing {}", config.display()))?;
        let data = dir.path().join("data");
        let mut last_err = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            if port == 0 {
                bail!("no free port on 127.0.0.1");
            }
            let mut cmd = Command::new(&bin);
            cmd.arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", data.display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--web.enable-remote-write-receiver")
                .arg("--storage.tsdb.retention.time=30d")
                .arg("--query.lookback-delta=5m")
                .arg("--log.level=warn");
            let mut guard = ChildGuard::spawn(name, cmd)?;
            let url = format!("http://127.0.0.1:{port}");
            match guard.wait_ready(&format!("{url}/-/ready"), READY_TIMEOUT) {
                Ok(()) => {
                    return Ok(Prometheus {
                        guard,
                        url,
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

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// The process log (stdout and stderr).
    pub fn log_path(&self) -> &std::path::Path {
        self.guard.log_path()
    }

    /// Stop the process now (SIGTERM, then SIGKILL after 5 s) and delete its data.
    pub fn kill(self) {
        drop(self);
    }
}

/// Where harness processes run. Local processes today; a container launcher (testcontainers) can
/// implement the same trait for users with Docker.
pub trait Launcher: Send + Sync {
    /// Start a Prometheus as [`Prometheus::start`] does.
    fn prometheus(&self, name: &str, config_yaml: Option<&str>) -> anyhow::Result<Prometheus>;
}

/// Runs everything as local child processes (binary from [`crate::tools::prometheus_bin`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalProcessLauncher;

impl Launcher for LocalProcessLauncher {
    fn prometheus(&self, name: &str, config_yaml: Option<&str>) -> anyhow::Result<Prometheus> {
        Prometheus::start(name, config_yaml)
    }
}
