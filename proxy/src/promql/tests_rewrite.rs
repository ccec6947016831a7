//! Table-driven rewrite tests: every `Expr` shape under one-clause, two-clause and nameless
//! policies, snapshotted as `query => rewritten` (reviewed by hand), one snapshot per case.

use super::tests::{enforce, multi, nameless, policy, single};
use super::*;

/// Every shape of the PromQL grammar the rewriter handles.
const SHAPES: &[&str] = &[
    // selectors and names
    "up",
    "foo{job=\"api\",instance=~\"a.*\"}",
    "{__name__=~\".*\"}",
    "{__name__=~\"foo|bar\"}",
    "{__name__=~\".+\"}",
    "{__name__=\"up\"}",
    "node_cpu_seconds_total{mode!=\"idle\"}",
    // offset and @
    "up offset 5m",
    "up offset -5m",
    "up @ start()",
    "up @ end() offset 1m",
    "up @ 1609746000",
    // range functions
    "rate(foo[5m])",
    "increase(http_requests_total{code=~\"5..\"}[1h])",
    "avg_over_time(up[10m] offset 1h)",
    "quantile_over_time(0.9, foo[5m])",
    "predict_linear(node_disk_free[1h], 3600)",
    "rate((foo[5m]))",
    // aggregations
    "sum(up)",
    "sum by (job) (rate(foo[5m]))",
    "sum(up) without (instance)",
    "topk(3, foo)",
    "topk(scalar(up), foo)",
    "count_values(\"version\", up)",
    "quantile(0.5, up)",
    // binary operators
    "up + foo",
    "up * on (instance) group_left (job) foo",
    "up / ignoring (code) group_right foo",
    "up > bool 1",
    "up and foo",
    "up or foo",
    "up unless on (job) foo",
    "2 * up",
    "-up",
    "-(up + 1)",
    "((up))",
    // subqueries
    "max_over_time(rate(foo[5m])[1h:1m])",
    "max_over_time(up[1h:])",
    "rate(foo[5m:1m] offset 10m)",
    "avg_over_time((up + foo)[10m:] @ end())",
    // other functions
    "histogram_quantile(0.9, sum by (le) (rate(foo_bucket[5m])))",
    "label_replace(up, \"dst\", \"$1\", \"src\", \"(.*)\")",
    "timestamp(up)",
    "timestamp((foo))",
    "clamp_max(foo, 1)",
    "vector(1)",
    "time() - 60",
    "scalar(up)",
    // literals
    "1",
    "\"some string\"",
    "1 + 2 * 3",
];

/// Shapes around `absent`.
const ABSENT: &[&str] = &[
    "absent(up)",
    "absent(up{job=\"x\"})",
    "absent(foo{job=\"api\"})",
    "absent(foo{namespace=\"team-a\"})",
    "absent(foo{namespace=~\"team-.*\"})",
    "absent(nonexistent{job=\"x\",env=\"a$1\"})",
    "absent(foo{namespace=\"team-b\"})",
    "absent(up{namespace=\"b$1\"})",
    "absent((up{job=\"x\"}))",
    "absent_over_time(up[5m])",
    "absent_over_time(foo{job=\"x\"}[5m])",
    "absent_over_time(rate(foo[5m])[10m:])",
    "absent(sum(up))",
    "absent(up) * 2",
];

/// One snapshot per case, `<table>-<index>`, holding `query\n    => rewritten` and described by
/// its query, so a failing case names itself.
fn snapshot_table(table: &str, queries: &[&str], p: &Policy) {
    for (i, q) in queries.iter().enumerate() {
        let result = match enforce(q, p) {
            Ok(s) => s,
            Err(e) => format!("ERROR {e}"),
        };
        insta::with_settings!({description => *q, omit_expression => true}, {
            insta::assert_snapshot!(format!("{table}-{i:02}"), format!("{q}\n    => {result}"));
        });
    }
}

#[test]
fn shapes_single_clause() {
    snapshot_table("shapes_single_clause", SHAPES, &single());
}

#[test]
fn shapes_multi_clause() {
    snapshot_table("shapes_multi_clause", SHAPES, &multi());
}

#[test]
fn shapes_nameless_clauses() {
    snapshot_table("shapes_nameless_clauses", SHAPES, &nameless());
}

#[test]
fn absent_single_clause() {
    snapshot_table("absent_single_clause", ABSENT, &single());
}

#[test]
fn absent_multi_clause() {
    snapshot_table("absent_multi_clause", ABSENT, &multi());
}

#[test]
fn absent_nameless_clauses() {
    snapshot_table("absent_nameless_clauses", ABSENT, &nameless());
}

#[test]
fn label_selectors_policy() {
    let p = policy(
        "team-b",
        serde_json::json!({
            "metricIsolation": false,
            "metrics": ["{job=\"api\"}"],
            "labelSelectors": {"env": "prod", "team": "b\"q"}
        }),
    );
    snapshot_table(
        "label_selectors_policy",
        &[
            "rate(foo[5m])",
            "absent(foo{env=\"prod\"})",
            "up{team=\"c\"}",
        ],
        &p,
    );
}

#[test]
fn every_selector_of_every_shape_is_enforced() {
    // Beyond the snapshots: each successful rewrite passes the independent checker, and
    // the original query never comes back unchanged when it has a selector.
    for p in [single(), multi(), nameless()] {
        for q in SHAPES.iter().chain(ABSENT) {
            let Ok(out) = enforce(q, &p) else { continue };
            let e = promql_parser::parser::parse(&out).unwrap();
            assert_enforced(&e, &p).unwrap();
            if q.contains("up") || q.contains("foo") {
                assert_ne!(&out, q);
            }
        }
    }
}

#[test]
fn pruning_drops_clauses_that_cannot_match() {
    let p = multi();
    // `up` can only match the `up` clause; `foo` only the foo clause.
    assert_eq!(enforce("up", &p).unwrap(), "up{namespace=\"team-a\"}");
    assert_eq!(
        enforce("foo", &p).unwrap(),
        "foo{job=\"api\",namespace=\"team-a\"}"
    );
    // A name regex matching both names keeps both clauses.
    assert_eq!(
        enforce("{__name__=~\"foo|up\"}", &p).unwrap(),
        "({__name__=\"up\",__name__=~\"foo|up\",namespace=\"team-a\"} or \
         {__name__=\"foo\",__name__=~\"foo|up\",job=\"api\",namespace=\"team-a\"})"
    );
    // A conflicting equality leaves no clause: one is kept, and the result is empty anyway.
    assert_eq!(
        enforce("up{namespace=\"team-b\"}", &p).unwrap(),
        "up{namespace=\"team-a\",namespace=\"team-b\"}"
    );
    // `foo{job="web"}` can't match the foo clause (job="api"), nor the up clause.
    assert_eq!(
        enforce("foo{job=\"web\"}", &p).unwrap(),
        "{__name__=\"foo\",__name__=\"up\",job=\"web\",namespace=\"team-a\"}"
    );
    // A regex name matching neither `up` nor `foo`'s name.
    let out = enforce("{__name__=~\"foo|bar\"}", &p).unwrap();
    assert_eq!(
        out,
        "{__name__=\"foo\",__name__=~\"foo|bar\",job=\"api\",namespace=\"team-a\"}"
    );
}

#[test]
fn escaping_survives_the_round_trip() {
    let p = policy(
        "team-a",
        serde_json::json!({"metricIsolation": true, "metrics": ["foo{path=\"a\\\"b\\\\c\"}"]}),
    );
    let out = enforce("foo{x=\"new\\nline\", y='single\"quote'}", &p).unwrap();
    assert_eq!(
        out,
        "foo{namespace=\"team-a\",path=\"a\\\"b\\\\c\",x=\"new\\nline\",y=\"single\\\"quote\"}"
    );
    let reparsed = promql_parser::parser::parse(&out).unwrap();
    assert_eq!(reparsed.to_string(), out);
}

#[test]
fn three_clauses_chain_left_to_right() {
    let p = policy(
        "t",
        serde_json::json!({"metrics": ["{job=\"a\"}", "{team=\"x\"}", "{env=\"p\"}"]}),
    );
    assert_eq!(
        enforce("sum(rate(foo[5m])) * up", &p).unwrap(),
        "sum((rate(foo{job=\"a\"}[5m]) or rate(foo{team=\"x\"}[5m]) or rate(foo{env=\"p\"}[5m]))) \
         * (up{job=\"a\"} or up{team=\"x\"} or up{env=\"p\"})"
    );
    // Covered by one clause: nothing to add.
    assert_eq!(
        enforce("absent(up{job=\"a\"})", &p).unwrap(),
        "absent(up{job=\"a\"})"
    );
    // team="y" can't match the team="x" clause: two clauses left, chained.
    assert_eq!(
        enforce("absent(up{team=\"y\"})", &p).unwrap(),
        "label_replace((absent(up{job=\"a\",team=\"y\"}) and on () \
         absent(up{env=\"p\",team=\"y\"})), \"job\", \"\", \"\", \"\")"
    );
}
