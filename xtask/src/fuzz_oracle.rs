//! `cargo xtask fuzz-oracle --queries N [--seed S]`: the differential fuzzing of the e2e suite
//! (`bypass::differential`, e2e/tests/fuzz_oracle.rs) at a chosen size. Generated PromQL goes
//! through the proxy as a tenant and straight to that tenant's oracle Prometheus; a series
//! outside the tenant's policy is a leak and fails the run, other differences are counted by
//! class. Tools and binaries are set up as `cargo xtask test` does.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Context;

use crate::test_cmd::{cargo, test_env};

/// Arguments of `cargo xtask fuzz-oracle`.
#[derive(clap::Args, Debug)]
pub struct FuzzOracleArgs {
    /// Generated queries; each runs for every tenant, as an instant and as a range query.
    #[arg(long, default_value_t = 2000)]
    pub queries: usize,
    /// Generator seed (the suite's fixed seed by default).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Tenants, comma-separated (default: team-a,team-d).
    #[arg(long)]
    pub tenants: Option<String>,
    /// Mismatches printed per class.
    #[arg(long, default_value_t = 3)]
    pub show: usize,
}

/// The case of the e2e suite that fuzzes.
const CASE: &str = "bypass::differential";

/// Run the case, echo its output, then the summary; returns cargo's exit code.
pub fn run(root: &Path, args: &FuzzOracleArgs) -> anyhow::Result<i32> {
    let mut env: Vec<(&str, String)> = test_env(root)?
        .into_iter()
        .map(|(k, v)| (k, v.display().to_string()))
        .collect();
    env.push(("PMTP_FUZZ_QUERIES", args.queries.to_string()));
    env.push(("PMTP_FUZZ_SHOW", args.show.to_string()));
    if let Some(seed) = args.seed {
        env.push(("PMTP_FUZZ_SEED", seed.to_string()));
    }
    if let Some(tenants) = &args.tenants {
        env.push(("PMTP_FUZZ_TENANTS", tenants.clone()));
    }
    let test_args = ["test", "-p", "e2e", "--test", "e2e", "--", CASE, "--exact"];
    println!("+ cargo {}", test_args.join(" "));
    let mut child = Command::new(cargo())
        .args(test_args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(root)
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    let mut summary = Vec::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line.context("reading cargo test output")?;
            println!("{line}");
            if let Some(rest) = line.strip_prefix("fuzz-oracle: ")
                && (rest.starts_with("seed=") || rest.starts_with("class "))
            {
                summary.push(rest.to_string());
            }
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    println!();
    if summary.is_empty() {
        println!("fuzz-oracle: no summary (did {CASE} run?)");
    }
    for line in &summary {
        println!("fuzz-oracle summary: {}", describe(line));
    }
    Ok(status.code().unwrap_or(1))
}

/// `seed=… queries=… leaks=… mismatches=…` as tried / mismatches / leaks first; class lines as is.
fn describe(line: &str) -> String {
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or("?")
            .to_string()
    };
    if line.starts_with("seed=") {
        format!(
            "tried {} queries ({} comparisons), mismatches {}, leaks {} (seed {})",
            field("queries"),
            field("comparisons"),
            field("mismatches"),
            field("leaks"),
            field("seed")
        )
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_is_described() {
        let d = describe(
            "seed=7 queries=20 tenants=team-a comparisons=40 non_empty=9 leaks=0 mismatches=3 in 1s",
        );
        assert_eq!(
            d,
            "tried 20 queries (40 comparisons), mismatches 3, leaks 0 (seed 7)"
        );
        assert_eq!(describe("class equal 37"), "class equal 37");
    }
}
