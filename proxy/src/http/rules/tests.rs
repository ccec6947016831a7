//! The rules/alerts filter: which expressions and alerts a policy shows, and the two
//! endpoints through the router against the fake upstream.

use std::collections::BTreeMap;

use axum::http::StatusCode;

use super::*;
use crate::http::tests::{RULES_ANSWER, call, fixture, get, team_a_policy};
use crate::tenant::{Clause, LabelMatcher, MatchKind, Policy};

fn visibility() -> Visibility {
    Visibility::new(&team_a_policy()).unwrap()
}

#[test]
fn a_rule_is_visible_only_when_every_selector_is_inside_a_clause() {
    let v = visibility();
    for visible in [
        r#"sum(up{namespace="team-a"})"#,
        r#"rate(http_requests_total{namespace="team-a",code="500"}[5m]) > 0"#,
        r#"up{namespace="team-a"} / on() group_left http_requests_total{namespace="team-a"}"#,
        r#"{__name__="up",namespace="team-a"}"#,
        r#"max_over_time(up{namespace="team-a"}[1h:5m] offset 1h)"#,
        r#"label_replace(up{namespace="team-a"}, "x", "$1", "job", "(.*)")"#,
    ] {
        assert!(v.query_within(visible), "should be visible: {visible}");
    }
    for hidden in [
        // Another tenant's, or nobody's in particular.
        r#"up{namespace="team-b"}"#,
        "up",
        r#"up{namespace=~"team-a|team-b"}"#,
        r#"up{namespace!="team-b"}"#,
        // One selector outside is enough.
        r#"up{namespace="team-a"} and on() secret_total{namespace="team-a"}"#,
        r#"sum(up{namespace="team-a"}) + count(up)"#,
        // A name the policy does not list.
        r#"secret_total{namespace="team-a"}"#,
        r#"{namespace="team-a"}"#,
        // Reads no series at all: a rule of nobody.
        "vector(1)",
        "time() > 0",
        // Not PromQL.
        "up{",
        "",
    ] {
        assert!(!v.query_within(hidden), "should be hidden: {hidden}");
    }
}

#[test]
fn a_regex_clause_accepts_the_names_it_matches() {
    let policy = Policy::from_clauses(vec![Clause::new(vec![
        LabelMatcher::new("__name__", MatchKind::Regex, "node_.*"),
        LabelMatcher::equal("namespace", "team-a"),
    ])]);
    let v = Visibility::new(&policy).unwrap();
    assert!(v.query_within(r#"node_cpu_seconds_total{namespace="team-a"}"#));
    assert!(v.query_within(r#"{__name__=~"node_.*",namespace="team-a"}"#));
    assert!(!v.query_within(r#"kube_pod_info{namespace="team-a"}"#));
    // A different regex is not proven to be narrower: hidden (a false negative, never a leak).
    assert!(!v.query_within(r#"{__name__=~"node_cpu.*",namespace="team-a"}"#));
    // Non-ASCII values are not compared with regexes.
    assert!(!v.query_within(r#"{__name__="node_é",namespace="team-a"}"#));
}

#[test]
fn an_empty_policy_shows_nothing() {
    let v = Visibility::new(&Policy::default()).unwrap();
    assert!(!v.query_within(r#"up{namespace="team-a"}"#));
    assert!(!v.labels_within(&BTreeMap::new()));
}

#[test]
fn alert_labels_must_satisfy_a_clause_apart_from_the_name() {
    let v = visibility();
    let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert!(v.labels_within(&labels(&[("alertname", "A"), ("namespace", "team-a")])));
    assert!(!v.labels_within(&labels(&[("alertname", "A"), ("namespace", "team-b")])));
    assert!(!v.labels_within(&labels(&[("alertname", "A")])));
}

#[test]
fn the_filter_keeps_team_a_rules_and_alerts_and_drops_emptied_groups() {
    let answer: Value = serde_json::from_str(RULES_ANSWER).unwrap();
    let mut data = answer["data"].clone();
    filter_rules(&mut data, &visibility()).unwrap();
    let groups = data["groups"].as_array().unwrap();
    let names: Vec<&str> = groups.iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["team-a"], "{data}");
    let rules: Vec<&str> = groups[0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["team_a:up", "TeamAErrors"]);
    let alerts = alerts_of(&data);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["labels"]["namespace"], "team-a");
    // A document without groups is an upstream problem, not an empty answer.
    assert!(filter_rules(&mut serde_json::json!({}), &visibility()).is_err());
}

#[tokio::test]
async fn rules_and_alerts_through_the_router() {
    let f = fixture().await;
    let router = crate::http::api_router(f.state.clone());
    let rules = call(router.clone(), get("/api/v1/rules")).await;
    assert_eq!(rules.status, StatusCode::OK, "{}", rules.body);
    let body = rules.json();
    assert_eq!(body["status"], "success");
    assert_eq!(body["data"]["groups"].as_array().unwrap().len(), 1);
    assert!(!rules.body.contains("team-b"), "{}", rules.body);
    assert!(!rules.body.contains("vector(1)"), "{}", rules.body);

    let alerts = call(router.clone(), get("/api/v1/alerts")).await;
    assert_eq!(alerts.status, StatusCode::OK, "{}", alerts.body);
    let list = alerts.json()["data"]["alerts"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["labels"]["alertname"], "TeamAErrors");

    // The upstream was asked for every rule, alerting rules only for /alerts.
    let asked: Vec<(String, String)> = f
        .upstream
        .take()
        .into_iter()
        .map(|r| (r.path, r.query))
        .collect();
    assert_eq!(
        asked,
        [
            ("/api/v1/rules".to_string(), String::new()),
            ("/api/v1/rules".to_string(), "type=alert".to_string())
        ]
    );

    let bad = call(router.clone(), get("/api/v1/rules?type=everything")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.json()["errorType"], "bad_data");
    // A tenant with an empty policy is refused, as on every read endpoint.
    let empty = axum::http::Request::get("/api/v1/alerts")
        .header("X-Tenant-Namespace", "team-empty")
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(call(router, empty).await.status, StatusCode::FORBIDDEN);
}
