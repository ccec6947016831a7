//! `cargo xtask fuzz`: run the cargo-fuzz targets of `proxy/fuzz` for a while each, on the
//! committed seed corpus, and say per target how many inputs ran and what crashed.
//!
//! - Installs cargo-fuzz (`cargo install cargo-fuzz --locked`) when `cargo fuzz` is missing.
//! - cargo-fuzz needs nightly compiler flags (`-Z sanitizer`, `-Cpasses=sancov`); CI and this
//!   repo only have stable Rust, so the child runs with `RUSTC_BOOTSTRAP=1`.
//! - The committed corpus (`proxy/fuzz/corpus/<t>`) is read, never written: what libFuzzer
//!   finds goes to `<target dir>/fuzz-corpus/<t>`, crashes to `proxy/fuzz/artifacts/<t>/`.
//! - Executions come from libFuzzer's final stats (`stat::number_of_executed_units`), or its
//!   last `#N` status line when it did not get to print them (a crash).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};

/// The targets, in run order: the binaries of proxy/fuzz/Cargo.toml.
pub const TARGETS: [&str; 5] = ["rewrite", "remote_write", "relabel", "config", "crd"];

#[derive(clap::Args, Debug)]
pub struct FuzzArgs {
    /// Seconds per target (libFuzzer's -max_total_time).
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Run only this target (rewrite, remote_write, relabel, config, crd); repeatable.
    #[arg(long = "target")]
    pub targets: Vec<String>,
    /// cargo-fuzz sanitizer: address (default), none, ...
    #[arg(long, default_value = "address")]
    pub sanitizer: String,
    /// Print the commands without running anything.
    #[arg(long)]
    pub dry_run: bool,
}

/// What one target's run gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub target: String,
    pub executions: Option<u64>,
    pub crashes: usize,
    pub success: bool,
}

pub fn run(root: &Path, args: &FuzzArgs) -> anyhow::Result<i32> {
    let targets = selected(&args.targets)?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let fuzz_dir = root.join("proxy/fuzz");
    if args.dry_run {
        println!("cargo fuzz --version || cargo install cargo-fuzz --locked");
    } else {
        ensure_cargo_fuzz()?;
    }
    let mut outcomes = Vec::new();
    for t in &targets {
        let scratch = target_dir.join("fuzz-corpus").join(t);
        let seeds = fuzz_dir.join("corpus").join(t);
        let cmd_args = command_args(t, &args.sanitizer, &scratch, &seeds, args.seconds);
        let shown = format!(
            "(cd {} && RUSTC_BOOTSTRAP=1 cargo {})",
            root.join("proxy").display(),
            cmd_args.join(" ")
        );
        if args.dry_run {
            println!("{shown}");
            continue;
        }
        std::fs::create_dir_all(&scratch)?;
        println!("== {t}: {shown}");
        outcomes.push(run_target(root, t, &cmd_args, &target_dir)?);
    }
    if args.dry_run {
        return Ok(0);
    }
    println!("\n| target | seconds | executions | crashes |\n|---|---|---|---|");
    for o in &outcomes {
        let execs = o.executions.map_or("?".into(), |n| n.to_string());
        println!(
            "| {} | {} | {execs} | {} |",
            o.target, args.seconds, o.crashes
        );
    }
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.crashes > 0 || !o.success)
        .map(|o| o.target.as_str())
        .collect();
    if failed.is_empty() {
        Ok(0)
    } else {
        eprintln!(
            "crashes or failed runs: {} (inputs in proxy/fuzz/artifacts/<target>/; reproduce with `cargo fuzz run <target> <file>`)",
            failed.join(", ")
        );
        Ok(1)
    }
}

fn selected(names: &[String]) -> anyhow::Result<Vec<String>> {
    if names.is_empty() {
        return Ok(TARGETS.iter().map(|t| t.to_string()).collect());
    }
    for n in names {
        if !TARGETS.contains(&n.as_str()) {
            bail!("unknown fuzz target {n:?} (one of: {})", TARGETS.join(", "));
        }
    }
    Ok(names.to_vec())
}

/// `cargo <these>`, run in `proxy/` (cargo-fuzz finds `fuzz/` there).
pub fn command_args(
    target: &str,
    sanitizer: &str,
    scratch: &Path,
    seeds: &Path,
    seconds: u64,
) -> Vec<String> {
    vec![
        "fuzz".into(),
        "run".into(),
        format!("--sanitizer={sanitizer}"),
        target.into(),
        scratch.display().to_string(),
        seeds.display().to_string(),
        "--".into(),
        format!("-max_total_time={seconds}"),
        "-rss_limit_mb=2048".into(),
        "-print_final_stats=1".into(),
    ]
}

fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let have = Command::new(env!("CARGO"))
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if have {
        return Ok(());
    }
    println!("cargo fuzz is missing: cargo install cargo-fuzz --locked");
    let status = Command::new(env!("CARGO"))
        .args(["install", "cargo-fuzz", "--locked"])
        .status()
        .context("running cargo install cargo-fuzz")?;
    if !status.success() {
        bail!("cargo install cargo-fuzz --locked failed");
    }
    Ok(())
}

/// Crash, leak, timeout and out-of-memory inputs libFuzzer wrote for a target.
fn artifacts(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                ["crash-", "leak-", "timeout-", "oom-", "slow-unit-"]
                    .iter()
                    .any(|prefix| n.starts_with(prefix))
            })
        })
        .collect();
    out.sort();
    out
}

fn run_target(
    root: &Path,
    target: &str,
    cmd_args: &[String],
    target_dir: &Path,
) -> anyhow::Result<Outcome> {
    let artifact_dir = root.join("proxy/fuzz/artifacts").join(target);
    let before = artifacts(&artifact_dir);
    let log_path = target_dir.join("fuzz-logs").join(format!("{target}.log"));
    if let Some(dir) = log_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO"))
        .current_dir(root.join("proxy"))
        .args(cmd_args)
        .env("RUSTC_BOOTSTRAP", "1")
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .spawn()
        .context("running cargo fuzz")?;
    let mut stats = Stats::default();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            let line = line?;
            writeln!(log, "{line}")?;
            stats.read(&line);
            if stats.worth_showing(&line) {
                eprintln!("  {line}");
            }
        }
    }
    let status = child.wait()?;
    let new: Vec<PathBuf> = artifacts(&artifact_dir)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    for p in &new {
        println!("  crash input: {}", p.display());
    }
    println!(
        "  {target}: {} executions in {:.0} s, {} crash(es); log {}",
        stats
            .executions()
            .map_or("an unknown number of".into(), |n| n.to_string()),
        started.elapsed().as_secs_f64(),
        new.len(),
        log_path.display()
    );
    Ok(Outcome {
        target: target.to_string(),
        executions: stats.executions(),
        crashes: new.len(),
        success: status.success(),
    })
}

/// What libFuzzer's stderr says about executions.
#[derive(Debug, Default)]
pub struct Stats {
    /// `stat::number_of_executed_units: N` (with -print_final_stats=1).
    final_units: Option<u64>,
    /// The `N` of the last `#N <event> ...` status line.
    last_status: Option<u64>,
}

impl Stats {
    pub fn read(&mut self, line: &str) {
        if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
            self.final_units = n.trim().parse().ok().or(self.final_units);
        } else if let Some(rest) = line.strip_prefix('#')
            && let Some(n) = rest.split_whitespace().next()
            && let Ok(n) = n.parse()
        {
            self.last_status = Some(n);
        }
    }

    pub fn executions(&self) -> Option<u64> {
        self.final_units.or(self.last_status)
    }

    /// The lines echoed to the terminal (all go to the log): progress pulses, the end, and
    /// anything about a failure.
    fn worth_showing(&self, line: &str) -> bool {
        let l = line.trim_start();
        l.contains(" DONE ")
            || l.contains("pulse")
            || l.starts_with("stat::")
            || l.starts_with("==")
            || l.starts_with("SUMMARY")
            || l.contains("panicked")
            || l.contains("artifact")
            || l.starts_with("error")
            || l.starts_with("Failing input")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executions_from_final_stats_or_the_last_status_line() {
        let mut s = Stats::default();
        assert_eq!(s.executions(), None);
        s.read("#2\tINITED cov: 10 ft: 10 corp: 1/1b exec/s: 0 rss: 30Mb");
        s.read("#65536\tpulse  cov: 900 ft: 2000 corp: 300/9Kb lim: 100 exec/s: 21845 rss: 90Mb");
        assert_eq!(s.executions(), Some(65536));
        s.read("#70001\tDONE   cov: 901 ft: 2001 corp: 301/9Kb lim: 100 exec/s: 1166 rss: 90Mb");
        assert_eq!(s.executions(), Some(70001));
        s.read("stat::number_of_executed_units: 70003");
        s.read("#5 not a status line after the stats");
        s.read("stat::peak_rss_mb:              90");
        assert_eq!(s.executions(), Some(70003));
    }

    #[test]
    fn the_target_list_is_the_fuzz_crate_s() {
        let root = crate::workspace_root();
        let mut on_disk: Vec<String> = std::fs::read_dir(root.join("proxy/fuzz/fuzz_targets"))
            .expect("proxy/fuzz/fuzz_targets")
            .filter_map(|e| {
                let p = e.ok()?.path();
                Some(p.file_stem()?.to_str()?.to_string())
            })
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = TARGETS.iter().map(|t| t.to_string()).collect();
        listed.sort();
        assert_eq!(listed, on_disk);
        for t in TARGETS {
            assert!(
                root.join("proxy/fuzz/corpus").join(t).is_dir(),
                "no seed corpus for {t}"
            );
        }
    }

    #[test]
    fn the_command_reads_the_committed_corpus_and_writes_elsewhere() {
        let args = command_args(
            "crd",
            "none",
            Path::new("/t/fuzz-corpus/crd"),
            Path::new("/r/proxy/fuzz/corpus/crd"),
            90,
        );
        let text = args.join(" ");
        assert_eq!(
            text,
            "fuzz run --sanitizer=none crd /t/fuzz-corpus/crd /r/proxy/fuzz/corpus/crd -- \
             -max_total_time=90 -rss_limit_mb=2048 -print_final_stats=1"
        );
        assert!(selected(&["nope".into()]).is_err());
        assert_eq!(selected(&[]).expect("all").len(), TARGETS.len());
    }
}
