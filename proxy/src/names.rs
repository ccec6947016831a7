//! The syntax of names: Prometheus metric and label names, and tenant ids. A leaf module, so
//! that the read path, the relabel engine, tenant policies, the config and the HTTP layer check
//! a name the same way without depending on each other.

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`: a metric name Prometheus accepts bare.
#[inline]
pub fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`: Prometheus' (2.x) label name syntax, what the PromQL lexer reads
/// as one identifier.
#[inline]
pub fn is_legacy_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

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
    use super::*;

    #[test]
    fn metric_and_label_names() {
        assert!(is_metric_name("up"));
        assert!(is_metric_name(":a_b:c9"));
        assert!(!is_metric_name("9up"));
        assert!(!is_metric_name("a.b"));
        assert!(!is_metric_name(""));
        assert!(is_legacy_label_name("_a9"));
        assert!(!is_legacy_label_name("a:b"));
        assert!(!is_legacy_label_name("9a"));
        assert!(!is_legacy_label_name(""));
    }

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
