//! The `memory` scenario: resident memory of the release proxy (a) idle with no tenants and
//! (b) with 1,000 generated MetricAccess files × 10 metric patterns, read from
//! `/proc/<pid>/status` (VmRSS) once the admin `/debug/tenants` lists every tenant and the
//! process has settled. The read path, collector and ingest stay off; no traffic.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::env::{Ctx, status_kib};
use super::{Better, Row};

const LISTEN: &str = "127.0.0.1:18590";
const ADMIN: &str = "127.0.0.1:18591";

fn config(tenants_dir: &Path) -> String {
    format!(
        "# cargo xtask bench memory: tenants from files, nothing else enabled.\n\
         server: {{listen: \"{LISTEN}\", admin_listen: \"{ADMIN}\"}}\n\
         tenants: {{source: file, directory: \"{}\"}}\n\
         backends: {{groups: [{{name: infra, members: [\"http://127.0.0.1:9\"]}}]}}\n\
         auth: {{mode: header, header: {{name: X-Tenant-Namespace}}}}\n\
         proxy: {{enable_request_logging: false}}\n",
        tenants_dir.display()
    )
}

/// One MetricAccess with 10 patterns: exact names, regexes and selectors.
pub fn tenant_cr(i: usize) -> String {
    let ns = format!("tenant-{i:04}");
    let mut s = format!(
        "apiVersion: observability.ethos.io/v1alpha1\nkind: MetricAccess\nmetadata:\n  \
         name: {ns}-reads\n  namespace: {ns}\nspec:\n  source: {ns}\n  metricIsolation: true\n  metrics:\n"
    );
    let patterns = [
        "up".to_string(),
        "http_requests_total".to_string(),
        "\"http_request_duration_seconds_.*\"".to_string(),
        "container_cpu_usage_seconds_total".to_string(),
        "container_memory_working_set_bytes".to_string(),
        "kube_pod_info".to_string(),
        "\"kube_pod_container_.*\"".to_string(),
        format!("'{{job=\"{ns}/api\"}}'"),
        format!("\"app_{i}_.*\""),
        "process_resident_memory_bytes".to_string(),
    ];
    for p in patterns {
        let _ = writeln!(s, "    - {p}");
    }
    s
}

fn tenants_loaded(admin: SocketAddr) -> Option<usize> {
    let r = crate::http::get(admin, "/debug/tenants", &[]).ok()?;
    if r.status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
    v["tenants"].as_array().map(Vec::len)
}

/// Start the proxy on `tenants_dir`, wait until `expect` tenants are loaded, settle, read RSS.
fn measure(ctx: &mut Ctx, name: &str, tenants_dir: &Path, expect: usize) -> anyhow::Result<f64> {
    let cfg_path = ctx.run_dir.join(format!("{name}.yaml"));
    std::fs::write(&cfg_path, config(tenants_dir))?;
    let pid = ctx.spawn_proxy(name, &cfg_path)?;
    let admin: SocketAddr = ADMIN.parse().context("admin address")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if !crate::pidfile::pid_exists(pid) {
            bail!(
                "the proxy exited (see {})",
                ctx.run_dir.join(format!("{name}.log")).display()
            );
        }
        if tenants_loaded(admin) == Some(expect) {
            break;
        }
        if Instant::now() > deadline {
            bail!("{expect} tenants not loaded after 60 s");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // Let start-up allocations settle (tokio workers, first reload).
    std::thread::sleep(Duration::from_secs(3));
    let kib = status_kib(pid, "VmRSS").context("reading VmRSS")?;
    ctx.stop(name);
    Ok(kib as f64 / 1024.0)
}

pub fn run(ctx: &mut Ctx) -> Vec<Row> {
    let idle_row = Row::new(
        "memory: RSS idle, no tenants",
        "MiB",
        Better::Lower,
        Some(32.0),
    );
    let many_row = Row::new(
        "memory: RSS, 1,000 tenants × 10 patterns",
        "MiB",
        Better::Lower,
        // Issue #14's goal (it was 96 before).
        Some(48.0),
    );
    let empty = ctx.run_dir.join("mem-empty");
    let many = ctx.run_dir.join("mem-1000");
    let prepared = (|| -> anyhow::Result<()> {
        let _ = std::fs::remove_dir_all(&empty);
        let _ = std::fs::remove_dir_all(&many);
        std::fs::create_dir_all(&empty)?;
        std::fs::create_dir_all(&many)?;
        for i in 0..1000 {
            std::fs::write(many.join(format!("tenant-{i:04}.yaml")), tenant_cr(i))?;
        }
        Ok(())
    })();
    if let Err(e) = prepared {
        return Row::failed(vec![idle_row, many_row], &format!("{e:#}"));
    }
    let idle = measure(ctx, "mem-idle", &empty, 0);
    let loaded = measure(ctx, "mem-1000", &many, 1000);
    let row = |r: Row, m: anyhow::Result<f64>| match m {
        Ok(v) => r.proxy(Some(v)).note("VmRSS after load + 3 s; no peer"),
        Err(e) => r.note(&format!("not run: {e:#}")),
    };
    vec![row(idle_row, idle), row(many_row, loaded)]
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_cr_has_ten_patterns() {
        let cr = super::tenant_cr(7);
        assert!(cr.contains("namespace: tenant-0007"));
        assert_eq!(cr.lines().filter(|l| l.starts_with("    - ")).count(), 10);
    }
}
