//! Authentication tests: header mode, bearer mode, configuration errors.

use axum::http::Method;

use super::*;
use crate::http::params;

fn header_auth(param: Option<&str>) -> Authenticator {
    Authenticator::new(
        &AuthSettings::Header {
            header: "X-Tenant-Namespace".into(),
            query_param: param.map(str::to_string),
        },
        None,
    )
    .unwrap()
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, HeaderValue::from_str(value).unwrap());
    }
    map
}

fn query(q: &str) -> Params {
    params::parse(&Method::GET, Some(q), &HeaderMap::new(), b"").unwrap()
}

fn hex(token: &str) -> String {
    sha256(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn header_mode() {
    let auth = header_auth(Some("namespace"));
    let none = Params::default();
    let h = headers(&[("x-tenant-namespace", "team-a")]);
    assert_eq!(auth.identify(&h, &none).await, Ok("team-a".into()));
    assert_eq!(
        auth.identify(&HeaderMap::new(), &query("namespace=team-b"))
            .await,
        Ok("team-b".into())
    );
    // Same value in both places is fine; different values are refused.
    assert_eq!(
        auth.identify(&h, &query("namespace=team-a")).await,
        Ok("team-a".into())
    );
    let conflict = auth
        .identify(&h, &query("namespace=team-b"))
        .await
        .unwrap_err();
    assert!(matches!(conflict, AuthError::Conflict { .. }));
    assert_eq!(conflict.to_api_error().status.as_u16(), 400);
    // The header twice.
    let twice = headers(&[("x-tenant-namespace", "a"), ("x-tenant-namespace", "b")]);
    let error = auth.identify(&twice, &none).await.unwrap_err();
    assert_eq!(
        error,
        AuthError::DuplicateHeader("x-tenant-namespace".into())
    );
    assert_eq!(error.to_api_error().status.as_u16(), 400);
    // Nothing at all.
    let missing = auth.identify(&HeaderMap::new(), &none).await.unwrap_err();
    assert_eq!(missing.reason(), "missing");
    assert_eq!(missing.to_api_error().status.as_u16(), 401);
    assert!(missing.to_string().contains("\"namespace\""));
    // An empty header is missing.
    let empty = headers(&[("x-tenant-namespace", " ")]);
    assert!(auth.identify(&empty, &none).await.is_err());
}

#[tokio::test]
async fn header_mode_without_query_param() {
    let auth = header_auth(None);
    let error = auth
        .identify(&HeaderMap::new(), &query("namespace=team-a"))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "missing tenant: set the x-tenant-namespace header"
    );
}

#[tokio::test]
async fn bearer_mode() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "file-secret\n").unwrap();
    let auth = Authenticator::new(
        &AuthSettings::Bearer {
            tokens: vec![
                TokenSetting {
                    tenant: "team-a".into(),
                    source: TokenSource::Sha256(hex("secret-a")),
                },
                TokenSetting {
                    tenant: "team-b".into(),
                    source: TokenSource::Sha256(hex("secret-b").to_uppercase()),
                },
                TokenSetting {
                    tenant: "team-c".into(),
                    source: TokenSource::File(file),
                },
            ],
        },
        None,
    )
    .unwrap();
    let none = Params::default();
    let bearer = |t: &str| headers(&[("authorization", t)]);
    assert_eq!(
        auth.identify(&bearer("Bearer secret-a"), &none).await,
        Ok("team-a".into())
    );
    assert_eq!(
        auth.identify(&bearer("bearer secret-b"), &none).await,
        Ok("team-b".into())
    );
    assert_eq!(
        auth.identify(&bearer("Bearer file-secret"), &none).await,
        Ok("team-c".into())
    );
    assert_eq!(
        auth.identify(&bearer("Bearer nope"), &none).await,
        Err(AuthError::InvalidToken)
    );
    assert_eq!(
        auth.identify(&bearer("Basic c2VjcmV0LWE="), &none).await,
        Err(AuthError::InvalidToken)
    );
    assert_eq!(
        auth.identify(&bearer("Bearer "), &none).await,
        Err(AuthError::MissingToken)
    );
    // The tenant header and parameter mean nothing in bearer mode.
    let spoof = headers(&[("x-tenant-namespace", "team-a")]);
    assert_eq!(
        auth.identify(&spoof, &query("namespace=team-a")).await,
        Err(AuthError::MissingToken)
    );
    // 401 with a challenge.
    let response = AuthError::MissingToken.into_response();
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    let response = AuthError::InvalidToken.into_response();
    assert_eq!(
        response.headers()[header::WWW_AUTHENTICATE],
        "Bearer error=\"invalid_token\""
    );
    // Debug output holds no hash.
    assert_eq!(format!("{auth:?}"), "Authenticator::Bearer { tokens: 3 }");
}

#[test]
fn lookup_returns_the_first_match() {
    let entry = |t: &str, tenant: &str| TokenEntry {
        hash: sha256(t.as_bytes()),
        tenant: tenant.into(),
    };
    let tokens = vec![entry("x", "a"), entry("y", "b"), entry("y", "c")];
    assert_eq!(lookup(&tokens, &sha256(b"y")), Some("b".into()));
    assert_eq!(lookup(&tokens, &sha256(b"x")), Some("a".into()));
    assert_eq!(lookup(&tokens, &sha256(b"z")), None);
}

#[test]
fn bad_settings_are_refused() {
    let bad_hash = AuthSettings::Bearer {
        tokens: vec![TokenSetting {
            tenant: "a".into(),
            source: TokenSource::Sha256("abc".into()),
        }],
    };
    assert!(matches!(
        Authenticator::new(&bad_hash, None),
        Err(AuthConfigError::BadHash { .. })
    ));
    let missing_file = AuthSettings::Bearer {
        tokens: vec![TokenSetting {
            tenant: "a".into(),
            source: TokenSource::File("/nonexistent/token".into()),
        }],
    };
    let error = Authenticator::new(&missing_file, None)
        .unwrap_err()
        .to_string();
    assert!(error.contains("/nonexistent/token"), "{error}");
    assert!(matches!(
        Authenticator::new(&AuthSettings::Bearer { tokens: vec![] }, None),
        Err(AuthConfigError::NoTokens)
    ));
    assert!(matches!(
        Authenticator::new(
            &AuthSettings::Header {
                header: "bad header".into(),
                query_param: None
            },
            None
        ),
        Err(AuthConfigError::HeaderName(_))
    ));
}
