//! A throwaway Pushgateway: a free port on 127.0.0.1, in-memory storage (no persistence file),
//! killed on drop.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use tempfile::TempDir;

use crate::process::{ChildGuard, free_port};
use crate::tools::require_pushgateway;

/// How long a fresh Pushgateway may take to answer `/-/ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts when another process grabs the port between `free_port` and the bind.
const PORT_ATTEMPTS: usize = 3;

/// A running Pushgateway process.
#[derive(Debug)]
pub struct Pushgateway {
    guard: ChildGuard,
    url: String,
    // Dropped after `guard` (field order): the process's working directory.
    _dir: TempDir,
}

impl Pushgateway {
    /// Start a Pushgateway named `name` (log file prefix) and wait until `/-/ready` answers 200.
    pub fn start(name: &str) -> anyhow::Result<Pushgateway> {
        let bin = require_pushgateway()?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("e2e-{name}-"))
            .tempdir()
            .context("creating the Pushgateway temp dir")?;
        let mut last_err = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            if port == 0 {
                bail!("no free port on 127.0.0.1");
            }
            let mut cmd = Command::new(&bin);
            cmd.current_dir(dir.path())
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn");
            let mut guard = ChildGuard::spawn(name, cmd)?;
            let url = format!("http://127.0.0.1:{port}");
            match guard.wait_ready(&format!("{url}/-/ready"), READY_TIMEOUT) {
                Ok(()) => {
                    return Ok(Pushgateway {
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
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("Pushgateway did not start")))
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

    /// Stop the process now (SIGTERM, then SIGKILL after 5 s).
    pub fn kill(self) {
        drop(self);
    }
}
