//! Tenants: the `MetricAccess` CRD types, the policy compiled from them, the store the read
//! path looks tenants up in, and the file source that fills it.

pub mod crd;
pub mod policy;
pub mod source;
pub mod store;

pub use crd::{MetricAccess, MetricAccessSpec};
pub use policy::{Clause, LabelMatcher, MatchKind, Policy, PolicyError};
pub use store::{AccessResource, InvalidResource, Tenant, TenantSnapshot, TenantStore};
