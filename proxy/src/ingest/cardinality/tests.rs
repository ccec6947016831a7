use std::sync::Arc;
use std::thread;

use super::*;
use crate::remote_write::Label;

fn lim(max_series: usize, max_series_per_metric: usize) -> CardinalityLimits {
    CardinalityLimits {
        max_series,
        max_series_per_metric,
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn label(name: &str, value: &str) -> Label {
    Label {
        name: name.into(),
        value: value.into(),
    }
}

#[test]
fn series_hash_separates_names_and_values() {
    let a = [label("__name__", "up"), label("job", "a")];
    let b = [label("__name__", "up"), label("job", "b")];
    let c = [label("__name__", "up"), label("jo", "ba")];
    assert_eq!(series_hash(&a), series_hash(&a.clone()));
    assert_ne!(series_hash(&a), series_hash(&b));
    assert_ne!(series_hash(&a), series_hash(&c));
    assert_ne!(series_hash::<Label>(&[]), series_hash(&[label("", "")]));
}

#[test]
fn tenant_limit_hits_at_exactly_the_limit_and_existing_keep_flowing() {
    let tr = SeriesTracker::new(secs(60));
    let t0 = Instant::now();
    let l = lim(3, 0);
    for h in 1..=3 {
        assert_eq!(tr.admit("a", "m", h, &l, false, t0), Admit::New);
    }
    assert_eq!(tr.admit("a", "m", 4, &l, false, t0), Admit::OverTenantLimit);
    assert_eq!(
        tr.admit("a", "other", 5, &l, false, t0),
        Admit::OverTenantLimit
    );
    // Not tracked: still over, and the count did not move.
    assert_eq!(tr.admit("a", "m", 4, &l, false, t0), Admit::OverTenantLimit);
    assert_eq!(tr.active("a").0, 3);
    // Existing series keep flowing past the limit (and even with a lower one).
    for h in 1..=3 {
        assert_eq!(
            tr.admit("a", "m", h, &l, false, t0 + secs(10)),
            Admit::Existing
        );
        assert_eq!(
            tr.admit("a", "m", h, &lim(1, 1), false, t0 + secs(10)),
            Admit::Existing
        );
    }
    // Other tenants are independent.
    assert_eq!(tr.admit("b", "m", 4, &l, false, t0), Admit::New);
    let (total, per_metric) = tr.active("a");
    assert_eq!(total, 3);
    assert_eq!(per_metric, BTreeMap::from([("m".to_string(), 3)]));
    assert_eq!(tr.tenants(), vec!["a".to_string(), "b".to_string()]);
}

#[test]
fn zero_means_no_limit() {
    let tr = SeriesTracker::new(secs(60));
    let t0 = Instant::now();
    for h in 0..1000 {
        assert_eq!(tr.admit("a", "m", h, &lim(0, 0), false, t0), Admit::New);
    }
    assert_eq!(tr.active("a").0, 1000);
}

#[test]
fn per_metric_limit_vs_tenant_limit() {
    let tr = SeriesTracker::new(secs(60));
    let t0 = Instant::now();
    let l = lim(5, 2);
    assert_eq!(tr.admit("a", "m1", 1, &l, false, t0), Admit::New);
    assert_eq!(tr.admit("a", "m1", 2, &l, false, t0), Admit::New);
    assert_eq!(
        tr.admit("a", "m1", 3, &l, false, t0),
        Admit::OverMetricLimit
    );
    // Other metrics still have room, until the tenant is full.
    assert_eq!(tr.admit("a", "m2", 4, &l, false, t0), Admit::New);
    assert_eq!(tr.admit("a", "m2", 5, &l, false, t0), Admit::New);
    assert_eq!(tr.admit("a", "m3", 6, &l, false, t0), Admit::New);
    // Tenant full: the tenant limit wins even where the metric limit is also hit.
    assert_eq!(
        tr.admit("a", "m3", 7, &l, false, t0),
        Admit::OverTenantLimit
    );
    assert_eq!(
        tr.admit("a", "m1", 8, &l, false, t0),
        Admit::OverTenantLimit
    );
    let (total, per_metric) = tr.active("a");
    assert_eq!(total, 5);
    assert_eq!(
        per_metric,
        BTreeMap::from([("m1".into(), 2), ("m2".into(), 2), ("m3".into(), 1)])
    );
}

#[test]
fn expiry_frees_room() {
    let tr = SeriesTracker::new(secs(60));
    let t0 = Instant::now();
    let l = lim(2, 0);
    assert_eq!(tr.admit("a", "m", 1, &l, false, t0), Admit::New);
    assert_eq!(tr.admit("a", "m", 2, &l, false, t0 + secs(30)), Admit::New);
    assert_eq!(
        tr.admit("a", "m", 3, &l, false, t0 + secs(30)),
        Admit::OverTenantLimit
    );
    // At exactly the window the first series is still active.
    tr.expire(t0 + secs(60));
    assert_eq!(tr.active("a").0, 2);
    assert_eq!(
        tr.admit("a", "m", 3, &l, false, t0 + secs(60)),
        Admit::OverTenantLimit
    );
    tr.expire(t0 + secs(61));
    assert_eq!(tr.active("a").0, 1);
    assert_eq!(tr.admit("a", "m", 3, &l, false, t0 + secs(61)), Admit::New);
    // Series 1 comes back: new again, and over the limit now.
    assert_eq!(
        tr.admit("a", "m", 1, &l, false, t0 + secs(62)),
        Admit::OverTenantLimit
    );
    // Everything expires; the tenant and its interned metric go away.
    tr.expire(t0 + secs(200));
    assert_eq!(tr.active("a"), (0, BTreeMap::new()));
    assert!(tr.tenants().is_empty());
}

#[test]
fn refreshed_series_do_not_expire() {
    let tr = SeriesTracker::new(secs(60));
    let t0 = Instant::now();
    let l = lim(0, 0);
    tr.admit("a", "m", 1, &l, false, t0);
    tr.admit("a", "m", 2, &l, false, t0);
    assert_eq!(
        tr.admit("a", "m", 1, &l, false, t0 + secs(50)),
        Admit::Existing
    );
    tr.expire(t0 + secs(100));
    let (total, per_metric) = tr.active("a");
    assert_eq!(total, 1);
    assert_eq!(per_metric["m"], 1);
    // A stale entry not yet expired is new again and counted once.
    assert_eq!(tr.admit("a", "m", 1, &l, false, t0 + secs(115)), Admit::New);
    assert_eq!(tr.active("a").0, 1);
}

#[test]
fn stale_entry_is_new_and_checked_against_limits() {
    let tr = SeriesTracker::new(secs(10));
    let t0 = Instant::now();
    tr.admit("a", "m", 1, &lim(0, 0), false, t0);
    tr.admit("a", "m", 2, &lim(0, 0), false, t0 + secs(15));
    // No expire yet: series 1 is stale. With room for one, the stale one does not count.
    assert_eq!(
        tr.admit("a", "m", 1, &lim(2, 0), false, t0 + secs(15)),
        Admit::New
    );
    assert_eq!(tr.active("a").0, 2);
    // Without room it is refused and forgotten.
    tr.admit("a", "m", 3, &lim(0, 0), false, t0 + secs(30));
    assert_eq!(
        tr.admit("a", "m", 1, &lim(1, 0), false, t0 + secs(30)),
        Admit::OverTenantLimit
    );
    assert_eq!(tr.active("a").0, 2);
}

#[test]
fn dry_run_tracks_but_reports_over() {
    let tr = SeriesTracker::new(secs(60));
    let t0 = Instant::now();
    let l = lim(2, 1);
    assert_eq!(tr.admit("a", "m", 1, &l, true, t0), Admit::New);
    assert_eq!(tr.admit("a", "m", 2, &l, true, t0), Admit::OverMetricLimit);
    assert_eq!(tr.admit("a", "n", 3, &l, true, t0), Admit::OverTenantLimit);
    // Tracked anyway: counts reflect reality, and they are active afterwards.
    let (total, per_metric) = tr.active("a");
    assert_eq!(total, 3);
    assert_eq!(
        per_metric,
        BTreeMap::from([("m".into(), 2), ("n".into(), 1)])
    );
    assert_eq!(tr.admit("a", "m", 2, &l, true, t0), Admit::Existing);
    assert_eq!(tr.admit("a", "n", 3, &l, false, t0), Admit::Existing);
}

#[test]
fn metric_slots_are_reused_after_expiry() {
    let tr = SeriesTracker::new(secs(10));
    let t0 = Instant::now();
    let l = lim(0, 0);
    tr.admit("a", "keep", 1, &l, false, t0);
    tr.admit("a", "gone", 2, &l, false, t0);
    tr.admit("a", "keep", 1, &l, false, t0 + secs(20));
    tr.expire(t0 + secs(20));
    assert_eq!(tr.active("a").1, BTreeMap::from([("keep".into(), 1)]));
    tr.admit("a", "fresh", 3, &l, false, t0 + secs(21));
    tr.admit("a", "fresh", 4, &l, false, t0 + secs(21));
    assert_eq!(
        tr.active("a").1,
        BTreeMap::from([("fresh".into(), 2), ("keep".into(), 1)])
    );
    let t = tr.tenant("a");
    let t = t.lock().unwrap();
    assert!(t.metrics.len() <= 2, "slots: {}", t.metrics.len());
}

#[test]
fn expire_is_rate_limited_to_once_a_second() {
    let tr = SeriesTracker::new(secs(5));
    let t0 = Instant::now();
    tr.admit("a", "m", 1, &lim(0, 0), false, t0);
    tr.expire(t0 + secs(3));
    tr.expire(t0 + Duration::from_millis(3500)); // same second: skipped
    tr.expire(t0 + secs(7));
    assert_eq!(tr.active("a").0, 0);
}

#[test]
fn concurrency_smoke() {
    let tr = Arc::new(SeriesTracker::new(secs(60)));
    let t0 = Instant::now();
    let l = lim(1000, 300);
    let handles: Vec<_> = (0..8u64)
        .map(|i| {
            let (tr, l) = (tr.clone(), l.clone());
            thread::spawn(move || {
                let tenant = if i % 2 == 0 { "even" } else { "odd" };
                let mut admitted = 0;
                for n in 0..2000u64 {
                    let metric = format!("m{}", n % 4);
                    // Half the hashes are shared between the threads of a tenant.
                    let hash = if n % 2 == 0 { n } else { (i << 32) | n };
                    if tr.admit(tenant, &metric, hash, &l, false, t0).is_admitted() {
                        admitted += 1;
                    }
                    if n % 100 == 0 {
                        tr.expire(t0 + secs(n / 100));
                    }
                }
                admitted
            })
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap() > 0);
    }
    for tenant in ["even", "odd"] {
        let (total, per_metric) = tr.active(tenant);
        assert_eq!(total, 1000);
        assert_eq!(per_metric.values().sum::<usize>(), total);
        assert!(per_metric.values().all(|&c| c <= 300), "{per_metric:?}");
    }
}
