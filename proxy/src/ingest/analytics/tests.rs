use std::time::{Duration, Instant};

use super::*;
use crate::config::ingest::CardinalityLimits;
use crate::remote_write::Label;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

const NO_LIMIT: CardinalityLimits = CardinalityLimits {
    max_series: 0,
    max_series_per_metric: 0,
};

/// An `Analytics` with a known start and a tracker sharing it (window 60 s).
fn setup() -> (Analytics, SeriesTracker, Instant) {
    let a = Analytics::new();
    let t0 = a.start;
    let tr = SeriesTracker::new(secs(60));
    (a, tr, t0)
}

fn track(tr: &SeriesTracker, tenant: &str, metric: &str, n: u64, now: Instant) {
    for h in 0..n {
        let labels = [
            Label {
                name: "__name__".into(),
                value: metric.into(),
            },
            Label {
                name: "i".into(),
                value: h.to_string(),
            },
        ];
        let hash = crate::ingest::cardinality::series_hash(&labels);
        tr.admit(tenant, metric, hash, &NO_LIMIT, false, now);
    }
}

fn keys(rows: &[TopEntry]) -> Vec<(&str, &str)> {
    rows.iter()
        .map(|e| (e.tenant.as_str(), e.metric.as_str()))
        .collect()
}

#[test]
fn top_by_parses() {
    assert_eq!("series".parse::<TopBy>(), Ok(TopBy::Series));
    assert_eq!("samples".parse::<TopBy>(), Ok(TopBy::Samples));
    assert_eq!("drops".parse::<TopBy>(), Ok(TopBy::Drops));
    assert!("Series".parse::<TopBy>().is_err());
}

#[test]
fn samples_per_second_over_the_last_minute() {
    let (a, tr, t0) = setup();
    // 10 samples/s for one minute, recorded once a second.
    for s in 0..60 {
        a.record_samples("t", "m", 10, t0 + secs(s));
    }
    let rate = |at: u64| {
        a.top(&tr, Some("t"), TopBy::Samples, 10, t0 + secs(at))
            .first()
            .map_or(0.0, |e| e.samples_per_second)
    };
    // The current, incomplete bucket does not count: at 60 s the full minute is in.
    assert_eq!(rate(60), 10.0);
    assert_eq!(rate(64), 10.0);
    // Five seconds later the first bucket (50 samples) left the window.
    assert_eq!(rate(65), (600.0 - 50.0) / 60.0);
    // Half a minute of silence halves it; two minutes clear it.
    assert_eq!(rate(90), 5.0);
    assert_eq!(rate(120), 0.0);
    assert_eq!(rate(1000), 0.0);
    // New samples after a long gap: old buckets do not resurface.
    a.record_samples("t", "m", 120, t0 + secs(1000));
    assert_eq!(rate(1005), 2.0);
}

#[test]
fn late_samples_land_in_their_bucket() {
    let (a, tr, t0) = setup();
    a.record_samples("t", "m", 60, t0 + secs(200));
    a.record_samples("t", "m", 60, t0 + secs(192)); // slightly older `now` from another thread
    a.record_samples("t", "m", 60, t0 + secs(100)); // out of the ring: ignored
    let e = &a.top(&tr, None, TopBy::Samples, 1, t0 + secs(205))[0];
    assert_eq!(e.samples_per_second, 2.0);
}

#[test]
fn ordering_by_each_key_with_ties() {
    let (a, tr, t0) = setup();
    track(&tr, "b", "up", 5, t0);
    track(&tr, "a", "http", 5, t0);
    track(&tr, "a", "up", 9, t0);
    track(&tr, "a", "cpu", 1, t0);
    a.record_samples("a", "cpu", 600, t0);
    a.record_samples("b", "up", 60, t0);
    a.record_samples("a", "http", 60, t0);
    a.record_drop_at("b", "up", "max_series", 3, false, t0);
    a.record_drop_at("a", "cpu", "naming", 1, false, t0);
    a.record_drop_at("a", "cpu", "max_series", 2, false, t0);
    a.record_drop_at("a", "mem", "naming", 3, false, t0);
    a.record_drop_at("a", "up", "naming", 7, true, t0);
    let now = t0 + secs(10);

    let rows = a.top(&tr, None, TopBy::Series, 10, now);
    assert_eq!(
        keys(&rows),
        [("a", "up"), ("a", "http"), ("b", "up"), ("a", "cpu")]
    );
    assert_eq!(rows[0].active_series, 9);

    let rows = a.top(&tr, None, TopBy::Samples, 10, now);
    assert_eq!(keys(&rows), [("a", "cpu"), ("a", "http"), ("b", "up")]);
    assert_eq!(rows[0].samples_per_second, 10.0);

    // Real drops first (ties: tenant, metric), dry-run drops only after them.
    let rows = a.top(&tr, None, TopBy::Drops, 10, now);
    assert_eq!(
        keys(&rows),
        [("a", "cpu"), ("a", "mem"), ("b", "up"), ("a", "up")]
    );
    assert_eq!(
        rows[0].drops,
        BTreeMap::from([("max_series".into(), 2), ("naming".into(), 1)])
    );
    // A metric with drops but no series and no samples still shows, with zeros.
    assert_eq!(rows[1].active_series, 0);
    assert_eq!(rows[1].samples_per_second, 0.0);
}

#[test]
fn tenant_filter_and_limit() {
    let (a, tr, t0) = setup();
    track(&tr, "a", "x", 3, t0);
    track(&tr, "a", "y", 2, t0);
    track(&tr, "a", "z", 1, t0);
    track(&tr, "b", "x", 10, t0);
    let rows = a.top(&tr, Some("a"), TopBy::Series, 2, t0);
    assert_eq!(keys(&rows), [("a", "x"), ("a", "y")]);
    let rows = a.top(&tr, None, TopBy::Series, 1, t0);
    assert_eq!(keys(&rows), [("b", "x")]);
    assert!(a.top(&tr, Some("nobody"), TopBy::Series, 10, t0).is_empty());
    assert!(a.top(&tr, None, TopBy::Series, 0, t0).is_empty());
}

#[test]
fn dry_run_drops_kept_apart() {
    let (a, tr, t0) = setup();
    a.record_drop("t", "m", "max_series", 4, true);
    a.record_drop("t", "m", "max_series", 1, false);
    a.record_drop("t", "m", "naming", 2, true);
    a.record_drop("t", "m", "naming", 2, true);
    let rows = a.top(&tr, None, TopBy::Drops, 10, t0);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].drops, BTreeMap::from([("max_series".into(), 1)]));
    assert_eq!(
        rows[0].dry_run_drops,
        BTreeMap::from([("max_series".into(), 4), ("naming".into(), 4)])
    );
    let json = serde_json::to_value(&rows[0]).unwrap();
    assert_eq!(json["dry_run_drops"]["naming"], 4);
    assert_eq!(json["tenant"], "t");
}

#[test]
fn prune_keeps_recent_and_active_entries() {
    let (a, tr, t0) = setup();
    a.record_samples("t", "samples", 10, t0 + secs(100));
    a.record_drop_at("t", "dropped", "naming", 1, false, t0 + secs(100));
    a.record_samples("t", "active", 10, t0);
    track(&tr, "t", "active", 1, t0 + secs(200));
    a.record_samples("u", "old", 10, t0);

    let count = |a: &Analytics| -> usize {
        a.tenants
            .read()
            .unwrap()
            .values()
            .map(|t| t.lock().unwrap().len())
            .sum()
    };
    a.prune(&tr, t0 + secs(200));
    // "u/old": idle for 200 s, no drops, no series: gone, and tenant "u" with it.
    assert_eq!(count(&a), 3);
    assert!(!a.tenants.read().unwrap().contains_key("u"));
    // 2 × 60 s after its last samples "samples" goes; "dropped" stays for the hour.
    a.prune(&tr, t0 + secs(215));
    assert_eq!(count(&a), 3);
    a.prune(&tr, t0 + secs(220));
    assert_eq!(count(&a), 2);
    a.prune(&tr, t0 + secs(100 + 3599));
    assert_eq!(count(&a), 2);
    tr.expire(t0 + secs(3700));
    a.prune(&tr, t0 + secs(3700));
    assert_eq!(count(&a), 0);
    assert!(a.tenants.read().unwrap().is_empty());
}

#[test]
fn concurrent_recording() {
    let a = std::sync::Arc::new(Analytics::new());
    let t0 = a.start;
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let a = a.clone();
            std::thread::spawn(move || {
                for n in 0..1000u64 {
                    a.record_samples(["x", "y"][i % 2], "m", 1, t0 + secs(n % 60));
                    a.record_drop("x", "m", "r", 1, i % 2 == 0);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let tr = SeriesTracker::new(secs(60));
    let rows = a.top(&tr, Some("x"), TopBy::Drops, 10, t0);
    assert_eq!(rows[0].drops["r"], 2000);
    assert_eq!(rows[0].dry_run_drops["r"], 2000);
}
