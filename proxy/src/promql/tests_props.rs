//! Property test: random queries from a small grammar × random policies of 1-3 clauses.
//! Every rewrite either fails cleanly or returns text whose every selector carries a full
//! clause (checked here with a collector independent of `check.rs`), and the proxy's printer
//! is a fixed point of parse → print.

use promql_parser::label::MatchOp;
use promql_parser::parser::{Expr, VectorSelector};
use proptest::prelude::*;

use super::*;
use crate::tenant::{Clause, LabelMatcher, MatchKind};

const NAMES: &[&str] = &["up", "foo", "bar", "http_requests_total"];
const LABELS: &[&str] = &["job", "instance", "namespace", "env", "__name__"];
const VALUES: &[&str] = &["", "a", "api", "team-a", "x.*", "foo", "up|foo", "b\"q"];

fn op_text(kind: usize) -> &'static str {
    ["=", "!=", "=~", "!~"][kind % 4]
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"")
}

fn matcher() -> impl Strategy<Value = String> {
    (0..LABELS.len(), 0..4usize, 0..VALUES.len())
        .prop_map(|(l, k, v)| format!("{}{}\"{}\"", LABELS[l], op_text(k), escape(VALUES[v])))
}

/// A selector's name and braces: a name, or else an anchoring non-empty equality (Prometheus
/// refuses selectors that match everything), plus up to two random matchers (`__name__` only
/// when there's no name: the parser refuses a name set twice).
fn selector_body() -> impl Strategy<Value = String> {
    (
        proptest::option::of(0..NAMES.len()),
        (0..LABELS.len(), 1..VALUES.len()),
        proptest::collection::vec(matcher(), 0..3),
    )
        .prop_map(|(name, (al, av), matchers)| {
            let mut matchers: Vec<String> = matchers;
            let mut s = String::new();
            match name {
                Some(n) => {
                    s.push_str(NAMES[n]);
                    matchers.retain(|m| !m.starts_with("__name__"));
                }
                None => matchers.insert(0, format!("{}=\"{}\"", LABELS[al], escape(VALUES[av]))),
            }
            if !matchers.is_empty() {
                s.push_str(&format!("{{{}}}", matchers.join(",")));
            }
            s
        })
}

fn selector() -> impl Strategy<Value = String> {
    (selector_body(), 0..6usize).prop_map(|(s, modifier)| {
        let m = [
            "",
            " offset 5m",
            " @ start()",
            " @ 100",
            " offset -1m",
            " @ -12.5",
        ][modifier];
        format!("{s}{m}")
    })
}

/// A selector with a range, modifiers after the range as PromQL requires.
fn range_selector() -> impl Strategy<Value = String> {
    (selector_body(), 0..3usize).prop_map(|(s, modifier)| {
        let m = ["", " offset 1m", " @ end()"][modifier];
        format!("{s}[5m]{m}")
    })
}

pub(super) fn query() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        3 => selector(),
        2 => range_selector().prop_map(|m| format!("rate({m})")),
        1 => range_selector().prop_map(|m| format!("quantile_over_time(0.5, {m})")),
        1 => range_selector().prop_map(|m| format!("absent_over_time({m})")),
        1 => selector().prop_map(|s| format!("absent({s})")),
        1 => selector().prop_map(|s| format!("timestamp({s})")),
        1 => Just("1".to_string()),
        1 => range_selector(),
    ];
    leaf.prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| format!("sum by (job) ({e})")),
            inner.clone().prop_map(|e| format!("sum by () ({e})")),
            inner
                .clone()
                .prop_map(|e| format!("count without () ({e})")),
            inner.clone().prop_map(|e| format!("topk(2, {e})")),
            inner
                .clone()
                .prop_map(|e| format!("count_values(\"v\", {e})")),
            inner.clone().prop_map(|e| format!("-{e}")),
            inner.clone().prop_map(|e| format!("({e})")),
            inner
                .clone()
                .prop_map(|e| format!("max_over_time(({e})[10m:1m])")),
            inner.clone().prop_map(|e| format!("abs({e})")),
            inner
                .clone()
                .prop_map(|e| format!("label_replace({e}, \"d\", \"$1\", \"job\", \"(.*)\")")),
            (inner.clone(), inner.clone(), 0..8usize).prop_map(|(a, b, op)| {
                let op = [
                    "+",
                    "*",
                    "and",
                    "or",
                    "unless",
                    "/ on (job) group_left",
                    "- ignoring ()",
                    "and on ()",
                ][op % 8];
                format!("{a} {op} {b}")
            }),
        ]
    })
}

fn clause_matcher() -> impl Strategy<Value = LabelMatcher> {
    (0..LABELS.len(), 0..4usize, 0..VALUES.len()).prop_map(|(l, k, v)| {
        let kind = [
            MatchKind::Equal,
            MatchKind::NotEqual,
            MatchKind::Regex,
            MatchKind::NotRegex,
        ][k];
        LabelMatcher::new(LABELS[l], kind, VALUES[v])
    })
}

fn random_policy() -> impl Strategy<Value = Policy> {
    proptest::collection::vec(proptest::collection::vec(clause_matcher(), 1..4), 1..4)
        .prop_map(|clauses| Policy::from_clauses(clauses.into_iter().map(Clause::new).collect()))
}

/// Every vector selector in the tree (also those inside range selectors), collected with an
/// explicit stack so this shares no code with the production checker.
fn all_selectors(e: &Expr) -> Vec<VectorSelector> {
    let mut out = Vec::new();
    let mut stack = vec![e];
    while let Some(e) = stack.pop() {
        match e {
            Expr::Aggregate(a) => {
                stack.push(&a.expr);
                if let Some(p) = &a.param {
                    stack.push(p);
                }
            }
            Expr::Unary(u) => stack.push(&u.expr),
            Expr::Binary(b) => {
                stack.push(&b.lhs);
                stack.push(&b.rhs);
            }
            Expr::Paren(p) => stack.push(&p.expr),
            Expr::Subquery(s) => stack.push(&s.expr),
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
            Expr::VectorSelector(vs) => out.push(vs.clone()),
            Expr::MatrixSelector(ms) => out.push(ms.vs.clone()),
            Expr::Call(c) => stack.extend(c.args.args.iter().map(|a| &**a)),
            Expr::Extension(_) => panic!("extension in output"),
        }
    }
    out
}

/// `(label, op, value)` triples of a selector, the name counted as `__name__=`.
fn triples(vs: &VectorSelector) -> Vec<(String, &'static str, String)> {
    assert!(vs.matchers.or_matchers.is_empty(), "or_matchers in output");
    let mut t: Vec<_> = vs
        .matchers
        .matchers
        .iter()
        .map(|m| {
            let op = match m.op {
                MatchOp::Equal => "=",
                MatchOp::NotEqual => "!=",
                MatchOp::Re(_) => "=~",
                MatchOp::NotRe(_) => "!~",
            };
            (m.name.clone(), op, m.value.clone())
        })
        .collect();
    if let Some(n) = &vs.name {
        t.push(("__name__".into(), "=", n.clone()));
    }
    t
}

fn carries_a_clause(vs: &VectorSelector, p: &Policy) -> bool {
    let have = triples(vs);
    p.clauses.iter().any(|c| {
        c.matchers.iter().all(|m| {
            let op = match m.kind {
                MatchKind::Equal => "=",
                MatchKind::NotEqual => "!=",
                MatchKind::Regex => "=~",
                MatchKind::NotRegex => "!~",
            };
            have.iter()
                .any(|(l, o, v)| *l == m.name && *o == op && *v == m.value)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn rewrite_is_enforced_and_stable(q in query(), p in random_policy()) {
        let parsed = promql_parser::parser::parse(&q);
        match enforce_query(&q, &p, &EnforceLimits::default()) {
            Ok(out) => {
                prop_assert!(parsed.is_ok(), "accepted a query the parser rejects: {q}");
                let e = promql_parser::parser::parse(&out)
                    .map_err(|err| TestCaseError::fail(format!("{out}: {err}")))?;
                let again = super::print::print(&e)
                    .map_err(|err| TestCaseError::fail(format!("{out}: {err}")))?;
                prop_assert_eq!(again, out.clone(), "print is not a fixed point");
                let sels = all_selectors(&e);
                for vs in &sels {
                    prop_assert!(carries_a_clause(vs, &p), "{} in {} lacks a clause of {:?}", vs, out, p);
                }
                prop_assert_eq!(
                    sels.is_empty(),
                    all_selectors(parsed.as_ref().map_err(|e| TestCaseError::fail(e.clone()))?).is_empty()
                );
            }
            Err(EnforceError::Invariant(msg)) => {
                prop_assert!(false, "invariant failure on {q} with {p:?}: {msg}");
            }
            Err(EnforceError::Parse(_)) => prop_assert!(parsed.is_err(), "parse error on {q}"),
            Err(_) => {}
        }
    }

    #[test]
    fn match_selectors_are_enforced(
        sels in proptest::collection::vec(selector(), 0..3),
        p in random_policy(),
    ) {
        match enforce_match_selectors(&sels, &p, &EnforceLimits::default()) {
            Ok(out) => {
                prop_assert!(!out.is_empty());
                for s in &out {
                    let e = promql_parser::parser::parse(s)
                        .map_err(|err| TestCaseError::fail(format!("{s}: {err}")))?;
                    let Expr::VectorSelector(vs) = &e else {
                        return Err(TestCaseError::fail(format!("{s} is not a selector")));
                    };
                    prop_assert!(carries_a_clause(vs, &p), "{} lacks a clause", s);
                    prop_assert_eq!(super::print::print(&e).ok(), Some(s.clone()));
                }
            }
            Err(EnforceError::Invariant(msg)) => prop_assert!(false, "invariant: {msg}"),
            Err(_) => {}
        }
    }
}
