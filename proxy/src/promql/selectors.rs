//! Selector-level enforcement: intersecting one vector selector with one clause, pruning the
//! clauses that provably can't match a selector, and the label set `absent()` derives from a
//! selector (so the rewrite can keep `absent`'s answer unchanged).

use std::collections::BTreeMap;
use std::sync::Arc;

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::VectorSelector;

use crate::tenant::policy::METRIC_NAME;

/// A policy clause in promql-parser form (built by `compiled.rs`; regex matchers are shared
/// between policies that hold the same one).
#[derive(Debug, Clone)]
pub(crate) struct CompiledClause {
    pub matchers: Vec<Arc<Matcher>>,
    pub has_name: bool,
}

/// `S ∧ C`: the selector with the clause's matchers appended (never replacing the tenant's
/// own matchers). When the clause constrains `__name__`, the selector's metric name moves
/// into a `__name__="…"` matcher, since Prometheus rejects `foo{__name__=~"…"}`. Matchers are
/// de-duplicated and sorted the way the printer sorts them, so the tree equals its re-parse.
pub(crate) fn apply_clause(vs: &VectorSelector, clause: &CompiledClause) -> VectorSelector {
    let mut out = vs.clone();
    let moved = if clause.has_name {
        out.name.take()
    } else {
        None
    };
    if let Some(name) = &moved {
        out.matchers
            .matchers
            .push(Matcher::new(MatchOp::Equal, METRIC_NAME, name));
    }
    for m in &clause.matchers {
        if !out.matchers.matchers.contains(m) {
            out.matchers.matchers.push(Matcher::clone(m));
        }
    }
    // When the only name matcher left is the selector's own name (the clause asked for
    // exactly that name), keep the readable `foo{…}` form.
    if let Some(name) = moved {
        let mut names = out
            .matchers
            .matchers
            .iter()
            .filter(|m| m.name == METRIC_NAME);
        if let (Some(only), None) = (names.next(), names.next())
            && matches!(only.op, MatchOp::Equal)
            && only.value == name
        {
            out.matchers.matchers.retain(|m| m.name != METRIC_NAME);
            out.name = Some(name);
        }
    }
    sort_matchers(&mut out);
    out
}

/// Sorts matchers by their printed form, as `Display for Matchers` does.
pub(crate) fn sort_matchers(vs: &mut VectorSelector) {
    vs.matchers.matchers.sort_by_cached_key(|m| m.to_string());
    vs.matchers.matchers.dedup();
}

/// The selector's matchers with its metric name as a `__name__` equality.
pub(crate) fn effective_matchers(vs: &VectorSelector) -> Vec<Matcher> {
    let mut all = vs.matchers.matchers.clone();
    if let Some(name) = &vs.name {
        all.push(Matcher::new(MatchOp::Equal, METRIC_NAME, name));
    }
    all
}

/// The clauses that may match the selector. Pruning only ever drops clauses, so a wrong
/// "can't match" loses data but never widens access. If every clause is pruned, the first
/// one is kept: the answer is empty either way and the query stays well formed.
pub(crate) fn applicable<'c>(
    vs: &VectorSelector,
    clauses: &'c [CompiledClause],
) -> Vec<&'c CompiledClause> {
    let sel = effective_matchers(vs);
    // A clause the selector already carries in full covers it alone: `S ∧ C = S`.
    if let Some(covering) = clauses
        .iter()
        .find(|c| c.matchers.iter().all(|m| sel.contains(&**m)))
    {
        return vec![covering];
    }
    let mut kept: Vec<&CompiledClause> = clauses
        .iter()
        .filter(|c| {
            !c.matchers
                .iter()
                .any(|cm| sel.iter().any(|sm| sm.name == cm.name && disjoint(sm, cm)))
        })
        .collect();
    if kept.is_empty()
        && let Some(first) = clauses.first()
    {
        kept.push(first);
    }
    kept
}

/// True when no label value satisfies both matchers (they share a label name). Decided only
/// when one side is an equality; regexes are evaluated only on ASCII values without a
/// newline, where Rust's `regex` and Go's RE2 agree.
fn disjoint(a: &Matcher, b: &Matcher) -> bool {
    match (&a.op, &b.op) {
        (MatchOp::Equal, _) => rejects(b, &a.value),
        (_, MatchOp::Equal) => rejects(a, &b.value),
        _ => false,
    }
}

/// True when the matcher provably rejects the value.
fn rejects(m: &Matcher, value: &str) -> bool {
    let comparable = value.is_ascii() && !value.contains('\n');
    match &m.op {
        MatchOp::Equal => m.value != value,
        MatchOp::NotEqual => m.value == value,
        MatchOp::Re(re) => comparable && !re.is_match(value),
        MatchOp::NotRe(re) => comparable && re.is_match(value),
    }
}

/// The labels `absent(S)` / `absent_over_time(S[r])` give their output when `S` matches
/// nothing, as Prometheus' `createLabelsForAbsentFunction` computes them: each label's first
/// equality sets it; any other matcher on that label (or a second equality) deletes it.
pub(crate) fn absent_labels(matchers: &[Matcher]) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut has = std::collections::BTreeSet::new();
    for m in matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if matches!(m.op, MatchOp::Equal) && !has.contains(&m.name) {
            labels.insert(m.name.clone(), m.value.clone());
            has.insert(m.name.clone());
        } else {
            labels.remove(&m.name);
        }
    }
    labels
}
