//! Shared test helpers, `match[]` enforcement and the refusals (bad input).

use super::*;
use crate::tenant::MetricAccessSpec;

/// A policy compiled from a spec written as the CR's JSON, so the tests don't depend on how
/// `MetricAccessSpec` is constructed in Rust.
pub(super) fn policy(ns: &str, spec: serde_json::Value) -> Policy {
    let spec: MetricAccessSpec = serde_json::from_value(spec).unwrap();
    Policy::from_spec(ns, &spec).unwrap()
}

/// One clause: `{__name__=~"up|foo|foo_bucket|http_requests_total|node_.*",namespace="team-a"}`.
pub(super) fn single() -> Policy {
    policy(
        "team-a",
        serde_json::json!({
            "metricIsolation": true,
            "metrics": ["up", "foo", "foo_bucket", "http_requests_total", "node_.*"]
        }),
    )
}

/// Two clauses: `{__name__="up",namespace="team-a"}` and
/// `{__name__="foo",job="api",namespace="team-a"}`.
pub(super) fn multi() -> Policy {
    policy(
        "team-a",
        serde_json::json!({"metricIsolation": true, "metrics": ["up", "foo{job=\"api\"}"]}),
    )
}

/// Two clauses without a metric name: `{job="a",namespace="team-a"}`, `{team="x",namespace="team-a"}`.
pub(super) fn nameless() -> Policy {
    policy(
        "team-a",
        serde_json::json!({"metricIsolation": true, "metrics": ["{job=\"a\"}", "{team=\"x\"}"]}),
    )
}

pub(super) fn enforce(q: &str, p: &Policy) -> Result<String, EnforceError> {
    enforce_query(q, p, &EnforceLimits::default())
}

fn err(q: &str, p: &Policy) -> EnforceError {
    match enforce(q, p) {
        Ok(out) => panic!("{q:?} should be refused, got {out:?}"),
        Err(e) => e,
    }
}

#[test]
fn refuses_empty_and_unparsable_queries() {
    assert_eq!(err("", &single()), EnforceError::Empty);
    assert_eq!(err("  \n", &single()), EnforceError::Empty);
    for q in [
        "sum(",
        "foo{",
        "foo[5m",
        "rate(foo)",
        "foo{__name__=\"foo\"}",
        "{a=~\".*\"}",
    ] {
        assert!(
            matches!(err(q, &single()), EnforceError::Parse(_)),
            "{q:?} should be a parse error"
        );
    }
    // Backtick regexes with backslashes: a known promql-parser gap, refused (fail closed).
    assert!(matches!(
        err("foo{a=~`\\d+`}", &single()),
        EnforceError::Parse(_)
    ));
    assert!(matches!(err("sum(", &single()), EnforceError::Parse(_)));
}

#[test]
fn refuses_too_long_before_parsing() {
    let limits = EnforceLimits {
        max_query_bytes: 10,
        max_depth: 100,
    };
    // Unparsable, so the length check must come first to give TooLong.
    let e = enforce_query("sum(((((((((((", &single(), &limits).unwrap_err();
    assert_eq!(e, EnforceError::TooLong { len: 14, max: 10 });
    assert!(enforce_query("up", &multi(), &limits).is_ok());
}

#[test]
fn refuses_deep_nesting_fast_without_overflowing() {
    // Run on a small stack: if the depth check came after parsing (or a recursion ran on the
    // input), this would overflow and abort the test binary.
    let handle = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            let limits = EnforceLimits {
                max_query_bytes: 1 << 20,
                max_depth: 100,
            };
            let n = 100_000;
            let parens = format!("{}foo{}", "(".repeat(n), ")".repeat(n));
            let negs = format!("{}foo", "-(".repeat(n / 2));
            let chain = format!("a{}", "+a".repeat(n));
            let pow = format!("a{}", "^a".repeat(n));
            let ands = format!("a{}", " and a".repeat(n / 4));
            let start = std::time::Instant::now();
            for q in [&parens, &negs, &chain, &pow, &ands] {
                let e = enforce_query(q, &single(), &limits).unwrap_err();
                assert!(matches!(e, EnforceError::TooDeep { .. }), "{e:?}");
            }
            start.elapsed()
        })
        .unwrap();
    let elapsed = handle.join().unwrap();
    assert!(elapsed.as_secs() < 2, "depth checks took {elapsed:?}");
}

/// Query shapes that nest: each builds a query of nesting `n`.
type Shape = fn(usize) -> String;

const DEEP_SHAPES: &[(&str, Shape)] = &[
    ("parens", |n| {
        format!("{}rate(up[5m]){}", "(".repeat(n), ")".repeat(n))
    }),
    ("calls", |n| {
        format!("{}up{}", "abs(".repeat(n), ")".repeat(n))
    }),
    ("aggregations", |n| {
        format!("{}up{}", "sum(".repeat(n), ")".repeat(n))
    }),
    ("negations", |n| format!("{}up", "-".repeat(n))),
    ("sums", |n| format!("up{}", " + absent(up)".repeat(n))),
    ("powers", |n| format!("up{}", " ^ up".repeat(n))),
    ("subqueries", |n| {
        format!("{}up{}", "max_over_time(".repeat(n), "[5m:])".repeat(n))
    }),
];

#[test]
fn deepest_accepted_queries_fit_a_default_thread_stack() {
    // At the hard cap, with a policy of many clauses, everything (parse, rewrite, print,
    // re-parse, check, drop) must run on a 2 MiB stack in an unoptimised build.
    let handle = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(|| {
            let limits = EnforceLimits {
                max_query_bytes: 1 << 20,
                max_depth: 100_000,
            };
            let metrics: Vec<String> = (0..150).map(|i| format!("{{job=\"j{i}\"}}")).collect();
            let wide = policy("t", serde_json::json!({ "metrics": metrics }));
            for (name, shape) in DEEP_SHAPES {
                // The largest nesting the depth check lets through.
                let n = (1..HARD_MAX_DEPTH)
                    .take_while(|n| depth_estimate(&shape(*n)) <= HARD_MAX_DEPTH)
                    .last()
                    .unwrap();
                assert!(n > HARD_MAX_DEPTH / 3, "{name}: only {n} levels accepted");
                let out = enforce_query(&shape(n), &wide, &limits);
                assert!(out.is_ok(), "{name} at {n}: {out:?}");
                let e = enforce_query(&shape(n + 2), &wide, &limits).unwrap_err();
                assert!(
                    matches!(
                        e,
                        EnforceError::TooDeep {
                            max: HARD_MAX_DEPTH,
                            ..
                        }
                    ),
                    "{name}"
                );
            }
        })
        .unwrap();
    handle.join().unwrap();
}

#[test]
fn depth_limit_counts_levels_and_operators() {
    let limits = EnforceLimits {
        max_query_bytes: 1 << 16,
        max_depth: 10,
    };
    let nested = |n: usize| format!("{}up{}", "(".repeat(n), ")".repeat(n));
    assert!(enforce_query(&nested(8), &multi(), &limits).is_ok());
    assert!(matches!(
        enforce_query(&nested(12), &multi(), &limits),
        Err(EnforceError::TooDeep { .. })
    ));
    let chain = |n: usize| format!("up{}", " + up".repeat(n));
    assert!(enforce_query(&chain(5), &multi(), &limits).is_ok());
    assert!(matches!(
        enforce_query(&chain(12), &multi(), &limits),
        Err(EnforceError::TooDeep { .. })
    ));
    // Brackets and operators inside strings and comments don't count.
    let q =
        "label_replace(up, \"a\", \"((((((((((((\", \"b\", \"-+-+-+-+-+-+-+-+\") # ((((((((((((";
    assert!(enforce_query(q, &multi(), &limits).is_ok(), "{q}");
    // A comment can't hide brackets from the scan: a quote inside it does not open a string.
    let q = format!("up # it's\n+ {}", nested(12));
    assert!(matches!(
        enforce_query(&q, &multi(), &limits),
        Err(EnforceError::TooDeep { .. })
    ));
}

#[test]
fn depth_estimate_bounds_the_tree() {
    assert_eq!(depth_estimate("up"), 1);
    assert_eq!(depth_estimate("(up)"), 2);
    assert_eq!(depth_estimate("a + b + c"), 3);
    assert_eq!(depth_estimate("a AND b or c unless d"), 4);
    assert_eq!(depth_estimate("foo{a=\"(\", b!~\"x\"}"), 2);
    assert_eq!(depth_estimate("-(-(up))"), 5);
    // A deep left operand under a chain: the chain's operators count for everything on
    // their level, not only what follows them.
    assert_eq!(depth_estimate("(((up))) + up + up"), 6);
    // A subquery node wraps its operand: each `f(x[5m:])` level is two nodes.
    assert_eq!(
        depth_estimate("max_over_time(max_over_time(up[5m:])[5m:])"),
        6
    );
    // Non-ASCII text never splits a character (no panic) and strings hide their brackets.
    assert_eq!(depth_estimate("foo{a=\"é(((\"} + é"), 3);
    assert!(matches!(
        enforce("fé(o)", &single()),
        Err(EnforceError::Parse(_))
    ));
}

#[test]
fn refuses_or_inside_braces() {
    for q in [
        "foo{a=\"1\" or b=\"2\"}",
        "rate(foo{a=\"1\" or b=\"2\"}[5m])",
        "sum(foo{a=\"1\" or b=\"2\"}) by (a)",
        "absent(foo{a=\"1\" or b=\"2\"})",
    ] {
        for p in [single(), multi()] {
            assert!(
                matches!(err(q, &p), EnforceError::Unsupported(_)),
                "{q:?} must be refused"
            );
        }
    }
}

#[test]
fn refuses_info_and_lossy_printing() {
    for q in [
        "info(up)",
        "info(up, {k8s_cluster_name=~\".+\"})",
        "sum(info(rate(up[5m])))",
    ] {
        let e = err(q, &multi());
        assert!(
            matches!(&e, EnforceError::Unsupported(m) if m.contains("info")),
            "{e:?}"
        );
    }
    // promql-parser prints `@ -100` as `@ 0.000`; the proxy's printer keeps the sign.
    assert_eq!(
        enforce("up @ -100", &multi()).unwrap(),
        "up{namespace=\"team-a\"} @ -100.000"
    );
}

#[test]
fn bare_range_selector_needs_a_single_clause() {
    // One clause left after pruning: fine.
    assert_eq!(
        enforce("up[5m]", &multi()).unwrap(),
        "up{namespace=\"team-a\"}[5m]"
    );
    assert_eq!(
        enforce("node_cpu[5m] offset 1m", &single()).unwrap(),
        "{__name__=\"node_cpu\",__name__=~\"up|foo|foo_bucket|http_requests_total|node_.*\",namespace=\"team-a\"}[5m] offset 1m"
    );
    // Several clauses can't be expressed on a range selector: refused, with advice.
    let e = err("{namespace=\"team-a\"}[5m]", &multi());
    assert!(
        matches!(&e, EnforceError::Unsupported(m) if m.contains("last_over_time")),
        "{e:?}"
    );
    let e = err("(bar[5m])", &nameless());
    assert!(matches!(e, EnforceError::Unsupported(_)), "{e:?}");
}

#[test]
fn empty_policy_is_no_access() {
    let empty = Policy::default();
    assert_eq!(err("up", &empty), EnforceError::NoAccess);
    assert_eq!(err("1", &empty), EnforceError::NoAccess);
    assert_eq!(
        enforce_match_selectors(&[], &empty, &EnforceLimits::default()),
        Err(EnforceError::NoAccess)
    );
    let none = policy(
        "t",
        serde_json::json!({"metricIsolation": true, "metrics": []}),
    );
    assert!(none.is_empty());
    assert_eq!(err("up", &none), EnforceError::NoAccess);
}

#[test]
fn hand_built_clause_without_matchers_fails_closed() {
    let p = Policy {
        clauses: vec![crate::tenant::Clause { matchers: vec![] }],
    };
    let e = err("up", &p);
    assert!(matches!(e, EnforceError::Invariant(_)), "{e:?}");
}

#[test]
fn assert_enforced_catches_unenforced_selectors() {
    let p = multi();
    let ok = promql_parser::parser::parse(
        "sum(rate({__name__=\"foo\",job=\"api\",namespace=\"team-a\"}[5m])) / on () up{namespace=\"team-a\"}",
    )
    .unwrap();
    // `up{namespace="team-a"}` is complete: its name counts as `__name__="up"`.
    assert_eq!(assert_enforced(&ok, &p), Ok(()));
    for bad in [
        "up",
        "foo{namespace=\"team-a\"}",
        "sum(up{namespace=\"team-a\"}) + foo",
        "rate(foo{job=\"api\"}[5m])",
        "info(up{namespace=\"team-a\"})",
        "{__name__=\"up\",namespace=\"team-b\"}",
    ] {
        let e = promql_parser::parser::parse(bad).unwrap();
        assert!(assert_enforced(&e, &p).is_err(), "{bad:?} passed the check");
    }
}

fn matches(sel: &[&str], p: &Policy) -> Result<Vec<String>, EnforceError> {
    let sel: Vec<String> = sel.iter().map(|s| s.to_string()).collect();
    enforce_match_selectors(&sel, p, &EnforceLimits::default())
}

#[test]
fn match_selectors_cross_product() {
    insta::assert_snapshot!(
        "match_selectors",
        [
            matches(&[], &single()),
            matches(&[], &multi()),
            matches(&["up"], &multi()),
            matches(&["{job=\"api\"}"], &multi()),
            matches(&["{job=\"api\"}", "up", "up"], &multi()),
            matches(
                &["foo{instance=~\"a.*\"}", "{__name__=~\"foo|bar\"}"],
                &multi()
            ),
            matches(&["{job=~\".+\"}"], &nameless()),
        ]
        .iter()
        .map(|r| format!("{r:?}"))
        .collect::<Vec<_>>()
        .join("\n")
    );
}

#[test]
fn match_selectors_refusals() {
    for bad in [
        "rate(up[5m])",
        "up offset 5m",
        "up[5m]",
        "(up)",
        "sum(up)",
        "1",
        "up{",
    ] {
        let e = matches(&[bad], &multi()).unwrap_err();
        assert!(matches!(e, EnforceError::InvalidMatch(_)), "{bad:?}: {e:?}");
        assert!(e.to_string().starts_with("invalid parameter \"match[]\""));
    }
    let e = matches(&["up{a=\"1\" or b=\"2\"}"], &multi()).unwrap_err();
    assert!(matches!(e, EnforceError::InvalidMatch(_)), "{e:?}");
    let e = matches(&[""], &multi()).unwrap_err();
    assert!(matches!(e, EnforceError::InvalidMatch(_)), "{e:?}");
}

#[test]
fn match_selectors_for_an_open_policy_stay_valid() {
    // `.*` without isolation allows every name; `{__name__=~".*"}` alone is refused by
    // Prometheus, so the clause is narrowed to named series.
    let open = policy("t", serde_json::json!({"metrics": [".*"]}));
    assert_eq!(
        matches(&[], &open).unwrap(),
        vec!["{__name__=~\".*\",__name__=~\".+\"}".to_string()]
    );
}

#[test]
fn literals_and_durations_survive_the_round_trip() {
    for q in [
        "-1",
        "-Inf",
        "Inf",
        "NaN",
        "1e100",
        "0x1F",
        "1e-300",
        "-up",
        "up * -1",
        "up @ 0",
        "rate(up[1ms])",
        "rate(up[90s])",
        "rate(up[1h30m])",
        "rate(up[2d])",
        "rate(up[1y])",
        "up @ 1609746000.123",
        "max_over_time(up[1h:1s])",
        "\"a\\\\b\\\"c\\td\"",
        "'single'",
        "`raw`",
        "sum(up) by (a, b) > bool 0.5",
        "up # a comment",
        "count_values(\"le\", up)",
        "limitk(2, up)",
    ] {
        let out = enforce(q, &multi());
        assert!(out.is_ok(), "{q}: {out:?}");
    }
}

/// A node the parser never builds, to prove the rewriter and the checker refuse it.
#[derive(Debug)]
struct Opaque;

impl promql_parser::parser::ast::ExtensionExpr for Opaque {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn name(&self) -> &str {
        "opaque"
    }
    fn value_type(&self) -> promql_parser::parser::value::ValueType {
        promql_parser::parser::value::ValueType::Vector
    }
    fn children(&self) -> &[Expr] {
        &[]
    }
    fn with_new_children(
        &self,
        _children: Vec<Expr>,
    ) -> std::sync::Arc<dyn promql_parser::parser::ast::ExtensionExpr> {
        std::sync::Arc::new(Opaque)
    }
}

#[test]
fn extension_nodes_are_refused() {
    let ext = Expr::Extension(promql_parser::parser::Extension {
        expr: std::sync::Arc::new(Opaque),
    });
    let mut sum = promql_parser::parser::parse("sum(up)").unwrap();
    if let Expr::Aggregate(a) = &mut sum {
        *a.expr = ext.clone();
    }
    let p = multi();
    let clauses = compiled::compile_clauses(&p).unwrap();
    let rewriter = rewrite::Rewriter { clauses: &clauses };
    for mut e in [ext, sum] {
        let got = rewriter.rewrite(&mut e);
        assert!(
            matches!(got, Err(EnforceError::Unsupported(ref m)) if m.contains("opaque")),
            "{got:?}"
        );
        assert!(assert_enforced(&e, &p).is_err());
    }
}
