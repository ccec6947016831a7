//! The ingest gateway's HTTP side: `POST /api/v1/write` (and `/api/v1/push`, `/write`) on the
//! API listener, `GET /api/v1/governance/top|usage` and `/debug/ingest` on the admin listener.
//! Remote-write answers are plain text, as Prometheus' own receiver gives them.

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::app::App;
use crate::auth::{HeaderError, header_value};
use crate::http::error::ApiError;
use crate::ingest::analytics::TopBy;
use crate::ingest::receiver::Outcome;
use crate::telemetry::CodeLabels;

pub fn api_routes() -> Router<App> {
    Router::new()
        .route("/api/v1/write", post(write))
        .route("/api/v1/push", post(write))
        .route("/write", post(write))
}

pub fn admin_routes() -> Router<App> {
    Router::new()
        .route("/api/v1/governance/top", get(top))
        .route("/api/v1/governance/usage", get(usage))
        .route("/debug/ingest", get(debug))
}

/// Largest request (decompressed) handled on the async worker rather than the blocking pool.
const INLINE_DECOMPRESSED_BYTES: usize = 1 << 20;

fn text(status: StatusCode, message: impl Into<String>) -> Response {
    let mut m = message.into();
    if !m.is_empty() && !m.ends_with('\n') {
        m.push('\n');
    }
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        m,
    )
        .into_response()
}

/// The status of a remote-write answer (Prometheus' receiver answers the same way).
fn status_of(outcome: Outcome) -> StatusCode {
    match outcome {
        Outcome::Accepted => StatusCode::NO_CONTENT,
        Outcome::Refused => StatusCode::BAD_REQUEST,
        Outcome::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Outcome::UnsupportedMedia => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Outcome::Disabled => StatusCode::NOT_FOUND,
        Outcome::Busy => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn count(state: &App, status: StatusCode) {
    state
        .metrics()
        .ingest
        .requests
        .get_or_create(&CodeLabels {
            code: status.as_u16().to_string(),
        })
        .inc();
}

/// The sender's tenant: the bearer token's (auth mode bearer), else the `ingest.tenant_header`,
/// else `ingest.default_tenant`.
async fn tenant(state: &App, headers: &HeaderMap) -> Result<String, (StatusCode, String)> {
    let runtime = state.runtime();
    let config = state.ingest().config();
    let tenant = if runtime.auth.is_bearer() {
        runtime
            .auth
            .identify(headers, None)
            .await
            .map_err(|e| (ApiError::from(&e).status, e.to_string()))?
    } else {
        let name = config.tenant_header.as_str();
        match header_value(headers, name) {
            Err(HeaderError::Duplicate) => {
                return Err((
                    StatusCode::BAD_REQUEST,
                    format!("{name} given more than once"),
                ));
            }
            Err(HeaderError::Malformed) => {
                return Err((
                    StatusCode::BAD_REQUEST,
                    format!("{name} is not readable text"),
                ));
            }
            Ok(Some(value)) => value.to_string(),
            Ok(None) => match &config.default_tenant {
                Some(t) => t.clone(),
                None => {
                    return Err((
                        StatusCode::UNAUTHORIZED,
                        format!(
                            "no tenant: set the {name} header (no default tenant is configured)"
                        ),
                    ));
                }
            },
        }
    };
    crate::names::validate_tenant_id(&tenant).map_err(|e| (StatusCode::BAD_REQUEST, e))?;
    Ok(tenant)
}

async fn write(
    State(state): State<App>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ingest = state.ingest().clone();
    if !ingest.enabled() {
        // Like every other path this gateway does not serve.
        count(&state, StatusCode::FORBIDDEN);
        return ApiError::forbidden(format!(
            "{} is not served: remote write is not enabled on this gateway (ingest.enabled: false)",
            uri.path()
        ))
        .into_response();
    }
    let tenant = match tenant(&state, &headers).await {
        Ok(t) => t,
        Err((status, message)) => {
            count(&state, status);
            tracing::info!(status = status.as_u16(), %message, "remote write refused");
            return text(status, message);
        }
    };
    let limit = ingest.config().max_body_bytes;
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            count(&state, StatusCode::PAYLOAD_TOO_LARGE);
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "body larger than ingest.max_body_bytes ({limit} bytes); send smaller batches"
                ),
            );
        }
    };
    let header_text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header_text(header::CONTENT_TYPE);
    let content_encoding = header_text(header::CONTENT_ENCODING);
    // Decoding and the rules are CPU work. A request of the usual size (a sender's batch:
    // a few hundred KiB decompressed, under a millisecond) is handled here: handing it to the
    // blocking pool and back costs two thread switches, a large share of its latency. A larger
    // one goes to the blocking pool, so it does not hold up the other connections.
    // With a disk spill, queueing writes a file: that stays off the async workers too.
    let inline = !ingest.spills()
        && snap::raw::decompress_len(&body).is_ok_and(|n| n <= INLINE_DECOMPRESSED_BYTES);
    let receive = move || {
        let answer = ingest.receive(
            &tenant,
            content_type.as_deref(),
            content_encoding.as_deref(),
            body,
        );
        (answer, tenant)
    };
    let answer = if inline {
        Ok(receive())
    } else {
        tokio::task::spawn_blocking(receive).await
    };
    match answer {
        Ok((a, tenant)) => {
            let status = status_of(a.outcome);
            count(&state, status);
            if status.is_client_error() {
                // The target the line always had, for log filters that name it.
                tracing::info!(target: "proxy::ingest::receiver", tenant = tenant.as_str(), status = status.as_u16(), reason = %a.message, "remote write refused");
            }
            let mut response = text(status, a.message);
            if let Some(secs) = a.retry_after
                && let Ok(v) = secs.to_string().parse()
            {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            response
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the request could not be processed: {e}"),
        ),
    }
}

#[derive(serde::Deserialize)]
struct TopParams {
    tenant: Option<String>,
    by: Option<String>,
    limit: Option<usize>,
}

async fn top(State(state): State<App>, Query(p): Query<TopParams>) -> Response {
    let by = match p.by.as_deref().unwrap_or("series").parse::<TopBy>() {
        Ok(b) => b,
        Err(e) => return ApiError::bad_data(e).into_response(),
    };
    let limit = p.limit.unwrap_or(20).min(1000);
    let entries = state
        .ingest()
        .top(p.tenant.as_deref().filter(|t| !t.is_empty()), by, limit);
    Json(serde_json::json!({"status": "success", "data": entries})).into_response()
}

#[derive(serde::Deserialize)]
struct UsageParams {
    tenant: Option<String>,
}

async fn usage(State(state): State<App>, Query(p): Query<UsageParams>) -> Response {
    let ingest = state.ingest();
    let stats = ingest
        .usage
        .stats()
        .snapshot(p.tenant.as_deref().filter(|t| !t.is_empty()));
    let used = ingest.usage.static_names();
    Json(serde_json::json!({
        "status": "success",
        "data": stats,
        "rules_and_dashboards": {"names": used.names, "patterns": used.patterns},
    }))
    .into_response()
}

async fn debug(State(state): State<App>) -> Response {
    let ingest = state.ingest();
    Json(serde_json::json!({
        "enabled": ingest.enabled(),
        "destinations": ingest.forward_stats(),
        "tenants": ingest.tracker.tenants(),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The statuses Prometheus' own receiver gives, as they were when the receiver chose them.
    #[test]
    fn outcomes_are_answered_with_remote_write_statuses() {
        let cases = [
            (Outcome::Accepted, 204),
            (Outcome::Refused, 400),
            (Outcome::TooLarge, 413),
            (Outcome::UnsupportedMedia, 415),
            (Outcome::Disabled, 404),
            (Outcome::Busy, 503),
        ];
        for (outcome, status) in cases {
            assert_eq!(status_of(outcome).as_u16(), status, "{outcome:?}");
        }
    }
}
