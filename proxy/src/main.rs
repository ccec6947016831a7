//! `prometheus-multi-tenant-proxy`: the command line. Subcommands `run` (default),
//! `check-config` and `crd`; everything else lives in the `proxy` library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use proxy::app::{RuntimeSettings, StartOptions};
use proxy::config::Config;
use proxy::telemetry::LogFormat;

// The hot paths (remote-write decode, relabeling, re-encoding) allocate and free many small
// label strings; mimalloc handles that pattern markedly faster than glibc malloc (see
// docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXAMPLES: &str = "\
Examples:
  # Serve with a config file (tenants from the folder it names)
  prometheus-multi-tenant-proxy --config ./config.yaml

  # Same, on another API port, with readable logs
  prometheus-multi-tenant-proxy --config ./config.yaml --port 9092 --log-format text run

  # Validate a config and its tenant folder (exit 1 on any error)
  prometheus-multi-tenant-proxy --config ./config.yaml check-config

  # Print the MetricAccess CRD
  prometheus-multi-tenant-proxy crd > metricaccess-crd.yaml

  # Query as a tenant (header auth)
  curl -H 'X-Tenant-Namespace: team-a' 'http://127.0.0.1:8080/api/v1/query?query=up'

Reload the config with SIGHUP or `curl -X POST http://127.0.0.1:9091/-/reload`.";

/// Multi-tenant read gateway for Prometheus: authenticates the tenant, rewrites every
/// PromQL query and selector so it only touches the tenant's series (MetricAccess CRs), and
/// sends it to a healthy infrastructure Prometheus.
#[derive(Debug, Parser)]
#[command(name = "prometheus-multi-tenant-proxy", version, after_help = EXAMPLES)]
struct Cli {
    /// Config file (YAML).
    #[arg(
        long,
        global = true,
        env = "PMTP_CONFIG",
        default_value = "/etc/prometheus-multi-tenant-proxy/config.yaml"
    )]
    config: PathBuf,

    /// Port of the tenant-facing API listener (overrides server.listen's port).
    #[arg(long, global = true)]
    port: Option<u16>,

    /// Log level; without it RUST_LOG is used, else info.
    #[arg(long, global = true, value_enum)]
    log_level: Option<LogLevel>,

    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormatArg::Json)]
    log_format: LogFormatArg,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API and admin listeners (the default).
    Run,
    /// Load the config and the tenant folder; print a summary, or every error and exit 1.
    CheckConfig,
    /// Print the MetricAccess CustomResourceDefinition YAML.
    Crd,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Json,
    Text,
}

fn main() -> ExitCode {
    disable_transparent_huge_pages();
    let cli = Cli::parse();
    let result = match cli.command.as_ref().unwrap_or(&Command::Run) {
        Command::Crd => {
            print!("{}", proxy::tenant::crd::crd_yaml());
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig => check_config(&cli),
        Command::Run => run(&cli),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// No transparent huge pages for this process (what `MIMALLOC_ALLOW_THP=0` does). mimalloc
/// asks for them on its arenas; the buffers of a large upstream answer then land on fresh
/// 2 MiB pages that the kernel zeroes whole on the first touch: a fifth of the proxy's CPU on a
/// 3 MB query answer (docs/benchmarks.md). The kernel checks the flag at each page fault, so
/// memory mapped before `main` is covered too. Where it can't be set, nothing else changes.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(error) = rustix::thread::disable_transparent_huge_pages(true) {
        eprintln!("note: transparent huge pages stay as the system has them ({error})");
    }
}

fn load(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = Config::load(&cli.config)?;
    if let Some(port) = cli.port {
        config.server.listen.set_port(port);
        // The override can clash with the admin listener: say so before binding.
        let problems = config.validate();
        if !problems.is_empty() {
            anyhow::bail!("--port {port}: {}", problems.join("; "));
        }
    }
    Ok(config)
}

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let format = match cli.log_format {
        LogFormatArg::Json => LogFormat::Json,
        LogFormatArg::Text => LogFormat::Text,
    };
    proxy::telemetry::init_tracing(cli.log_level.map(LogLevel::as_str), format)?;
    let config = load(cli)?;
    let runtime = tokio::runtime::Runtime::new().context("can't start the Tokio runtime")?;
    runtime.block_on(async {
        let options = StartOptions {
            reload_on_sighup: true,
            ..Default::default()
        };
        let mut running = proxy::app::start_with(config, Some(cli.config.clone()), options).await?;
        tokio::select! {
            result = running.wait() => {
                result?;
                anyhow::bail!("the server stopped unexpectedly");
            }
            () = terminated() => {
                tracing::info!("shutting down");
                running.shutdown().await?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Ctrl-C or SIGTERM.
async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn check_config(cli: &Cli) -> anyhow::Result<ExitCode> {
    let config = load(cli)?;
    let settings = RuntimeSettings::from_config(&config)?;
    let mut errors = Vec::new();
    // Kubernetes mode needs the API server only to serve; checking the config must not.
    if !matches!(settings.auth, proxy::auth::AuthSettings::Kubernetes(_))
        && let Err(error) = proxy::auth::Authenticator::new(&settings.auth, None)
    {
        errors.push(error.to_string());
    }
    let metrics = std::sync::Arc::new(proxy::telemetry::Metrics::new());
    if let Err(error) = proxy::backend::BackendPool::new(settings.backends.clone(), metrics) {
        errors.push(error.to_string());
    }
    println!("config {}", cli.config.display());
    println!(
        "  listen {} (API), {} (admin)",
        config.server.listen, config.server.admin_listen
    );
    let auth = match &settings.auth {
        proxy::auth::AuthSettings::Header {
            header,
            query_param,
        } => match query_param {
            Some(param) => format!("header {header} or parameter {param}"),
            None => format!("header {header}"),
        },
        proxy::auth::AuthSettings::Bearer { tokens } => format!("bearer ({} tokens)", tokens.len()),
        proxy::auth::AuthSettings::Kubernetes(k) => format!(
            "kubernetes (TokenReview{}, cached {:?}{})",
            if k.audiences.is_empty() {
                String::new()
            } else {
                format!(" for audiences {}", k.audiences.join(", "))
            },
            k.cache_ttl,
            k.access_review
                .as_ref()
                .map(|a| format!(", SubjectAccessReview {} {}", a.verb, a.resource))
                .unwrap_or_default()
        ),
        proxy::auth::AuthSettings::Jwt(j) => format!(
            "jwt (issuer {}, audiences {}, tenant claim {}, keys from {})",
            j.issuer,
            j.audiences.join(", "),
            j.tenant_claim,
            match &j.jwks {
                proxy::auth::jwt::JwksSource::File(f) => f.display().to_string(),
                proxy::auth::jwt::JwksSource::Url(u) => u.clone(),
            }
        ),
    };
    println!("  auth: {auth}");
    for warning in config.unimplemented_settings() {
        println!("  warning: {warning}");
    }
    for (i, group) in settings.backends.groups.iter().enumerate() {
        let role = if i == 0 { "reads" } else { "standby" };
        println!(
            "  backend group {} ({role}): {}",
            group.name,
            group.members.join(", ")
        );
    }
    for line in proxy::k8s::run::describe(&config) {
        println!("  {line}");
    }
    let (lines, warnings) = proxy::ingest::describe(&config.ingest);
    for line in lines {
        println!("{line}");
    }
    for warning in warnings {
        println!("  warning: {warning}");
    }
    if let Some(dir) = &settings.tenants_dir {
        let snapshot = proxy::tenant::source::load_dir(dir);
        println!(
            "tenants {}: {} valid, {} invalid",
            dir.display(),
            snapshot.tenants.len(),
            snapshot.invalid.len()
        );
        for tenant in snapshot.tenants.values() {
            let clauses = match tenant.policy.clauses.len() {
                0 => "no metrics: every read is refused".to_string(),
                1 => "1 clause".to_string(),
                n => format!("{n} clauses"),
            };
            println!(
                "  {}: {} ({clauses})",
                tenant.namespace,
                tenant.resources.join(", ")
            );
        }
        for invalid in &snapshot.invalid {
            let name = [invalid.namespace.as_deref(), invalid.name.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("/");
            let mut place = invalid
                .file
                .clone()
                .unwrap_or_else(|| dir.display().to_string());
            if !name.is_empty() {
                place.push_str(&format!(": MetricAccess {name}"));
            }
            errors.push(format!("{place}: {}", invalid.error));
        }
        let (lines, warnings) =
            proxy::collector::describe(&config.remote_write, &snapshot.resources);
        for line in lines {
            println!("{line}");
        }
        for warning in warnings {
            println!("  warning: {warning}");
        }
    }
    if errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for error in &errors {
            eprintln!("error: {error}");
        }
        eprintln!("{} error(s)", errors.len());
        Ok(ExitCode::FAILURE)
    }
}
