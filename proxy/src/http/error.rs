//! The one error type of the HTTP layer and its mapping to Prometheus' error envelope
//! (`{"status":"error","errorType":"bad_data","error":"..."}`), so Grafana and promtool show
//! the proxy's errors the way they show Prometheus' own.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An error answered to the client in Prometheus' envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error_type} ({status}): {message}")]
pub struct ApiError {
    pub status: StatusCode,
    /// Prometheus `errorType` (`bad_data`, `timeout`, `internal`, `unavailable`, ...).
    pub error_type: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, error_type: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            error_type,
            message: message.into(),
        }
    }

    /// 400: the request is malformed or can't be enforced.
    pub fn bad_data(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_data", message)
    }

    /// 401: no credentials, or credentials that match no tenant.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: an authenticated tenant asked for something it may not see, or an unsupported path.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 405 on a known path with a method Prometheus does not accept there.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "bad_data", message)
    }

    /// 503: no backend could answer (all down, or the proxy is saturated).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// 503 with `errorType: timeout`, as Prometheus answers a query that ran out of time.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "timeout", message)
    }

    /// 500: a bug or an upstream answer the proxy could not process.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// 413: the request body is over `proxy.max_body_bytes`.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "bad_data", message)
    }

    /// The envelope body as JSON.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "status": "error",
            "errorType": self.error_type,
            "error": self.message,
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body().to_string();
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_use_prometheus_codes() {
        let cases = [
            (ApiError::bad_data("x"), 400, "bad_data"),
            (ApiError::unauthorized("x"), 401, "unauthorized"),
            (ApiError::forbidden("x"), 403, "forbidden"),
            (ApiError::not_found("x"), 404, "not_found"),
            (ApiError::too_large("x"), 413, "bad_data"),
            (ApiError::internal("x"), 500, "internal"),
            (ApiError::unavailable("x"), 503, "unavailable"),
            (ApiError::timeout("x"), 503, "timeout"),
        ];
        for (error, code, kind) in cases {
            assert_eq!(error.status.as_u16(), code, "{error}");
            assert_eq!(error.error_type, kind, "{error}");
        }
    }

    #[test]
    fn envelope_is_prometheus_shaped() {
        let response = ApiError::bad_data("parse error: \"x\"").into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            HeaderValue::from_static("application/json")
        );
        let body = ApiError::bad_data("parse error: \"x\"").body();
        assert_eq!(
            body,
            serde_json::json!({"status":"error","errorType":"bad_data","error":"parse error: \"x\""})
        );
    }
}
