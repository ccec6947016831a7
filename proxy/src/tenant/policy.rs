//! Policy compiler: `MetricAccess` specs → an OR of clauses, each an AND of label matchers
//! (DESIGN §3). The read path (`crate::promql`) intersects every selector of a query with
//! these clauses; this module only builds and prints them.
//!
//! Pattern kinds in `spec.metrics`:
//! - exact name (`[a-zA-Z_:][a-zA-Z0-9_:]*`) → `__name__="x"`;
//! - anything containing `{` → a vector selector parsed with promql-parser (its matchers and
//!   its name);
//! - anything else → `__name__=~"re"`, validated as a regex (Prometheus anchors it).
//!
//! `labelSelectors` and `metricIsolation` are ANDed into every clause. Clauses that differ
//! only in one `__name__` matcher are merged into one regex clause, so the rewritten queries
//! stay short.

use std::collections::BTreeMap;

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::Expr;
use promql_parser::parser::token::{T_EQL, T_EQL_REGEX, T_NEQ, T_NEQ_REGEX};
use promql_parser::util::escape_string;

use super::crd::MetricAccessSpec;
use crate::names::{is_legacy_label_name, is_metric_name};

/// The label that holds a series' metric name.
pub const METRIC_NAME: &str = "__name__";
/// The label `metricIsolation: true` pins to the tenant's namespace.
pub const NAMESPACE_LABEL: &str = "namespace";

/// How a matcher compares a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum MatchKind {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

/// One label matcher of a clause. `name` may be `__name__`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct LabelMatcher {
    pub name: String,
    pub kind: MatchKind,
    pub value: String,
}

/// AND of matchers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Clause {
    pub matchers: Vec<LabelMatcher>,
}

/// OR of clauses. No clause means the tenant may see nothing (deny by default).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Policy {
    pub clauses: Vec<Clause>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("invalid metric pattern {pattern:?}: {reason}")]
    InvalidPattern { pattern: String, reason: String },
    #[error("invalid labelSelectors key {name:?}: {reason}")]
    InvalidLabelSelector { name: String, reason: String },
}

impl LabelMatcher {
    pub fn new(name: impl Into<String>, kind: MatchKind, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind,
            value: value.into(),
        }
    }

    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self::new(name, MatchKind::Equal, value)
    }

    /// The promql-parser matcher, built the way its parser builds one (same regex anchoring),
    /// so ASTs holding it compare equal to re-parsed ones. Fails only on an invalid regex.
    /// Compiles the regex every time: the read path keeps compiled policies
    /// (`crate::promql::CompiledPolicy`, shared between tenants).
    pub fn to_promql(&self) -> Result<Matcher, String> {
        let token = match self.kind {
            MatchKind::Equal => T_EQL,
            MatchKind::NotEqual => T_NEQ,
            MatchKind::Regex => T_EQL_REGEX,
            MatchKind::NotRegex => T_NEQ_REGEX,
        };
        Matcher::new_matcher(token, self.name.clone(), self.value.clone())
    }

    /// The matcher as PromQL text (`name="value"`, the name quoted when it is not a plain
    /// label name), exactly as promql-parser prints it, without compiling a regex.
    fn to_text(&self) -> String {
        let op = match self.kind {
            MatchKind::Equal => "=",
            MatchKind::NotEqual => "!=",
            MatchKind::Regex => "=~",
            MatchKind::NotRegex => "!~",
        };
        let value = escape_string(&self.value);
        if is_legacy_label_name(&self.name) {
            format!("{}{op}\"{value}\"", self.name)
        } else {
            format!("\"{}\"{op}\"{value}\"", escape_string(&self.name))
        }
    }

    /// The policy form of a parsed matcher.
    pub fn from_promql(m: &Matcher) -> Self {
        let kind = match m.op {
            MatchOp::Equal => MatchKind::Equal,
            MatchOp::NotEqual => MatchKind::NotEqual,
            MatchOp::Re(_) => MatchKind::Regex,
            MatchOp::NotRe(_) => MatchKind::NotRegex,
        };
        Self::new(m.name.clone(), kind, m.value.clone())
    }
}

impl Clause {
    /// A clause with its matchers sorted and de-duplicated (a canonical form, so equal
    /// clauses compare equal).
    pub fn new(mut matchers: Vec<LabelMatcher>) -> Self {
        matchers.sort();
        matchers.dedup();
        Self { matchers }
    }

    /// The clause as a PromQL selector, e.g. `{__name__=~"a|b",namespace="t"}` (matchers sorted
    /// as promql-parser prints them). No regex is compiled: `/debug/tenants` prints every
    /// tenant's clauses, and patterns were validated when the policy was built from its spec.
    pub fn to_selector(&self) -> Result<String, String> {
        let mut matchers: Vec<String> = self.matchers.iter().map(LabelMatcher::to_text).collect();
        matchers.sort();
        Ok(format!("{{{}}}", matchers.join(",")))
    }

    /// `Some(matcher)` when the clause holds exactly one `__name__` matcher, an equality or a
    /// regex: the candidates for merging into one name regex.
    fn name_matcher(&self) -> Option<&LabelMatcher> {
        let mut names = self.matchers.iter().filter(|m| m.name == METRIC_NAME);
        match (names.next(), names.next()) {
            (Some(m), None) if matches!(m.kind, MatchKind::Equal | MatchKind::Regex) => Some(m),
            _ => None,
        }
    }
}

impl Policy {
    /// One CR's policy (its labelSelectors / metricIsolation ANDed into each of its clauses).
    /// An empty `metrics` list gives the empty policy: nothing is visible.
    pub fn from_spec(namespace: &str, spec: &MetricAccessSpec) -> Result<Policy, PolicyError> {
        let extra = extra_matchers(namespace, spec.metric_isolation, &spec.label_selectors)?;
        let mut clauses = Vec::with_capacity(spec.metrics.len());
        for pattern in &spec.metrics {
            let mut matchers = compile_pattern(pattern)?;
            matchers.extend(extra.iter().cloned());
            clauses.push(Clause::new(matchers));
        }
        Ok(Policy::from_clauses(clauses))
    }

    /// Union of several CRs' policies of one namespace (reads merge all CRs of a namespace).
    pub fn union(policies: impl IntoIterator<Item = Policy>) -> Policy {
        Policy::from_clauses(policies.into_iter().flat_map(|p| p.clauses).collect())
    }

    /// Deduplicates the clauses and merges the ones that differ only in their name matcher.
    pub fn from_clauses(clauses: Vec<Clause>) -> Policy {
        Policy {
            clauses: merge_name_clauses(clauses),
        }
    }

    /// True when the policy lets the tenant see nothing.
    pub fn is_empty(&self) -> bool {
        self.clauses.is_empty()
    }

    /// Each clause as PromQL selector text, e.g. `{__name__=~"a|b",namespace="t"}`.
    pub fn clause_selectors(&self) -> Vec<String> {
        self.clauses
            .iter()
            .filter_map(|c| c.to_selector().ok())
            .collect()
    }
}

/// The matchers every clause of a CR gets: its `labelSelectors`, then the namespace pin.
fn extra_matchers(
    namespace: &str,
    isolation: bool,
    label_selectors: &BTreeMap<String, String>,
) -> Result<Vec<LabelMatcher>, PolicyError> {
    let mut extra = Vec::with_capacity(label_selectors.len() + 1);
    for (name, value) in label_selectors {
        // Prometheus 2.x accepts only legacy label names; anything else could not be printed
        // into a query the backend parses.
        if !is_legacy_label_name(name) {
            return Err(PolicyError::InvalidLabelSelector {
                name: name.clone(),
                reason: "label names must match [a-zA-Z_][a-zA-Z0-9_]*".into(),
            });
        }
        extra.push(LabelMatcher::equal(name, value));
    }
    if isolation {
        extra.push(LabelMatcher::equal(NAMESPACE_LABEL, namespace));
    }
    Ok(extra)
}

/// One pattern of `spec.metrics` → the matchers of its clause.
fn compile_pattern(pattern: &str) -> Result<Vec<LabelMatcher>, PolicyError> {
    let invalid = |reason: String| PolicyError::InvalidPattern {
        pattern: pattern.to_string(),
        reason,
    };
    if pattern.trim().is_empty() {
        return Err(invalid("empty pattern".into()));
    }
    if is_metric_name(pattern) {
        return Ok(vec![LabelMatcher::equal(METRIC_NAME, pattern)]);
    }
    if pattern.contains('{') {
        return compile_selector_pattern(pattern).map_err(invalid);
    }
    validate_regex(pattern).map_err(invalid)?;
    Ok(vec![LabelMatcher::new(
        METRIC_NAME,
        MatchKind::Regex,
        pattern,
    )])
}

fn compile_selector_pattern(pattern: &str) -> Result<Vec<LabelMatcher>, String> {
    let expr = promql_parser::parser::parse(pattern)?;
    let Expr::VectorSelector(vs) = expr else {
        return Err("a pattern with `{` must be a vector selector such as foo{job=\"x\"}".into());
    };
    if !vs.matchers.or_matchers.is_empty() {
        return Err("`or` inside a selector is not PromQL".into());
    }
    if vs.offset.is_some() || vs.at.is_some() {
        return Err("offset and @ are not allowed in a pattern".into());
    }
    let mut matchers: Vec<LabelMatcher> = vs
        .matchers
        .matchers
        .iter()
        .map(LabelMatcher::from_promql)
        .collect();
    if let Some(name) = vs.name {
        matchers.push(LabelMatcher::equal(METRIC_NAME, name));
    }
    for m in &matchers {
        if !is_legacy_label_name(&m.name) {
            return Err(format!(
                "label name {:?} must match [a-zA-Z_][a-zA-Z0-9_]*",
                m.name
            ));
        }
    }
    Ok(matchers)
}

/// Checks a name regex the way Prometheus will use it: fully anchored. It must also compile
/// on its own, so `a)|(b` (which anchoring would turn into a different, valid regex) and
/// other unbalanced patterns are refused rather than silently meaning something else.
fn validate_regex(re: &str) -> Result<(), String> {
    regex::Regex::new(re).map_err(|e| format!("not a valid regex: {e}"))?;
    regex::Regex::new(&format!("^(?:{re})$")).map_err(|e| format!("not a valid regex: {e}"))?;
    Ok(())
}

/// Merges clauses that are equal except for one `__name__` equality/regex matcher into one
/// clause with `__name__=~"a|b|c.*"`; also drops duplicate clauses. Order is kept (first
/// occurrence), so compiled policies are deterministic.
fn merge_name_clauses(clauses: Vec<Clause>) -> Vec<Clause> {
    // Key: the clause without its name matcher. Value: index into `out` and the alternatives.
    let mut groups: Vec<(Vec<LabelMatcher>, usize, Vec<LabelMatcher>)> = Vec::new();
    let mut out: Vec<Option<Clause>> = Vec::new();
    for clause in clauses {
        if out.iter().flatten().any(|c| *c == clause) {
            continue;
        }
        let Some(name) = clause.name_matcher().cloned() else {
            out.push(Some(clause));
            continue;
        };
        let rest: Vec<LabelMatcher> = clause
            .matchers
            .iter()
            .filter(|m| **m != name)
            .cloned()
            .collect();
        match groups.iter_mut().find(|(r, _, _)| *r == rest) {
            Some((_, _, names)) => {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            None => {
                groups.push((rest, out.len(), vec![name]));
                out.push(None);
            }
        }
    }
    for (rest, slot, names) in groups {
        let name = if let [single] = names.as_slice() {
            single.clone()
        } else {
            let alternatives: Vec<String> = names.iter().map(regex_alternative).collect();
            LabelMatcher::new(METRIC_NAME, MatchKind::Regex, alternatives.join("|"))
        };
        let mut matchers = rest;
        matchers.push(name);
        out[slot] = Some(Clause::new(matchers));
    }
    out.into_iter().flatten().collect()
}

/// One alternative of a merged name regex. Exact names are escaped; a regex is grouped
/// unless it is plainly safe, so its `|` or inline flags (`(?i)`) can't leak into its
/// neighbours.
fn regex_alternative(m: &LabelMatcher) -> String {
    match m.kind {
        MatchKind::Regex
            if !m
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '.' | '*' | '+')) =>
        {
            format!("(?:{})", m.value)
        }
        MatchKind::Regex => m.value.clone(),
        _ => regex::escape(&m.value),
    }
}

#[cfg(test)]
mod tests;
