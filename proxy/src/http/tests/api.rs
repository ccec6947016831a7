//! Enforced routes: what reaches the upstream, and what never does.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};

use super::*;

#[tokio::test]
async fn query_forwards_only_the_enforced_query_and_known_parameters() {
    let f = fixture().await;
    let request = Request::get(
        "/api/v1/query?query=sum(rate(up%5B5m%5D))&time=1700000000&foo=bar&namespace=team-a",
    )
    .header("X-Tenant-Namespace", "team-a")
    .header("X-Scope-OrgID", "team-b")
    .header("Authorization", "Bearer secret")
    .header("Cookie", "session=1")
    .body(Body::empty())
    .unwrap();
    let answer = call(api_router(f.state.clone()), request).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.json()["status"], "success");
    let recorded = f.upstream.take();
    assert_eq!(recorded.len(), 1);
    let upstream = &recorded[0];
    assert_eq!(upstream.method, Method::POST);
    assert_eq!(upstream.path, "/api/v1/query");
    assert_eq!(upstream.query, "");
    let expected = enforce_query("sum(rate(up[5m]))", &team_a_policy(), &limits()).unwrap();
    assert!(expected.contains("team-a"), "{expected}");
    assert_eq!(
        form(&upstream.body),
        pairs(&[("query", &expected), ("time", "1700000000")])
    );
    for name in [
        "x-scope-orgid",
        "x-tenant-namespace",
        "authorization",
        "cookie",
    ] {
        assert!(!upstream.headers.contains_key(name), "{name} was forwarded");
    }
}

#[tokio::test]
async fn post_form_and_url_are_read_together() {
    let f = fixture().await;
    let request = post(
        "/api/v1/query_range?start=1&end=2",
        "query=up&step=15&stats=all",
    );
    let answer = call(api_router(f.state.clone()), request).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let upstream = &f.upstream.take()[0];
    assert_eq!(upstream.path, "/api/v1/query_range");
    let expected = enforce_query("up", &team_a_policy(), &limits()).unwrap();
    assert_eq!(
        form(&upstream.body),
        pairs(&[
            ("query", &expected),
            ("start", "1"),
            ("end", "2"),
            ("step", "15"),
            ("stats", "all")
        ])
    );
}

#[tokio::test]
async fn ambiguous_parameters_are_refused_before_any_upstream_call() {
    let f = fixture().await;
    let cases = [
        post("/api/v1/query?query=up", "query=up"),
        get("/api/v1/query?query=&query=up"),
        get("/api/v1/query?query=up;time=1"),
        Request::post("/api/v1/query")
            .header("X-Tenant-Namespace", "team-a")
            .header("content-type", "multipart/form-data; boundary=x")
            .body(Body::from("--x--"))
            .unwrap(),
    ];
    for request in cases {
        let answer = call(api_router(f.state.clone()), request).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
        assert_eq!(answer.json()["errorType"], "bad_data");
        assert_eq!(answer.json()["status"], "error");
    }
    let big = "query=".to_string() + &"x".repeat(2000);
    let answer = call(api_router(f.state.clone()), post("/api/v1/query", &big)).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(f.upstream.take().is_empty());
    let metrics = f.state.metrics().encode();
    assert!(
        metrics.contains("pmtp_bad_requests_total{reason=\"duplicate_parameter\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn match_endpoints_intersect_every_selector() {
    let f = fixture().await;
    // match[] from URL and body, one percent-encoded name.
    let request = post(
        "/api/v1/series?match%5B%5D=up&start=1",
        "match[]=%7Bjob%3D%22x%22%7D&limit=5",
    );
    let answer = call(api_router(f.state.clone()), request).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let upstream = &f.upstream.take()[0];
    assert_eq!(
        (upstream.method.clone(), upstream.path.as_str()),
        (Method::POST, "/api/v1/series")
    );
    let selectors = enforce_match_selectors(
        &["up".to_string(), "{job=\"x\"}".to_string()],
        &team_a_policy(),
        &limits(),
    )
    .unwrap();
    let mut expected: Vec<(String, String)> = selectors
        .iter()
        .map(|s| ("match[]".to_string(), s.clone()))
        .collect();
    expected.extend(pairs(&[("start", "1"), ("limit", "5")]));
    assert_eq!(form(&upstream.body), expected);

    // Series needs match[]; labels without one get the tenant's clauses.
    let answer = call(api_router(f.state.clone()), get("/api/v1/series")).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.json()["error"], "no match[] parameter provided");
    assert!(f.upstream.take().is_empty());
    let answer = call(api_router(f.state.clone()), get("/api/v1/labels")).await;
    assert_eq!(answer.status, StatusCode::OK);
    let clauses = enforce_match_selectors(&[], &team_a_policy(), &limits()).unwrap();
    let upstream = &f.upstream.take()[0];
    let sent: Vec<String> = form(&upstream.body).into_iter().map(|(_, v)| v).collect();
    assert_eq!(sent, clauses);

    // Label values and federate go upstream as GET.
    let answer = call(api_router(f.state.clone()), get("/api/v1/label/job/values")).await;
    assert_eq!(answer.status, StatusCode::OK);
    let upstream = &f.upstream.take()[0];
    assert_eq!(upstream.method, Method::GET);
    assert_eq!(upstream.path, "/api/v1/label/job/values");
    let sent: Vec<String> = form(&upstream.query).into_iter().map(|(_, v)| v).collect();
    assert_eq!(sent, clauses);
    let answer = call(
        api_router(f.state.clone()),
        get("/api/v1/label/bad%2Fname/values"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);

    let answer = call(api_router(f.state.clone()), get("/federate?match[]=up")).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["content-type"], "text/plain; version=0.0.4");
    let upstream = &f.upstream.take()[0];
    assert_eq!(
        (upstream.method.clone(), upstream.path.as_str()),
        (Method::GET, "/federate")
    );
    let federated =
        enforce_match_selectors(&["up".to_string()], &team_a_policy(), &limits()).unwrap();
    let sent: Vec<String> = form(&upstream.query).into_iter().map(|(_, v)| v).collect();
    assert_eq!(sent, federated);
}

#[tokio::test]
async fn unsupported_paths_are_forbidden_with_the_envelope() {
    let f = fixture().await;
    for (method, path) in [
        ("GET", "/api/v1/status/tsdb"),
        ("POST", "/api/v1/admin/tsdb/delete_series"),
        ("GET", "/api/v1/targets"),
        ("GET", "/api/v1/query/"),
        ("GET", "//api/v1/query"),
        ("POST", "/api/v1/write"),
        ("GET", "/metrics"),
        ("GET", "/debug/tenants"),
        ("POST", "/-/reload"),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("X-Tenant-Namespace", "team-a")
            .body(Body::empty())
            .unwrap();
        let answer = call(api_router(f.state.clone()), request).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{path}");
        let json = answer.json();
        assert_eq!(json["errorType"], "forbidden");
        assert!(json["error"].as_str().unwrap().contains(path), "{json}");
    }
    let request = Request::delete("/api/v1/query")
        .body(Body::empty())
        .unwrap();
    let answer = call(api_router(f.state.clone()), request).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(answer.json()["status"], "error");
    assert!(f.upstream.take().is_empty());
}
