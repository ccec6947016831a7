//! Admin listener endpoints: `/metrics`, `/debug/tenants`, `/debug/targets` and
//! `POST|PUT /-/reload`. They show every tenant, so they are never on the tenant-facing port.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::app::App;
use crate::http::error::ApiError;
use crate::telemetry::{MemberLabels, StateLabels};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/debug/tenants", get(debug_tenants))
        .route("/debug/targets", get(debug_targets))
        .route("/collected-metrics", get(collected_metrics))
        .route("/-/reload", post(reload).put(reload))
}

async fn metrics(State(state): State<App>) -> Response {
    if !state.runtime().settings.metrics_enabled {
        return ApiError::not_found("metrics are disabled (proxy.enable_metrics: false)")
            .into_response();
    }
    let metrics = state.metrics();
    // Gauges that mirror current state are set at scrape time, so members and tenants
    // removed by a reload disappear instead of going stale.
    let snapshot = state.tenants().snapshot();
    for (label, value) in [
        ("valid", snapshot.tenants.len()),
        ("invalid", snapshot.invalid.len()),
    ] {
        metrics
            .tenants
            .get_or_create(&StateLabels {
                state: label.to_string(),
            })
            .set(value as i64);
    }
    state.ingest().export_top_k();
    metrics.backend_up.clear();
    let runtime = state.runtime();
    let cache = runtime.rewrites.stats();
    let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    metrics
        .rewrite_cache
        .entries
        .set(gauge(cache.entries as u64));
    metrics.rewrite_cache.bytes.set(gauge(cache.bytes));
    metrics
        .rewrite_cache
        .compiled_policies
        .set(gauge(cache.compiled_policies as u64));
    for (group, member) in runtime.backends.members() {
        let up = member.health() != crate::backend::Health::Down;
        metrics
            .backend_up
            .get_or_create(&MemberLabels {
                group: group.to_string(),
                member: member.url.clone(),
            })
            .set(i64::from(up));
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
        .into_response()
}

async fn debug_tenants(State(state): State<App>) -> Json<serde_json::Value> {
    let snapshot = state.tenants().snapshot();
    let tenants: Vec<_> = snapshot
        .tenants
        .values()
        .map(|tenant| {
            serde_json::json!({
                "namespace": tenant.namespace,
                "resources": tenant.resources,
                "selectors": tenant.policy.clause_selectors(),
            })
        })
        .collect();
    let collector = state.collector().status_json();
    let collectors: Vec<serde_json::Value> = snapshot
        .resources
        .iter()
        .filter(|r| r.spec.remote_write.as_ref().is_some_and(|rw| rw.enabled))
        .map(|r| {
            let status = collector["resources"]
                .as_array()
                .and_then(|all| {
                    all.iter().find(|j| {
                        j["namespace"] == r.namespace.as_str() && j["name"] == r.name.as_str()
                    })
                })
                .cloned();
            serde_json::json!({
                "namespace": r.namespace,
                "name": r.name,
                // With sharding, another replica collects the CRs this one does not own.
                "owned": state.shard().is_none_or(|s| s.owns(&r.namespace, &r.name)),
                "state": status.as_ref().map(|s| s["state"].clone()),
                "last_cycle": status.as_ref().map(|s| s["last_cycle"].clone()),
                "last_error": status.as_ref().map(|s| s["last_error"].clone()),
            })
        })
        .collect();
    let source = if state.runtime().settings.tenants_dir.is_some() {
        "file"
    } else {
        "kubernetes"
    };
    let shard = state
        .shard()
        .map(|s| serde_json::json!({"identity": s.identity(), "members": s.members()}));
    Json(serde_json::json!({
        "loaded": snapshot.loaded,
        "source": source,
        "shard": shard,
        "tenants": tenants,
        "collectors": collectors,
        "invalid": snapshot.invalid,
    }))
}

async fn collected_metrics(State(state): State<App>) -> Json<serde_json::Value> {
    Json(state.collector().status_json())
}

async fn debug_targets(State(state): State<App>) -> Json<serde_json::Value> {
    Json(state.runtime().backends.targets_json())
}

async fn reload(State(state): State<App>) -> Response {
    match state.reload().await {
        Ok(()) => (StatusCode::OK, "config reloaded\n").into_response(),
        Err(error) => ApiError::bad_data(error.to_string()).into_response(),
    }
}
