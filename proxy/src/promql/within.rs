//! Whether something the backend computed on its own stays inside a tenant's policy, without
//! rewriting it: a rule's expression (`/api/v1/rules`) and an alert's labels (`/api/v1/rules`,
//! `/api/v1/alerts`). Prometheus ignores matchers on these endpoints, so the proxy filters
//! their answers with these checks.
//!
//! Both are conservative: anything not provably inside the policy is outside. Hiding a rule
//! the tenant could have seen is acceptable; showing one it couldn't is a leak.

use std::collections::BTreeMap;

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{Expr, VectorSelector};

use super::compiled::compile_clauses;
use super::selectors::{CompiledClause, effective_matchers};
use super::{HARD_MAX_DEPTH, depth_estimate};
use crate::tenant::policy::{METRIC_NAME, Policy};

/// Longest rule expression looked at; longer ones are hidden.
const MAX_RULE_QUERY_BYTES: usize = 1 << 20;

/// A policy compiled once, then asked about many rules and alerts.
#[derive(Debug, Clone)]
pub struct Visibility {
    clauses: Vec<CompiledClause>,
}

impl Visibility {
    /// `None` when the policy can't be compiled (only a hand-built policy): nothing is visible.
    pub fn new(policy: &Policy) -> Option<Visibility> {
        compile_clauses(policy)
            .ok()
            .map(|clauses| Visibility { clauses })
    }

    /// True when the expression reads at least one series and every selector in it selects
    /// only series some single clause allows: each matcher of that clause is implied by a
    /// matcher of the selector (the same matcher, or an equality whose value it accepts).
    /// What does not parse, reads no series (`vector(1)`), or uses `info()` is not visible.
    pub fn query_within(&self, query: &str) -> bool {
        if self.clauses.is_empty()
            || query.len() > MAX_RULE_QUERY_BYTES
            || depth_estimate(query) > HARD_MAX_DEPTH
        {
            return false;
        }
        let Ok(expr) = promql_parser::parser::parse(query) else {
            return false;
        };
        let mut selectors = 0usize;
        self.expr_within(&expr, &mut selectors) && selectors > 0
    }

    /// True when the labels satisfy every matcher of some clause, the `__name__` matchers
    /// aside (alerts carry no metric name; the rule's expression is checked for it). A missing
    /// label is the empty value, as in Prometheus.
    pub fn labels_within(&self, labels: &BTreeMap<String, String>) -> bool {
        self.clauses.iter().any(|clause| {
            clause
                .matchers
                .iter()
                .filter(|m| m.name != METRIC_NAME)
                .all(|m| accepts(m, labels.get(&m.name).map_or("", String::as_str)))
        })
    }

    fn expr_within(&self, expr: &Expr, selectors: &mut usize) -> bool {
        match expr {
            Expr::Aggregate(a) => {
                a.param
                    .as_ref()
                    .is_none_or(|p| self.expr_within(p, selectors))
                    && self.expr_within(&a.expr, selectors)
            }
            Expr::Unary(u) => self.expr_within(&u.expr, selectors),
            Expr::Binary(b) => {
                self.expr_within(&b.lhs, selectors) && self.expr_within(&b.rhs, selectors)
            }
            Expr::Paren(p) => self.expr_within(&p.expr, selectors),
            Expr::Subquery(s) => self.expr_within(&s.expr, selectors),
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) => true,
            Expr::VectorSelector(vs) => {
                *selectors += 1;
                self.selector_within(vs)
            }
            Expr::MatrixSelector(ms) => {
                *selectors += 1;
                self.selector_within(&ms.vs)
            }
            Expr::Call(c) => {
                c.func.name != "info" && c.args.args.iter().all(|a| self.expr_within(a, selectors))
            }
            Expr::Extension(_) => false,
        }
    }

    fn selector_within(&self, vs: &VectorSelector) -> bool {
        if !vs.matchers.or_matchers.is_empty() {
            return false;
        }
        let have = effective_matchers(vs);
        self.clauses.iter().any(|clause| {
            clause
                .matchers
                .iter()
                .all(|cm| have.iter().any(|sm| implies(sm, cm)))
        })
    }
}

/// True when every value `sm` accepts, `cm` accepts too (decided only in the plain cases).
fn implies(sm: &Matcher, cm: &Matcher) -> bool {
    if sm.name != cm.name {
        return false;
    }
    if sm == cm {
        return true;
    }
    matches!(sm.op, MatchOp::Equal) && accepts(cm, &sm.value)
}

/// True when the matcher provably accepts the value. Regexes are evaluated only on ASCII
/// values without a newline, where Rust's `regex` and Go's RE2 agree; otherwise: no.
fn accepts(m: &Matcher, value: &str) -> bool {
    let comparable = value.is_ascii() && !value.contains('\n');
    match &m.op {
        MatchOp::Equal | MatchOp::NotEqual => m.is_match(value),
        MatchOp::Re(_) | MatchOp::NotRe(_) => comparable && m.is_match(value),
    }
}
