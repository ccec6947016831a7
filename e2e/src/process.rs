//! Child processes of the harness (Prometheus, the proxy binary, the lab workload): spawning with
//! logs to a file, readiness polling, and guaranteed cleanup.
//!
//! Cleanup has two layers. [`ChildGuard`]'s `Drop` sends SIGTERM, waits up to 5 s, then SIGKILL.
//! When the test binary itself is SIGKILLed no destructor runs, so every child also gets
//! `PR_SET_PDEATHSIG(SIGKILL)`. The kernel fires that signal when the *thread* that forked the
//! child exits, not the process; a child spawned from a short-lived test thread would be killed
//! with it. Hence all children are spawned from one dedicated spawner thread that never exits.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::tools::workspace_root;

/// A running child process, terminated on drop. Its stdout and stderr go to [`ChildGuard::log_path`].
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Child,
    log: PathBuf,
}

type SpawnJob = (Command, Sender<std::io::Result<Child>>);

/// The sender to the spawner thread, created on first use. The thread lives as long as the process.
fn spawner() -> &'static Mutex<Sender<SpawnJob>> {
    static SPAWNER: OnceLock<Mutex<Sender<SpawnJob>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = channel::<SpawnJob>();
        let spawn_thread = std::thread::Builder::new()
            .name("e2e-spawner".into())
            .spawn(move || {
                // The sender lives in a static, so `recv` never fails and this thread never exits,
                // which keeps PR_SET_PDEATHSIG of its children from firing early.
                while let Ok((mut cmd, reply)) = rx.recv() {
                    let _ = reply.send(cmd.spawn());
                }
            });
        if let Err(e) = spawn_thread {
            panic!("cannot start the e2e spawner thread: {e}");
        }
        Mutex::new(tx)
    })
}

/// Ask the kernel to SIGKILL the child when its parent thread dies.
#[allow(unsafe_code)]
fn kill_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec; it only calls the async-signal-safe
    // `prctl` and `getppid`, allocates nothing and touches no locks.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nobody would ever kill us.
            if libc::getppid() as u32 != parent {
                return Err(std::io::Error::other("parent exited before exec"));
            }
            Ok(())
        });
    }
}

fn next_log_path(name: &str) -> anyhow::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = workspace_root().join("target/e2e-logs");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    Ok(dir.join(format!("{name}-{}-{n}.log", std::process::id())))
}

impl ChildGuard {
    /// Spawn `cmd` (from the spawner thread, with parent-death SIGKILL), output to a fresh log file
    /// `<root>/target/e2e-logs/<name>-<test pid>-<n>.log`.
    pub fn spawn(name: &str, mut cmd: Command) -> anyhow::Result<ChildGuard> {
        let log = next_log_path(name)?;
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        kill_with_parent(&mut cmd);
        let (tx, rx) = channel();
        spawner()
            .lock()
            .map_err(|_| anyhow::anyhow!("spawner lock poisoned"))?
            .send((cmd, tx))
            .map_err(|_| anyhow::anyhow!("spawner thread is gone"))?;
        let child = rx
            .recv()
            .context("spawner thread dropped the request")?
            .with_context(|| format!("spawning {name}"))?;
        Ok(ChildGuard {
            name: name.to_string(),
            child,
            log,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// `Some(status)` when the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last `n` lines of the process log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Poll `url` with HTTP GET until it answers 200. Fails early if the process exits; errors
    /// carry the last 20 log lines.
    pub fn wait_ready(&mut self, url: &str, timeout: Duration) -> anyhow::Result<()> {
        self.wait_ready_with(url, timeout, None)
    }

    /// [`ChildGuard::wait_ready`], sending `authorization` (the full header value, e.g.
    /// `Basic dXNlcjpwYXNz`) with every probe.
    pub fn wait_ready_with(
        &mut self,
        url: &str,
        timeout: Duration,
        authorization: Option<&str>,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                bail!(
                    "{} (pid {}) exited with {status} before {url} was ready; log {}:\n{}",
                    self.name,
                    self.pid(),
                    self.log.display(),
                    self.log_tail(20)
                );
            }
            let last = match http_get_status_with(url, Duration::from_secs(2), authorization) {
                Ok(200) => return Ok(()),
                Ok(code) => format!("HTTP {code}"),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "{} (pid {}) not ready at {url} after {timeout:?} (last: {last}); log {}:\n{}",
                    self.name,
                    self.pid(),
                    self.log.display(),
                    self.log_tail(20)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Terminate now (SIGTERM, up to 5 s grace, SIGKILL) and reap.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if self.exited().is_some() {
            return;
        }
        // SIGTERM through kill(1): the workspace forbids unsafe code outside the pre_exec hook.
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// A free TCP port on 127.0.0.1 (bound then released; callers must tolerate a race).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Poll `url` with HTTP GET until it answers 200 (for servers that are not a [`ChildGuard`],
/// e.g. the proxy started in-process).
pub fn wait_http_ok(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match http_get_status(url, Duration::from_secs(2)) {
            Ok(200) => return Ok(()),
            Ok(code) => format!("HTTP {code}"),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            bail!("{url} not ready after {timeout:?} (last: {last})");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Minimal blocking HTTP/1.0 GET over plain TCP, returning the status code. Sync on purpose: it
/// works inside and outside an async runtime, and readiness polling needs nothing more.
pub fn http_get_status(url: &str, timeout: Duration) -> anyhow::Result<u16> {
    http_get_status_with(url, timeout, None)
}

/// [`http_get_status`] with an optional `Authorization` header value.
pub fn http_get_status_with(
    url: &str,
    timeout: Duration,
    authorization: Option<&str>,
) -> anyhow::Result<u16> {
    let rest = url
        .strip_prefix("http://")
        .context("only http:// URLs are supported")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = std::net::ToSocketAddrs::to_socket_addrs(authority)?
        .next()
        .with_context(|| format!("cannot resolve {authority}"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let auth = authorization
        .map(|v| format!("Authorization: {v}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        let r = stream.read(&mut head[n..])?;
        if r == 0 {
            break;
        }
        n += r;
    }
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("bad HTTP status line {line:?}"))
}
