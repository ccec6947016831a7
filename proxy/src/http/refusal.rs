//! Answers the proxy gives itself (never forwarded): the one place where a refusal of the
//! domain modules ([`AuthError`], [`UpstreamError`]) becomes a status code and Prometheus'
//! error envelope.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::auth::AuthError;
use crate::backend::UpstreamError;
use crate::http::error::ApiError;

/// Why a request is answered by the proxy itself (never forwarded).
#[derive(Debug)]
pub(crate) enum Refusal {
    Auth(AuthError),
    Api(ApiError),
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Refusal::Api(error)
    }
}

impl From<AuthError> for Refusal {
    fn from(error: AuthError) -> Self {
        Refusal::Auth(error)
    }
}

impl From<UpstreamError> for Refusal {
    fn from(error: UpstreamError) -> Self {
        Refusal::Api(error.into())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Auth(error) => auth_response(&error),
            Refusal::Api(error) => error.into_response(),
        }
    }
}

/// 401 when no tenant was named or proven, 403 when the token's user may not use the proxy,
/// 503 when the token could not be checked, 400 when the request names its tenant ambiguously.
impl From<&AuthError> for ApiError {
    fn from(error: &AuthError) -> Self {
        match error {
            AuthError::MissingTenant { .. }
            | AuthError::MissingToken
            | AuthError::InvalidToken
            | AuthError::Rejected(_) => ApiError::unauthorized(error.to_string()),
            AuthError::Forbidden(_) => ApiError::forbidden(error.to_string()),
            AuthError::Unavailable(_) => ApiError::unavailable(error.to_string()),
            AuthError::DuplicateHeader(_)
            | AuthError::Conflict { .. }
            | AuthError::Malformed(_) => ApiError::bad_data(error.to_string()),
        }
    }
}

/// 503 when no backend could answer (`timeout` when none answered in time), 500 for an answer
/// over the proxy's limit.
impl From<UpstreamError> for ApiError {
    fn from(error: UpstreamError) -> Self {
        match error {
            UpstreamError::Unavailable(message) => ApiError::unavailable(message),
            UpstreamError::Timeout(message) => ApiError::timeout(message),
            UpstreamError::TooLarge(message) => ApiError::internal(message),
        }
    }
}

/// The envelope of [`ApiError`], with the bearer challenge (RFC 6750) when a token is
/// missing or invalid.
fn auth_response(error: &AuthError) -> Response {
    let challenge = match error {
        AuthError::MissingToken => Some("Bearer"),
        AuthError::InvalidToken | AuthError::Rejected(_) => Some("Bearer error=\"invalid_token\""),
        _ => None,
    };
    let mut response = ApiError::from(error).into_response();
    if let Some(challenge) = challenge {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_of_auth_errors() {
        let cases = [
            (
                AuthError::MissingTenant {
                    header: "X-Tenant".into(),
                    param: None,
                },
                401,
            ),
            (AuthError::MissingToken, 401),
            (AuthError::InvalidToken, 401),
            (AuthError::Rejected("expired".into()), 401),
            (AuthError::Forbidden("no".into()), 403),
            (AuthError::Unavailable("down".into()), 503),
            (AuthError::DuplicateHeader("x-tenant".into()), 400),
            (
                AuthError::Conflict {
                    header: "x-tenant".into(),
                    param: "namespace".into(),
                },
                400,
            ),
            (AuthError::Malformed("x-tenant".into()), 400),
        ];
        for (error, status) in cases {
            let api = ApiError::from(&error);
            assert_eq!(api.status.as_u16(), status, "{error}");
            assert_eq!(api.message, error.to_string());
            let response = Refusal::Auth(error).into_response();
            assert_eq!(response.status().as_u16(), status);
        }
    }

    #[test]
    fn statuses_of_upstream_errors() {
        let cases = [
            (
                UpstreamError::Unavailable("down".into()),
                503,
                "unavailable",
            ),
            (UpstreamError::Timeout("slow".into()), 503, "timeout"),
            (UpstreamError::TooLarge("big".into()), 500, "internal"),
        ];
        for (error, status, kind) in cases {
            let message = error.to_string();
            let api = ApiError::from(error);
            assert_eq!((api.status.as_u16(), api.error_type), (status, kind));
            assert_eq!(api.message, message);
        }
    }

    #[test]
    fn token_refusals_carry_a_bearer_challenge() {
        let response = Refusal::Auth(AuthError::MissingToken).into_response();
        assert_eq!(response.status().as_u16(), 401);
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let response = Refusal::Auth(AuthError::InvalidToken).into_response();
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\""
        );
        let response = Refusal::Auth(AuthError::Forbidden("no".into())).into_response();
        assert!(!response.headers().contains_key(header::WWW_AUTHENTICATE));
    }
}
