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
    pub fn replace(&self, snapshot: TenantSnapshot) {
        self.current.store(Arc::new(snapshot));
    }
}
