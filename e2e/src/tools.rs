//! Locating external tools (the Prometheus and Pushgateway binaries) and the skip-or-fail policy when they are
//! missing: a developer without Prometheus gets a loud SKIP, CI gets a failure.

use std::path::{Path, PathBuf};

use anyhow::bail;

/// The workspace root (the parent of the `e2e` crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The Prometheus binary: `$PROMETHEUS_BIN`, then `<root>/target/tools/bin/prometheus` (installed
/// by `cargo xtask tools`), then `prometheus` on `$PATH`.
pub fn prometheus_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PROMETHEUS_BIN").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let local = workspace_root().join("target/tools/bin/prometheus");
    if local.is_file() {
        return Some(local);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("prometheus"))
        .find(|p| p.is_file())
}

/// Like [`prometheus_bin`], with an error telling how to install it.
pub fn require_prometheus() -> anyhow::Result<PathBuf> {
    match prometheus_bin() {
        Some(p) => Ok(p),
        None => bail!(
            "Prometheus binary not found: run `cargo xtask tools` (installs target/tools/bin/prometheus), \
             or set PROMETHEUS_BIN, or put `prometheus` on PATH"
        ),
    }
}

/// The Pushgateway binary: `$PUSHGATEWAY_BIN`, then
/// `<root>/target/tools/bin/prometheus-pushgateway` (installed by `cargo xtask tools`), then
/// `prometheus-pushgateway` or `pushgateway` on `$PATH`.
pub fn pushgateway_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PUSHGATEWAY_BIN").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let local = workspace_root().join("target/tools/bin/prometheus-pushgateway");
    if local.is_file() {
        return Some(local);
    }
    let path = std::env::var_os("PATH")?;
    ["prometheus-pushgateway", "pushgateway"]
        .iter()
        .find_map(|name| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
}

/// Like [`pushgateway_bin`], with an error telling how to install it.
pub fn require_pushgateway() -> anyhow::Result<PathBuf> {
    match pushgateway_bin() {
        Some(p) => Ok(p),
        None => bail!(
            "Pushgateway binary not found: run `cargo xtask tools` (installs \
             target/tools/bin/prometheus-pushgateway), or set PUSHGATEWAY_BIN, or put \
             `prometheus-pushgateway` on PATH"
        ),
    }
}

/// A required tool is missing: fail under CI (`$CI` set), otherwise print a loud SKIP banner.
pub fn skip_or_fail(msg: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{msg} (CI is set, so this is a failure, not a skip)");
    }
    let bar = "!".repeat(72);
    eprintln!("\n{bar}\n!! SKIP: {msg}\n{bar}\n");
}
