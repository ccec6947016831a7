//! Process plumbing for the lab: spawning detached processes with their own log and pidfile,
//! stopping them (SIGTERM → wait → SIGKILL), polling until a condition holds, and tailing logs.

use std::ffi::OsString;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::pidfile::{self, PidFile};

/// Everything needed to start one lab process.
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: &'static str,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// The address it listens on (readiness checks, status, pidfile).
    pub addr: SocketAddr,
    /// Working directory; `None`: xtask's own.
    pub cwd: Option<PathBuf>,
}

impl Spec {
    /// The command line, for printing.
    pub fn command_line(&self) -> String {
        let mut s = match &self.cwd {
            Some(dir) => format!("(in {}) ", dir.display()),
            None => String::new(),
        };
        s.push_str(&self.program.display().to_string());
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }
}

/// A process started by this run of xtask.
pub struct Started {
    pub spec: Spec,
    pub child: Child,
    pub log: PathBuf,
    pub pidfile: PathBuf,
}

/// Start `spec` in its own process group (so it outlives xtask and a Ctrl-C on our terminal),
/// stdout+stderr to `<logs>/<name>.log`, pid to `<lab>/<name>.pid`.
pub fn spawn_detached(spec: &Spec, lab_dir: &Path, logs_dir: &Path) -> anyhow::Result<Started> {
    use std::os::unix::process::CommandExt;
    let log = logs_dir.join(format!("{}.log", spec.name));
    let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    let mut cmd = Command::new(&spec.program);
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }
    let child = cmd
        .args(&spec.args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {} ({})", spec.name, spec.program.display()))?;
    let pidfile = lab_dir.join(format!("{}.pid", spec.name));
    let pf = PidFile {
        pid: child.id() as i32,
        program: Some(spec.program.display().to_string()),
        addr: Some(spec.addr),
    };
    pf.write(&pidfile)?;
    Ok(Started {
        spec: spec.clone(),
        child,
        log,
        pidfile,
    })
}

/// Outcome of stopping one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    AlreadyGone,
    Terminated,
    Killed,
    StillAlive,
}

/// SIGTERM every pid, wait up to `grace` for all of them, SIGKILL the rest, then verify.
/// `reap` is called while waiting so our own children don't linger as zombies.
pub fn stop_all(pids: &[i32], grace: Duration, mut reap: impl FnMut()) -> Vec<StopOutcome> {
    let mut outcome: Vec<StopOutcome> = pids
        .iter()
        .map(|&pid| {
            if pidfile::pid_exists(pid) && pidfile::send_signal(pid, libc::SIGTERM).is_ok() {
                StopOutcome::Terminated
            } else {
                StopOutcome::AlreadyGone
            }
        })
        .collect();
    let all_gone = |reap: &mut dyn FnMut()| {
        reap();
        pids.iter().all(|&p| !pidfile::pid_exists(p))
    };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && !all_gone(&mut reap) {
        std::thread::sleep(Duration::from_millis(100));
    }
    for (i, &pid) in pids.iter().enumerate() {
        if pidfile::pid_exists(pid) {
            let _ = pidfile::send_signal(pid, libc::SIGKILL);
            outcome[i] = StopOutcome::Killed;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline && !all_gone(&mut reap) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for (i, &pid) in pids.iter().enumerate() {
        if pidfile::pid_exists(pid) {
            outcome[i] = StopOutcome::StillAlive;
        }
    }
    outcome
}

/// Stop processes this run started (on failure), reap them and remove their pidfiles.
pub fn stop_started(started: &mut [Started]) {
    let pids: Vec<i32> = started.iter().map(|s| s.child.id() as i32).collect();
    let outcomes = {
        let children: Vec<&mut Child> = started.iter_mut().map(|s| &mut s.child).collect();
        let mut children = children;
        stop_all(&pids, Duration::from_secs(10), || {
            for c in children.iter_mut() {
                let _ = c.try_wait();
            }
        })
    };
    for (s, o) in started.iter().zip(outcomes) {
        let _ = std::fs::remove_file(&s.pidfile);
        eprintln!(
            "xtask: stopped {} (pid {}): {o:?}",
            s.spec.name,
            s.child.id()
        );
    }
}

/// Poll `check` every 250ms until it returns `Ok(true)` or `timeout` passes; `alive` is checked
/// each round so a crashed process fails fast instead of waiting out the timeout.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut alive: impl FnMut() -> anyhow::Result<()>,
    mut check: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        alive()?;
        let last_err = match check() {
            Ok(true) => return Ok(()),
            Ok(false) => None,
            Err(e) => Some(e),
        };
        if Instant::now() >= deadline {
            match last_err {
                Some(e) => bail!("timed out after {timeout:?} waiting for {what}: {e:#}"),
                None => bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The last `n` lines of a log file (or a note that it can't be read).
pub fn tail(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(n);
            lines[start..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Is something already listening on (or holding) this port?
pub fn port_taken(addr: SocketAddr) -> bool {
    TcpListener::bind(addr).is_err()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_returns_last_lines() {
        let dir = std::env::temp_dir().join(format!("xtask-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("x.log");
        std::fs::write(&f, "1\n2\n3\n4\n").unwrap();
        let t = tail(&f, 2);
        let whole = tail(&f, 10);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(t, "3\n4");
        assert_eq!(whole, "1\n2\n3\n4");
        assert!(tail(Path::new("/nonexistent/x.log"), 3).contains("cannot read"));
    }

    #[test]
    fn detects_taken_port() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        assert!(port_taken(addr));
        drop(l);
        // A parallel test's fork may hold the fd until its exec (CLOEXEC acts at exec): poll.
        wait_until(
            "port freed",
            Duration::from_secs(5),
            || Ok(()),
            || Ok(!port_taken(addr)),
        )
        .unwrap();
    }

    #[test]
    fn spawn_and_stop_a_detached_sleep() {
        let dir = std::env::temp_dir().join(format!("xtask-spawn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let spec = Spec {
            name: "sleeper",
            program: PathBuf::from("/bin/sleep"),
            args: vec!["30".into()],
            addr: "127.0.0.1:1".parse().unwrap(),
            cwd: None,
        };
        let started = spawn_detached(&spec, &dir, &dir).unwrap();
        let pid = started.child.id() as i32;
        let pf = PidFile::read(&started.pidfile).unwrap();
        assert_eq!(pf.pid, pid);
        // Right after fork, /proc/<pid>/cmdline can still be ours until exec completes.
        wait_until(
            "exec",
            Duration::from_secs(5),
            || Ok(()),
            || Ok(pf.is_alive()),
        )
        .unwrap();
        let mut v = vec![started];
        stop_started(&mut v);
        assert!(!pidfile::pid_exists(pid));
        assert!(!v[0].pidfile.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sigterm_ignorer_gets_sigkill() {
        let mut child = Command::new("/bin/sh")
            .args([
                "-c",
                "trap '' TERM; echo ready; while :; do sleep 0.1; done",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until the trap is installed (the shell printed "ready").
        let mut buf = [0u8; 6];
        std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut buf).unwrap();
        let pid = child.id() as i32;
        let outcome = stop_all(&[pid], Duration::from_millis(300), || {
            let _ = child.try_wait();
        });
        assert_eq!(outcome, [StopOutcome::Killed]);
        assert!(!pidfile::pid_exists(pid));
        let gone = stop_all(&[pid], Duration::from_millis(100), || {});
        assert_eq!(gone, [StopOutcome::AlreadyGone]);
    }

    #[test]
    fn wait_until_times_out_and_fails_fast() {
        let r = wait_until("never", Duration::from_millis(300), || Ok(()), || Ok(false));
        assert!(r.unwrap_err().to_string().contains("timed out"));
        let r = wait_until(
            "dead",
            Duration::from_secs(30),
            || anyhow::bail!("process exited"),
            || Ok(false),
        );
        assert!(r.unwrap_err().to_string().contains("exited"));
        let mut n = 0;
        wait_until(
            "third try",
            Duration::from_secs(5),
            || Ok(()),
            || {
                n += 1;
                Ok(n >= 3)
            },
        )
        .unwrap();
        assert_eq!(n, 3);
    }
}
