//! `/api/v1/metadata`: Prometheus can't restrict it by selector, so the proxy asks for it
//! (without `limit`), asks which metric names the tenant can see (`__name__` values under the
//! tenant's clauses), keeps only those, and applies `limit` itself.

use std::collections::BTreeSet;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::Refusal;
use super::params::{self, MATCH};
use super::prom_api::{Prepared, enforce_error, into_response, prepare};
use crate::app::App;
use crate::backend::{MAX_BUFFERED_BYTES, UpstreamRequest, read_body};
use crate::http::error::ApiError;

pub async fn handler(State(state): State<App>, request: Request) -> Response {
    match metadata(&state, request).await {
        Ok(response) => response,
        Err(refusal) => refusal.into_response(),
    }
}

async fn metadata(state: &App, request: Request) -> Result<Response, Refusal> {
    let prepared = prepare(state, request).await?;
    let limit = match prepared.params.get_non_empty("limit") {
        None => None,
        Some(text) => match text.parse::<i64>() {
            // Prometheus: a negative limit means none.
            Ok(n) => usize::try_from(n).ok(),
            Err(_) => return Err(ApiError::bad_data("limit must be a number").into()),
        },
    };
    let mut pairs = Vec::new();
    for name in ["metric", "limit_per_metric"] {
        if let Some(value) = prepared.params.get_non_empty(name) {
            pairs.push((name, value));
        }
    }
    let upstream = UpstreamRequest {
        method: Method::GET,
        path: "/api/v1/metadata".to_string(),
        form: params::encode(pairs),
    };
    let response = prepared.runtime.backends.send(&upstream).await?;
    if response.status != StatusCode::OK {
        return Ok(into_response(response));
    }
    let body = read_body(response.body, MAX_BUFFERED_BYTES).await?;
    let mut answer: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::internal(format!("backend metadata answer is not JSON: {e}")))?;
    let Some(data) = answer.get_mut("data").and_then(|d| d.as_object_mut()) else {
        return Err(ApiError::internal("backend metadata answer has no data object").into());
    };
    let visible = if data.is_empty() {
        BTreeSet::new()
    } else {
        visible_names(state, &prepared).await?
    };
    let mut kept = 0usize;
    data.retain(|name, _| {
        let keep = visible.contains(name) && limit.is_none_or(|l| kept < l);
        kept += usize::from(keep);
        keep
    });
    Ok((
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        answer.to_string(),
    )
        .into_response())
}

/// The metric names that have at least one series the tenant may see.
async fn visible_names(state: &App, prepared: &Prepared) -> Result<BTreeSet<String>, Refusal> {
    let selectors = prepared
        .enforce_match_selectors(&[])
        .map_err(|e| enforce_error(state, e))?;
    let pairs: Vec<(&str, &str)> = selectors.iter().map(|s| (MATCH, s.as_str())).collect();
    let request = UpstreamRequest {
        method: Method::GET,
        path: "/api/v1/label/__name__/values".to_string(),
        form: params::encode(pairs),
    };
    let (status, _, body) = prepared.runtime.backends.send_buffered(&request).await?;
    if status != StatusCode::OK {
        return Err(ApiError::unavailable(format!(
            "could not list the tenant's metric names: backend answered HTTP {status}"
        ))
        .into());
    }
    let answer: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::internal(format!("backend label values answer is not JSON: {e}")))?;
    let names = answer
        .get("data")
        .and_then(|d| d.as_array())
        .ok_or_else(|| ApiError::internal("backend label values answer has no data list"))?;
    Ok(names
        .iter()
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect())
}
