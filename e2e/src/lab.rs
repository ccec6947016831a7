//! The shared lab of the e2e suite: an HA pair of infrastructure Prometheus, both seeded with the
//! whole workload over the same past hour, so they hold identical data.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::prometheus::Prometheus;
use crate::seed::{SeedWindow, seed};
use crate::workload::{self, SeriesDef};

/// Two identical infrastructure Prometheus and what they hold.
#[derive(Debug)]
pub struct SharedLab {
    /// `infra-0` and `infra-1`, an HA pair behind the proxy.
    pub infra: Vec<Prometheus>,
    /// The seeded window (the last hour at 15 s when started).
    pub window: SeedWindow,
    /// Every series seeded into both members.
    pub series: Vec<SeriesDef>,
}

impl SharedLab {
    /// Start both infra members in parallel and seed each with the whole workload over
    /// [`SeedWindow::last_hour`].
    pub fn start() -> anyhow::Result<SharedLab> {
        let series = workload::series();
        let window = SeedWindow::last_hour();
        let refs: Vec<&SeriesDef> = series.iter().collect();
        let infra = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..2)
                .map(|i| {
                    let refs = &refs;
                    scope.spawn(move || -> anyhow::Result<Prometheus> {
                        let name = format!("infra-{i}");
                        let prom = Prometheus::start(&name, None)?;
                        seed(&prom.url(), refs, &window)
                            .with_context(|| format!("seeding {name}"))?;
                        Ok(prom)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .map_err(|_| anyhow::anyhow!("infra start thread panicked"))?
                })
                .collect::<anyhow::Result<Vec<Prometheus>>>()
        })?;
        Ok(SharedLab {
            infra,
            window,
            series,
        })
    }

    /// Base URLs of the infra members.
    pub fn infra_urls(&self) -> Vec<String> {
        self.infra.iter().map(Prometheus::url).collect()
    }
}

/// The `lab-workload` HTTP app: `GET /metrics` is [`workload::exposition`] at request time,
/// `GET /-/ready` answers 200. Scrape it with `honor_labels: true` (series carry their own `job`).
pub fn workload_router() -> Router {
    async fn metrics() -> impl IntoResponse {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            workload::exposition(now_ms),
        )
    }
    Router::new()
        .route("/metrics", get(metrics))
        .route("/-/ready", get(|| async { "ready\n" }))
}
