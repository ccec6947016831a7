//! The enforced Prometheus read API. Each handler parses the parameters itself (URL and form
//! body), authenticates, enforces the tenant's policy on `query` or every `match[]`, and
//! sends a FRESH upstream request holding only the enforced and known parameters: no client
//! header, no parameter the proxy did not look at.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::params::{self, MATCH, Params};
use super::{Refusal, metadata};
use crate::app::{App, Runtime};
use crate::backend::{UpstreamRequest, UpstreamResponse};
use crate::http::error::ApiError;
use crate::names::is_legacy_label_name;
use crate::promql::{EnforceError, EnforceLimits};
use crate::telemetry::{Metrics, TenantLabels};
use crate::tenant::Tenant;

/// Parameters forwarded (when present and non-empty) besides the enforced ones.
const QUERY_PARAMS: &[&str] = &["time", "timeout", "limit", "stats", "lookback_delta"];
const QUERY_RANGE_PARAMS: &[&str] = &[
    "start",
    "end",
    "step",
    "timeout",
    "limit",
    "stats",
    "lookback_delta",
];
const EXEMPLAR_PARAMS: &[&str] = &["start", "end"];
const SERIES_PARAMS: &[&str] = &["start", "end", "limit"];

pub fn routes() -> Router<App> {
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/query_exemplars", get(exemplars).post(exemplars))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/metadata", get(metadata::handler))
        .route("/federate", get(federate))
}

/// An authenticated request with its parsed parameters.
pub(crate) struct Prepared {
    pub runtime: Arc<Runtime>,
    pub tenant: Arc<Tenant>,
    pub params: Params,
}

impl Prepared {
    pub fn limits(&self) -> EnforceLimits {
        EnforceLimits {
            max_query_bytes: self.runtime.settings.max_query_bytes,
            max_depth: self.runtime.settings.max_query_depth,
        }
    }

    /// The tenant's enforced query, from the rewrite cache when it was enforced before.
    pub fn enforce_query(&self, query: &str) -> Result<Arc<str>, EnforceError> {
        self.runtime.rewrites.enforce_query(
            &self.tenant.namespace,
            &self.tenant.policy,
            query,
            &self.limits(),
        )
    }

    /// The tenant's enforced `match[]` selectors, cached like [`Prepared::enforce_query`].
    pub fn enforce_match_selectors(
        &self,
        matches: &[String],
    ) -> Result<Arc<[String]>, EnforceError> {
        self.runtime.rewrites.enforce_match_selectors(
            &self.tenant.namespace,
            &self.tenant.policy,
            matches,
            &self.limits(),
        )
    }
}

pub(crate) async fn prepare(state: &App, request: Request) -> Result<Prepared, Refusal> {
    let runtime = state.runtime();
    let (parts, params) = params::read(request, runtime.settings.max_body_bytes)
        .await
        .map_err(|error| {
            Metrics::inc_reason(&state.metrics().bad_requests, error.reason());
            ApiError::from(error)
        })?;
    let tenant = resolve_tenant(state, &runtime, &parts.headers, &params).await?;
    Ok(Prepared {
        runtime,
        tenant,
        params,
    })
}

/// Authenticate the request and find its tenant in the store.
pub(crate) async fn resolve_tenant(
    state: &App,
    runtime: &Runtime,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Arc<Tenant>, Refusal> {
    let metrics = state.metrics();
    let param = runtime.auth.tenant_param().and_then(|p| params.get(p));
    let namespace = runtime
        .auth
        .identify(headers, param)
        .await
        .map_err(|error| {
            Metrics::inc_reason(&metrics.auth_failures, error.reason());
            Refusal::Auth(error)
        })?;
    let Some(tenant) = state.tenants().get(&namespace) else {
        Metrics::inc_reason(&metrics.auth_failures, "unknown_tenant");
        let shown: String = namespace.chars().take(63).collect();
        return Err(
            ApiError::forbidden(format!("unknown tenant {shown}: no valid MetricAccess")).into(),
        );
    };
    tracing::Span::current().record("tenant", tenant.namespace.as_str());
    metrics
        .tenant_requests
        .get_or_create(&TenantLabels {
            tenant: tenant.namespace.clone(),
        })
        .inc();
    if tenant.policy.clauses.is_empty() {
        Metrics::inc_reason(&metrics.auth_failures, "empty_policy");
        return Err(ApiError::forbidden(format!(
            "tenant {} may not read any metric: its MetricAccess lists no metrics",
            tenant.namespace
        ))
        .into());
    }
    Ok(tenant)
}

pub(crate) fn enforce_error(state: &App, error: EnforceError) -> ApiError {
    let reason = match &error {
        EnforceError::Empty => "empty",
        EnforceError::Parse(_) => "parse",
        EnforceError::TooLong { .. } => "too_long",
        EnforceError::TooDeep { .. } => "too_deep",
        EnforceError::Unsupported(_) => "unsupported",
        EnforceError::InvalidMatch(_) => "invalid_match",
        EnforceError::NoAccess => "no_access",
        EnforceError::Invariant(_) => "invariant",
    };
    Metrics::inc_reason(&state.metrics().rewrite_errors, reason);
    match error {
        EnforceError::NoAccess => {
            ApiError::forbidden("the tenant may not read any of the requested series")
        }
        EnforceError::Invariant(message) => {
            // A bug in the rewriter: never forwarded, logged for a report.
            tracing::error!(%message, "enforcement invariant failed");
            ApiError::internal(format!("query enforcement failed: {message}"))
        }
        other => ApiError::bad_data(other.to_string()),
    }
}

fn bad_request(state: &App, reason: &str, message: impl Into<String>) -> Response {
    Metrics::inc_reason(&state.metrics().bad_requests, reason);
    ApiError::bad_data(message).into_response()
}

/// The known, non-empty parameters of `names`, in that order.
fn forwarded<'a>(params: &'a Params, names: &[&'static str]) -> Vec<(&'static str, &'a str)> {
    names
        .iter()
        .filter_map(|name| params.get_non_empty(name).map(|v| (*name, v)))
        .collect()
}

pub(crate) fn into_response(upstream: UpstreamResponse) -> Response {
    let mut response = Response::new(upstream.body);
    *response.status_mut() = upstream.status;
    let content_type = upstream
        .content_type
        .unwrap_or_else(|| HeaderValue::from_static("application/octet-stream"));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
}

async fn send(prepared: &Prepared, request: UpstreamRequest) -> Response {
    match prepared.runtime.backends.send(&request).await {
        Ok(upstream) => into_response(upstream),
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// `query`-carrying endpoints: rewrite the query, forward it with `extra` parameters.
async fn query_endpoint(
    state: App,
    request: Request,
    path: &'static str,
    extra: &[&'static str],
) -> Response {
    let prepared = match prepare(&state, request).await {
        Ok(p) => p,
        Err(refusal) => return refusal.into_response(),
    };
    let Some(query) = prepared
        .params
        .get("query")
        .filter(|q| !q.trim().is_empty())
    else {
        return bad_request(&state, "missing_query", "missing parameter \"query\"");
    };
    let enforced = match prepared.enforce_query(query) {
        Ok(q) => q,
        Err(error) => return enforce_error(&state, error).into_response(),
    };
    tracing::debug!(query = %enforced, "enforced query");
    state
        .ingest()
        .record_query(&prepared.tenant.namespace, query);
    let mut pairs = vec![("query", &*enforced)];
    pairs.extend(forwarded(&prepared.params, extra));
    let upstream = UpstreamRequest {
        method: Method::POST,
        path: path.to_string(),
        form: params::encode(pairs),
    };
    send(&prepared, upstream).await
}

async fn query(State(state): State<App>, request: Request) -> Response {
    query_endpoint(state, request, "/api/v1/query", QUERY_PARAMS).await
}

async fn query_range(State(state): State<App>, request: Request) -> Response {
    query_endpoint(state, request, "/api/v1/query_range", QUERY_RANGE_PARAMS).await
}

async fn exemplars(State(state): State<App>, request: Request) -> Response {
    query_endpoint(state, request, "/api/v1/query_exemplars", EXEMPLAR_PARAMS).await
}

/// `match[]`-carrying endpoints: intersect every selector with every clause.
async fn match_endpoint(
    state: App,
    request: Request,
    method: Method,
    path: String,
    extra: &[&'static str],
    require_match: bool,
) -> Response {
    let prepared = match prepare(&state, request).await {
        Ok(p) => p,
        Err(refusal) => return refusal.into_response(),
    };
    let matches = prepared.params.all(MATCH);
    if require_match && matches.is_empty() {
        return bad_request(&state, "missing_match", "no match[] parameter provided");
    }
    let selectors = match prepared.enforce_match_selectors(&matches) {
        Ok(s) => s,
        Err(error) => return enforce_error(&state, error).into_response(),
    };
    let mut pairs: Vec<(&str, &str)> = selectors.iter().map(|s| (MATCH, s.as_str())).collect();
    pairs.extend(forwarded(&prepared.params, extra));
    let upstream = UpstreamRequest {
        method,
        path,
        form: params::encode(pairs),
    };
    send(&prepared, upstream).await
}

async fn series(State(state): State<App>, request: Request) -> Response {
    let path = "/api/v1/series".to_string();
    match_endpoint(state, request, Method::POST, path, SERIES_PARAMS, true).await
}

async fn labels(State(state): State<App>, request: Request) -> Response {
    let path = "/api/v1/labels".to_string();
    match_endpoint(state, request, Method::POST, path, SERIES_PARAMS, false).await
}

async fn label_values(
    State(state): State<App>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    // The name goes into the upstream path.
    if !is_legacy_label_name(&name) {
        let shown: String = name.chars().take(100).collect();
        return bad_request(
            &state,
            "label_name",
            format!("invalid label name: {shown:?}"),
        );
    }
    // Prometheus serves label values on GET only.
    let path = format!("/api/v1/label/{name}/values");
    match_endpoint(state, request, Method::GET, path, SERIES_PARAMS, false).await
}

async fn federate(State(state): State<App>, request: Request) -> Response {
    let path = "/federate".to_string();
    match_endpoint(state, request, Method::GET, path, &[], true).await
}
