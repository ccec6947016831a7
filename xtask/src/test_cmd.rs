//! `cargo xtask test`: install the tools, build the binaries the end-to-end tests spawn, then run
//! `cargo test --workspace` with their absolute paths exported.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::tools;

/// Arguments of `cargo xtask test`.
#[derive(clap::Args, Debug)]
pub struct TestArgs {
    /// Extra arguments for `cargo test`, after `--` (e.g. `cargo xtask test -- -p proxy`
    /// or `cargo xtask test -- -- --nocapture`). `-p/--package` replaces `--workspace`.
    #[arg(last = true)]
    pub cargo_args: Vec<String>,
}

/// The cargo executable cargo itself runs us with.
pub fn cargo() -> PathBuf {
    std::env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("cargo"))
}

/// Cargo's target directory (honours CARGO_TARGET_DIR).
pub fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() { d } else { root.join(d) }
        }
        _ => root.join("target"),
    }
}

/// Path of a debug binary built by `cargo build`.
pub fn debug_bin(root: &Path, name: &str) -> PathBuf {
    target_dir(root).join("debug").join(name)
}

/// Run a cargo command in `root`, echoing it first; error on failure.
pub fn cargo_run(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    println!("+ cargo {}", args.join(" "));
    let status = Command::new(cargo())
        .args(args)
        .current_dir(root)
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Build the proxy and the e2e binaries (lab-workload).
pub fn build_bins(root: &Path) -> anyhow::Result<()> {
    cargo_run(root, &["build", "-p", "proxy", "--bins"])?;
    cargo_run(root, &["build", "-p", "e2e", "--bins"])
}

/// The `cargo test` argument list for the user's extra args.
pub fn test_command_args(extra: &[String]) -> Vec<String> {
    let before_sep = extra.iter().take_while(|a| *a != "--");
    let selects_package = before_sep.clone().any(|a| {
        a == "-p" || a == "--package" || a.starts_with("--package=") || a.starts_with("-p")
    });
    let mut args = vec!["test".to_string()];
    if !selects_package {
        args.push("--workspace".to_string());
    }
    args.extend(extra.iter().cloned());
    args
}

/// Install the tools and build the binaries the end-to-end tests spawn; the environment
/// variables that point the tests at them (absolute paths).
pub fn test_env(root: &Path) -> anyhow::Result<Vec<(&'static str, PathBuf)>> {
    let tools = tools::ensure(root, false)?;
    build_bins(root)?;
    let proxy = debug_bin(root, "prometheus-multi-tenant-proxy");
    if !proxy.is_file() {
        bail!(
            "{} is missing after building crate proxy: does it still define that binary?",
            proxy.display()
        );
    }
    Ok(vec![
        ("PROMETHEUS_BIN", tools.prometheus),
        ("PUSHGATEWAY_BIN", tools.pushgateway),
        ("PROXY_BIN", proxy),
    ])
}

/// `cargo xtask test`: returns cargo's exit code.
pub fn run(root: &Path, args: &TestArgs) -> anyhow::Result<i32> {
    let env = test_env(root)?;
    let test_args = test_command_args(&args.cargo_args);
    cargo_with_env(root, &test_args, &env)
}

/// Echo `VAR=value … cargo <args>` (and CI when set), run it with those variables added to our
/// environment, and return cargo's exit code.
pub fn cargo_with_env<A: AsRef<str>>(
    root: &Path,
    args: &[A],
    env: &[(&str, PathBuf)],
) -> anyhow::Result<i32> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let mut line = String::new();
    for (k, v) in env {
        line.push_str(&format!("{k}={} ", v.display()));
    }
    if let Some(ci) = std::env::var_os("CI") {
        line.push_str(&format!("CI={} ", ci.to_string_lossy()));
    }
    println!("+ {line}cargo {}", args.join(" "));
    // CI and everything else is inherited from our environment.
    let status = Command::new(cargo())
        .args(&args)
        .envs(env.iter().map(|(k, v)| (k, v.as_os_str())))
        .current_dir(root)
        .status()
        .context("running cargo")?;
    Ok(status.code().unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn workspace_by_default() {
        assert_eq!(test_command_args(&[]), s(&["test", "--workspace"]));
        assert_eq!(
            test_command_args(&s(&["--", "--nocapture"])),
            s(&["test", "--workspace", "--", "--nocapture"])
        );
    }

    #[test]
    fn package_selection_replaces_workspace() {
        assert_eq!(
            test_command_args(&s(&["-p", "proxy", "tenant::"])),
            s(&["test", "-p", "proxy", "tenant::"])
        );
        assert_eq!(
            test_command_args(&s(&["--package=e2e"])),
            s(&["test", "--package=e2e"])
        );
        // A `-p` after `--` belongs to the test binary, not cargo.
        assert_eq!(
            test_command_args(&s(&["--", "-p"])),
            s(&["test", "--workspace", "--", "-p"])
        );
    }
}
