//! Read-path enforcement: the only entry points the HTTP layer calls (DESIGN §4).
//!
//! - [`enforce_query`] rewrites a PromQL query so every selector in it is intersected with the
//!   tenant's policy, then prints it for the backend.
//! - [`enforce_match_selectors`] does the same for the `match[]` selectors of the series,
//!   labels, label values and federate endpoints.
//!
//! Both refuse (fail closed) what they can't enforce, and both check their own output before
//! returning it: the tree is printed by a printer that writes text parsing back to that very
//! tree or refuses ([`print_expr`], `print.rs`), and every selector of the tree must carry a
//! complete clause of the policy ([`assert_enforced`]).

mod cache;
mod check;
mod compiled;
mod print;
mod rewrite;
mod scan;
mod selectors;
mod within;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_print;
#[cfg(test)]
mod tests_props;
#[cfg(test)]
mod tests_rewrite;

use std::sync::Arc;

use promql_parser::label::{Matcher, Matchers};
use promql_parser::parser::{Expr, VectorSelector};

pub use cache::{RewriteCache, RewriteCacheStats};
pub use check::assert_enforced;
pub use compiled::{CompiledPolicy, shared_regex_matchers};
pub use print::{Unprintable, print as print_expr};
pub use scan::depth_estimate;
pub use within::Visibility;

use crate::tenant::policy::{LabelMatcher, METRIC_NAME, MatchKind, Policy};
use selectors::{CompiledClause, applicable, apply_clause, sort_matchers};

/// The deepest tree accepted whatever `max_depth` says: the parser and the rewrite recurse,
/// and this keeps them well inside a 2 MiB thread stack (tokio's default), even unoptimised.
pub const HARD_MAX_DEPTH: usize = 500;

/// Bounds on what a tenant may send, checked before parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnforceLimits {
    /// Longest query (or `match[]` selector) accepted, in bytes.
    pub max_query_bytes: usize,
    /// Deepest syntax tree accepted (as estimated by [`depth_estimate`]); capped at
    /// [`HARD_MAX_DEPTH`].
    pub max_depth: usize,
}

impl Default for EnforceLimits {
    fn default() -> Self {
        Self {
            max_query_bytes: 64 * 1024,
            max_depth: 100,
        }
    }
}

/// Why a query or selector was refused. The HTTP layer answers it (`http::prom_api`): 403 for
/// [`EnforceError::NoAccess`], 500 for [`EnforceError::Invariant`], 400 for the rest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnforceError {
    #[error("empty query")]
    Empty,
    #[error("parse error: {0}")]
    Parse(String),
    #[error("query is {len} bytes, over the limit of {max} bytes")]
    TooLong { len: usize, max: usize },
    #[error("query is nested too deeply ({depth} levels, the limit is {max})")]
    TooDeep { depth: usize, max: usize },
    #[error("query can't be enforced: {0}")]
    Unsupported(String),
    #[error("invalid parameter \"match[]\": {0}")]
    InvalidMatch(String),
    #[error("the tenant may not read any series")]
    NoAccess,
    /// The rewrite broke its own invariant: a bug, answered with 500 and never forwarded.
    #[error("{0}")]
    Invariant(String),
}

/// Rewrite a PromQL query so it only touches the policy's series. Returns the printed query.
/// Compiles the policy on every call: the read path uses [`CompiledPolicy::enforce_query`]
/// through the [`RewriteCache`].
pub fn enforce_query(
    query: &str,
    policy: &Policy,
    limits: &EnforceLimits,
) -> Result<String, EnforceError> {
    if policy.is_empty() {
        return Err(EnforceError::NoAccess);
    }
    CompiledPolicy::new(Arc::new(policy.clone()))?.enforce_query(query, limits)
}

/// For series/labels/label values/federate: intersect each `match[]` with every clause.
/// Empty `matches` → the clauses themselves. Returns the selectors to send upstream as match[].
pub fn enforce_match_selectors(
    matches: &[String],
    policy: &Policy,
    limits: &EnforceLimits,
) -> Result<Vec<String>, EnforceError> {
    if policy.is_empty() {
        return Err(EnforceError::NoAccess);
    }
    CompiledPolicy::new(Arc::new(policy.clone()))?.enforce_match_selectors(matches, limits)
}

impl CompiledPolicy {
    /// [`enforce_query`] with the policy already compiled.
    pub fn enforce_query(
        &self,
        query: &str,
        limits: &EnforceLimits,
    ) -> Result<String, EnforceError> {
        if self.policy.is_empty() {
            return Err(EnforceError::NoAccess);
        }
        check_text(query, limits)?;
        let mut expr = promql_parser::parser::parse(query).map_err(EnforceError::Parse)?;
        rewrite::Rewriter {
            clauses: &self.clauses,
        }
        .rewrite(&mut expr)?;
        finish(&expr, &self.policy, limits)
    }

    /// [`enforce_match_selectors`] with the policy already compiled.
    pub fn enforce_match_selectors(
        &self,
        matches: &[String],
        limits: &EnforceLimits,
    ) -> Result<Vec<String>, EnforceError> {
        if self.policy.is_empty() {
            return Err(EnforceError::NoAccess);
        }
        let mut selectors: Vec<VectorSelector> = Vec::new();
        if matches.is_empty() {
            for clause in &self.clauses {
                selectors.push(clause_selector(clause)?);
            }
        }
        for text in matches {
            let vs = parse_match(text, limits)?;
            if !vs.matchers.or_matchers.is_empty() {
                return Err(EnforceError::InvalidMatch(
                    "`or` inside a selector's braces is not PromQL".into(),
                ));
            }
            for clause in applicable(&vs, &self.clauses) {
                selectors.push(apply_clause(&vs, clause));
            }
        }
        let mut out: Vec<String> = Vec::with_capacity(selectors.len());
        for vs in selectors {
            let text = finish(&Expr::VectorSelector(vs), &self.policy, limits)?;
            if !out.contains(&text) {
                out.push(text);
            }
        }
        Ok(out)
    }
}

/// One `match[]` value: a bare vector selector, as Prometheus requires.
fn parse_match(text: &str, limits: &EnforceLimits) -> Result<VectorSelector, EnforceError> {
    check_text(text, limits).map_err(|e| EnforceError::InvalidMatch(e.to_string()))?;
    match promql_parser::parser::parse(text) {
        Ok(Expr::VectorSelector(vs)) if vs.offset.is_none() && vs.at.is_none() => Ok(vs),
        Ok(_) => Err(EnforceError::InvalidMatch(format!(
            "{text:?} is not a series selector such as foo{{job=\"x\"}}"
        ))),
        Err(e) => Err(EnforceError::InvalidMatch(e)),
    }
}

/// A clause on its own as a `match[]` selector. Prometheus refuses a selector whose matchers
/// all match the empty string (`{__name__=~".*"}`), so such a clause is narrowed to series
/// that have a name.
fn clause_selector(clause: &CompiledClause) -> Result<VectorSelector, EnforceError> {
    let mut matchers: Vec<Matcher> = clause.matchers.iter().map(|m| Matcher::clone(m)).collect();
    if matchers.iter().all(|m| m.is_match("")) {
        let named = LabelMatcher::new(METRIC_NAME, MatchKind::Regex, ".+")
            .to_promql()
            .map_err(EnforceError::Invariant)?;
        matchers.push(named);
    }
    let mut vs = VectorSelector::new(None, Matchers::new(matchers));
    sort_matchers(&mut vs);
    Ok(vs)
}

/// The checks that run before the parser: emptiness, length, nesting depth.
fn check_text(query: &str, limits: &EnforceLimits) -> Result<(), EnforceError> {
    if query.trim().is_empty() {
        return Err(EnforceError::Empty);
    }
    if query.len() > limits.max_query_bytes {
        return Err(EnforceError::TooLong {
            len: query.len(),
            max: limits.max_query_bytes,
        });
    }
    let max = limits.max_depth.min(HARD_MAX_DEPTH);
    let depth = depth_estimate(query);
    if depth > max {
        return Err(EnforceError::TooDeep { depth, max });
    }
    Ok(())
}

/// Prints the rewritten tree and proves it: the printer writes text that parses back to
/// exactly this tree or refuses (`print.rs`), the size and depth are bounded, and every selector
/// of the tree (the one the text means) carries a full clause.
fn finish(expr: &Expr, policy: &Policy, limits: &EnforceLimits) -> Result<String, EnforceError> {
    let text = print::print(expr).map_err(|e| {
        EnforceError::Unsupported(format!("the query can't be printed back faithfully: {e}"))
    })?;
    let max_len = limits.max_query_bytes.saturating_mul(16).max(1 << 20);
    if text.len() > max_len {
        return Err(EnforceError::Unsupported(format!(
            "the enforced query would be {} bytes, over the limit of {max_len}",
            text.len()
        )));
    }
    // The rewrite adds at most a paren, an `or`/`and` chain over the clauses and a few
    // label_replace calls per selector; anything deeper is refused (the backend parses it).
    let max_depth = limits
        .max_depth
        .min(HARD_MAX_DEPTH)
        .saturating_add(policy.clauses.len().saturating_mul(4))
        .saturating_add(64)
        .min(2 * HARD_MAX_DEPTH + 1000);
    let depth = depth_estimate(&text);
    if depth > max_depth {
        return Err(EnforceError::TooDeep {
            depth,
            max: max_depth,
        });
    }
    #[cfg(debug_assertions)]
    reparse_check(expr, &text)?;
    assert_enforced(expr, policy)?;
    Ok(text)
}

/// Debug builds (unit tests, the e2e suite, the fuzz properties) also parse the printed text
/// again and compare it with the tree, the check release builds no longer pay for: a printer
/// bug shows up as a failed invariant in every test that enforces a query.
#[cfg(debug_assertions)]
fn reparse_check(expr: &Expr, text: &str) -> Result<(), EnforceError> {
    match promql_parser::parser::parse(text) {
        Ok(reparsed) if reparsed == *expr => Ok(()),
        Ok(_) => Err(EnforceError::Invariant(format!(
            "the printer is not faithful for: {text}"
        ))),
        Err(e) => Err(EnforceError::Invariant(format!(
            "the printed query does not parse ({e}): {text}"
        ))),
    }
}
