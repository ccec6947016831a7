//! The bench run's environment: its directories under `target/bench/`, the external tools
//! (wrk, nginx, vmagent, vmauth, Prometheus, Python with cramjam), the payloads, the release
//! proxy, and every process a scenario starts — the proxy as our child, the harness's processes
//! through the pidfiles its scripts write in `target/bench/run/pids/`. [`Ctx::stop_all`] (also
//! on drop) stops them all by PID: SIGTERM, then SIGKILL.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use super::BenchArgs;
use crate::{pidfile, procs, tools};

pub struct Ctx {
    pub root: PathBuf,
    pub harness: PathBuf,
    pub dir: PathBuf,
    pub run_dir: PathBuf,
    pub quick: bool,
    pub duration: Duration,
    pub repeats: u32,
    /// name → version line, for the document.
    pub versions: BTreeMap<String, String>,
    children: Vec<Child>,
    proxy_bin: Option<Result<PathBuf, String>>,
    python: Option<Result<PathBuf, String>>,
    apt_updated: bool,
    /// binary → the .deb it was extracted from in this run.
    debs: BTreeMap<String, PathBuf>,
}

impl Ctx {
    pub fn new(root: &Path, args: &BenchArgs) -> anyhow::Result<Ctx> {
        let dir = root.join("target/bench");
        let run_dir = dir.join("run");
        std::fs::create_dir_all(run_dir.join("pids"))?;
        let duration = if args.quick {
            args.duration.min(Duration::from_secs(8))
        } else {
            args.duration
        };
        Ok(Ctx {
            root: root.to_path_buf(),
            harness: root.join("bench/harness"),
            dir,
            run_dir,
            quick: args.quick,
            duration,
            repeats: args.repeats.max(1),
            versions: BTreeMap::new(),
            children: Vec::new(),
            proxy_bin: None,
            python: None,
            apt_updated: false,
            debs: BTreeMap::new(),
        })
    }

    /// The cargo target directory (CARGO_TARGET_DIR, else `<root>/target`).
    pub fn target_dir(&self) -> PathBuf {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| self.root.join("target"))
    }

    /// The release proxy, built once per run.
    pub fn proxy_bin(&mut self) -> anyhow::Result<PathBuf> {
        if self.proxy_bin.is_none() {
            eprintln!("xtask bench: cargo build --release -p proxy");
            let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
                .args(["build", "--release", "-p", "proxy", "--bin"])
                .arg("prometheus-multi-tenant-proxy")
                .current_dir(&self.root)
                .status();
            let bin = self
                .target_dir()
                .join("release/prometheus-multi-tenant-proxy");
            self.proxy_bin = Some(match status {
                Ok(s) if s.success() && bin.is_file() => Ok(bin),
                Ok(s) => Err(format!("cargo build --release failed ({s})")),
                Err(e) => Err(format!("running cargo: {e}")),
            });
        }
        match self.proxy_bin.as_ref() {
            Some(Ok(p)) => Ok(p.clone()),
            Some(Err(e)) => bail!("{e}"),
            None => bail!("proxy binary not built"),
        }
    }

    /// A tool from the first of the Debian `packages` that holds it (binary at
    /// `usr/{s,}bin/<bin>` inside it), extracted into `target/bench/tools` with the library
    /// packages `libs` it needs beside it, or from PATH when `path_ok` and it is there. The
    /// extracted tool must answer `probe` (e.g. `-v`): a binary that can't load its libraries
    /// is an error that names them, never a row that silently goes unmeasured.
    pub fn tool(
        &mut self,
        bin: &str,
        packages: &[&str],
        libs: &[&str],
        path_ok: bool,
        probe: &[&str],
    ) -> anyhow::Result<PathBuf> {
        let root = self.dir.join("tools");
        let extracted = |root: &Path| {
            ["usr/bin", "usr/sbin"]
                .iter()
                .map(|sub| root.join(sub).join(bin))
                .find(|p| p.is_file())
        };
        if let Some(p) = extracted(&root) {
            return self.probed(bin, p, probe);
        }
        if path_ok && let Some(p) = tools::which(bin) {
            return Ok(p);
        }
        for lib in libs {
            self.extract(lib)?;
        }
        let mut tried = Vec::new();
        for package in packages {
            let deb = self.extract(package)?;
            if let Some(p) = extracted(&root) {
                self.debs.insert(bin.to_string(), deb);
                return self.probed(bin, p, probe);
            }
            // A transitional package (nginx-light is one now) holds no binary.
            tried.push(*package);
        }
        bail!(
            "no usr/bin/{bin} in the Debian package(s) {}",
            tried.join(", ")
        )
    }

    /// wrk (Debian's links LuaJIT, which a fresh machine lacks: its library package comes too).
    pub fn wrk(&mut self) -> anyhow::Result<PathBuf> {
        let wrk = self.tool("wrk", &["wrk"], &["libluajit-5.1-2"], true, &["-v"])?;
        self.record_version("wrk", &wrk, &["-v"]);
        Ok(wrk)
    }

    /// nginx for the 204 sink: the `nginx` package (since Debian 12's security updates
    /// `nginx-light` is an empty transitional package), `nginx-light` on older releases. The
    /// sink needs `stub_status`.
    pub fn nginx(&mut self) -> anyhow::Result<PathBuf> {
        let nginx = self.tool("nginx", &["nginx", "nginx-light"], &[], true, &["-V"])?;
        let out = Command::new(&nginx)
            .arg("-V")
            .env("LD_LIBRARY_PATH", self.library_path())
            .output()
            .context("running nginx -V")?;
        if !String::from_utf8_lossy(&out.stderr).contains("http_stub_status_module") {
            bail!(
                "{} lacks the stub_status module the sink needs",
                nginx.display()
            );
        }
        self.record_version("nginx", &nginx, &["-v"]);
        Ok(nginx)
    }

    /// A peer from Debian's victoria-metrics package (vmagent, vmauth).
    pub fn victoria(&mut self, bin: &str) -> anyhow::Result<PathBuf> {
        let p = self.tool(bin, &["victoria-metrics"], &[], false, &["-version"])?;
        self.record_version(bin, &p, &["-version"]);
        Ok(p)
    }

    /// `apt-get download` + `dpkg -x` of one package into `target/bench/tools`.
    fn extract(&mut self, package: &str) -> anyhow::Result<PathBuf> {
        let root = self.dir.join("tools");
        let debs = self.dir.join("debs");
        std::fs::create_dir_all(&debs)?;
        eprintln!("xtask bench: apt-get download {package}");
        let deb = match tools::apt_download(&debs, package) {
            Ok(d) => d,
            Err(e) if !self.apt_updated && tools::is_root() => {
                eprintln!("xtask bench: {e:#}; running apt-get update once");
                self.apt_updated = true;
                let _ = Command::new("apt-get").args(["update", "-qq"]).status();
                tools::apt_download(&debs, package)?
            }
            Err(e) => return Err(e),
        };
        let status = Command::new("dpkg")
            .arg("-x")
            .arg(&deb)
            .arg(&root)
            .status()
            .context("running dpkg -x")?;
        if !status.success() {
            bail!("dpkg -x {} failed", deb.display());
        }
        Ok(deb)
    }

    /// Run `bin probe…` with the extracted libraries on the loader path; the error carries
    /// what the binary printed (a missing `.so` names itself).
    fn probed(&self, bin: &str, path: PathBuf, probe: &[&str]) -> anyhow::Result<PathBuf> {
        if probe.is_empty() {
            return Ok(path);
        }
        let out = Command::new(&path)
            .args(probe)
            .env("LD_LIBRARY_PATH", self.library_path())
            .output()
            .with_context(|| format!("running {}", path.display()))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if text.contains("error while loading shared libraries") || out.status.code() == Some(127) {
            bail!("{bin} can't run here: {}", text.trim());
        }
        Ok(path)
    }

    /// The extracted packages' library folders, then the caller's LD_LIBRARY_PATH.
    pub fn library_path(&self) -> std::ffi::OsString {
        let root = self.dir.join("tools");
        let mut dirs: Vec<PathBuf> = [
            "usr/lib/x86_64-linux-gnu",
            "usr/lib/aarch64-linux-gnu",
            "usr/lib",
            "lib/x86_64-linux-gnu",
        ]
        .iter()
        .map(|d| root.join(d))
        .filter(|d| d.is_dir())
        .collect();
        dirs.extend(std::env::split_paths(
            &std::env::var_os("LD_LIBRARY_PATH").unwrap_or_default(),
        ));
        std::env::join_paths(dirs).unwrap_or_default()
    }

    /// The version of the Debian package `bin` was extracted from (`dpkg-deb -f <deb>
    /// Version`), for binaries whose own `-version` prints nothing (Debian's
    /// victoria-metrics build has no build info).
    pub fn package_version(&self, bin: &str) -> Option<String> {
        let deb = match self.debs.get(bin) {
            Some(d) => d.clone(),
            None => {
                // Extracted by an earlier run: the newest .deb of a package holding it.
                let dir = self.dir.join("debs");
                let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
                    .ok()?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        Command::new("dpkg-deb")
                            .arg("-c")
                            .arg(p)
                            .output()
                            .is_ok_and(|o| {
                                String::from_utf8_lossy(&o.stdout)
                                    .lines()
                                    .any(|l| l.ends_with(&format!("/bin/{bin}")))
                            })
                    })
                    .collect();
                found.sort();
                found.pop()?
            }
        };
        let out = Command::new("dpkg-deb")
            .args(["-f"])
            .arg(&deb)
            .args(["Package", "Version"])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix(':'))
                .map(str::trim)
        };
        Some(format!(
            "{} {} (Debian package)",
            field("Package")?,
            field("Version")?
        ))
    }

    /// python3 that can `import cramjam`: the system one, else a venv in target/bench/venv.
    pub fn python(&mut self) -> anyhow::Result<PathBuf> {
        if self.python.is_none() {
            self.python = Some(self.find_python().map_err(|e| format!("{e:#}")));
        }
        match self.python.as_ref() {
            Some(Ok(p)) => Ok(p.clone()),
            Some(Err(e)) => bail!("{e}"),
            None => bail!("no python"),
        }
    }

    fn find_python(&self) -> anyhow::Result<PathBuf> {
        let has_cramjam = |py: &Path| {
            Command::new(py)
                .args(["-c", "import cramjam"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let venv_py = self.dir.join("venv/bin/python3");
        if venv_py.is_file() && has_cramjam(&venv_py) {
            return Ok(venv_py);
        }
        let sys = tools::which("python3").context("python3 is not on PATH")?;
        if has_cramjam(&sys) {
            return Ok(sys);
        }
        eprintln!("xtask bench: creating target/bench/venv with cramjam");
        let venv = self.dir.join("venv");
        let ok = Command::new(&sys)
            .args(["-m", "venv"])
            .arg(&venv)
            .status()?
            .success()
            && Command::new(&venv_py)
                .args(["-m", "pip", "install", "-q", "cramjam"])
                .status()?
                .success();
        if !ok || !has_cramjam(&venv_py) {
            bail!("could not install cramjam into {}", venv.display());
        }
        Ok(venv_py)
    }

    /// A directory with python3 (cramjam) first, then the extracted tools, then PATH: the
    /// harness scripts call `python3`, `nginx`, `wrk`, `curl` by name.
    pub fn harness_path(&mut self) -> anyhow::Result<std::ffi::OsString> {
        let py = self.python()?;
        let mut dirs: Vec<PathBuf> = Vec::new();
        if let Some(d) = py.parent() {
            dirs.push(d.to_path_buf());
        }
        dirs.push(self.dir.join("tools/usr/sbin"));
        dirs.push(self.dir.join("tools/usr/bin"));
        dirs.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        Ok(std::env::join_paths(dirs)?)
    }

    /// Run a harness script (path relative to bench/harness) with the run's environment;
    /// returns its stdout. `envs` add to RUN_DIR, RAW_DIR, ANCHOR_BIN and PATH.
    pub fn harness(
        &mut self,
        script: &str,
        args: &[&str],
        envs: &[(&str, String)],
    ) -> anyhow::Result<String> {
        let path = self.harness_path()?;
        let mut cmd = Command::new(self.harness.join(script));
        cmd.args(args)
            .current_dir(&self.harness)
            .env("PATH", path)
            .env("LD_LIBRARY_PATH", self.library_path())
            .env("RUN_DIR", &self.run_dir)
            .env("RAW_DIR", self.dir.join("raw"))
            .env("ANCHOR_BIN", self.dir.join("tools/usr/bin"))
            .stderr(Stdio::inherit());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let out = cmd.output().with_context(|| format!("running {script}"))?;
        if !out.status.success() {
            bail!("{script} {} failed ({})", args.join(" "), out.status);
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// PID the harness recorded for `name` (`run/pids/<name>.pid`).
    pub fn harness_pid(&self, name: &str) -> Option<i32> {
        let p = self.run_dir.join("pids").join(format!("{name}.pid"));
        std::fs::read_to_string(p).ok()?.trim().parse().ok()
    }

    /// Start the release proxy with `config`, log to `run/<name>.log`; returns its PID.
    pub fn spawn_proxy(&mut self, name: &str, config: &Path) -> anyhow::Result<i32> {
        let bin = self.proxy_bin()?;
        let log = self.run_dir.join(format!("{name}.log"));
        let out = File::create(&log)?;
        let child = Command::new(&bin)
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id() as i32;
        std::fs::write(
            self.run_dir.join("pids").join(format!("{name}.pid")),
            format!("{pid}\n"),
        )?;
        self.children.push(child);
        Ok(pid)
    }

    /// Stop one process by its recorded name (harness or ours).
    pub fn stop(&mut self, name: &str) {
        if let Some(pid) = self.harness_pid(name) {
            self.stop_pids(&[pid]);
        }
        let _ = std::fs::remove_file(self.run_dir.join("pids").join(format!("{name}.pid")));
    }

    fn stop_pids(&mut self, pids: &[i32]) {
        let children = &mut self.children;
        procs::stop_all(pids, Duration::from_secs(10), || {
            for c in children.iter_mut() {
                let _ = c.try_wait();
            }
        });
        self.children
            .retain_mut(|c| matches!(c.try_wait(), Ok(None)));
    }

    /// Stop everything recorded in run/pids and every child of ours.
    pub fn stop_all(&mut self) {
        let dir = self.run_dir.join("pids");
        let mut pids: Vec<i32> = self.children.iter().map(|c| c.id() as i32).collect();
        let mut files = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if let Some(pid) = std::fs::read_to_string(e.path())
                    .ok()
                    .and_then(|t| t.trim().parse::<i32>().ok())
                {
                    pids.push(pid);
                }
                files.push(e.path());
            }
        }
        pids.sort_unstable();
        pids.dedup();
        pids.retain(|&p| p > 1 && pidfile::pid_exists(p));
        if !pids.is_empty() {
            eprintln!("xtask bench: stopping pids {pids:?}");
            self.stop_pids(&pids);
        }
        for f in files {
            let _ = std::fs::remove_file(f);
        }
    }

    /// Record `<name> --version`-like output (first line) for the document.
    pub fn record_version(&mut self, name: &str, bin: &Path, args: &[&str]) {
        if self.versions.contains_key(name) {
            return;
        }
        let line = Command::new(bin)
            .args(args)
            .env("LD_LIBRARY_PATH", self.library_path())
            .output()
            .ok()
            .map(|o| {
                let mut t = String::from_utf8_lossy(&o.stdout).into_owned();
                t.push_str(&String::from_utf8_lossy(&o.stderr));
                t.lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .trim()
                    .to_string()
            })
            .unwrap_or_default();
        let line = if line.is_empty() {
            self.package_version(name).unwrap_or_default()
        } else {
            line
        };
        self.versions.insert(name.to_string(), line);
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// A `/proc/<pid>/status` field in KiB (VmRSS, VmHWM).
pub fn status_kib(pid: i32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
