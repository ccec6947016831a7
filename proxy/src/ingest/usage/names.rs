//! The metric names an expression reads ([`UsedNames`]): the PromQL syntax-tree walk that
//! collects exact names and `__name__` regexes, and the pattern matching over them.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{Expr, VectorSelector};
use regex::{Regex, RegexSet};

use crate::promql::{HARD_MAX_DEPTH, depth_estimate};

/// Metric names an expression reads: exact names, plus name regexes (`{__name__=~"node_.*"}`)
/// kept as anchored patterns (`^(?:node_.*)$`, the way Prometheus anchors them).
///
/// Selectors without a metric-name constraint (`{job="api"}`, `{__name__!="up"}`) add
/// nothing: they would make every metric used. [`load_static`](super::load_static) reports
/// them.
#[derive(Debug, Default, Clone)]
pub struct UsedNames {
    pub names: BTreeSet<String>,
    pub patterns: Vec<String>,
    /// The patterns compiled on first [`UsedNames::matches`]; reset by `add_expr` / `merge`.
    /// Tagged with the number of patterns it was built from, so a direct edit of `patterns`
    /// is noticed (and compiled on the fly, uncached).
    pub(super) compiled: OnceLock<Compiled>,
}

#[derive(Debug, Clone)]
pub(super) struct Compiled {
    from: usize,
    matcher: PatternMatcher,
}

/// One `RegexSet` pass when the set compiles (it can exceed the regex size limit where the
/// single patterns don't); the single regexes otherwise. Invalid patterns are left out.
#[derive(Debug, Clone)]
pub(super) enum PatternMatcher {
    Set(RegexSet),
    Each(Vec<Regex>),
}

impl PatternMatcher {
    pub(super) fn new<S: AsRef<str>>(patterns: &[S]) -> Self {
        match RegexSet::new(patterns) {
            Ok(set) => Self::Set(set),
            Err(_) => Self::Each(
                patterns
                    .iter()
                    .filter_map(|p| Regex::new(p.as_ref()).ok())
                    .collect(),
            ),
        }
    }

    fn is_match(&self, s: &str) -> bool {
        match self {
            Self::Set(set) => set.is_match(s),
            Self::Each(res) => res.iter().any(|r| r.is_match(s)),
        }
    }

    /// Indexes (into the patterns it was built from) that match; `Each` loses the indexes of
    /// invalid patterns, so it answers by regex text instead (see `TenantStats` in
    /// [`super::stats`]).
    pub(super) fn matching(&self, s: &str) -> Vec<usize> {
        match self {
            Self::Set(set) => set.matches(s).into_iter().collect(),
            Self::Each(res) => (0..res.len()).filter(|&i| res[i].is_match(s)).collect(),
        }
    }
}

impl UsedNames {
    /// Adds the names every selector of `expr` reads (aggregations, binary operands,
    /// subqueries, function arguments, parentheses, …).
    pub fn add_expr(&mut self, expr: &Expr) {
        let mut unnamed = 0;
        self.walk(expr, &mut unnamed);
    }

    /// Whether `metric` is one of the names or matched by one of the patterns.
    pub fn matches(&self, metric: &str) -> bool {
        if self.names.contains(metric) {
            return true;
        }
        if self.patterns.is_empty() {
            return false;
        }
        let compiled = self.compiled.get_or_init(|| Compiled {
            from: self.patterns.len(),
            matcher: PatternMatcher::new(&self.patterns),
        });
        if compiled.from == self.patterns.len() {
            compiled.matcher.is_match(metric)
        } else {
            PatternMatcher::new(&self.patterns).is_match(metric)
        }
    }

    pub fn merge(&mut self, other: UsedNames) {
        self.names.extend(other.names);
        for p in other.patterns {
            self.add_pattern(p);
        }
    }

    /// No name and no pattern.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.patterns.is_empty()
    }

    fn add_pattern(&mut self, anchored: String) {
        if !self.patterns.contains(&anchored) {
            self.patterns.push(anchored);
            self.compiled = OnceLock::new();
        }
    }

    /// Walks the tree; counts selectors without a metric-name constraint in `unnamed`.
    fn walk(&mut self, expr: &Expr, unnamed: &mut usize) {
        match expr {
            Expr::VectorSelector(vs) => self.add_selector(vs, unnamed),
            Expr::MatrixSelector(ms) => self.add_selector(&ms.vs, unnamed),
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    self.walk(p, unnamed);
                }
                self.walk(&a.expr, unnamed);
            }
            Expr::Unary(u) => self.walk(&u.expr, unnamed),
            Expr::Binary(b) => {
                self.walk(&b.lhs, unnamed);
                self.walk(&b.rhs, unnamed);
            }
            Expr::Paren(p) => self.walk(&p.expr, unnamed),
            Expr::Subquery(s) => self.walk(&s.expr, unnamed),
            Expr::Call(c) => {
                for arg in &c.args.args {
                    self.walk(arg, unnamed);
                }
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }

    fn add_selector(&mut self, vs: &VectorSelector, unnamed: &mut usize) {
        if let Some(name) = &vs.name {
            self.names.insert(name.clone());
            return;
        }
        // `{__name__="a" or __name__="b"}`: each group is an alternative.
        let groups = std::iter::once(&vs.matchers.matchers)
            .chain(&vs.matchers.or_matchers)
            .filter(|g| !g.is_empty());
        for group in groups {
            if !self.add_group(group) {
                *unnamed += 1;
            }
        }
    }

    /// The metric-name constraint of one group of matchers (an exact name wins over a regex;
    /// several regexes are all kept, which over-approximates their intersection). False when
    /// the group has none.
    fn add_group(&mut self, group: &[Matcher]) -> bool {
        let names: Vec<&Matcher> = group.iter().filter(|m| m.name == "__name__").collect();
        if let Some(eq) = names.iter().find(|m| matches!(m.op, MatchOp::Equal)) {
            self.names.insert(eq.value.clone());
            return true;
        }
        let mut any = false;
        for m in names {
            if let MatchOp::Re(_) = m.op {
                self.add_pattern(format!("^(?:{})$", m.value));
                any = true;
            }
        }
        any
    }
}

/// The names `query` reads. Refuses (like the read path) a query whose syntax tree could be
/// deep enough to overflow the parser's stack.
pub fn names_in_query(query: &str) -> Result<UsedNames, String> {
    let mut used = UsedNames::default();
    parse_into(query, &mut used)?;
    Ok(used)
}

/// Parses `query` and adds its names; returns the number of name-less selectors.
pub(super) fn parse_into(query: &str, used: &mut UsedNames) -> Result<usize, String> {
    let depth = depth_estimate(query);
    if depth > HARD_MAX_DEPTH {
        return Err(format!(
            "expression nested too deeply ({depth} > {HARD_MAX_DEPTH})"
        ));
    }
    let expr = promql_parser::parser::parse(query)?;
    let mut unnamed = 0;
    used.walk(&expr, &mut unnamed);
    Ok(unnamed)
}
