//! HTTP layer: the tenant-facing Prometheus API router (enforced routes only, everything else
//! 403), the admin router (metrics, debug, reload), their handlers over `State<App>`
//! ([`crate::app::App`]), and [`serve`], which runs both routers on their listeners. Refusals
//! of the domain modules become status codes and Prometheus' error envelope here and nowhere
//! else ([`error`], `refusal`).

pub mod admin;
pub mod error;
pub mod ingest;
pub mod listener;
pub mod metadata;
pub mod observe;
pub mod params;
pub mod prom_api;
mod refusal;
pub mod rules;

#[cfg(test)]
pub(crate) mod tests;

use std::future::Future;

use anyhow::Context;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub(crate) use refusal::Refusal;

use crate::app::App;
use crate::telemetry::Metrics;
use error::ApiError;
use listener::ListenerOptions;

/// The tenant-facing router: enforced Prometheus API routes and health; everything else 403.
pub fn api_router(state: App) -> Router {
    let router = prom_api::routes()
        .merge(rules::routes())
        .merge(ingest::api_routes())
        .merge(health_routes())
        .fallback(unsupported_path)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_deadline,
        ));
    observe::layer(router, state.clone()).with_state(state)
}

/// The admin router: health, `/metrics`, `/debug/*`, `POST /-/reload`.
pub fn admin_router(state: App) -> Router {
    let router = admin::routes()
        .merge(ingest::admin_routes())
        .merge(health_routes())
        .fallback(|| async { ApiError::not_found("no such admin endpoint") })
        .method_not_allowed_fallback(method_not_allowed);
    observe::layer(router, state.clone()).with_state(state)
}

/// `server.request_timeout`: the whole request, from its headers to the answer's headers.
async fn request_deadline(
    axum::extract::State(state): axum::extract::State<App>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let limit = state.runtime().settings.request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            Metrics::inc_reason(&state.metrics().bad_requests, "request_timeout");
            ApiError::timeout(format!(
                "the request was not answered within server.request_timeout ({})",
                crate::config::format_duration(limit)
            ))
            .into_response()
        }
    }
}

fn health_routes() -> Router<App> {
    Router::new()
        .route("/health", get(healthy))
        .route("/-/healthy", get(healthy))
        .route("/ready", get(ready))
        .route("/-/ready", get(ready))
}

async fn healthy() -> &'static str {
    "OK\n"
}

async fn ready(axum::extract::State(state): axum::extract::State<App>) -> Response {
    match state.not_ready_reason() {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response(),
    }
}

async fn unsupported_path(uri: axum::http::Uri) -> ApiError {
    let path: String = uri.path().chars().take(200).collect();
    ApiError::forbidden(format!(
        "path {path} is not supported by the multi-tenant proxy (only enforced read endpoints are)"
    ))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    let path: String = uri.path().chars().take(200).collect();
    ApiError::method_not_allowed(format!("method {method} is not allowed on {path}"))
}

/// Serve the API router on `api` and the admin router on `admin` until `shutdown` resolves,
/// then drain both.
pub async fn serve(
    api: (TcpListener, ListenerOptions),
    admin: (TcpListener, ListenerOptions),
    state: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (tx, rx) = watch::channel(());
    tokio::spawn(async move {
        shutdown.await;
        // Dropping the sender wakes every receiver.
        drop(tx);
    });
    let stopped = |mut rx: watch::Receiver<()>| async move { while rx.changed().await.is_ok() {} };
    let api_server = listener::serve(api.0, api_router(state.clone()), api.1, stopped(rx.clone()));
    let admin_server = listener::serve(admin.0, admin_router(state), admin.1, stopped(rx));
    tokio::try_join!(
        async { api_server.await.context("API listener failed") },
        async { admin_server.await.context("admin listener failed") },
    )?;
    Ok(())
}
