//! `cargo xtask tools`: make `prometheus` and `prometheus-pushgateway` available in
//! `<root>/target/tools/bin/`, trying (in order) what is already there, `$PATH`, the Debian
//! package via `apt-get download` + `dpkg -x`, then the official release archive verified
//! against a pinned SHA-256.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

/// Arguments of `cargo xtask tools`.
#[derive(clap::Args, Debug, Default)]
pub struct ToolsArgs {
    /// Only check that the tools are installed in target/tools/bin (no download, no linking);
    /// exit non-zero if one is missing.
    #[arg(long)]
    pub check: bool,
}

/// One external tool and every way we know to get it.
struct Tool {
    /// Name in target/tools/bin.
    name: &'static str,
    /// Names to look for on `$PATH`.
    path_names: &'static [&'static str],
    /// Debian/Ubuntu package and the binary's path inside it.
    deb_package: &'static str,
    deb_binary: &'static str,
    /// Official release archive (linux-amd64), its pinned SHA-256 and the binary inside it.
    release_url: &'static str,
    release_sha256: &'static str,
    release_binary: &'static str,
}

/// Prometheus 2.53.4 (the 2.53 LTS line). Checksum from the release's sha256sums.txt.
const PROMETHEUS: Tool = Tool {
    name: "prometheus",
    path_names: &["prometheus"],
    deb_package: "prometheus",
    deb_binary: "usr/bin/prometheus",
    release_url: "https://github.com/prometheus/prometheus/releases/download/v2.53.4/prometheus-2.53.4.linux-amd64.tar.gz",
    release_sha256: "b8b497c4610d1b93208252b60c8f20f6b2e78596ae8df43397a2e805aa53d475",
    release_binary: "prometheus-2.53.4.linux-amd64/prometheus",
};

/// Pushgateway 1.11.1. Checksum from the release's sha256sums.txt.
const PUSHGATEWAY: Tool = Tool {
    name: "prometheus-pushgateway",
    path_names: &["prometheus-pushgateway", "pushgateway"],
    deb_package: "prometheus-pushgateway",
    deb_binary: "usr/bin/prometheus-pushgateway",
    release_url: "https://github.com/prometheus/pushgateway/releases/download/v1.11.1/pushgateway-1.11.1.linux-amd64.tar.gz",
    release_sha256: "6ce6ffab84d0d71195036326640295c02165462abd12b8092b0fa93188f5ee37",
    release_binary: "pushgateway-1.11.1.linux-amd64/pushgateway",
};

/// Absolute paths of the installed tools.
#[derive(Debug, Clone)]
pub struct Tools {
    pub prometheus: PathBuf,
    pub pushgateway: PathBuf,
}

pub fn bin_dir(root: &Path) -> PathBuf {
    root.join("target/tools/bin")
}

fn cache_dir(root: &Path) -> PathBuf {
    root.join("target/tools/cache")
}

/// `cargo xtask tools`.
pub fn run(root: &Path, args: &ToolsArgs) -> anyhow::Result<Tools> {
    let tools = ensure(root, args.check)?;
    for (name, path) in [
        ("prometheus", &tools.prometheus),
        ("pushgateway", &tools.pushgateway),
    ] {
        println!("{name:<12} {}  ({})", version_line(path)?, path.display());
    }
    Ok(tools)
}

/// Make both tools available (or only check, with `check_only`).
pub fn ensure(root: &Path, check_only: bool) -> anyhow::Result<Tools> {
    let mut apt_updated = false;
    let prometheus = ensure_tool(root, &PROMETHEUS, check_only, &mut apt_updated)?;
    let pushgateway = ensure_tool(root, &PUSHGATEWAY, check_only, &mut apt_updated)?;
    Ok(Tools {
        prometheus,
        pushgateway,
    })
}

fn ensure_tool(
    root: &Path,
    tool: &Tool,
    check_only: bool,
    apt_updated: &mut bool,
) -> anyhow::Result<PathBuf> {
    let bin = bin_dir(root);
    let dest = bin.join(tool.name);
    if is_executable(&dest) && runs(&dest) {
        return Ok(dest);
    }
    if check_only {
        bail!(
            "{} is not installed in {}: run `cargo xtask tools`",
            tool.name,
            bin.display()
        );
    }
    std::fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;

    if let Some(found) = find_on_path(tool.path_names, &bin) {
        eprintln!("xtask: {}: using {} from PATH", tool.name, found.display());
        link(&found, &dest)?;
        return Ok(dest);
    }

    let mut reasons = Vec::new();
    if is_debian_like() && which("apt-get").is_some() && which("dpkg").is_some() {
        match from_deb(root, tool, apt_updated) {
            Ok(found) => {
                link(&found, &dest)?;
                return Ok(dest);
            }
            Err(e) => {
                eprintln!("xtask: {}: Debian package route failed: {e:#}", tool.name);
                reasons.push(format!("apt-get download {}: {e:#}", tool.deb_package));
            }
        }
    } else {
        reasons.push("not a Debian/Ubuntu system with apt-get and dpkg".to_string());
    }

    match from_release(root, tool) {
        Ok(found) => {
            link(&found, &dest)?;
            Ok(dest)
        }
        Err(e) => {
            reasons.push(format!("release archive: {e:#}"));
            bail!(
                "could not install {}:\n  - {}\nInstall it yourself (e.g. `apt-get install {}`) and put it on PATH, \
                 or symlink it to {}",
                tool.name,
                reasons.join("\n  - "),
                tool.deb_package,
                dest.display()
            )
        }
    }
}

/// `apt-get download` the package into the cache and `dpkg -x` it; on an empty package list run
/// `apt-get update` once (root only) and retry.
fn from_deb(root: &Path, tool: &Tool, apt_updated: &mut bool) -> anyhow::Result<PathBuf> {
    let cache = cache_dir(root);
    let extract = cache.join("root");
    let found = extract.join(tool.deb_binary);
    if is_executable(&found) && runs(&found) {
        return Ok(found);
    }
    std::fs::create_dir_all(&cache)?;
    let mut attempt = apt_download(&cache, tool.deb_package);
    // Empty package lists (fresh containers) or stale ones (404 on an old version) are both
    // fixed by one `apt-get update`; only root may run it.
    if let Err(e) = &attempt
        && !*apt_updated
        && is_root()
    {
        eprintln!(
            "xtask: apt-get download failed ({e:#}); running `apt-get update` once and retrying"
        );
        *apt_updated = true;
        let status = Command::new("apt-get")
            .args(["update", "-qq"])
            .status()
            .context("running apt-get update")?;
        if !status.success() {
            bail!("apt-get update failed ({status})");
        }
        attempt = apt_download(&cache, tool.deb_package);
    }
    let deb = attempt?;
    std::fs::create_dir_all(&extract)?;
    let status = Command::new("dpkg")
        .arg("-x")
        .arg(&deb)
        .arg(&extract)
        .status()
        .context("running dpkg -x")?;
    if !status.success() {
        bail!("dpkg -x {} failed ({status})", deb.display());
    }
    if !is_executable(&found) {
        bail!(
            "package {} has no executable {}",
            tool.deb_package,
            tool.deb_binary
        );
    }
    Ok(found)
}

/// Run `apt-get download <pkg>` in `dir`; return the .deb it wrote.
pub fn apt_download(dir: &Path, package: &str) -> anyhow::Result<PathBuf> {
    let out = Command::new("apt-get")
        .args(["download", "-qq", package])
        .current_dir(dir)
        .output()
        .context("running apt-get download")?;
    if !out.status.success() {
        bail!(
            "apt-get download {package} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let prefix = format!("{package}_");
    let mut debs: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|e| e == "deb")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        })
        .collect();
    debs.sort();
    debs.pop()
        .with_context(|| format!("apt-get download {package} wrote no .deb"))
}

/// Download the official release archive with curl, verify the pinned SHA-256, extract it.
fn from_release(root: &Path, tool: &Tool) -> anyhow::Result<PathBuf> {
    if std::env::consts::OS != "linux" || std::env::consts::ARCH != "x86_64" {
        bail!(
            "the pinned release archive is linux-amd64 only (this is {}-{})",
            std::env::consts::OS,
            std::env::consts::ARCH
        );
    }
    if !is_sha256_hex(tool.release_sha256) {
        // Fail closed: never install an unverified binary.
        bail!("no valid pinned SHA-256 for {}", tool.release_url);
    }
    if which("curl").is_none() || which("tar").is_none() {
        bail!("curl and tar are needed to download {}", tool.release_url);
    }
    let cache = cache_dir(root);
    std::fs::create_dir_all(&cache)?;
    let file_name = tool.release_url.rsplit('/').next().unwrap_or(tool.name);
    let archive = cache.join(file_name);
    let extract = cache.join("release");
    let found = extract.join(tool.release_binary);
    if is_executable(&found)
        && archive.is_file()
        && verify_sha256(&archive, tool.release_sha256).is_ok()
    {
        return Ok(found);
    }
    let partial = cache.join(format!("{file_name}.part"));
    eprintln!("xtask: downloading {}", tool.release_url);
    let status = Command::new("curl")
        .args(["-fsSL", "--retry", "2", "-o"])
        .arg(&partial)
        .arg(tool.release_url)
        .status()
        .context("running curl")?;
    if !status.success() {
        let _ = std::fs::remove_file(&partial);
        bail!("curl {} failed ({status})", tool.release_url);
    }
    if let Err(e) = verify_sha256(&partial, tool.release_sha256) {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, &archive)?;
    std::fs::create_dir_all(&extract)?;
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(&extract)
        .arg(tool.release_binary)
        .status()
        .context("running tar")?;
    if !status.success() || !is_executable(&found) {
        bail!(
            "extracting {} from {} failed",
            tool.release_binary,
            archive.display()
        );
    }
    Ok(found)
}

/// Compare a file's SHA-256 with the pinned hex digest.
pub fn verify_sha256(path: &Path, expected_hex: &str) -> anyhow::Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let actual = sha256_hex(&bytes);
    if !actual.eq_ignore_ascii_case(expected_hex) {
        bail!(
            "SHA-256 mismatch for {}: expected {expected_hex}, got {actual}; refusing to install it",
            path.display()
        );
    }
    Ok(())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// First line of `<bin> --version` (stdout, or stderr for older tools that print there).
pub fn version_line(bin: &Path) -> anyhow::Result<String> {
    let out = Command::new(bin)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", bin.display()))?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    Ok(String::from_utf8_lossy(&text)
        .lines()
        .next()
        .unwrap_or("(no version output)")
        .trim()
        .to_string())
}

fn runs(bin: &Path) -> bool {
    Command::new(bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Replace `dest` with a symlink to `target` (absolute).
fn link(target: &Path, dest: &Path) -> anyhow::Result<()> {
    let target = target
        .canonicalize()
        .with_context(|| format!("resolving {}", target.display()))?;
    if dest.symlink_metadata().is_ok() {
        std::fs::remove_file(dest).with_context(|| format!("removing {}", dest.display()))?;
    }
    std::os::unix::fs::symlink(&target, dest)
        .with_context(|| format!("linking {} -> {}", dest.display(), target.display()))?;
    Ok(())
}

pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

/// First of `names` on PATH, skipping our own bin dir (it would link to itself).
fn find_on_path(names: &[&str], own_bin: &Path) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let own = own_bin
        .canonicalize()
        .unwrap_or_else(|_| own_bin.to_path_buf());
    for dir in std::env::split_paths(&path) {
        if dir.canonicalize().is_ok_and(|d| d == own) {
            continue;
        }
        for name in names {
            let p = dir.join(name);
            if is_executable(&p) && runs(&p) {
                return Some(p);
            }
        }
    }
    None
}

fn is_debian_like() -> bool {
    let Ok(text) = std::fs::read_to_string("/etc/os-release") else {
        return Path::new("/etc/debian_version").exists();
    };
    text.lines().any(|l| {
        (l.starts_with("ID=") || l.starts_with("ID_LIKE="))
            && (l.contains("debian") || l.contains("ubuntu"))
    })
}

/// The effective uid owns /proc/self; avoids an unsafe geteuid().
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_checksums_are_well_formed() {
        for t in [&PROMETHEUS, &PUSHGATEWAY] {
            assert!(is_sha256_hex(t.release_sha256), "{}", t.name);
            assert!(t.release_url.starts_with("https://github.com/prometheus/"));
            assert!(t.release_url.ends_with(".linux-amd64.tar.gz"));
            // The binary lives in the archive's top folder, named like the archive.
            let file = t.release_url.rsplit('/').next().unwrap();
            let top = file.trim_end_matches(".tar.gz");
            assert!(
                t.release_binary.starts_with(&format!("{top}/")),
                "{}",
                t.name
            );
        }
        assert!(PROMETHEUS.release_url.contains("/v2.53."));
    }

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn verify_rejects_mismatch() {
        let dir = std::env::temp_dir().join(format!("xtask-sha-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("blob");
        std::fs::write(&f, b"abc").unwrap();
        let ok = verify_sha256(
            &f,
            "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
        );
        let bad = verify_sha256(&f, &"0".repeat(64));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(ok.is_ok());
        assert!(bad.unwrap_err().to_string().contains("mismatch"));
    }
}
