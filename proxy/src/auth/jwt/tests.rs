//! JWT mode tests. Keys are generated here (Ed25519, random seeds); none is committed.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue, header};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;
use crate::auth::{AuthConfigError, AuthSettings, Authenticator};

const ISSUER: &str = "https://issuer.example";

struct TestKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

/// PKCS#8 v1 wrapping of an Ed25519 seed (fixed ASN.1 prefix + 32 bytes).
fn ed_key(kid: &str) -> TestKey {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend((0..32).map(|_| fastrand::u8(..)));
    let encoding = EncodingKey::from_ed_der(&der);
    let mut jwk =
        serde_json::to_value(Jwk::from_encoding_key(&encoding, Algorithm::EdDSA).unwrap()).unwrap();
    jwk["kid"] = json!(kid);
    jwk["use"] = json!("sig");
    TestKey {
        kid: kid.into(),
        encoding,
        jwk,
    }
}

fn jwks(keys: &[&TestKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn claims() -> Value {
    json!({"iss": ISSUER, "aud": "proxy", "exp": now() + 300, "namespace": "team-a"})
}

fn sign(key: &TestKey, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::EdDSA);
    h.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&h, claims, &key.encoding).unwrap()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn settings(jwks: JwksSource) -> JwtSettings {
    JwtSettings {
        issuer: ISSUER.into(),
        audiences: vec!["proxy".into(), "other".into()],
        tenant_claim: "namespace".into(),
        jwks,
        jwks_refresh: Duration::from_secs(300),
        leeway: Duration::from_secs(5),
    }
}

/// An authenticator reading `keys` from a file kept in the returned folder.
fn file_auth(keys: &[&TestKey]) -> (tempfile::TempDir, std::path::PathBuf, Authenticator) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, jwks(keys)).unwrap();
    let auth = Authenticator::new(
        &AuthSettings::Jwt(settings(JwksSource::File(file.clone()))),
        None,
    )
    .unwrap();
    (dir, file, auth)
}

async fn identify(auth: &Authenticator, token: &str) -> Result<String, AuthError> {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    auth.identify(&headers, None).await
}

/// The token is refused as invalid (401 with a Bearer challenge, `http::refusal`), with a
/// reason containing `why` but not the token.
async fn refused(auth: &Authenticator, token: &str, why: &str) {
    let error = identify(auth, token).await.unwrap_err();
    let text = error.to_string();
    assert!(text.contains(why), "{text:?} should say {why:?}");
    assert!(!text.contains(token), "{text:?} quotes the token");
    assert_eq!(error.reason(), "invalid_token");
}

#[tokio::test]
async fn jwt_valid_token_names_the_tenant() {
    let k1 = ed_key("k1");
    let (_dir, _, auth) = file_auth(&[&k1]);
    assert_eq!(
        identify(&auth, &sign(&k1, &claims())).await,
        Ok("team-a".into())
    );
    // `aud` as a list holding one of the audiences, and a key found without `kid`.
    let mut c = claims();
    c["aud"] = json!(["someone-else", "other"]);
    let token = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &c, &k1.encoding).unwrap();
    assert_eq!(identify(&auth, &token).await, Ok("team-a".into()));
}

#[tokio::test]
async fn jwt_claim_checks() {
    let k1 = ed_key("k1");
    let (_dir, _, auth) = file_auth(&[&k1]);
    let with = |key: &str, value: Value| {
        let mut c = claims();
        c[key] = value;
        sign(&k1, &c)
    };
    refused(&auth, &with("exp", json!(now() - 60)), "expired").await;
    refused(&auth, &with("nbf", json!(now() + 600)), "not valid yet").await;
    refused(&auth, &with("aud", json!("grafana")), "audience").await;
    refused(&auth, &with("iss", json!("https://evil.example")), "issuer").await;
    let mut no_exp = claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    refused(&auth, &sign(&k1, &no_exp), "exp").await;
    let mut no_tenant = claims();
    no_tenant.as_object_mut().unwrap().remove("namespace");
    refused(&auth, &sign(&k1, &no_tenant), "no \"namespace\" claim").await;
    refused(&auth, &with("namespace", json!("../etc")), "namespace").await;
    refused(&auth, &with("namespace", json!(7)), "not a string").await;
    // Within the leeway.
    let token = with("exp", json!(now() - 2));
    assert_eq!(identify(&auth, &token).await, Ok("team-a".into()));
}

#[tokio::test]
async fn jwt_signed_by_another_key_is_refused() {
    let k1 = ed_key("k1");
    let impostor = ed_key("k1");
    let (_dir, _, auth) = file_auth(&[&k1]);
    refused(&auth, &sign(&impostor, &claims()), "signature").await;
    // Without a kid too.
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::EdDSA),
        &claims(),
        &impostor.encoding,
    )
    .unwrap();
    refused(&auth, &token, "signature").await;
    // A kid the set does not hold.
    refused(&auth, &sign(&ed_key("k9"), &claims()), "kid").await;
}

#[tokio::test]
async fn jwt_alg_none_is_refused() {
    let k1 = ed_key("k1");
    let (_dir, _, auth) = file_auth(&[&k1]);
    for header in [
        json!({"alg": "none", "typ": "JWT"}),
        json!({"alg": "none", "kid": "k1"}),
        json!({"alg": "None", "kid": "k1"}),
    ] {
        let token = format!("{}.{}.", b64(&header), b64(&claims()));
        refused(&auth, &token, "not a signed JWT").await;
    }
}

#[tokio::test]
async fn jwt_header_alg_must_be_the_keys() {
    let k1 = ed_key("k1");
    let (_dir, _, auth) = file_auth(&[&k1]);
    // Algorithm confusion: HMAC with the public key as the secret.
    let public = URL_SAFE_NO_PAD
        .decode(k1.jwk["x"].as_str().unwrap())
        .unwrap();
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("k1".into());
    let token =
        jsonwebtoken::encode(&h, &claims(), &EncodingKey::from_secret(&public).unwrap()).unwrap();
    refused(&auth, &token, "HS").await;
    // Another asymmetric alg named for an Ed25519 key.
    let signed = sign(&k1, &claims());
    let (_, rest) = signed.split_once('.').unwrap();
    let token = format!("{}.{rest}", b64(&json!({"alg": "ES256", "kid": "k1"})));
    refused(&auth, &token, "not its key's algorithm").await;
    let token = format!("{}.{rest}", b64(&json!({"alg": "RS256"})));
    refused(&auth, &token, "no key of the JWKS verifies").await;
}

#[tokio::test]
async fn jwt_tenant_claim_paths() {
    let k1 = ed_key("k1");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, jwks(&[&k1])).unwrap();
    let mut s = settings(JwksSource::File(file));
    s.tenant_claim = "kubernetes.io.namespace".into();
    let auth = Authenticator::new(&AuthSettings::Jwt(s), None).unwrap();
    let mut nested = claims();
    nested["kubernetes.io"] = json!({"namespace": "team-b"});
    assert_eq!(
        identify(&auth, &sign(&k1, &nested)).await,
        Ok("team-b".into())
    );
    let mut flat = claims();
    flat["kubernetes.io.namespace"] = json!("team-c");
    flat["kubernetes.io"] = json!({"namespace": "team-b"});
    assert_eq!(
        identify(&auth, &sign(&k1, &flat)).await,
        Ok("team-c".into())
    );

    let c = json!({"a": {"b.c": {"d": 1}}, "x.y": 2, "n": {"m": "v"}});
    assert_eq!(claim(&c, "a.b.c.d"), Some(&json!(1)));
    assert_eq!(claim(&c, "x.y"), Some(&json!(2)));
    assert_eq!(claim(&c, "n.m"), Some(&json!("v")));
    assert_eq!(claim(&c, "n.q"), None);
    assert_eq!(claim(&c, "a.b"), None);
}

#[tokio::test]
async fn jwt_jwks_file_rotation_needs_no_restart() {
    let k1 = ed_key("k1");
    let k2 = ed_key("k2");
    let (_dir, file, auth) = file_auth(&[&k1]);
    let token = sign(&k2, &claims());
    refused(&auth, &token, "kid").await;
    std::fs::write(&file, jwks(&[&k1, &k2])).unwrap();
    assert_eq!(identify(&auth, &token).await, Ok("team-a".into()));
    // k1 retired: its tokens stop working; a broken file keeps the last good keys.
    std::fs::write(&file, jwks(&[&k2])).unwrap();
    refused(&auth, &sign(&k1, &claims()), "kid").await;
    std::fs::write(&file, "{\"keys\": [").unwrap();
    assert_eq!(identify(&auth, &token).await, Ok("team-a".into()));
}

async fn jwks_server(body: String) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/jwks"))
        .respond_with(ResponseTemplate::new(200).set_body_string(body))
        .mount(&server)
        .await;
    server
}

async fn fetches(server: &MockServer) -> usize {
    server.received_requests().await.unwrap_or_default().len()
}

#[tokio::test]
async fn jwt_jwks_url() {
    let k1 = ed_key("k1");
    let server = jwks_server(jwks(&[&k1])).await;
    let auth = Authenticator::new(
        &AuthSettings::Jwt(settings(JwksSource::Url(format!("{}/jwks", server.uri())))),
        None,
    )
    .unwrap();
    for _ in 0..3 {
        assert_eq!(
            identify(&auth, &sign(&k1, &claims())).await,
            Ok("team-a".into())
        );
    }
    assert_eq!(fetches(&server).await, 1);
    // Unknown kids: one refetch, then none for UNKNOWN_KID_REFETCH.
    for kid in ["k7", "k8", "k9"] {
        refused(&auth, &sign(&ed_key(kid), &claims()), "kid").await;
    }
    assert_eq!(fetches(&server).await, 2);
}

#[tokio::test]
async fn jwt_jwks_url_picks_up_a_new_key_for_an_unknown_kid() {
    let k1 = ed_key("k1");
    let k2 = ed_key("k2");
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string(jwks(&[&k1])))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string(jwks(&[&k1, &k2])))
        .mount(&server)
        .await;
    let verifier = JwtVerifier::new(settings(JwksSource::Url(server.uri()))).unwrap();
    assert!(verifier.identify(&sign(&k1, &claims())).await.is_ok());
    assert_eq!(
        verifier.identify(&sign(&k2, &claims())).await,
        Ok("team-a".into())
    );
}

#[tokio::test]
async fn jwt_jwks_url_unreachable_is_503() {
    let k1 = ed_key("k1");
    let verifier =
        JwtVerifier::new(settings(JwksSource::Url("http://127.0.0.1:1/jwks".into()))).unwrap();
    let error = verifier.identify(&sign(&k1, &claims())).await.unwrap_err();
    assert!(matches!(error, AuthError::Unavailable(_)), "{error:?}");
}

#[test]
fn jwks_parsing() {
    let k1 = ed_key("k1");
    assert_eq!(jwks::parse(jwks(&[&k1]).as_bytes()).unwrap().len(), 1);
    let hmac = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}).to_string();
    let error = jwks::parse(hmac.as_bytes()).err().unwrap();
    assert!(error.contains("symmetric"), "{error}");
    let mut enc = k1.jwk.clone();
    enc["use"] = json!("enc");
    let error = jwks::parse(json!({"keys": [enc]}).to_string().as_bytes())
        .err()
        .unwrap();
    assert!(error.contains("encryption"), "{error}");
    let mut short = k1.jwk.clone();
    short["x"] = json!("AAAA");
    assert!(jwks::parse(json!({"keys": [short]}).to_string().as_bytes()).is_err());
    let mut wrong_alg = k1.jwk.clone();
    wrong_alg["alg"] = json!("RS256");
    assert!(jwks::parse(json!({"keys": [wrong_alg]}).to_string().as_bytes()).is_err());
    // A usable key next to an unusable one: the usable one is kept.
    let mixed = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}, k1.jwk]}).to_string();
    assert_eq!(jwks::parse(mixed.as_bytes()).unwrap().len(), 1);
    assert!(jwks::parse(b"not json").is_err());
}

#[test]
fn a_broken_jwks_file_is_a_config_error() {
    let error = Authenticator::new(
        &AuthSettings::Jwt(settings(JwksSource::File("/nonexistent/jwks.json".into()))),
        None,
    )
    .unwrap_err();
    assert!(matches!(error, AuthConfigError::Jwt(_)));
    assert!(
        error.to_string().contains("/nonexistent/jwks.json"),
        "{error}"
    );
}

#[tokio::test]
async fn jwt_jwks_url_is_refreshed_every_jwks_refresh() {
    let k1 = ed_key("k1");
    let server = jwks_server(jwks(&[&k1])).await;
    let mut s = settings(JwksSource::Url(format!("{}/jwks", server.uri())));
    s.jwks_refresh = Duration::from_millis(50);
    let verifier = JwtVerifier::new(s).unwrap();
    let token = sign(&k1, &claims());
    assert!(verifier.identify(&token).await.is_ok());
    assert!(verifier.identify(&token).await.is_ok());
    assert_eq!(fetches(&server).await, 1);
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert!(verifier.identify(&token).await.is_ok());
    assert_eq!(fetches(&server).await, 2);
}
