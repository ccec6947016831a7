//! Pidfiles of lab processes (`target/lab/<name>.pid`) and the signals used to stop them.
//!
//! Format: the pid on the first line, the program path on the second, the listen address on the
//! third. The program lets `down`/`status` tell a live lab process from an unrelated process
//! that reused the pid; the address lets `status` probe it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Contents of one pidfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidFile {
    pub pid: i32,
    pub program: Option<String>,
    pub addr: Option<SocketAddr>,
}

impl PidFile {
    pub fn render(&self) -> String {
        let mut s = format!("{}\n", self.pid);
        if let Some(p) = &self.program {
            s.push_str(&format!("{p}\n"));
            if let Some(a) = &self.addr {
                s.push_str(&format!("{a}\n"));
            }
        }
        s
    }

    pub fn parse(text: &str) -> anyhow::Result<PidFile> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let Some(first) = lines.next() else {
            bail!("empty pidfile");
        };
        let pid: i32 = first
            .parse()
            .with_context(|| format!("pidfile first line {first:?} is not a pid"))?;
        if pid <= 1 {
            bail!("pidfile holds invalid pid {pid}");
        }
        let program = lines.next().map(str::to_string);
        let addr = match lines.next() {
            Some(a) => Some(
                a.parse()
                    .with_context(|| format!("pidfile address {a:?} is not host:port"))?,
            ),
            None => None,
        };
        Ok(PidFile { pid, program, addr })
    }

    pub fn read(path: &Path) -> anyhow::Result<PidFile> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        PidFile::parse(&text).with_context(|| format!("parsing {}", path.display()))
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, self.render()).with_context(|| format!("writing {}", path.display()))
    }

    /// The process exists, is not a zombie, and (when recorded) still runs our program.
    pub fn is_alive(&self) -> bool {
        if !pid_exists(self.pid) {
            return false;
        }
        let Some(program) = &self.program else {
            return true;
        };
        match std::fs::read(format!("/proc/{}/cmdline", self.pid)) {
            Ok(cmdline) => {
                let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
                String::from_utf8_lossy(argv0) == program.as_str()
            }
            // No procfs: trust kill(0).
            Err(_) => true,
        }
    }
}

/// `kill(pid, 0)` succeeds and the process is not a zombie.
pub fn pid_exists(pid: i32) -> bool {
    if send_signal(pid, 0).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Field 3 (after the parenthesised comm) is the state; Z/X = dead, awaiting reaping.
        Ok(stat) => match stat.rsplit_once(')') {
            Some((_, rest)) => !matches!(rest.trim_start().chars().next(), Some('Z' | 'X')),
            None => true,
        },
        Err(_) => true,
    }
}

/// Send `sig` to `pid` (0 probes existence).
#[allow(unsafe_code)]
pub fn send_signal(pid: i32, sig: i32) -> std::io::Result<()> {
    if pid <= 1 {
        return Err(std::io::Error::other("refusing to signal pid <= 1"));
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; pid > 1 is checked
    // above so we never signal init or a whole process group by accident.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// All `*.pid` files directly in `dir`, sorted by name (missing dir → none).
pub fn list(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "pid") {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let p = PidFile {
            pid: 4242,
            program: Some("/x/target/tools/bin/prometheus".into()),
            addr: Some("127.0.0.1:19090".parse().unwrap()),
        };
        assert_eq!(PidFile::parse(&p.render()).unwrap(), p);
    }

    #[test]
    fn parses_bare_pid_with_whitespace() {
        let p = PidFile::parse("  123  \n\n").unwrap();
        assert_eq!(p.pid, 123);
        assert_eq!(p.program, None);
        assert_eq!(p.addr, None);
    }

    #[test]
    fn rejects_bad_pids() {
        assert!(PidFile::parse("").is_err());
        assert!(PidFile::parse("abc\n").is_err());
        assert!(PidFile::parse("1\n").is_err());
        assert!(PidFile::parse("-5\n").is_err());
        assert!(PidFile::parse("0\n").is_err());
        assert!(PidFile::parse("10\n/bin/x\nnot-an-addr\n").is_err());
    }

    #[test]
    fn liveness_of_self_and_program_mismatch() {
        let me = std::process::id() as i32;
        assert!(
            PidFile {
                pid: me,
                program: None,
                addr: None,
            }
            .is_alive()
        );
        let other = PidFile {
            pid: me,
            program: Some("/definitely/not/this/binary".into()),
            addr: None,
        };
        assert!(!other.is_alive());
    }

    #[test]
    fn dead_child_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        assert!(!pid_exists(pid));
    }

    #[test]
    fn lists_only_pidfiles() {
        let dir = std::env::temp_dir().join(format!("xtask-pidfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("b.pid"), "10\n").unwrap();
        std::fs::write(dir.join("a.pid"), "11\n").unwrap();
        std::fs::write(dir.join("a.log"), "x").unwrap();
        let names: Vec<_> = list(&dir)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
            .collect();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(names, ["a.pid", "b.pid"]);
        assert!(list(Path::new("/nonexistent/xtask")).unwrap().is_empty());
    }
}
