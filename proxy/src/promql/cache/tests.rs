//! The rewrite cache: hits and misses, isolation between tenants, invalidation on a policy
//! change, the bound.

use std::sync::Arc;

use super::*;
use crate::tenant::policy::{Clause, LabelMatcher};

fn policy_of(namespace: &str) -> Arc<Policy> {
    Arc::new(Policy::from_clauses(vec![Clause::new(vec![
        LabelMatcher::equal("namespace", namespace),
    ])]))
}

fn limits() -> EnforceLimits {
    EnforceLimits::default()
}

const Q: &str = "sum(rate(http_requests_total[5m]))";

#[test]
fn a_repeated_query_is_a_hit_with_the_same_answer() {
    let cache = RewriteCache::new(1 << 20);
    let p = policy_of("team-a");
    let first = cache.enforce_query("team-a", &p, Q, &limits()).unwrap();
    let second = cache.enforce_query("team-a", &p, Q, &limits()).unwrap();
    assert_eq!(first, second);
    assert_eq!(
        &*first,
        "sum(rate(http_requests_total{namespace=\"team-a\"}[5m]))"
    );
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.entries), (1, 1, 1));
    assert_eq!(stats.compiled_policies, 1);
    // Another query is a miss; the compiled policy is reused.
    cache.enforce_query("team-a", &p, "up", &limits()).unwrap();
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.entries), (1, 2, 2));
    assert_eq!(stats.compiled_policies, 1);
}

#[test]
fn tenants_never_share_an_entry() {
    let cache = RewriteCache::new(1 << 20);
    let (a, b) = (policy_of("team-a"), policy_of("team-b"));
    // Warm both, then ask again: each tenant gets its own rewrite from the warm cache.
    for _ in 0..2 {
        let for_a = cache.enforce_query("team-a", &a, Q, &limits()).unwrap();
        let for_b = cache.enforce_query("team-b", &b, Q, &limits()).unwrap();
        assert!(for_a.contains("namespace=\"team-a\"") && !for_a.contains("team-b"));
        assert!(for_b.contains("namespace=\"team-b\"") && !for_b.contains("team-a"));
    }
    assert_eq!(cache.stats().hits, 2);
    // Even two tenants whose policies are equal (not the same Arc) have separate entries.
    let a_twin = policy_of("team-a");
    cache
        .enforce_query("team-c", &a_twin, Q, &limits())
        .unwrap();
    assert_eq!(cache.stats().entries, 3);
    // And the same Arc under another tenant name is another key too.
    cache.enforce_query("team-d", &a, Q, &limits()).unwrap();
    assert_eq!(cache.stats().entries, 4);
    assert_eq!(cache.stats().hits, 2);
}

#[test]
fn a_policy_change_is_never_served_the_old_rewrite() {
    let cache = RewriteCache::new(1 << 20);
    let old = policy_of("team-a");
    let before = cache.enforce_query("team-a", &old, Q, &limits()).unwrap();
    // The reload builds a new policy: narrower (another namespace), same tenant, same text.
    let new = policy_of("team-a-restricted");
    let after = cache.enforce_query("team-a", &new, Q, &limits()).unwrap();
    assert_ne!(before, after);
    assert!(after.contains("team-a-restricted"));
    assert_eq!(cache.stats().hits, 0);
    // A rebuilt policy with equal content is a new identity too: a miss, the same text.
    let rebuilt = policy_of("team-a");
    assert_eq!(
        cache
            .enforce_query("team-a", &rebuilt, Q, &limits())
            .unwrap(),
        before
    );
    assert_eq!(cache.stats().hits, 0);
}

#[test]
fn limits_are_part_of_the_key() {
    let cache = RewriteCache::new(1 << 20);
    let p = policy_of("team-a");
    cache.enforce_query("team-a", &p, Q, &limits()).unwrap();
    let tight = EnforceLimits {
        max_query_bytes: 10,
        max_depth: 100,
    };
    let e = cache.enforce_query("team-a", &p, Q, &tight).unwrap_err();
    assert!(matches!(e, EnforceError::TooLong { .. }), "{e:?}");
    // Refusals are cached too, and answered the same.
    assert_eq!(cache.enforce_query("team-a", &p, Q, &tight).unwrap_err(), e);
    assert_eq!(cache.stats().hits, 1);
}

#[test]
fn an_empty_policy_is_refused_before_the_cache() {
    let cache = RewriteCache::new(1 << 20);
    let empty = Arc::new(Policy::default());
    assert_eq!(
        cache.enforce_query("t", &empty, Q, &limits()),
        Err(EnforceError::NoAccess)
    );
    assert_eq!(cache.stats().entries, 0);
}

#[test]
fn match_lists_are_cached_apart_from_queries() {
    let cache = RewriteCache::new(1 << 20);
    let p = policy_of("team-a");
    let one = vec!["up".to_string()];
    let first = cache
        .enforce_match_selectors("team-a", &p, &one, &limits())
        .unwrap();
    assert_eq!(&*first, ["up{namespace=\"team-a\"}".to_string()]);
    assert_eq!(
        cache
            .enforce_match_selectors("team-a", &p, &one, &limits())
            .unwrap(),
        first
    );
    // The same text as a query is another entry; lists that would join alike are distinct.
    cache.enforce_query("team-a", &p, "up", &limits()).unwrap();
    let split = vec!["a".to_string(), "b".to_string()];
    let joined = vec!["a\nb".to_string()];
    let s = cache
        .enforce_match_selectors("team-a", &p, &split, &limits())
        .unwrap();
    let j = cache.enforce_match_selectors("team-a", &p, &joined, &limits());
    assert_eq!(s.len(), 2);
    assert_ne!(j.map(|v| v.len()).ok(), Some(2));
    assert_eq!(cache.stats().hits, 1);
}

#[test]
fn the_bound_is_respected() {
    let capacity = 64 * 1024;
    let cache = RewriteCache::new(capacity);
    let p = policy_of("team-a");
    for i in 0..5_000 {
        let q = format!("sum(rate(metric_{i}_total{{job=\"api\"}}[5m]))");
        cache.enforce_query("team-a", &p, &q, &limits()).unwrap();
    }
    let stats = cache.stats();
    assert!(stats.bytes <= capacity as u64, "{stats:?}");
    assert!(stats.entries > 10 && stats.entries < 5_000, "{stats:?}");
    // Recent queries are still served.
    let q = "sum(rate(metric_4999_total{job=\"api\"}[5m]))";
    let hits = stats.hits;
    cache.enforce_query("team-a", &p, q, &limits()).unwrap();
    assert_eq!(cache.stats().hits, hits + 1);
}

#[test]
fn a_zero_size_turns_the_query_cache_off() {
    let cache = RewriteCache::new(0);
    let p = policy_of("team-a");
    for _ in 0..3 {
        cache.enforce_query("team-a", &p, Q, &limits()).unwrap();
    }
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.entries), (0, 0, 0));
    assert_eq!(
        stats.compiled_policies, 1,
        "policies are still compiled once"
    );
}
