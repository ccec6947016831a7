//! The enforcement invariant, checked on every rewrite result before it leaves the proxy:
//! every vector and range selector of the (re-parsed) query carries every matcher of at least
//! one clause of the policy. Written apart from the rewriter, and working on policy-level
//! matchers, so a rewriter bug can't hide itself.

use promql_parser::parser::{Expr, VectorSelector};

use super::EnforceError;
use crate::tenant::policy::{LabelMatcher, METRIC_NAME, MatchKind, Policy};

/// Fails unless every selector in `expr` carries all matchers of some clause of `policy`,
/// and nothing in `expr` reads series in a way selectors don't show (`info()`, extensions,
/// `or` inside braces).
pub fn assert_enforced(expr: &Expr, policy: &Policy) -> Result<(), EnforceError> {
    match expr {
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                assert_enforced(p, policy)?;
            }
            assert_enforced(&a.expr, policy)
        }
        Expr::Unary(u) => assert_enforced(&u.expr, policy),
        Expr::Binary(b) => {
            assert_enforced(&b.lhs, policy)?;
            assert_enforced(&b.rhs, policy)
        }
        Expr::Paren(p) => assert_enforced(&p.expr, policy),
        Expr::Subquery(s) => assert_enforced(&s.expr, policy),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
        Expr::VectorSelector(vs) => selector_enforced(vs, policy),
        Expr::MatrixSelector(ms) => selector_enforced(&ms.vs, policy),
        Expr::Call(c) => {
            if c.func.name == "info" {
                return Err(violation("info() in the enforced query"));
            }
            c.args
                .args
                .iter()
                .try_for_each(|a| assert_enforced(a, policy))
        }
        Expr::Extension(_) => Err(violation("extension node in the enforced query")),
    }
}

fn selector_enforced(vs: &VectorSelector, policy: &Policy) -> Result<(), EnforceError> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(violation("`or` inside a selector"));
    }
    let mut have: Vec<LabelMatcher> = vs
        .matchers
        .matchers
        .iter()
        .map(LabelMatcher::from_promql)
        .collect();
    if let Some(name) = &vs.name {
        have.push(LabelMatcher::new(
            METRIC_NAME,
            MatchKind::Equal,
            name.clone(),
        ));
    }
    let covered = policy
        .clauses
        .iter()
        .any(|c| !c.matchers.is_empty() && c.matchers.iter().all(|m| have.contains(m)));
    if covered {
        Ok(())
    } else {
        Err(violation(&format!(
            "selector {vs} carries no complete clause of the tenant's policy"
        )))
    }
}

fn violation(what: &str) -> EnforceError {
    EnforceError::Invariant(format!("enforcement check failed: {what}"))
}
