//! The tenant store: an immutable snapshot of every tenant's merged policy, swapped atomically
//! when the tenant source changes, read lock-free per request.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::Policy;
use super::crd::MetricAccessSpec;

/// One tenant (a namespace): the union of its valid `MetricAccess` CRs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Tenant {
    pub namespace: String,
    /// Names of the CRs merged into this tenant.
    pub resources: Vec<String>,
    pub policy: Arc<Policy>,
}

/// A CR that could not be used, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InvalidResource {
    pub file: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub error: String,
}

/// One valid `MetricAccess`, kept whole: reads merge a namespace's CRs into a [`Tenant`], the
/// collector works per CR with the CR's own policy and `remoteWrite` block.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AccessResource {
    pub namespace: String,
    pub name: String,
    pub file: Option<String>,
    pub spec: MetricAccessSpec,
    pub policy: Arc<Policy>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TenantSnapshot {
    pub tenants: BTreeMap<String, Arc<Tenant>>,
    /// Every valid CR, sorted by namespace and name.
    #[serde(skip)]
    pub resources: Vec<Arc<AccessResource>>,
    pub invalid: Vec<InvalidResource>,
    /// False until the source has loaded once (readiness).
    pub loaded: bool,
}

#[derive(Debug, Default)]
pub struct TenantStore {
    current: ArcSwap<TenantSnapshot>,
}

impl TenantStore {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn snapshot(&self) -> Arc<TenantSnapshot> {
        self.current.load_full()
    }
    pub fn get(&self, namespace: &str) -> Option<Arc<Tenant>> {
        self.current.load().tenants.get(namespace).cloned()
    }
    /// Swap in a new snapshot. A tenant whose merged policy did not change keeps its policy
    /// `Arc` from the previous snapshot: the read path's caches (compiled policy, enforced
    /// queries) are keyed by that identity, so a change to one tenant's CR does not throw away
    /// every other tenant's entries. A changed policy always gets its new `Arc`.
    pub fn replace(&self, mut snapshot: TenantSnapshot) {
        let old = self.current.load();
        for (namespace, tenant) in snapshot.tenants.iter_mut() {
            if let Some(previous) = old.tenants.get(namespace)
                && !Arc::ptr_eq(&previous.policy, &tenant.policy)
                && previous.policy == tenant.policy
            {
                let mut kept = Tenant::clone(tenant);
                kept.policy = previous.policy.clone();
                *tenant = Arc::new(kept);
            }
        }
        self.current.store(Arc::new(snapshot));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::policy::{Clause, LabelMatcher};

    fn snapshot(policies: &[(&str, &str)]) -> TenantSnapshot {
        let tenants = policies
            .iter()
            .map(|(ns, value)| {
                let policy = Policy::from_clauses(vec![Clause::new(vec![LabelMatcher::equal(
                    "namespace",
                    *value,
                )])]);
                let tenant = Tenant {
                    namespace: ns.to_string(),
                    resources: vec![format!("{ns}-reads")],
                    policy: Arc::new(policy),
                };
                (ns.to_string(), Arc::new(tenant))
            })
            .collect();
        TenantSnapshot {
            tenants,
            loaded: true,
            ..TenantSnapshot::default()
        }
    }

    #[test]
    fn unchanged_policies_keep_their_identity_across_a_reload() {
        let store = TenantStore::new();
        store.replace(snapshot(&[("a", "a"), ("b", "b")]));
        let (a1, b1) = (store.get("a").unwrap(), store.get("b").unwrap());
        // b's CR changes; a's does not.
        store.replace(snapshot(&[("a", "a"), ("b", "b-narrower")]));
        let (a2, b2) = (store.get("a").unwrap(), store.get("b").unwrap());
        assert!(Arc::ptr_eq(&a1.policy, &a2.policy));
        assert!(!Arc::ptr_eq(&b1.policy, &b2.policy));
        assert_eq!(b2.policy.clauses[0].matchers[0].value, "b-narrower");
        // A tenant removed and added again starts afresh.
        store.replace(snapshot(&[("b", "b-narrower")]));
        store.replace(snapshot(&[("a", "a"), ("b", "b-narrower")]));
        assert!(!Arc::ptr_eq(&a1.policy, &store.get("a").unwrap().policy));
    }
}
