//! A tiny Prometheus HTTP API client for the harness, plus [`block_on`] so sync test code can call
//! async helpers whether or not it already runs inside a tokio runtime.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

/// Run `fut` to completion on a fresh current-thread runtime in a scoped thread. Safe to call from
/// inside another runtime (which a plain `block_on` is not).
pub fn block_on<F>(fut: F) -> anyhow::Result<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("building a tokio runtime")?;
                Ok(rt.block_on(fut))
            })
            .join()
            .map_err(|_| anyhow::anyhow!("block_on thread panicked"))?
    })
}

/// An HTTP client for 127.0.0.1 test traffic (installs the rustls provider first).
pub fn client() -> anyhow::Result<reqwest::Client> {
    crate::seed::ensure_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .context("building the HTTP client")
}

/// `GET <base>/api/v1/query?query=..&time=<t_ms/1000>`; returns `data` of a successful answer.
pub async fn query(
    client: &reqwest::Client,
    base: &str,
    promql: &str,
    t_ms: i64,
) -> anyhow::Result<Value> {
    let time = format!("{}.{:03}", t_ms.div_euclid(1000), t_ms.rem_euclid(1000));
    get_data(
        client,
        base,
        "/api/v1/query",
        &[("query", promql), ("time", &time)],
    )
    .await
}

/// `GET <base><path>?<params>`; returns `data` of a successful Prometheus answer, else an error
/// with the status and body.
pub async fn get_data(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    params: &[(&str, &str)],
) -> anyhow::Result<Value> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let full =
        reqwest::Url::parse_with_params(&url, params).with_context(|| format!("bad URL {url}"))?;
    let resp = client
        .get(full)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let body: Value =
        serde_json::from_str(&text).with_context(|| format!("{url}: {status}: {text}"))?;
    if !status.is_success() || body["status"] != "success" {
        bail!("{url}: {status}: {text}");
    }
    Ok(body["data"].clone())
}

/// The single sample value of an instant-vector answer, when it holds exactly one series.
pub fn single_value(data: &Value) -> Option<f64> {
    let result = data["result"].as_array()?;
    if result.len() != 1 {
        return None;
    }
    result[0]["value"][1].as_str()?.parse().ok()
}
