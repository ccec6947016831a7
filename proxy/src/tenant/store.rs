//! The tenant store: an immutable snapshot of every tenant's merged policy, swapped atomically
//! when the tenant source changes, read lock-free per request.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::Policy;

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

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TenantSnapshot {
    pub tenants: BTreeMap<String, Arc<Tenant>>,
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
    pub fn replace(&self, snapshot: TenantSnapshot) {
        self.current.store(Arc::new(snapshot));
    }
}
