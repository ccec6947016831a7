//! A tenant's policy in promql-parser form ([`CompiledPolicy`]), built once per policy and
//! reused by every request of the tenant, and the process-wide sharing of compiled matchers.
//!
//! Compiling a regex matcher is most of what compiling a policy costs, and the resulting
//! automaton is the largest part of a compiled policy. Tenants often list the same patterns
//! (`node_.*`, `kube_pod_.*`), so equal matchers are compiled once and shared: a table of weak
//! references keyed by the matcher keeps each one alive exactly as long as some compiled policy
//! holds it. Nothing is compiled before a tenant's first request, so idle tenants cost only
//! their policy's strings.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};

use promql_parser::label::Matcher;

use super::EnforceError;
use super::selectors::CompiledClause;
use crate::tenant::policy::{LabelMatcher, METRIC_NAME, MatchKind, Policy};

/// A policy with its clauses compiled. Cheap to share (`Arc`); immutable.
#[derive(Debug)]
pub struct CompiledPolicy {
    pub(crate) policy: Arc<Policy>,
    pub(crate) clauses: Vec<CompiledClause>,
}

impl CompiledPolicy {
    /// Compiles every clause of `policy`. A clause whose regex does not compile can only come
    /// from a policy built by hand (the policy compiler validates patterns): fail closed.
    pub fn new(policy: Arc<Policy>) -> Result<CompiledPolicy, EnforceError> {
        let clauses = compile_clauses(&policy)?;
        Ok(CompiledPolicy { policy, clauses })
    }

    /// The policy this was compiled from.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }
}

/// The clauses of `policy` in promql-parser form, regex matchers shared with other policies.
pub(crate) fn compile_clauses(policy: &Policy) -> Result<Vec<CompiledClause>, EnforceError> {
    policy
        .clauses
        .iter()
        .map(|c| {
            let matchers = c
                .matchers
                .iter()
                .map(shared_matcher)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| EnforceError::Invariant(format!("policy clause: {e}")))?;
            let has_name = matchers.iter().any(|m| m.name == METRIC_NAME);
            Ok(CompiledClause { matchers, has_name })
        })
        .collect()
}

type Key = (MatchKind, String, String);

/// Compiled regex matchers by (kind, label, pattern), alive while a compiled policy holds them.
struct Shared {
    matchers: HashMap<Key, Weak<Matcher>>,
    /// Dead entries are swept when the table grows past this.
    sweep_at: usize,
}

static SHARED: LazyLock<Mutex<Shared>> = LazyLock::new(|| {
    Mutex::new(Shared {
        matchers: HashMap::new(),
        sweep_at: 1024,
    })
});

/// The matcher for `m`, compiled once for the whole process while it is in use. Equalities
/// have no automaton and are built directly.
fn shared_matcher(m: &LabelMatcher) -> Result<Arc<Matcher>, String> {
    if matches!(m.kind, MatchKind::Equal | MatchKind::NotEqual) {
        return m.to_promql().map(Arc::new);
    }
    let key: Key = (m.kind, m.name.clone(), m.value.clone());
    let lock = || SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(live) = lock().matchers.get(&key).and_then(Weak::upgrade) {
        return Ok(live);
    }
    // Compiled outside the lock: a large regex takes a while, and other tenants' policies
    // need not wait for it.
    let compiled = Arc::new(m.to_promql()?);
    let mut shared = lock();
    if let Some(live) = shared.matchers.get(&key).and_then(Weak::upgrade) {
        return Ok(live);
    }
    shared.matchers.insert(key, Arc::downgrade(&compiled));
    if shared.matchers.len() >= shared.sweep_at {
        shared.matchers.retain(|_, w| w.strong_count() > 0);
        shared.sweep_at = (shared.matchers.len() * 2).max(1024);
    }
    Ok(compiled)
}

/// How many distinct regex matchers are compiled and alive (tests, `/debug`).
pub fn shared_regex_matchers() -> usize {
    SHARED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .matchers
        .values()
        .filter(|w| w.strong_count() > 0)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::policy::Clause;

    fn policy(pattern: &str) -> Arc<Policy> {
        Arc::new(Policy::from_clauses(vec![Clause::new(vec![
            LabelMatcher::new(METRIC_NAME, MatchKind::Regex, pattern),
            LabelMatcher::equal("namespace", "a"),
        ])]))
    }

    fn regex_of(p: &CompiledPolicy) -> &Arc<Matcher> {
        p.clauses[0]
            .matchers
            .iter()
            .find(|m| m.name == METRIC_NAME)
            .unwrap()
    }

    #[test]
    fn equal_regexes_are_compiled_once_and_freed_with_their_policies() {
        let pattern = "shared_test_[a-z]+_total";
        let a = CompiledPolicy::new(policy(pattern)).unwrap();
        let b = CompiledPolicy::new(policy(pattern)).unwrap();
        assert!(Arc::ptr_eq(regex_of(&a), regex_of(&b)));
        let other = CompiledPolicy::new(policy("other_test_.*")).unwrap();
        assert!(!Arc::ptr_eq(regex_of(&a), regex_of(&other)));
        let weak = Arc::downgrade(regex_of(&a));
        drop((a, b));
        assert_eq!(
            weak.strong_count(),
            0,
            "no compiled policy holds it any more"
        );
    }
}
