//! Per-request span, request metrics and the optional request log line. Labels stay bounded:
//! the route is a template from a fixed list, the method one of a few.

use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::app::App;
use crate::telemetry::{HttpLabels, RouteLabels};

/// Every route template either router serves; anything else is `other`.
const ROUTES: &[&str] = &[
    "/api/v1/query",
    "/api/v1/query_range",
    "/api/v1/query_exemplars",
    "/api/v1/series",
    "/api/v1/labels",
    "/api/v1/metadata",
    "/federate",
    "/health",
    "/-/healthy",
    "/ready",
    "/-/ready",
    "/metrics",
    "/debug/tenants",
    "/debug/targets",
    "/-/reload",
];

/// The bounded route label of a request path.
pub fn route_template(path: &str) -> &'static str {
    if let Some(route) = ROUTES.iter().find(|r| **r == path) {
        return route;
    }
    if let Some(rest) = path.strip_prefix("/api/v1/label/")
        && let Some(name) = rest.strip_suffix("/values")
        && !name.is_empty()
        && !name.contains('/')
    {
        return "/api/v1/label/{name}/values";
    }
    "other"
}

fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Wrap every route of `router` (fallbacks included).
pub fn layer(router: Router<App>, state: App) -> Router<App> {
    router.layer(axum::middleware::from_fn_with_state(state, observe))
}

async fn observe(State(state): State<App>, request: Request, next: Next) -> Response {
    let route = route_template(request.uri().path());
    let method = method_label(request.method());
    // Never the URL (it may carry `namespace`), never headers (they may carry tokens).
    let span = tracing::info_span!("request", route, method, tenant = tracing::field::Empty);
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status();
    let metrics = state.metrics();
    metrics
        .http_requests
        .get_or_create(&HttpLabels {
            route,
            method,
            code: status.as_u16(),
        })
        .inc();
    metrics
        .http_duration
        .get_or_create(&RouteLabels { route })
        .observe(elapsed.as_secs_f64());
    if state.runtime().settings.request_logging {
        span.in_scope(|| {
            tracing::info!(
                status = status.as_u16(),
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                "request"
            );
        });
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_templates() {
        assert_eq!(route_template("/api/v1/query"), "/api/v1/query");
        assert_eq!(
            route_template("/api/v1/label/job/values"),
            "/api/v1/label/{name}/values"
        );
        assert_eq!(route_template("/api/v1/label//values"), "other");
        assert_eq!(route_template("/api/v1/label/a/b/values"), "other");
        assert_eq!(route_template("/api/v1/status/tsdb"), "other");
        assert_eq!(route_template("/api/v1/query/"), "other");
    }
}
