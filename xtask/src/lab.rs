//! `cargo xtask up|down|status`: the local lab — the synthetic workload, two infrastructure
//! Prometheus scraping it (one HA group with identical series), and the proxy in front of them,
//! the tenants' own targets the proxy's collector copies series to ([`targets`]), and the ingest
//! gateway's agent and storage ([`ingest`]), all detached processes on 127.0.0.1 with logs and
//! pidfiles under `target/lab/`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::http;
use crate::kind;
use crate::pidfile::{self, PidFile};
use crate::procs::{self, Spec, Started, StopOutcome};
use crate::render::{self, DEFAULT_BASE_PORT};
use crate::test_cmd;
use crate::tools;

/// Arguments of `cargo xtask up`.
#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Base port: proxy API = base, admin = base+1, infra-a = base+10, infra-b = base+11,
    /// workload = base+20, tenant targets = base+30..33 and base+40, ingest storage = base+50,
    /// ingest agent = base+51. Any other value than the default renders a shifted copy of
    /// fixtures/configs/lab.yaml into target/lab/.
    #[arg(long, default_value_t = DEFAULT_BASE_PORT)]
    pub base_port: u16,
    /// Print what would be started (commands, ports, files), start nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The Kubernetes lab instead: kind clusters, ArgoCD, the GitOps apps (xtask/src/kind.rs).
    /// Needs Docker, kind >= 0.23, kubectl and internet.
    #[arg(long)]
    pub kind: bool,
    /// With --kind: no control cluster and no ArgoCD; apply kustomize/overlays/kind and
    /// gitops/tenants/* to the monitoring cluster directly.
    #[arg(long, requires = "kind")]
    pub no_argocd: bool,
    /// With --kind: the workload clusters to create (monitoring is required).
    #[arg(long, requires = "kind", value_delimiter = ',', value_enum)]
    pub clusters: Vec<crate::kind::Role>,
}

/// Arguments of `cargo xtask down`.
#[derive(clap::Args, Debug)]
pub struct DownArgs {
    /// Delete the kind lab's clusters instead of stopping the local processes.
    #[arg(long)]
    pub kind: bool,
    /// With --kind: print the commands, run nothing.
    #[arg(long, requires = "kind")]
    pub dry_run: bool,
}

/// The lab's ports for one base port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub api: u16,
    pub admin: u16,
    pub infra_a: u16,
    pub infra_b: u16,
    pub workload: u16,
    pub team_a: u16,
    pub team_b_0: u16,
    pub team_b_1: u16,
    pub team_c: u16,
    pub team_d: u16,
    pub ingest_storage: u16,
    pub ingest_agent: u16,
}

impl Ports {
    pub fn from_base(base: u16) -> Ports {
        Ports {
            api: base + render::PROXY_API_OFFSET,
            admin: base + render::PROXY_ADMIN_OFFSET,
            infra_a: base + render::INFRA_A_OFFSET,
            infra_b: base + render::INFRA_B_OFFSET,
            workload: base + render::WORKLOAD_OFFSET,
            team_a: base + render::TEAM_A_PROMETHEUS_OFFSET,
            team_b_0: base + render::TEAM_B_PROMETHEUS_0_OFFSET,
            team_b_1: base + render::TEAM_B_PROMETHEUS_1_OFFSET,
            team_c: base + render::TEAM_C_REMOTE_WRITE_OFFSET,
            team_d: base + render::TEAM_D_PUSHGATEWAY_OFFSET,
            ingest_storage: base + render::INGEST_STORAGE_OFFSET,
            ingest_agent: base + render::INGEST_AGENT_OFFSET,
        }
    }
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn lab_dir(root: &Path) -> PathBuf {
    root.join("target/lab")
}

const TENANT_HEADER: &str = "X-Tenant-Namespace";
const PROXY: &str = "proxy";

/// Where the proxy runs: the fixture config's directory, so the relative paths of lab.yaml
/// (tenants, secrets, spill, usage rule files and dashboards) mean the same whether the proxy
/// resolves them against the config file or against its working directory.
fn proxy_cwd(root: &Path) -> PathBuf {
    root.join("fixtures/configs")
}

/// Process specs in start order: the workload, infra, the tenants' targets, the ingest storage,
/// the proxy, the ingest agent. `proxy_config` is the config the proxy gets.
fn specs(root: &Path, ports: &Ports, proxy_config: &Path) -> Vec<Spec> {
    let lab = lab_dir(root);
    let prometheus = tools::bin_dir(root).join("prometheus");
    let infra = |name: &'static str, port: u16| Spec {
        name,
        program: prometheus.clone(),
        args: vec![
            format!("--config.file={}", lab.join("infra.yml").display()).into(),
            format!(
                "--storage.tsdb.path={}",
                lab.join("data").join(name).display()
            )
            .into(),
            format!("--web.listen-address={}", local(port)).into(),
            "--storage.tsdb.retention.time=2d".into(),
        ],
        addr: local(port),
        cwd: None,
    };
    let mut specs = vec![
        Spec {
            name: "workload",
            program: test_cmd::debug_bin(root, "lab-workload"),
            args: vec!["--listen".into(), local(ports.workload).to_string().into()],
            addr: local(ports.workload),
            cwd: None,
        },
        infra("infra-a", ports.infra_a),
        infra("infra-b", ports.infra_b),
    ];
    specs.extend(targets::specs(root, ports));
    let (storage, agent) = ingest::specs(root, ports);
    specs.push(storage);
    specs.push(Spec {
        name: PROXY,
        program: test_cmd::debug_bin(root, "prometheus-multi-tenant-proxy"),
        args: vec![
            "--config".into(),
            proxy_config.as_os_str().to_owned(),
            "--log-format".into(),
            "text".into(),
            "--log-level".into(),
            "info".into(),
        ],
        addr: local(ports.api),
        cwd: Some(proxy_cwd(root)),
    });
    specs.push(agent);
    specs
}

/// Stop order: clients before what they send to. The agent first (it flushes to a live proxy),
/// then the proxy (its ingest queue drains into a live storage instead of retrying a dead one
/// for its whole drain timeout), then everything else together.
fn stop_stage(name: &str) -> u8 {
    match name {
        ingest::AGENT => 0,
        PROXY => 1,
        _ => 2,
    }
}

fn index_of(specs: &[Spec], name: &str) -> usize {
    specs
        .iter()
        .position(|s| s.name == name)
        .unwrap_or_else(|| panic!("no {name} spec"))
}

/// The proxy config for this base port: the fixture itself, or a shifted copy.
fn proxy_config_path(root: &Path, base: u16) -> PathBuf {
    if base == DEFAULT_BASE_PORT {
        root.join("fixtures/configs/lab.yaml")
    } else {
        lab_dir(root).join("lab.yaml")
    }
}

/// Refuse when a pidfile names a live lab process; drop stale pidfiles.
fn refuse_if_running(root: &Path) -> anyhow::Result<()> {
    let mut running = Vec::new();
    for path in pidfile::list(&lab_dir(root))? {
        match PidFile::read(&path) {
            Ok(pf) if pf.is_alive() => running.push(format!("{} (pid {})", name_of(&path), pf.pid)),
            _ => {
                eprintln!("xtask: removing stale pidfile {}", path.display());
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    if !running.is_empty() {
        bail!(
            "the lab is already running: {}. Run `cargo xtask status` to inspect it or \
             `cargo xtask down` to stop it first",
            running.join(", ")
        );
    }
    Ok(())
}

fn refuse_taken_ports(specs: &[Spec], admin: SocketAddr) -> anyhow::Result<()> {
    let mut taken: Vec<String> = specs
        .iter()
        .filter(|s| procs::port_taken(s.addr))
        .map(|s| format!("{} ({})", s.addr, s.name))
        .collect();
    if procs::port_taken(admin) {
        taken.push(format!("{admin} (proxy admin)"));
    }
    if !taken.is_empty() {
        bail!(
            "port(s) already in use: {}. Stop whatever holds them (`ss -ltnp`), \
             or pick other ports with `cargo xtask up --base-port N`",
            taken.join(", ")
        );
    }
    Ok(())
}

fn name_of(pidfile: &Path) -> String {
    pidfile
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default()
}

/// `cargo xtask up`.
pub fn up(root: &Path, args: &UpArgs) -> anyhow::Result<()> {
    if args.kind {
        let opts = kind::UpOpts::new(&args.clusters, !args.no_argocd, kind::tenant_dirs(root)?)?;
        return kind::up(root, &opts, args.dry_run);
    }
    render::check_base_port(args.base_port)?;
    let ports = Ports::from_base(args.base_port);
    let config = proxy_config_path(root, args.base_port);
    let specs = specs(root, &ports, &config);
    if args.dry_run {
        print_dry_run(root, args.base_port, &ports, &specs, &config);
        return Ok(());
    }
    refuse_if_running(root)?;
    refuse_taken_ports(&specs, local(ports.admin))?;

    tools::ensure(root, false)?;
    test_cmd::cargo_run(root, &["build", "-p", "proxy", "--bins"])?;
    test_cmd::cargo_run(root, &["build", "-p", "e2e", "--bin", "lab-workload"])?;
    prepare_files(root, args.base_port, &ports, &config)?;
    check_proxy_config(&specs[index_of(&specs, PROXY)])?;
    // The build may have taken minutes: look again right before binding.
    refuse_taken_ports(&specs, local(ports.admin))?;

    let mut started: Vec<Started> = Vec::new();
    let mut failing: Option<usize> = None;
    match start_and_wait(root, &specs, &ports, &mut started, &mut failing) {
        Ok(()) => {
            print_summary(&lab_dir(root), &ports, &started);
            Ok(())
        }
        Err(e) => {
            eprintln!("xtask: lab failed to come up: {e:#}");
            let show: Vec<&Started> = match failing.and_then(|i| started.get(i)) {
                Some(s) => vec![s],
                None => started.iter().collect(),
            };
            for s in show {
                eprintln!(
                    "---- last lines of {} ({}) ----\n{}\n----",
                    s.spec.name,
                    s.log.display(),
                    procs::tail(&s.log, 30)
                );
            }
            started.sort_by_key(|s| stop_stage(s.spec.name));
            for stage in
                started.chunk_by_mut(|a, b| stop_stage(a.spec.name) == stop_stage(b.spec.name))
            {
                procs::stop_started(stage);
            }
            Err(e.context("`cargo xtask up` failed; everything it started was stopped"))
        }
    }
}

/// Render the infra config (one file: both members must be identical) and, for a non-default
/// base port, the shifted proxy config; wipe old TSDB data so both members start equal.
fn prepare_files(root: &Path, base: u16, ports: &Ports, config: &Path) -> anyhow::Result<()> {
    let lab = lab_dir(root);
    for d in [lab.join("logs"), lab.join("data")] {
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    }
    for member in ["infra-a", "infra-b"] {
        let data = lab.join("data").join(member);
        if data.exists() {
            std::fs::remove_dir_all(&data)
                .with_context(|| format!("removing old data {}", data.display()))?;
        }
    }
    let tmpl_path = root.join("fixtures/prometheus/infra.yml.tmpl");
    let tmpl = std::fs::read_to_string(&tmpl_path)
        .with_context(|| format!("reading {}", tmpl_path.display()))?;
    let vars = BTreeMap::from([("WORKLOAD", local(ports.workload).to_string())]);
    let infra = render::render_template(&tmpl, &vars)
        .with_context(|| format!("rendering {}", tmpl_path.display()))?;
    std::fs::write(lab.join("infra.yml"), infra)?;
    targets::prepare(&lab)?;
    ingest::prepare(&lab, ports)?;
    if base != DEFAULT_BASE_PORT {
        let fixture = root.join("fixtures/configs/lab.yaml");
        let text = std::fs::read_to_string(&fixture)
            .with_context(|| format!("reading {}", fixture.display()))?;
        let dir = fixture.parent().unwrap_or(root);
        std::fs::write(config, render::shift_lab_config(&text, base, dir)?)?;
    }
    Ok(())
}

/// `prometheus-multi-tenant-proxy check-config` before starting, for a readable early error.
fn check_proxy_config(proxy: &Spec) -> anyhow::Result<()> {
    let mut cmd = Command::new(&proxy.program);
    if let Some(dir) = &proxy.cwd {
        cmd.current_dir(dir);
    }
    let out = cmd
        .args(&proxy.args[..2])
        .arg("check-config")
        .output()
        .with_context(|| format!("running {} check-config", proxy.program.display()))?;
    if !out.status.success() {
        bail!(
            "the proxy rejects its config ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn start_and_wait(
    root: &Path,
    specs: &[Spec],
    ports: &Ports,
    started: &mut Vec<Started>,
    failing: &mut Option<usize>,
) -> anyhow::Result<()> {
    let lab = lab_dir(root);
    let logs = lab.join("logs");
    let proxy = index_of(specs, PROXY);
    let agent = index_of(specs, ingest::AGENT);
    let stages: [(Vec<usize>, Duration); 5] = [
        (vec![0], Duration::from_secs(30)),
        (vec![1, 2], Duration::from_secs(60)),
        // The tenants' targets and the ingest storage: everything the proxy sends to.
        ((3..proxy).collect(), Duration::from_secs(60)),
        (vec![proxy], Duration::from_secs(60)),
        (vec![agent], Duration::from_secs(60)),
    ];
    for (members, timeout) in stages {
        for &i in &members {
            let spec = &specs[i];
            println!("xtask: starting {:<13} {}", spec.name, spec.command_line());
            *failing = Some(i);
            started.push(procs::spawn_detached(spec, &lab, &logs)?);
        }
        for &i in &members {
            *failing = Some(i);
            let spec = &specs[i];
            let headers = targets::probe_headers(&lab, spec.name)?;
            wait_for(
                started,
                i,
                &format!("{} /-/ready", spec.name),
                timeout,
                || targets::probe_ready(spec.addr, &headers),
            )?;
        }
        if members.contains(&1) {
            // Both members must have scraped the workload before the proxy can answer.
            for i in [1, 2] {
                *failing = Some(i);
                let addr = specs[i].addr;
                wait_for(
                    started,
                    i,
                    &format!("{} to scrape", specs[i].name),
                    timeout,
                    || has_results(&http::get(addr, "/api/v1/query?query=up", &[])?),
                )?;
            }
        }
        if members.contains(&proxy) {
            *failing = Some(proxy);
            let api = local(ports.api);
            let path = format!(
                "/api/v1/query?query={}",
                http::encode_query_value("count(up)")
            );
            wait_for(
                started,
                proxy,
                "a team-a query through the proxy",
                Duration::from_secs(30),
                || {
                    let r = http::get(api, &path, &[(TENANT_HEADER, "team-a")])?;
                    Ok(r.status == 200 && is_success(&r.body))
                },
            )?;
        }
    }
    // The agent's first samples went through the proxy's ingest gateway into storage.
    *failing = Some(agent);
    let storage = local(ports.ingest_storage);
    let path = format!(
        "/api/v1/query?query={}",
        http::encode_query_value(r#"count({__name__=~".+"})"#)
    );
    wait_for(
        started,
        agent,
        "series in storage through the proxy's ingest gateway",
        Duration::from_secs(60),
        || has_results(&http::get(storage, &path, &[])?),
    )?;
    *failing = None;
    Ok(())
}

/// Poll `check`, failing fast if the process `started[i]` exits.
fn wait_for(
    started: &mut [Started],
    i: usize,
    what: &str,
    timeout: Duration,
    check: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let s = &mut started[i];
    let name = s.spec.name;
    procs::wait_until(
        what,
        timeout,
        || match s.child.try_wait()? {
            Some(status) => bail!("{name} exited early ({status})"),
            None => Ok(()),
        },
        check,
    )
}

fn is_success(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body)
        .is_ok_and(|v| v.get("status").and_then(|s| s.as_str()) == Some("success"))
}

/// A Prometheus query answer with a non-empty result.
fn has_results(r: &http::Response) -> anyhow::Result<bool> {
    if r.status != 200 {
        return Ok(false);
    }
    let v: serde_json::Value = serde_json::from_str(&r.body).context("query answer is not JSON")?;
    Ok(v.pointer("/data/result")
        .and_then(|x| x.as_array())
        .is_some_and(|a| !a.is_empty()))
}

fn print_dry_run(root: &Path, base: u16, ports: &Ports, specs: &[Spec], config: &Path) {
    let lab = lab_dir(root);
    println!("dry run: `cargo xtask up --base-port {base}` would:");
    println!(
        "  - refuse if {} holds live pidfiles or a port is taken",
        lab.display()
    );
    println!("  - install tools into {}", tools::bin_dir(root).display());
    println!("  - cargo build -p proxy --bins; cargo build -p e2e --bin lab-workload");
    println!(
        "  - render {} -> {}",
        root.join("fixtures/prometheus/infra.yml.tmpl").display(),
        lab.join("infra.yml").display()
    );
    if base != DEFAULT_BASE_PORT {
        println!("  - render a port-shifted lab.yaml -> {}", config.display());
    }
    println!(
        "  - start, detached (logs in {}/logs/<name>.log):",
        lab.display()
    );
    for s in specs {
        let taken = if procs::port_taken(s.addr) {
            "  [PORT IN USE]"
        } else {
            ""
        };
        println!("      {:<13} {}{taken}", s.name, s.command_line());
    }
    println!(
        "  - write {} (random, never printed) and its bcrypt hash into {}",
        targets::password_file(&lab).display(),
        lab.join("team-c-web.yml").display()
    );
    println!("  - proxy admin listener on {}", local(ports.admin));
    println!(
        "  - write {} and {} (agent: scrape the workload, remote-write to the proxy)",
        lab.join("storage.yml").display(),
        lab.join("agent.yml").display()
    );
    println!(
        "  - the proxy runs in {} (lab.yaml's relative paths)",
        proxy_cwd(root).display()
    );
    println!(
        "  - wait for /-/ready everywhere, a first scrape on both infra members, a team-a query, \
         and series in storage from the agent"
    );
    print!("{}", targets::summary(&lab, ports));
    print!("{}", ingest::summary(ports));
}

fn print_summary(lab: &Path, ports: &Ports, started: &[Started]) {
    println!("\nThe lab is up.\n");
    println!("  {:<14} {:<8} {:<28} log", "process", "pid", "url");
    for s in started {
        println!(
            "  {:<14} {:<8} {:<28} {}",
            s.spec.name,
            s.child.id(),
            format!("http://{}", s.spec.addr),
            s.log.display()
        );
    }
    println!(
        "  {:<14} {:<8} http://{}",
        "proxy admin",
        "",
        local(ports.admin)
    );
    let api = format!("http://{}", local(ports.api));
    let admin = format!("http://{}", local(ports.admin));
    let infra = format!("http://{}", local(ports.infra_a));
    let q = r#"query=count by (namespace) ({__name__=~"kube_pod.*"})"#;
    let h = |t: &str| format!("-H '{TENANT_HEADER}: {t}'");
    println!("\nTry (same query, two tenants, different answers; no header = 401):");
    for t in ["team-a", "team-b"] {
        println!(
            "  curl -sG {} '{api}/api/v1/query' --data-urlencode '{q}'",
            h(t)
        );
    }
    println!("  curl -sG '{infra}/api/v1/query' --data-urlencode '{q}'   # unfiltered, infra-a");
    println!(
        "  curl -sG {} '{api}/api/v1/series' --data-urlencode 'match[]=kube_pod_info'",
        h("team-a")
    );
    println!("  curl -s '{admin}/debug/tenants'");
    print!("{}", targets::summary(lab, ports));
    print!("{}", ingest::summary(ports));
    println!("\nStop it with `cargo xtask down`; inspect it with `cargo xtask status`.");
}

/// `cargo xtask down`.
pub fn down(root: &Path, args: &DownArgs) -> anyhow::Result<()> {
    if args.kind {
        return kind::down(root, args.dry_run);
    }
    let files = pidfile::list(&lab_dir(root))?;
    if files.is_empty() {
        println!(
            "the lab is not running (no pidfiles in {})",
            lab_dir(root).display()
        );
        return Ok(());
    }
    let mut live: Vec<(PathBuf, PidFile)> = Vec::new();
    for path in files {
        match PidFile::read(&path) {
            Ok(pf) if pf.is_alive() => live.push((path, pf)),
            Ok(pf) => {
                println!(
                    "{:<13} pid {:<8} not running (stale pidfile removed)",
                    name_of(&path),
                    pf.pid
                );
                std::fs::remove_file(&path)?;
            }
            Err(e) => {
                println!("{:<13} unreadable pidfile removed ({e:#})", name_of(&path));
                std::fs::remove_file(&path)?;
            }
        }
    }
    live.sort_by_key(|(path, _)| stop_stage(&name_of(path)));
    let mut outcomes = Vec::new();
    for stage in live.chunk_by(|(a, _), (b, _)| stop_stage(&name_of(a)) == stop_stage(&name_of(b)))
    {
        let pids: Vec<i32> = stage.iter().map(|(_, pf)| pf.pid).collect();
        outcomes.extend(procs::stop_all(&pids, Duration::from_secs(10), || {}));
    }
    let mut survivors = Vec::new();
    for ((path, pf), outcome) in live.iter().zip(outcomes) {
        let name = name_of(path);
        let what = match outcome {
            StopOutcome::AlreadyGone => "already gone",
            StopOutcome::Terminated => "stopped (SIGTERM)",
            StopOutcome::Killed => "killed (SIGKILL after 10s)",
            StopOutcome::StillAlive => "STILL RUNNING",
        };
        println!("{name:<13} pid {:<8} {what}", pf.pid);
        if outcome == StopOutcome::StillAlive {
            survivors.push(format!("{name} (pid {})", pf.pid));
        } else {
            std::fs::remove_file(path)?;
        }
    }
    if !survivors.is_empty() {
        bail!(
            "could not stop {}; their pidfiles are kept, check with `ps -p <pid>`",
            survivors.join(", ")
        );
    }
    println!("the lab is down");
    Ok(())
}

/// `cargo xtask status`.
pub fn status(root: &Path) -> anyhow::Result<()> {
    let files = pidfile::list(&lab_dir(root))?;
    if files.is_empty() {
        println!("the lab is not running (start it with `cargo xtask up`)");
        return Ok(());
    }
    println!(
        "{:<13} {:<8} {:<6} {:<6} url",
        "process", "pid", "alive", "ready"
    );
    let mut bad = 0;
    for path in files {
        let name = name_of(&path);
        let pf = match PidFile::read(&path) {
            Ok(pf) => pf,
            Err(e) => {
                println!("{name:<13} unreadable pidfile: {e:#}");
                bad += 1;
                continue;
            }
        };
        let alive = pf.is_alive();
        let headers = targets::probe_headers(&lab_dir(root), &name).unwrap_or_default();
        let ready = alive
            && pf
                .addr
                .is_some_and(|a| targets::probe_ready(a, &headers).unwrap_or(false));
        let url = pf
            .addr
            .map(|a| format!("http://{a}"))
            .unwrap_or_else(|| "-".into());
        println!(
            "{name:<13} {:<8} {:<6} {:<6} {url}",
            pf.pid,
            yes_no(alive),
            yes_no(ready)
        );
        if !ready {
            bad += 1;
        }
    }
    if bad > 0 {
        bail!(
            "{bad} lab process(es) not alive or not ready; see target/lab/logs/ (`cargo xtask down` cleans up)"
        );
    }
    Ok(())
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

mod ingest;
mod targets;

#[cfg(test)]
mod tests;
