//! Seeding Prometheus with the workload over a past window through remote write 1.0, so a test
//! has an hour of history without waiting an hour.
//!
//! Each request carries at most [`BATCH_SERIES`] series, each with ALL its samples in time order:
//! the TSDB head then accepts every batch, since no batch goes back in time for a series.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use proxy::remote_write::{self, Label, Sample, TimeSeries, WriteRequest};

use crate::workload::{SeriesDef, value};

/// Series per remote-write request.
pub const BATCH_SERIES: usize = 200;

/// A sampling window: samples at `start_ms, start_ms + step_ms, ..., end_ms` (both ends included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedWindow {
    pub start_ms: i64,
    pub end_ms: i64,
    pub step_ms: i64,
}

impl SeedWindow {
    /// The last hour at a 15 s step, ending at now rounded down to a multiple of 15 s.
    pub fn last_hour() -> SeedWindow {
        SeedWindow::ending_now(Duration::from_secs(3600), Duration::from_secs(15))
    }

    /// `length` of history ending at now rounded down to a multiple of `step`.
    pub fn ending_now(length: Duration, step: Duration) -> SeedWindow {
        let step_ms = (step.as_millis() as i64).max(1);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        let end_ms = now_ms - now_ms.rem_euclid(step_ms);
        SeedWindow {
            start_ms: end_ms - length.as_millis() as i64,
            end_ms,
            step_ms,
        }
    }

    /// Every sample timestamp of the window, ascending.
    pub fn timestamps(&self) -> impl Iterator<Item = i64> + '_ {
        let step = self.step_ms.max(1) as usize;
        (self.start_ms..=self.end_ms).step_by(step)
    }
}

/// The remote-write time series of `s` over `w`.
pub fn time_series(s: &SeriesDef, w: &SeedWindow) -> TimeSeries {
    TimeSeries {
        labels: s
            .labels
            .iter()
            .map(|(name, value)| Label {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        samples: w
            .timestamps()
            .map(|t| Sample {
                value: value(s, t),
                timestamp: t,
            })
            .collect(),
        exemplars: Vec::new(),
        histograms: Vec::new(),
    }
}

/// Install the ring crypto provider once: reqwest is built without one (`rustls-no-provider`).
pub fn ensure_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Remote-write `series` over `w` to the Prometheus at `url` (base URL). Returns the number of
/// samples written.
pub async fn seed_async(
    client: &reqwest::Client,
    url: &str,
    series: &[&SeriesDef],
    w: &SeedWindow,
) -> anyhow::Result<usize> {
    let endpoint = format!("{}/api/v1/write", url.trim_end_matches('/'));
    let mut samples = 0;
    for batch in series.chunks(BATCH_SERIES) {
        let req = WriteRequest {
            timeseries: batch.iter().map(|s| time_series(s, w)).collect(),
            metadata: Vec::new(),
        };
        samples += req
            .timeseries
            .iter()
            .map(|t| t.samples.len())
            .sum::<usize>();
        let resp = client
            .post(&endpoint)
            .header(
                remote_write::CONTENT_ENCODING,
                remote_write::CONTENT_ENCODING_SNAPPY,
            )
            .header(
                remote_write::CONTENT_TYPE,
                remote_write::CONTENT_TYPE_PROTOBUF,
            )
            .header(
                remote_write::REMOTE_WRITE_VERSION_HEADER,
                remote_write::REMOTE_WRITE_VERSION,
            )
            .body(remote_write::encode_write_request(&req))
            .send()
            .await
            .with_context(|| format!("POST {endpoint}"))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            bail!("remote write to {endpoint} failed: {status}: {body}");
        }
    }
    Ok(samples)
}

/// Blocking [`seed_async`] (own runtime on a scoped thread, see [`crate::api::block_on`]).
pub fn seed(url: &str, series: &[&SeriesDef], w: &SeedWindow) -> anyhow::Result<usize> {
    let client = crate::api::client()?;
    crate::api::block_on(seed_async(&client, url, series, w))?
}
