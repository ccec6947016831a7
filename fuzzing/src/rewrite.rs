//! `rewrite`: any text as a PromQL query (and as a `match[]` selector) enforced for realistic
//! tenant policies.
//!
//! Property, for each policy:
//! - the answer is an [`EnforceError`] other than `Invariant` (a refusal), or a query text;
//! - that text parses (`promql_parser::parser::parse`), and "parses back to the same AST"
//!   means: printing the re-parsed tree with the proxy's printer (`print_expr`, the one that
//!   wrote it) gives the very same text, and parsing that print gives
//!   a tree structurally equal (`Expr: PartialEq`) to the first re-parse — so what the backend
//!   receives is a fixed point of parse∘print and nothing is lost between proxy and backend;
//! - every vector and matrix selector of the re-parsed tree carries ALL matchers of at least
//!   one clause of the policy (same label name, same operator, same value; a selector's metric
//!   name counts as `__name__="name"`), has no `or` inside its braces, and the tree has no
//!   `info()` call nor extension node. This walker is written here, apart from the proxy's own
//!   `assert_enforced`, so a bug shared by the rewriter and its self-check still shows.

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{Expr, VectorSelector};
use proxy::promql::{EnforceError, EnforceLimits, enforce_match_selectors, enforce_query};
use proxy::tenant::policy::{Clause, LabelMatcher, MatchKind, Policy};

fn m(name: &str, kind: MatchKind, value: &str) -> LabelMatcher {
    LabelMatcher {
        name: name.into(),
        kind,
        value: value.into(),
    }
}

/// The policies every input is enforced for: the benches' tenant (own namespace, plus a few
/// cluster metrics of `monitoring`), a metric-isolated tenant with a per-metric label, and one
/// with negative matchers and no metric name.
pub fn policies() -> Vec<Policy> {
    use MatchKind::*;
    let clause = |matchers| Clause { matchers };
    vec![
        Policy {
            clauses: vec![
                clause(vec![m("namespace", Equal, "team-a")]),
                clause(vec![
                    m("__name__", Regex, "up|node_.*|kube_pod_info"),
                    m("namespace", Equal, "monitoring"),
                ]),
            ],
        },
        Policy {
            clauses: vec![
                clause(vec![
                    m("__name__", Equal, "up"),
                    m("namespace", Equal, "team-a"),
                ]),
                clause(vec![
                    m("__name__", Equal, "foo"),
                    m("job", Equal, "api"),
                    m("namespace", Equal, "team-a"),
                ]),
            ],
        },
        Policy {
            clauses: vec![
                clause(vec![
                    m("job", NotEqual, ""),
                    m("namespace", Regex, "team-(a|b)"),
                ]),
                clause(vec![
                    m("team", NotRegex, "x|y"),
                    m("namespace", Equal, "team-c"),
                ]),
            ],
        },
    ]
}

pub fn rewrite(data: &[u8]) {
    let query = String::from_utf8_lossy(data);
    let limits = EnforceLimits::default();
    for policy in policies() {
        match enforce_query(&query, &policy, &limits) {
            Ok(out) => check_output(&query, &out, &policy),
            Err(EnforceError::Invariant(e)) => {
                panic!("invariant failure for {query:?}: {e}")
            }
            Err(_) => {}
        }
        match enforce_match_selectors(&[query.to_string()], &policy, &limits) {
            Ok(outs) => {
                for out in outs {
                    check_output(&query, &out, &policy);
                    let expr = promql_parser::parser::parse(&out).unwrap_or_else(|e| {
                        panic!("match[] {query:?} gave {out:?} which does not parse: {e}")
                    });
                    assert!(
                        matches!(expr, Expr::VectorSelector(_)),
                        "match[] {query:?} gave {out:?}, not a bare selector"
                    );
                }
            }
            Err(EnforceError::Invariant(e)) => {
                panic!("invariant failure for match[] {query:?}: {e}")
            }
            Err(_) => {}
        }
    }
}

/// The output-side property (see the module doc).
pub fn check_output(query: &str, out: &str, policy: &Policy) {
    let expr = promql_parser::parser::parse(out)
        .unwrap_or_else(|e| panic!("{query:?} was enforced to {out:?}, which does not parse: {e}"));
    let printed = proxy::promql::print_expr(&expr)
        .unwrap_or_else(|e| panic!("{query:?}: the enforced text {out:?} can't be printed: {e}"));
    assert_eq!(
        printed, out,
        "{query:?}: the enforced text does not print back to itself"
    );
    let again = promql_parser::parser::parse(&printed)
        .unwrap_or_else(|e| panic!("{query:?}: the re-print {printed:?} does not parse: {e}"));
    assert!(
        again == expr,
        "{query:?}: {out:?} does not parse back to the same tree"
    );
    if let Err(why) = enforced(&expr, policy) {
        panic!("{query:?} was enforced to {out:?}, which escapes the policy: {why}");
    }
}

fn enforced(expr: &Expr, policy: &Policy) -> Result<(), String> {
    match expr {
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                enforced(p, policy)?;
            }
            enforced(&a.expr, policy)
        }
        Expr::Unary(u) => enforced(&u.expr, policy),
        Expr::Binary(b) => {
            enforced(&b.lhs, policy)?;
            enforced(&b.rhs, policy)
        }
        Expr::Paren(p) => enforced(&p.expr, policy),
        Expr::Subquery(s) => enforced(&s.expr, policy),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
        Expr::VectorSelector(vs) => selector_enforced(vs, policy),
        Expr::MatrixSelector(ms) => selector_enforced(&ms.vs, policy),
        Expr::Call(c) if c.func.name == "info" => {
            Err("info() reads series no selector shows".into())
        }
        Expr::Call(c) => c.args.args.iter().try_for_each(|a| enforced(a, policy)),
        Expr::Extension(_) => Err("an extension node".into()),
    }
}

/// `(name, operator, value)` of a parsed matcher, in the policy's terms.
fn key(m: &Matcher) -> (&str, MatchKind, &str) {
    let kind = match m.op {
        MatchOp::Equal => MatchKind::Equal,
        MatchOp::NotEqual => MatchKind::NotEqual,
        MatchOp::Re(_) => MatchKind::Regex,
        MatchOp::NotRe(_) => MatchKind::NotRegex,
    };
    (m.name.as_str(), kind, m.value.as_str())
}

fn selector_enforced(vs: &VectorSelector, policy: &Policy) -> Result<(), String> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(format!("`or` inside the braces of {vs}"));
    }
    let carries = |want: &LabelMatcher| {
        let name_matches = want.name == "__name__"
            && want.kind == MatchKind::Equal
            && vs.name.as_deref() == Some(want.value.as_str());
        name_matches
            || vs
                .matchers
                .matchers
                .iter()
                .any(|have| key(have) == (want.name.as_str(), want.kind, want.value.as_str()))
    };
    let covered = policy
        .clauses
        .iter()
        .any(|c| !c.matchers.is_empty() && c.matchers.iter().all(carries));
    if covered {
        Ok(())
    } else {
        Err(format!("selector {vs} carries no complete clause"))
    }
}
