//! Per tenant and metric figures and the top offenders (DESIGN §6): samples per second over the
//! last minute, series dropped per reason (real and dry-run apart), active series from the
//! [`SeriesTracker`].
//!
//! # Memory
//!
//! One entry per (tenant, metric) that sent samples or had drops: a ring of 13 five-second
//! sample buckets (~110 bytes), the drop maps and the metric name. [`Analytics::prune`] (call it
//! with [`SeriesTracker::expire`], e.g. every 10 s) removes entries with no samples for
//! 2 × 60 s, no drop in the last hour and no active series, and tenants left without entries.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::cardinality::SeriesTracker;

/// Width of a sample bucket, seconds.
const BUCKET_SECS: u64 = 5;
/// Buckets in the rate window (12 × 5 s = 60 s).
const WINDOW_BUCKETS: u64 = 12;
/// The window buckets plus the current, incomplete one.
const RING: usize = WINDOW_BUCKETS as usize + 1;
/// An entry without samples for this many buckets (2 × 60 s) may be pruned...
const IDLE_BUCKETS: u64 = 2 * WINDOW_BUCKETS;
/// ... if it also had no drop for this long.
const DROP_RETENTION: Duration = Duration::from_secs(3600);

/// The key of [`Analytics::top`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopBy {
    /// Active series.
    Series,
    /// Samples per second.
    Samples,
    /// Series dropped, all reasons (dry-run drops break ties).
    Drops,
}

impl FromStr for TopBy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "series" => Ok(TopBy::Series),
            "samples" => Ok(TopBy::Samples),
            "drops" => Ok(TopBy::Drops),
            other => Err(format!(
                "unknown sort key {other:?}: want series, samples or drops"
            )),
        }
    }
}

/// One (tenant, metric) row of [`Analytics::top`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopEntry {
    pub tenant: String,
    pub metric: String,
    pub active_series: usize,
    pub samples_per_second: f64,
    /// Reason → series dropped (since the entry was created).
    pub drops: BTreeMap<String, u64>,
    /// Reason → series that would have been dropped (dry-run rules).
    pub dry_run_drops: BTreeMap<String, u64>,
}

#[derive(Default)]
struct MetricStats {
    /// Samples per 5-second bucket; bucket number `b` (seconds since start / 5) lives in slot
    /// `b % RING` while `b > head - RING`.
    buckets: [u64; RING],
    /// The latest bucket number written; `None`: never had samples.
    head: Option<u64>,
    drops: BTreeMap<Box<str>, u64>,
    dry_run_drops: BTreeMap<Box<str>, u64>,
    /// When the last drop was recorded.
    last_drop: Option<Instant>,
}

impl MetricStats {
    fn add_samples(&mut self, bucket: u64, samples: u64) {
        match self.head {
            Some(head) if bucket <= head => {
                // Late (a caller with a slightly older `now`): count it if still in the ring.
                if head - bucket < RING as u64 {
                    let slot = &mut self.buckets[(bucket % RING as u64) as usize];
                    *slot = slot.saturating_add(samples);
                }
                return;
            }
            Some(head) => {
                // Zero the slots passed over (a full turn at most).
                for b in (head + 1)..=bucket.min(head + RING as u64) {
                    self.buckets[(b % RING as u64) as usize] = 0;
                }
            }
            None => self.buckets = [0; RING],
        }
        self.head = Some(bucket);
        self.buckets[(bucket % RING as u64) as usize] = samples;
    }

    /// Samples per second over the 12 complete buckets before `current` (60 s, lagging the
    /// clock by less than one bucket).
    fn rate(&self, current: u64) -> f64 {
        let Some(head) = self.head else { return 0.0 };
        let from = current.saturating_sub(WINDOW_BUCKETS);
        let sum: u64 = (from..current)
            .filter(|&b| b <= head && head - b < RING as u64)
            .map(|b| self.buckets[(b % RING as u64) as usize])
            .sum();
        sum as f64 / (WINDOW_BUCKETS * BUCKET_SECS) as f64
    }

    fn prunable(&self, current: u64, now: Instant) -> bool {
        let idle = self
            .head
            .is_none_or(|head| current.saturating_sub(head) >= IDLE_BUCKETS);
        let no_recent_drop = self
            .last_drop
            .is_none_or(|t| now.saturating_duration_since(t) >= DROP_RETENTION);
        idle && no_recent_drop
    }
}

type TenantStats = HashMap<Box<str>, MetricStats>;

/// Samples and drops per (tenant, metric); `Send + Sync`, shared by all requests.
pub struct Analytics {
    start: Instant,
    tenants: RwLock<HashMap<String, Arc<Mutex<TenantStats>>>>,
}

impl Default for Analytics {
    fn default() -> Self {
        Self::new()
    }
}

impl Analytics {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            tenants: RwLock::default(),
        }
    }

    fn bucket(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.start).as_secs() / BUCKET_SECS
    }

    fn tenant(&self, tenant: &str) -> Arc<Mutex<TenantStats>> {
        super::tenant_entry(&self.tenants, tenant)
    }

    fn with_metric<R>(
        &self,
        tenant: &str,
        metric: &str,
        f: impl FnOnce(&mut MetricStats) -> R,
    ) -> R {
        let tenant = self.tenant(tenant);
        let mut stats = tenant.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = stats.get_mut(metric) {
            return f(m);
        }
        f(stats.entry(metric.into()).or_default())
    }

    /// Counts `samples` accepted for the metric at `now` (samples/s over the last 60 s, in
    /// 5-second buckets).
    pub fn record_samples(&self, tenant: &str, metric: &str, samples: u64, now: Instant) {
        if samples == 0 {
            return;
        }
        let bucket = self.bucket(now);
        self.with_metric(tenant, metric, |m| m.add_samples(bucket, samples));
    }

    /// Counts `series` dropped for `reason` (kept apart when `dry_run`: they were not dropped).
    pub fn record_drop(
        &self,
        tenant: &str,
        metric: &str,
        reason: &str,
        series: u64,
        dry_run: bool,
    ) {
        self.record_drop_at(tenant, metric, reason, series, dry_run, Instant::now());
    }

    fn record_drop_at(
        &self,
        tenant: &str,
        metric: &str,
        reason: &str,
        series: u64,
        dry_run: bool,
        now: Instant,
    ) {
        if series == 0 {
            return;
        }
        self.with_metric(tenant, metric, |m| {
            let map = if dry_run {
                &mut m.dry_run_drops
            } else {
                &mut m.drops
            };
            match map.get_mut(reason) {
                Some(n) => *n = n.saturating_add(series),
                None => {
                    map.insert(reason.into(), series);
                }
            }
            m.last_drop = Some(m.last_drop.map_or(now, |t| t.max(now)));
        });
    }

    fn tenant_names(&self, tracker: &SeriesTracker, tenant: Option<&str>) -> Vec<String> {
        match tenant {
            Some(t) => vec![t.to_owned()],
            None => {
                let mut names: BTreeSet<String> = tracker.tenants().into_iter().collect();
                names.extend(
                    self.tenants
                        .read()
                        .unwrap_or_else(PoisonError::into_inner)
                        .keys()
                        .cloned(),
                );
                names.into_iter().collect()
            }
        }
    }

    /// The top `limit` (tenant, metric) pairs of one tenant or all, by `by` (descending), ties
    /// broken by tenant then metric. Pairs whose key is zero are left out (with `Drops`: no real
    /// and no dry-run drops). Active series come from `tracker`.
    pub fn top(
        &self,
        tracker: &SeriesTracker,
        tenant: Option<&str>,
        by: TopBy,
        limit: usize,
        now: Instant,
    ) -> Vec<TopEntry> {
        let current = self.bucket(now);
        let mut rows = Vec::new();
        for tenant in self.tenant_names(tracker, tenant) {
            let (_, mut active) = tracker.active(&tenant);
            let stats = self
                .tenants
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&tenant)
                .cloned();
            if let Some(stats) = stats {
                let stats = stats.lock().unwrap_or_else(PoisonError::into_inner);
                for (metric, m) in stats.iter() {
                    let to_map = |d: &BTreeMap<Box<str>, u64>| {
                        d.iter().map(|(k, v)| (k.to_string(), *v)).collect()
                    };
                    rows.push(TopEntry {
                        tenant: tenant.clone(),
                        metric: metric.to_string(),
                        active_series: active.remove(&**metric).unwrap_or(0),
                        samples_per_second: m.rate(current),
                        drops: to_map(&m.drops),
                        dry_run_drops: to_map(&m.dry_run_drops),
                    });
                }
            }
            // Metrics with active series but nothing recorded here.
            rows.extend(active.into_iter().map(|(metric, active_series)| TopEntry {
                tenant: tenant.clone(),
                metric,
                active_series,
                samples_per_second: 0.0,
                drops: BTreeMap::new(),
                dry_run_drops: BTreeMap::new(),
            }));
        }
        let drops = |e: &TopEntry| {
            (
                e.drops.values().sum::<u64>(),
                e.dry_run_drops.values().sum(),
            )
        };
        rows.retain(|e| match by {
            TopBy::Series => e.active_series > 0,
            TopBy::Samples => e.samples_per_second > 0.0,
            TopBy::Drops => drops(e) != (0, 0),
        });
        let ties =
            |a: &TopEntry, b: &TopEntry| a.tenant.cmp(&b.tenant).then(a.metric.cmp(&b.metric));
        match by {
            TopBy::Series => rows.sort_by(|a, b| {
                b.active_series
                    .cmp(&a.active_series)
                    .then_with(|| ties(a, b))
            }),
            TopBy::Samples => rows.sort_by(|a, b| {
                b.samples_per_second
                    .total_cmp(&a.samples_per_second)
                    .then_with(|| ties(a, b))
            }),
            TopBy::Drops => rows.sort_by(|a, b| drops(b).cmp(&drops(a)).then_with(|| ties(a, b))),
        }
        rows.truncate(limit);
        rows
    }

    /// Forgets (tenant, metric) entries with no samples for 2 × 60 s, no drop in the last hour
    /// and no active series in `tracker`, then tenants without entries. Call it periodically
    /// (with [`SeriesTracker::expire`]); it locks one tenant at a time.
    pub fn prune(&self, tracker: &SeriesTracker, now: Instant) {
        let current = self.bucket(now);
        let tenants = super::tenant_entries(&self.tenants);
        let mut empty = Vec::new();
        for (name, stats) in tenants {
            let mut stats = stats.lock().unwrap_or_else(PoisonError::into_inner);
            if !stats.values().any(|m| m.prunable(current, now)) {
                continue;
            }
            let (_, active) = tracker.active(&name);
            stats.retain(|metric, m| !m.prunable(current, now) || active.contains_key(&**metric));
            if stats.is_empty() {
                empty.push(name);
            } else if stats.capacity() > 64 && stats.capacity() > 4 * stats.len() {
                let len = stats.len();
                stats.shrink_to(len * 2);
            }
        }
        if !empty.is_empty() {
            let mut map = self.tenants.write().unwrap_or_else(PoisonError::into_inner);
            for name in empty {
                let gone = map.get(&name).is_some_and(|t| {
                    Arc::strong_count(t) == 1
                        && t.lock().unwrap_or_else(PoisonError::into_inner).is_empty()
                });
                if gone {
                    map.remove(&name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
