//! Authentication tests: header mode, bearer mode, configuration errors.

use http::HeaderValue;

use super::*;

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

fn hex(token: &str) -> String {
    sha256(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn header_mode() {
    let auth = header_auth(Some("namespace"));
    assert_eq!(auth.tenant_param(), Some("namespace"));
    let h = headers(&[("x-tenant-namespace", "team-a")]);
    assert_eq!(auth.identify(&h, None).await, Ok("team-a".into()));
    assert_eq!(
        auth.identify(&HeaderMap::new(), Some("team-b")).await,
        Ok("team-b".into())
    );
    // Same value in both places is fine; different values are refused.
    assert_eq!(auth.identify(&h, Some("team-a")).await, Ok("team-a".into()));
    let conflict = auth.identify(&h, Some("team-b")).await.unwrap_err();
    assert!(matches!(conflict, AuthError::Conflict { .. }));
    assert_eq!(conflict.reason(), "conflict");
    // The header twice.
    let twice = headers(&[("x-tenant-namespace", "a"), ("x-tenant-namespace", "b")]);
    let error = auth.identify(&twice, None).await.unwrap_err();
    assert_eq!(
        error,
        AuthError::DuplicateHeader("x-tenant-namespace".into())
    );
    // Nothing at all.
    let missing = auth.identify(&HeaderMap::new(), None).await.unwrap_err();
    assert_eq!(missing.reason(), "missing");
    assert!(missing.to_string().contains("\"namespace\""));
    // An empty header is missing.
    let empty = headers(&[("x-tenant-namespace", " ")]);
    assert!(auth.identify(&empty, None).await.is_err());
}

#[tokio::test]
async fn header_mode_without_query_param() {
    let auth = header_auth(None);
    assert_eq!(auth.tenant_param(), None);
    let error = auth
        .identify(&HeaderMap::new(), Some("team-a"))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "missing tenant: set the x-tenant-namespace header"
    );
}

#[test]
fn a_tenant_header_is_read_once_trimmed() {
    let name = "x-tenant";
    assert_eq!(header_value(&HeaderMap::new(), name), Ok(None));
    assert_eq!(
        header_value(&headers(&[(name, " a ")]), name),
        Ok(Some("a"))
    );
    assert_eq!(header_value(&headers(&[(name, " ")]), name), Ok(Some("")));
    assert_eq!(
        header_value(&headers(&[(name, "a"), (name, "a")]), name),
        Err(HeaderError::Duplicate)
    );
    let mut odd = HeaderMap::new();
    odd.insert(name, HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
    assert_eq!(header_value(&odd, name), Err(HeaderError::Malformed));
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
    let bearer = |t: &str| headers(&[("authorization", t)]);
    assert_eq!(
        auth.identify(&bearer("Bearer secret-a"), None).await,
        Ok("team-a".into())
    );
    assert_eq!(
        auth.identify(&bearer("bearer secret-b"), None).await,
        Ok("team-b".into())
    );
    assert_eq!(
        auth.identify(&bearer("Bearer file-secret"), None).await,
        Ok("team-c".into())
    );
    assert_eq!(
        auth.identify(&bearer("Bearer nope"), None).await,
        Err(AuthError::InvalidToken)
    );
    assert_eq!(
        auth.identify(&bearer("Basic c2VjcmV0LWE="), None).await,
        Err(AuthError::InvalidToken)
    );
    assert_eq!(
        auth.identify(&bearer("Bearer "), None).await,
        Err(AuthError::MissingToken)
    );
    // The tenant header and parameter mean nothing in bearer mode.
    let spoof = headers(&[("x-tenant-namespace", "team-a")]);
    assert_eq!(
        auth.identify(&spoof, Some("team-a")).await,
        Err(AuthError::MissingToken)
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
