//! Authentication, error envelopes, metadata filtering, admin endpoints.

use axum::body::Body;
use axum::http::{Request, StatusCode};

use super::*;
use crate::promql::EnforceError;

#[tokio::test]
async fn enforce_errors_are_answered_with_prometheus_statuses() {
    let settings = settings(vec!["http://127.0.0.1:1".into()], header_auth());
    let state = App::from_settings(settings, Arc::new(TenantStore::new()), None).unwrap();
    let cases = [
        (
            EnforceError::Parse("unexpected end".into()),
            400,
            "bad_data",
        ),
        (EnforceError::NoAccess, 403, "forbidden"),
        (EnforceError::Invariant("bug".into()), 500, "internal"),
    ];
    for (error, status, kind) in cases {
        let answer = crate::http::prom_api::enforce_error(&state, error);
        assert_eq!(answer.status.as_u16(), status, "{answer}");
        assert_eq!(answer.error_type, kind, "{answer}");
    }
}

#[tokio::test]
async fn tenants_are_authenticated_and_must_exist() {
    let f = fixture().await;
    let router = || api_router(f.state.clone());
    let anonymous = Request::get("/api/v1/query?query=up")
        .body(Body::empty())
        .unwrap();
    let answer = call(router(), anonymous).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.json()["status"], "error");

    let by_param = Request::get("/api/v1/query?query=up&namespace=team-a")
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(router(), by_param).await.status, StatusCode::OK);

    let unknown = Request::get("/api/v1/query?query=up")
        .header("X-Tenant-Namespace", "team-zz")
        .body(Body::empty())
        .unwrap();
    let answer = call(router(), unknown).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(
        answer.json()["error"],
        "unknown tenant team-zz: no valid MetricAccess"
    );

    let empty = Request::get("/api/v1/query?query=up")
        .header("X-Tenant-Namespace", "team-empty")
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(router(), empty).await.status, StatusCode::FORBIDDEN);

    let conflict = Request::get("/api/v1/query?query=up&namespace=team-empty")
        .header("X-Tenant-Namespace", "team-a")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        call(router(), conflict).await.status,
        StatusCode::BAD_REQUEST
    );

    // Only the by_param request reached the upstream.
    assert_eq!(f.upstream.take().len(), 1);
    let metrics = f.state.metrics().encode();
    assert!(metrics.contains("pmtp_auth_failures_total{reason=\"unknown_tenant\"} 1"));
    assert!(metrics.contains("pmtp_tenant_requests_total{tenant=\"team-a\"}"));
    assert!(
        !metrics.contains("team-zz"),
        "unknown tenants must not become labels"
    );
}

#[tokio::test]
async fn bearer_tokens_pick_the_tenant_and_headers_cannot_override_it() {
    use sha2::Digest;
    let hash: String = sha2::Sha256::digest(b"token-a")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let f = fixture_with(AuthSettings::Bearer {
        tokens: vec![TokenSetting {
            tenant: "team-a".into(),
            source: TokenSource::Sha256(hash),
        }],
    })
    .await;
    let request = |token: Option<&str>| {
        let mut builder = Request::get("/api/v1/query?query=up&namespace=team-empty")
            .header("X-Tenant-Namespace", "team-empty");
        if let Some(token) = token {
            builder = builder.header("Authorization", format!("Bearer {token}"));
        }
        builder.body(Body::empty()).unwrap()
    };
    let ok = call(api_router(f.state.clone()), request(Some("token-a"))).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let upstream = &f.upstream.take()[0];
    assert!(form(&upstream.body)[0].1.contains("team-a"));
    let bad = call(api_router(f.state.clone()), request(Some("token-b"))).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(bad.headers.contains_key("www-authenticate"));
    let missing = call(api_router(f.state.clone()), request(None)).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.headers["www-authenticate"], "Bearer");
}

#[tokio::test]
async fn enforcement_and_upstream_errors_keep_the_envelope() {
    let f = fixture().await;
    let answer = call(api_router(f.state.clone()), get("/api/v1/query?query=sum(")).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.json()["errorType"], "bad_data");
    let answer = call(api_router(f.state.clone()), get("/api/v1/query")).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(f.upstream.take().is_empty());
    // An upstream error passes through unchanged.
    let answer = call(api_router(f.state.clone()), get("/api/v1/query?query=boom")).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer.json()["errorType"], "execution");
    assert_eq!(answer.headers["content-type"], "application/json");
    let metrics = f.state.metrics().encode();
    assert!(
        metrics.contains("pmtp_rewrite_errors_total{reason="),
        "{metrics}"
    );
}

#[tokio::test]
async fn metadata_is_filtered_to_visible_metrics() {
    let f = fixture().await;
    let answer = call(
        api_router(f.state.clone()),
        get("/api/v1/metadata?limit_per_metric=1"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let json = answer.json();
    let names: Vec<&String> = json["data"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["http_requests_total", "up"]);
    let recorded = f.upstream.take();
    assert_eq!(recorded[0].path, "/api/v1/metadata");
    assert_eq!(recorded[0].query, "limit_per_metric=1");
    assert_eq!(recorded[1].path, "/api/v1/label/__name__/values");
    assert!(recorded[1].query.starts_with("match%5B%5D="));
    // limit applies after filtering.
    let answer = call(api_router(f.state.clone()), get("/api/v1/metadata?limit=1")).await;
    assert_eq!(answer.json()["data"].as_object().unwrap().len(), 1);
    let answer = call(api_router(f.state.clone()), get("/api/v1/metadata?limit=x")).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn admin_endpoints_show_state_and_metrics() {
    let f = fixture().await;
    // Not ready until a probe found the backend up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while f.state.not_ready_reason().is_some() {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let admin = || admin_router(f.state.clone());
    let plain = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
    assert_eq!(
        call(admin(), plain("/-/ready")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        call(api_router(f.state.clone()), plain("/ready"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        call(api_router(f.state.clone()), plain("/-/healthy"))
            .await
            .status,
        StatusCode::OK
    );

    let targets = call(admin(), plain("/debug/targets")).await.json();
    assert_eq!(targets["groups"][0]["members"][0]["health"], "up");
    let tenants = call(admin(), plain("/debug/tenants")).await.json();
    assert_eq!(tenants["tenants"][0]["namespace"], "team-a");
    assert!(
        tenants["tenants"][0]["selectors"][0]
            .as_str()
            .unwrap()
            .contains("team-a")
    );

    call(api_router(f.state.clone()), get("/api/v1/query?query=up")).await;
    let metrics = call(admin(), plain("/metrics")).await;
    assert!(
        metrics.body.contains(
            "pmtp_http_requests_total{route=\"/api/v1/query\",method=\"GET\",code=\"200\"} 1"
        ),
        "{}",
        metrics.body
    );
    assert!(metrics.body.contains("pmtp_tenants{state=\"valid\"} 2"));
    assert!(metrics.body.contains("pmtp_backend_up{group=\"infra\""));
    assert!(metrics.body.contains("pmtp_backend_requests_total"));

    // Without a config file, reload is refused and says why.
    let reload = Request::post("/-/reload").body(Body::empty()).unwrap();
    let answer = call(admin(), reload).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(
        answer.json()["error"]
            .as_str()
            .unwrap()
            .contains("without a config file")
    );

    // Tenants not loaded: not ready, with the reason.
    f.state.tenants().replace(TenantSnapshot::default());
    let answer = call(admin(), plain("/-/ready")).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer.body.contains("tenants"));
}

#[tokio::test]
async fn metrics_can_be_disabled() {
    let upstream = FakeUpstream::start().await;
    let mut settings = settings(vec![upstream.url.clone()], header_auth());
    settings.metrics_enabled = false;
    let state = App::from_settings(settings, Arc::new(TenantStore::new()), None).unwrap();
    let answer = call(
        admin_router(state),
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert!(answer.body.contains("enable_metrics"));
}

fn kubernetes_auth() -> AuthSettings {
    AuthSettings::Kubernetes(crate::auth::kubernetes::KubernetesSettings {
        audiences: vec![],
        cache_ttl: Duration::from_secs(60),
        access_review: None,
    })
}

#[tokio::test]
async fn simulated_kubernetes_auth_outage_is_503_never_a_pass() {
    let upstream = FakeUpstream::start().await;
    let tenants = Arc::new(TenantStore::new());
    tenants.replace(snapshot());
    let settings = || settings(vec![upstream.url.clone()], kubernetes_auth());
    let error = App::from_settings(settings(), tenants.clone(), None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("auth.mode kubernetes needs the Kubernetes API"),
        "{error}"
    );
    let closed = crate::k8s::client_for("http://127.0.0.1:1").unwrap();
    let state = App::from_settings_with_kube(settings(), tenants, None, Some(closed)).unwrap();
    let request = Request::get("/api/v1/query?query=up")
        .header("Authorization", "Bearer some-token")
        .body(Body::empty())
        .unwrap();
    let answer = call(api_router(state.clone()), request).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.json()["errorType"], "unavailable");
    assert!(!answer.body.contains("some-token"), "{}", answer.body);
    assert!(upstream.take().is_empty());
    let metrics = state.metrics().encode();
    assert!(metrics.contains("pmtp_auth_failures_total{reason=\"unavailable\"} 1"));
}
