//! `lab-workload`: serves the synthetic lab workload (`e2e::workload`) for Prometheus to scrape.
//!
//! The exposition carries its own `job`, `instance`, `namespace`... labels, so scrape it with
//! `honor_labels: true`. `GET /metrics` is the workload at the time of the request;
//! `GET /-/ready` answers 200.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;

/// Serve the deterministic lab workload in the Prometheus text format.
#[derive(Debug, Parser)]
#[command(name = "lab-workload", version, about)]
struct Args {
    /// Address to listen on (keep it on 127.0.0.1).
    #[arg(long, default_value = "127.0.0.1:9400", env = "LAB_WORKLOAD_LISTEN")]
    listen: SocketAddr,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    eprintln!(
        "lab-workload: serving {} series on http://{}/metrics",
        e2e::workload::series().len(),
        listener.local_addr()?
    );
    axum::serve(listener, e2e::lab::workload_router())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving")
}
