//! `crd`: any text as a file of the file tenant source → `proxy::tenant::source::load_text`
//! (YAML documents, schema and unknown fields, CR validation, policy, merge per namespace).
//!
//! Property: no panic; every invalid resource carries an error message; and every tenant's
//! policy works with the read path: enforcing `up` for it answers a query or a refusal, never
//! an invariant failure (a policy the CR path accepts but enforcement breaks on).

use proxy::promql::{EnforceError, EnforceLimits, enforce_query};

pub fn crd(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let snapshot = proxy::tenant::source::load_text("fuzz.yaml", &text);
    for invalid in &snapshot.invalid {
        assert!(
            !invalid.error.is_empty(),
            "an invalid resource without an error"
        );
    }
    for (ns, tenant) in &snapshot.tenants {
        match enforce_query("up", &tenant.policy, &EnforceLimits::default()) {
            Ok(out) => crate::rewrite::check_output("up", &out, &tenant.policy),
            Err(EnforceError::Invariant(e)) => {
                panic!("tenant {ns}: its policy breaks enforcement: {e}")
            }
            Err(_) => {}
        }
    }
}
