//! `cargo xtask soak --minutes N`: the bounded soak. Builds the proxy binary and runs the e2e
//! case `soak::bounded_soak` (e2e/tests/soak.rs) for N minutes: it starts infrastructure, tenant
//! and storage Prometheus and the proxy binary (reads + collector + ingest) as child processes
//! killed on exit, drives them on loopback at a steady rate, prints a summary table and fails on
//! a lost acknowledged sample, a cross-tenant series or a peak RSS over the bound.

use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::test_cmd::{build_bins, cargo_with_env, debug_bin};
use crate::tools;

/// Arguments of `cargo xtask soak`.
#[derive(clap::Args, Debug)]
pub struct SoakArgs {
    /// How long to drive the load, in minutes (fractions allowed: `--minutes 0.5`).
    #[arg(long, default_value_t = 5.0, value_parser = parse_minutes)]
    pub minutes: f64,
}

fn parse_minutes(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("bad number of minutes {s:?} (e.g. 5, 0.5)"))?;
    if !(v > 0.0 && v <= 24.0 * 60.0) {
        return Err(format!("{s} minutes: out of range (0, 1440]"));
    }
    Ok(v)
}

/// A tool from its environment variable when that names a file, else installed by `tools`.
fn tool_paths(root: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let from_env = |k: &str| {
        std::env::var_os(k)
            .map(PathBuf::from)
            .filter(|p| p.is_file())
    };
    match (from_env("PROMETHEUS_BIN"), from_env("PUSHGATEWAY_BIN")) {
        (Some(p), Some(g)) => Ok((p, g)),
        _ => {
            let t = tools::ensure(root, false)?;
            Ok((t.prometheus, t.pushgateway))
        }
    }
}

/// The `cargo test` arguments that run only the soak case.
pub fn soak_test_args() -> Vec<&'static str> {
    vec![
        "test",
        "-p",
        "e2e",
        "--test",
        "e2e",
        "--",
        "soak::bounded_soak",
        "--exact",
        "--nocapture",
    ]
}

pub fn run(root: &Path, args: &SoakArgs) -> anyhow::Result<i32> {
    let (prometheus, pushgateway) = tool_paths(root)?;
    build_bins(root)?;
    let proxy = debug_bin(root, "prometheus-multi-tenant-proxy");
    if !proxy.is_file() {
        bail!("{} is missing after the build", proxy.display());
    }
    let env = [
        (
            "PMTP_SOAK_SECONDS",
            PathBuf::from(format!("{}", args.minutes * 60.0)),
        ),
        ("PROMETHEUS_BIN", prometheus),
        ("PUSHGATEWAY_BIN", pushgateway),
        ("PROXY_BIN", proxy),
    ];
    cargo_with_env(root, &soak_test_args(), &env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_accept_fractions_and_refuse_nonsense() {
        assert_eq!(parse_minutes("0.5"), Ok(0.5));
        assert_eq!(parse_minutes("5"), Ok(5.0));
        for bad in ["0", "-1", "abc", "NaN", "100000"] {
            assert!(parse_minutes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn runs_only_the_soak_case() {
        let args = soak_test_args();
        assert!(args.contains(&"soak::bounded_soak") && args.contains(&"--exact"));
    }
}
