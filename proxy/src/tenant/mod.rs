//! Tenants: the `MetricAccess` CRD types, the policy compiled from them, the store the read
//! path looks tenants up in, and the file source that fills it.

pub mod crd;
pub mod policy;
pub mod source;
pub mod store;

pub use crd::{MetricAccess, MetricAccessSpec};
pub use policy::{Clause, LabelMatcher, MatchKind, Policy, PolicyError};
pub use store::{AccessResource, InvalidResource, Tenant, TenantSnapshot, TenantStore};

/// A tenant id is forwarded as `X-Scope-OrgID` by later features: it must fit Mimir's allowed
/// characters (alphanumerics and `!-_.*'()`, at most 150 bytes, not `.` or `..`). A `|` would
/// mean "several tenants" there.
pub fn validate_tenant_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("tenant id must not be empty".into());
    }
    if id.len() > 150 {
        return Err(format!("tenant id {id:?} is longer than 150 bytes"));
    }
    if id == "." || id == ".." {
        return Err(format!("tenant id {id:?} is not allowed"));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "!-_.*'()".contains(*c)))
    {
        return Err(format!(
            "tenant id {id:?} holds {c:?}; allowed: letters, digits and !-_.*'()"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate_tenant_id;

    #[test]
    fn tenant_ids_follow_mimir() {
        for ok in ["team-a", "a.b_c", "A1!*'()", &"x".repeat(150)] {
            assert_eq!(validate_tenant_id(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("a|b", "holds '|'"),
            ("a/b", "holds '/'"),
            ("..", "not allowed"),
            ("é", "holds 'é'"),
        ] {
            let e = validate_tenant_id(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(validate_tenant_id(&"x".repeat(151)).is_err());
    }
}
