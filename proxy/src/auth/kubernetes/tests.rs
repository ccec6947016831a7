//! TokenReview / SubjectAccessReview tests against the simulated API server (wiremock), and
//! the cache.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, header};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use super::*;
use crate::auth::{AuthConfigError, AuthSettings, Authenticator};
use crate::k8s::simulated::SimulatedApiServer;

const TOKEN_REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
const ACCESS_REVIEWS: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";

/// Answers a TokenReview the way an API server would for a few known tokens.
struct Reviews;

impl Respond for Reviews {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let user = match body["spec"]["token"].as_str() {
            Some("sa-team-a") => Some("system:serviceaccount:team-a:grafana"),
            Some("sa-team-b") => Some("system:serviceaccount:team-b:grafana"),
            Some("human") => Some("alice@example.com"),
            _ => None,
        };
        let status = match user {
            Some(name) => json!({
                "authenticated": true,
                "user": {"username": name, "uid": "u-1", "groups": ["system:serviceaccounts"],
                         "extra": {"authentication.kubernetes.io/pod-name": ["grafana-0"]}},
                "audiences": body["spec"]["audiences"],
            }),
            None => json!({"authenticated": false, "error": "invalid bearer token"}),
        };
        ResponseTemplate::new(201).set_body_json(json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "metadata": {},
            "spec": body["spec"],
            "status": status,
        }))
    }
}

/// Allows only namespace `team-a`.
struct AccessReviews;

impl Respond for AccessReviews {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let allowed = body["spec"]["resourceAttributes"]["namespace"] == "team-a";
        ResponseTemplate::new(201).set_body_json(json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "metadata": {},
            "spec": body["spec"],
            "status": {"allowed": allowed},
        }))
    }
}

fn settings(access_review: Option<AccessReviewSettings>) -> KubernetesSettings {
    KubernetesSettings {
        audiences: vec!["prometheus-proxy".into()],
        cache_ttl: Duration::from_secs(60),
        access_review,
    }
}

fn get_metrics() -> Option<AccessReviewSettings> {
    Some(AccessReviewSettings {
        verb: "get".into(),
        group: "observability.ethos.io".into(),
        resource: "metrics".into(),
    })
}

async fn simulated() -> SimulatedApiServer {
    let api = SimulatedApiServer::start(&[]).await;
    Mock::given(method("POST"))
        .and(path(TOKEN_REVIEWS))
        .respond_with(Reviews)
        .mount(api.server())
        .await;
    Mock::given(method("POST"))
        .and(path(ACCESS_REVIEWS))
        .respond_with(AccessReviews)
        .mount(api.server())
        .await;
    api
}

fn authenticator(client: &kube::Client, s: KubernetesSettings) -> Authenticator {
    Authenticator::new(&AuthSettings::Kubernetes(s), Some(client)).unwrap()
}

async fn identify(auth: &Authenticator, token: &str) -> Result<String, AuthError> {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    auth.identify(&headers, None).await
}

async fn count(api: &SimulatedApiServer, path: &str) -> usize {
    api.requests()
        .await
        .iter()
        .filter(|r| r.path == path)
        .count()
}

#[tokio::test]
async fn simulated_token_review_accepts_a_service_account_token() {
    let api = simulated().await;
    let auth = authenticator(&api.client(), settings(None));
    assert_eq!(identify(&auth, "sa-team-a").await, Ok("team-a".into()));
    let requests = api.requests().await;
    assert_eq!(requests.len(), 1);
    let body: Value = serde_json::from_str(&requests[0].body).unwrap();
    assert_eq!(body["spec"]["token"], "sa-team-a");
    assert_eq!(body["spec"]["audiences"], json!(["prometheus-proxy"]));
}

#[tokio::test]
async fn simulated_token_review_rejection_is_401_with_a_bearer_challenge() {
    let api = simulated().await;
    let auth = authenticator(&api.client(), settings(None));
    let error = identify(&auth, "forged").await.unwrap_err();
    assert!(matches!(error, AuthError::Rejected(_)), "{error:?}");
    assert!(!error.to_string().contains("forged"), "{error}");
}

#[tokio::test]
async fn simulated_token_review_refuses_users_that_are_not_service_accounts() {
    let api = simulated().await;
    let auth = authenticator(&api.client(), settings(None));
    let error = identify(&auth, "human").await.unwrap_err();
    assert_eq!(error.reason(), "invalid_token");
    assert!(
        error.to_string().contains("not to a service account"),
        "{error}"
    );
}

#[tokio::test]
async fn simulated_token_review_server_error_is_503_and_not_cached() {
    let api = SimulatedApiServer::start(&[]).await;
    Mock::given(method("POST"))
        .and(path(TOKEN_REVIEWS))
        .respond_with(ResponseTemplate::new(500))
        .mount(api.server())
        .await;
    let auth = authenticator(&api.client(), settings(None));
    for _ in 0..2 {
        let error = identify(&auth, "sa-team-a").await.unwrap_err();
        assert!(matches!(error, AuthError::Unavailable(_)), "{error:?}");
        assert_eq!(error.reason(), "unavailable");
    }
    // An outage is asked about again, not remembered.
    assert_eq!(count(&api, TOKEN_REVIEWS).await, 2);
}

#[tokio::test]
async fn simulated_token_review_unreachable_api_server_is_503() {
    let client = crate::k8s::client_for("http://127.0.0.1:1").unwrap();
    let auth = authenticator(&client, settings(None));
    let error = identify(&auth, "sa-team-a").await.unwrap_err();
    assert!(matches!(error, AuthError::Unavailable(_)), "{error:?}");
    assert!(!error.to_string().contains("sa-team-a"), "{error}");
}

#[tokio::test]
async fn simulated_token_review_slow_api_server_is_503() {
    let api = SimulatedApiServer::start(&[]).await;
    Mock::given(method("POST"))
        .and(path(TOKEN_REVIEWS))
        .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_secs(1)))
        .mount(api.server())
        .await;
    let reviewer = TokenReviewer::new(api.client(), settings(None))
        .with_call_timeout(Duration::from_millis(200));
    let error = reviewer.identify("sa-team-a").await.unwrap_err();
    assert!(matches!(error, AuthError::Unavailable(_)), "{error:?}");
}

#[tokio::test]
async fn simulated_token_review_answers_are_cached_per_token() {
    let api = simulated().await;
    let auth = authenticator(&api.client(), settings(None));
    for _ in 0..3 {
        assert_eq!(identify(&auth, "sa-team-a").await, Ok("team-a".into()));
        assert!(identify(&auth, "forged").await.is_err());
    }
    assert_eq!(count(&api, TOKEN_REVIEWS).await, 2);
    assert_eq!(identify(&auth, "sa-team-b").await, Ok("team-b".into()));
    assert_eq!(count(&api, TOKEN_REVIEWS).await, 3);
}

#[tokio::test]
async fn simulated_token_review_cache_expires() {
    let api = simulated().await;
    let mut s = settings(None);
    s.cache_ttl = Duration::from_millis(50);
    let auth = authenticator(&api.client(), s);
    assert!(identify(&auth, "sa-team-a").await.is_ok());
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert!(identify(&auth, "sa-team-a").await.is_ok());
    assert_eq!(count(&api, TOKEN_REVIEWS).await, 2);
}

#[tokio::test]
async fn simulated_access_review_allowed() {
    let api = simulated().await;
    let auth = authenticator(&api.client(), settings(get_metrics()));
    assert_eq!(identify(&auth, "sa-team-a").await, Ok("team-a".into()));
    let requests = api.requests().await;
    let review = requests
        .iter()
        .find(|r| r.path == ACCESS_REVIEWS)
        .expect("a SubjectAccessReview");
    let body: Value = serde_json::from_str(&review.body).unwrap();
    let spec = &body["spec"];
    assert_eq!(spec["user"], "system:serviceaccount:team-a:grafana");
    assert_eq!(spec["uid"], "u-1");
    assert_eq!(spec["groups"], json!(["system:serviceaccounts"]));
    assert_eq!(
        spec["extra"]["authentication.kubernetes.io/pod-name"],
        json!(["grafana-0"])
    );
    let attributes = &spec["resourceAttributes"];
    assert_eq!(attributes["namespace"], "team-a");
    assert_eq!(attributes["verb"], "get");
    assert_eq!(attributes["group"], "observability.ethos.io");
    assert_eq!(attributes["resource"], "metrics");
    // The token is the TokenReview's business only.
    assert!(!review.body.contains("sa-team-a\""), "{}", review.body);
}

#[tokio::test]
async fn simulated_access_review_denied_is_403_and_cached() {
    let api = simulated().await;
    let auth = authenticator(&api.client(), settings(get_metrics()));
    for _ in 0..2 {
        let error = identify(&auth, "sa-team-b").await.unwrap_err();
        assert!(matches!(error, AuthError::Forbidden(_)), "{error:?}");
        assert!(error.to_string().contains("team-b"), "{error}");
    }
    assert_eq!(count(&api, TOKEN_REVIEWS).await, 1);
    assert_eq!(count(&api, ACCESS_REVIEWS).await, 1);
}

#[tokio::test]
async fn simulated_access_review_outage_is_503() {
    let api = SimulatedApiServer::start(&[]).await;
    Mock::given(method("POST"))
        .and(path(TOKEN_REVIEWS))
        .respond_with(Reviews)
        .mount(api.server())
        .await;
    Mock::given(method("POST"))
        .and(path(ACCESS_REVIEWS))
        .respond_with(ResponseTemplate::new(503))
        .mount(api.server())
        .await;
    let auth = authenticator(&api.client(), settings(get_metrics()));
    let error = identify(&auth, "sa-team-a").await.unwrap_err();
    assert!(matches!(error, AuthError::Unavailable(_)), "{error:?}");
}

#[test]
fn kubernetes_mode_needs_a_client() {
    let error = Authenticator::new(&AuthSettings::Kubernetes(settings(None)), None).unwrap_err();
    assert!(matches!(error, AuthConfigError::NeedsKubernetes));
    assert_eq!(
        error.to_string(),
        "auth.mode kubernetes needs the Kubernetes API (in-cluster service account or KUBECONFIG)"
    );
}

#[test]
fn service_account_usernames() {
    assert_eq!(
        service_account_namespace("system:serviceaccount:team-a:grafana"),
        Some("team-a")
    );
    for other in [
        "alice",
        "system:serviceaccount:team-a",
        "system:serviceaccount::grafana",
        "system:serviceaccount:team-a:",
        "system:serviceaccount:a:b:c",
        "system:node:worker-1",
    ] {
        assert_eq!(service_account_namespace(other), None, "{other}");
    }
}

#[test]
fn cache_is_bounded_and_evicts_the_oldest() {
    let mut cache = Cache::default();
    let now = Instant::now();
    for i in 0..MAX_CACHE_ENTRIES + 5 {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let until = now + Duration::from_secs(60) + Duration::from_millis(i as u64);
        cache.insert(key, Ok(format!("t{i}")), until);
    }
    assert_eq!(cache.len(), MAX_CACHE_ENTRIES);
    // The first entries (earliest deadlines) are gone, the newest is there.
    assert!(cache.get(&[0u8; 32], now).is_none());
    let mut newest = [0u8; 32];
    newest[..8].copy_from_slice(&((MAX_CACHE_ENTRIES + 4) as u64).to_le_bytes());
    assert!(cache.get(&newest, now).is_some());
}
