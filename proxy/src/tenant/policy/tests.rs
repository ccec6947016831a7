//! Policy compiler tests: every pattern kind, labelSelectors, isolation, merging, union,
//! invalid patterns, and the printed clause selectors.

use super::*;

fn spec(value: serde_json::Value) -> MetricAccessSpec {
    serde_json::from_value(value).unwrap()
}

fn compile(value: serde_json::Value) -> Result<Policy, PolicyError> {
    Policy::from_spec("team-a", &spec(value))
}

fn selectors(value: serde_json::Value) -> Vec<String> {
    compile(value).unwrap().clause_selectors()
}

#[test]
fn pattern_kinds() {
    let cases: &[(&[&str], &[&str])] = &[
        // exact names, alone and merged
        (&["up"], &[r#"{__name__="up"}"#]),
        (&["ns:rule:rate5m"], &[r#"{__name__="ns:rule:rate5m"}"#]),
        (&["up", "foo"], &[r#"{__name__=~"up|foo"}"#]),
        // regexes, alone and merged with names
        (&["http_.*"], &[r#"{__name__=~"http_.*"}"#]),
        (
            &["up", "node_.*", "a|b"],
            &[r#"{__name__=~"up|node_.*|(?:a|b)"}"#],
        ),
        (&["(?i)cpu"], &[r#"{__name__=~"(?i)cpu"}"#]),
        (
            &["x", "(?i)cpu", "y"],
            &[r#"{__name__=~"x|(?:(?i)cpu)|y"}"#],
        ),
        // selectors: their matchers and name
        (&[r#"{job="api"}"#], &[r#"{job="api"}"#]),
        (
            &[r#"foo{job="api",code=~"5.."}"#],
            &[r#"{__name__="foo",code=~"5..",job="api"}"#],
        ),
        (&[r#"{"my.metric"}"#], &[r#"{__name__="my.metric"}"#]),
        // a name-only selector merges with names; one with other matchers stays apart
        (
            &["up", "bar{}", r#"foo{job="x"}"#],
            &[r#"{__name__=~"up|bar"}"#, r#"{__name__="foo",job="x"}"#],
        ),
        // same extra matchers after a selector: names merge across them
        (
            &[r#"a{job="x"}"#, r#"b{job="x"}"#],
            &[r#"{__name__=~"a|b",job="x"}"#],
        ),
        // a dotted name from a selector pattern is escaped when merged
        (
            &["up", r#"{__name__="my.metric"}"#],
            &[r#"{__name__=~"up|my\\.metric"}"#],
        ),
        // duplicates collapse
        (&["up", "up"], &[r#"{__name__="up"}"#]),
    ];
    for (metrics, want) in cases {
        let got = selectors(serde_json::json!({ "metrics": metrics }));
        assert_eq!(got, *want, "metrics {metrics:?}");
    }
}

#[test]
fn label_selectors_and_isolation_are_anded_into_every_clause() {
    let got = selectors(serde_json::json!({
        "metricIsolation": true,
        "metrics": ["up", "node_.*", r#"foo{job="api"}"#],
        "labelSelectors": {"env": "prod", "team": "a\"b"}
    }));
    assert_eq!(
        got,
        vec![
            r#"{__name__=~"up|node_.*",env="prod",namespace="team-a",team="a\"b"}"#,
            r#"{__name__="foo",env="prod",job="api",namespace="team-a",team="a\"b"}"#,
        ]
    );
    let p = compile(serde_json::json!({"metricIsolation": false, "metrics": ["up"]})).unwrap();
    assert_eq!(
        p.clauses,
        vec![Clause::new(vec![LabelMatcher::equal("__name__", "up")])]
    );
}

#[test]
fn empty_metrics_deny_everything() {
    for value in [
        serde_json::json!({"metricIsolation": true}),
        serde_json::json!({"metrics": [], "labelSelectors": {"env": "prod"}}),
    ] {
        let p = compile(value).unwrap();
        assert!(p.is_empty());
        assert!(p.clause_selectors().is_empty());
    }
}

#[test]
fn invalid_patterns_name_the_pattern() {
    for bad in [
        "",
        "  ",
        "foo(",
        "a)|(b",
        "[z-a]",
        "foo{",
        r#"foo{a="1" or b="2"}"#,
        r#"rate(foo{a="1"}[5m])"#,
        r#"foo{a="1"} offset 5m"#,
        r#"foo{__name__="foo"}"#,
        "x{abc}",
    ] {
        match compile(serde_json::json!({ "metrics": ["up", bad] })) {
            Err(PolicyError::InvalidPattern { pattern, reason }) => {
                assert_eq!(pattern, bad);
                assert!(!reason.is_empty());
                let msg = PolicyError::InvalidPattern { pattern, reason }.to_string();
                assert!(msg.contains(&format!("{bad:?}")), "{msg}");
            }
            other => panic!("{bad:?} should be invalid, got {other:?}"),
        }
    }
}

#[test]
fn invalid_label_selector_keys() {
    let e = compile(serde_json::json!({"metrics": ["up"], "labelSelectors": {"a.b": "x"}}))
        .unwrap_err();
    assert!(matches!(e, PolicyError::InvalidLabelSelector { ref name, .. } if name == "a.b"));
}

#[test]
fn union_merges_and_dedupes() {
    let a = compile(serde_json::json!({"metricIsolation": true, "metrics": ["up"]})).unwrap();
    let b =
        compile(serde_json::json!({"metricIsolation": true, "metrics": ["foo", "up"]})).unwrap();
    let c = compile(serde_json::json!({"metrics": [r#"bar{job="x"}"#]})).unwrap();
    let u = Policy::union([a.clone(), b, c, Policy::default()]);
    assert_eq!(
        u.clause_selectors(),
        vec![
            r#"{__name__=~"up|(?:foo|up)",namespace="team-a"}"#,
            r#"{__name__="bar",job="x"}"#,
        ]
    );
    assert_eq!(Policy::union([a.clone(), a.clone()]), a);
    assert!(Policy::union(Vec::<Policy>::new()).is_empty());
}

#[test]
fn clause_selectors_parse_back() {
    let p = compile(serde_json::json!({
        "metricIsolation": true,
        "metrics": ["up", "node_.*", r#"{"my.metric", path="a\\b\"c\nd"}"#],
        "labelSelectors": {"team": "new\nline"}
    }))
    .unwrap();
    for s in p.clause_selectors() {
        let e = promql_parser::parser::parse(&s).unwrap();
        assert_eq!(e.to_string(), s);
        let Expr::VectorSelector(vs) = e else {
            panic!("{s} is not a selector")
        };
        let back: Vec<LabelMatcher> = vs
            .matchers
            .matchers
            .iter()
            .map(LabelMatcher::from_promql)
            .collect();
        assert!(p.clauses.iter().any(|c| {
            let mut sorted = back.clone();
            sorted.sort();
            sorted == c.matchers
        }));
    }
}
