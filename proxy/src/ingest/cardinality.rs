//! Active-series tracking and cardinality limits (DESIGN §6).
//!
//! One [`SeriesTracker`] holds every tenant's active series: a series is a 64-bit hash of its
//! sorted labels ([`series_hash`]), active while it was admitted (or seen) within the window.
//! A new series is admitted unless it would push the tenant past `max_series` or its metric past
//! `max_series_per_metric`; series that are already active always keep flowing.
//!
//! # Memory
//!
//! Per tracked series the tenant's map holds the hash (`u64`, the key, hashed by identity since
//! it already is a hash) and 8 bytes of value: last seen as `u32` seconds since the tracker
//! started and the metric as a `u32` id into the tenant's interned metric names. That is 16
//! bytes + 1 control byte per bucket; at hashbrown's load factor (7/8 right after growth, 7/16
//! right before) about 20–39 bytes per series, ~26 on average. Metric names are stored once per
//! tenant. Maps shrink after large expiries.
//!
//! # Locking
//!
//! `RwLock<HashMap<tenant, Arc<Mutex<TenantSeries>>>>`: the hot path takes the read lock and the
//! tenant's mutex; the write lock is only taken to add a tenant or drop an empty one.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::config::ingest::CardinalityLimits;

/// Hash of a series' labels (sorted by name), as every part of the gateway computes it: see
/// [`labels_hash`](crate::remote_write::wire::labels_hash). Collisions are rare and acceptable
/// (two colliding series count as one).
pub use crate::remote_write::wire::labels_hash as series_hash;

/// The verdict of [`SeriesTracker::admit`] on one series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Active already (last seen refreshed).
    Existing,
    /// Not active before, admitted and now tracked.
    New,
    /// Would exceed the tenant's `max_series`: not tracked (unless dry run).
    OverTenantLimit,
    /// Would exceed `max_series_per_metric` for its metric: not tracked (unless dry run).
    OverMetricLimit,
}

impl Admit {
    /// `Existing` or `New`.
    pub fn is_admitted(self) -> bool {
        matches!(self, Admit::Existing | Admit::New)
    }

    /// The drop reason of an `Over*` verdict (`None` when admitted).
    pub fn reason(self) -> Option<&'static str> {
        match self {
            Admit::Existing | Admit::New => None,
            Admit::OverTenantLimit => Some("max_series"),
            Admit::OverMetricLimit => Some("max_series_per_metric"),
        }
    }
}

/// Keys are already hashes: use them as they are.
#[derive(Default, Clone, Copy)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed through `write_u64`; this is a fallback.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type HashKeyed<V> = HashMap<u64, V, BuildHasherDefault<IdentityHasher>>;

#[derive(Clone, Copy)]
struct Entry {
    /// Seconds since the tracker started.
    last_seen: u32,
    /// Index into `TenantSeries::metrics`.
    metric: u32,
}

struct MetricSlot {
    name: Box<str>,
    active: usize,
}

/// One tenant's tracked series (see [`SeriesTracker::entry`]).
pub struct TenantEntry(Arc<Mutex<TenantSeries>>);

#[derive(Default)]
struct TenantSeries {
    series: HashKeyed<Entry>,
    /// Interned metric names with their active-series count; slots with `active == 0` are freed
    /// on expiry and reused.
    metrics: Vec<MetricSlot>,
    metric_ids: HashMap<Box<str>, u32>,
    free_ids: Vec<u32>,
    /// A lower bound of every entry's `last_seen`: nothing can expire before
    /// `oldest + window`, so most `expire` calls skip the sweep.
    oldest: u32,
}

impl TenantSeries {
    fn metric_id(&self, metric: &str) -> Option<u32> {
        self.metric_ids.get(metric).copied()
    }

    fn intern(&mut self, metric: &str) -> u32 {
        if let Some(id) = self.metric_id(metric) {
            return id;
        }
        let name: Box<str> = metric.into();
        let id = match self.free_ids.pop() {
            Some(id) => {
                self.metrics[id as usize] = MetricSlot {
                    name: name.clone(),
                    active: 0,
                };
                id
            }
            None => {
                let id = u32::try_from(self.metrics.len()).expect("fewer than 2^32 metrics");
                self.metrics.push(MetricSlot {
                    name: name.clone(),
                    active: 0,
                });
                id
            }
        };
        self.metric_ids.insert(name, id);
        id
    }

    fn metric_count(&self, id: Option<u32>) -> usize {
        id.map_or(0, |id| self.metrics[id as usize].active)
    }

    fn insert(&mut self, hash: u64, metric: &str, now: u32) {
        if self.series.is_empty() {
            self.oldest = now;
        }
        let id = self.intern(metric);
        self.metrics[id as usize].active += 1;
        self.series.insert(
            hash,
            Entry {
                last_seen: now,
                metric: id,
            },
        );
    }

    fn remove(&mut self, hash: u64) {
        if let Some(entry) = self.series.remove(&hash) {
            self.metrics[entry.metric as usize].active -= 1;
        }
    }

    /// Drops entries last seen more than `window` seconds before `now`, frees unused metric
    /// slots, shrinks the maps after large expiries.
    fn sweep(&mut self, now: u32, window: u32) {
        if self.series.is_empty() || now.saturating_sub(self.oldest) <= window {
            return;
        }
        let mut oldest = now;
        let metrics = &mut self.metrics;
        self.series.retain(|_, entry| {
            if now.saturating_sub(entry.last_seen) > window {
                metrics[entry.metric as usize].active -= 1;
                false
            } else {
                oldest = oldest.min(entry.last_seen);
                true
            }
        });
        self.oldest = oldest;
        for (id, slot) in self.metrics.iter_mut().enumerate() {
            if slot.active == 0 && !slot.name.is_empty() {
                self.metric_ids.remove(&slot.name);
                slot.name = Box::from("");
                self.free_ids.push(id as u32);
            }
        }
        // Free slots at the end can go for good.
        while self
            .metrics
            .last()
            .is_some_and(|s| s.active == 0 && s.name.is_empty())
        {
            self.metrics.pop();
        }
        let len = self.metrics.len() as u32;
        self.free_ids.retain(|&id| id < len);
        let cap = self.series.capacity();
        if cap > 1024 && cap > 4 * self.series.len() {
            self.series.shrink_to(self.series.len() * 2);
        }
        if self.metrics.capacity() > 64 && self.metrics.capacity() > 4 * self.metrics.len() {
            self.metrics.shrink_to(self.metrics.len() * 2);
            self.metric_ids.shrink_to(self.metric_ids.len() * 2);
        }
    }
}

/// Active series of every tenant; see the module docs. `Send + Sync`, shared by all requests.
pub struct SeriesTracker {
    start: Instant,
    /// The window in whole seconds (rounded up, at least 1).
    window: u32,
    tenants: RwLock<HashMap<String, Arc<Mutex<TenantSeries>>>>,
    /// The second (since start) from which `expire` may sweep again: at most once a second.
    next_sweep: AtomicU32,
}

impl SeriesTracker {
    pub fn new(window: Duration) -> Self {
        let secs = window.as_secs() + u64::from(window.subsec_nanos() > 0);
        Self {
            start: Instant::now(),
            window: u32::try_from(secs.max(1)).unwrap_or(u32::MAX),
            tenants: RwLock::default(),
            next_sweep: AtomicU32::new(0),
        }
    }

    /// Seconds since the tracker started (0 for instants before it, saturating).
    fn secs(&self, now: Instant) -> u32 {
        u32::try_from(now.saturating_duration_since(self.start).as_secs()).unwrap_or(u32::MAX)
    }

    fn tenant(&self, tenant: &str) -> Arc<Mutex<TenantSeries>> {
        super::tenant_entry(&self.tenants, tenant)
    }

    /// A series is active if admitted (or seen) within the window; an active series is always
    /// `Existing` (its last seen refreshed). A new series is admitted (`New`, tracked) unless
    /// that would exceed `limits.max_series` for the tenant (checked first) or
    /// `limits.max_series_per_metric` for its metric (0 = no limit): then `OverTenantLimit` /
    /// `OverMetricLimit` and it is not tracked, unless `dry_run`, where it is tracked anyway
    /// (counts reflect reality) but the verdict still says `Over*`.
    ///
    /// A series whose entry outlived the window but was not yet expired counts as new.
    pub fn admit(
        &self,
        tenant: &str,
        metric: &str,
        hash: u64,
        limits: &CardinalityLimits,
        dry_run: bool,
        now: Instant,
    ) -> Admit {
        self.admit_entry(&self.entry(tenant), metric, hash, limits, dry_run, now)
    }

    /// The tenant's series, for [`SeriesTracker::admit_entry`] (one lookup for many series).
    pub fn entry(&self, tenant: &str) -> TenantEntry {
        TenantEntry(self.tenant(tenant))
    }

    /// [`SeriesTracker::admit`] in the tenant's entry.
    pub fn admit_entry(
        &self,
        tenant: &TenantEntry,
        metric: &str,
        hash: u64,
        limits: &CardinalityLimits,
        dry_run: bool,
        now: Instant,
    ) -> Admit {
        let now = self.secs(now);
        let mut t = tenant.0.lock().unwrap_or_else(PoisonError::into_inner);
        self.admit_locked(&mut t, metric, hash, limits, dry_run, now)
    }

    /// [`SeriesTracker::admit_entry`] for a request's series `(hash, metric)` at once, in
    /// order, under one lock: the lookups of a batch run back to back (independent memory
    /// accesses the processor overlaps), not between the other work on each series. The tenant
    /// is held for the batch; other requests of the tenant wait for it, not for a request.
    pub fn admit_batch<'m>(
        &self,
        tenant: &TenantEntry,
        series: impl IntoIterator<Item = (u64, &'m str)>,
        limits: &CardinalityLimits,
        dry_run: bool,
        now: Instant,
        out: &mut Vec<Admit>,
    ) {
        let now = self.secs(now);
        let mut t = tenant.0.lock().unwrap_or_else(PoisonError::into_inner);
        for (hash, metric) in series {
            out.push(self.admit_locked(&mut t, metric, hash, limits, dry_run, now));
        }
    }

    fn admit_locked(
        &self,
        t: &mut TenantSeries,
        metric: &str,
        hash: u64,
        limits: &CardinalityLimits,
        dry_run: bool,
        now: u32,
    ) -> Admit {
        // `stale`: tracked but past the window, so counted in the totals yet new by definition.
        let stale = match t.series.get_mut(&hash) {
            Some(entry) if now.saturating_sub(entry.last_seen) <= self.window => {
                entry.last_seen = entry.last_seen.max(now);
                return Admit::Existing;
            }
            Some(_) => true,
            None => false,
        };
        let own = usize::from(stale);
        let metric_id = t.metric_id(metric);
        let verdict = if limits.max_series > 0 && t.series.len() - own >= limits.max_series {
            Admit::OverTenantLimit
        } else if limits.max_series_per_metric > 0
            && t.metric_count(metric_id) - own >= limits.max_series_per_metric
        {
            Admit::OverMetricLimit
        } else {
            Admit::New
        };
        if verdict == Admit::New || dry_run {
            if stale {
                let entry = t.series.get_mut(&hash).expect("stale entry present");
                entry.last_seen = now;
            } else {
                t.insert(hash, metric, now);
            }
        } else if stale {
            t.remove(hash);
        }
        verdict
    }

    /// Forgets series not seen within the window. Cheap enough to call per request batch: it
    /// sweeps at most once per second, and only tenants whose oldest series may have expired.
    pub fn expire(&self, now: Instant) {
        let now = self.secs(now);
        let next = self.next_sweep.load(Ordering::Relaxed);
        if now < next {
            return;
        }
        if self
            .next_sweep
            .compare_exchange(
                next,
                now.saturating_add(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return; // another thread sweeps this second
        }
        let tenants = super::tenant_entries(&self.tenants);
        let mut empty = Vec::new();
        for (name, tenant) in tenants {
            let mut t = tenant.lock().unwrap_or_else(PoisonError::into_inner);
            t.sweep(now, self.window);
            if t.series.is_empty() {
                empty.push(name);
            }
        }
        if !empty.is_empty() {
            let mut map = self.tenants.write().unwrap_or_else(PoisonError::into_inner);
            for name in empty {
                // Still empty (and nobody holds it between our check and now)?
                let gone = map.get(&name).is_some_and(|t| {
                    Arc::strong_count(t) == 1
                        && t.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .series
                            .is_empty()
                });
                if gone {
                    map.remove(&name);
                }
            }
        }
    }

    /// Active series of a tenant (as of the last [`expire`](Self::expire)): total and per
    /// metric.
    pub fn active(&self, tenant: &str) -> (usize, BTreeMap<String, usize>) {
        let Some(t) = self
            .tenants
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tenant)
            .cloned()
        else {
            return (0, BTreeMap::new());
        };
        let t = t.lock().unwrap_or_else(PoisonError::into_inner);
        let per_metric = t
            .metrics
            .iter()
            .filter(|m| m.active > 0)
            .map(|m| (m.name.to_string(), m.active))
            .collect();
        (t.series.len(), per_metric)
    }

    /// Bytes the tracker's tables take on the heap: per tenant its series map (buckets of key,
    /// entry and control byte, at the map's capacity, not its length) and its interned metric
    /// names. What `cargo xtask bench` reports per active series.
    pub fn heap_bytes(&self) -> usize {
        let tenants = self.tenants.read().unwrap_or_else(PoisonError::into_inner);
        let slot = size_of::<(u64, Entry)>() + 1;
        tenants
            .iter()
            .map(|(name, t)| {
                let t = t.lock().unwrap_or_else(PoisonError::into_inner);
                // hashbrown keeps at most 7/8 of its buckets full; buckets are a power of two.
                let buckets = if t.series.capacity() == 0 {
                    0
                } else {
                    (t.series.capacity() * 8 / 7).next_power_of_two()
                };
                let names: usize = t.metrics.iter().map(|m| m.name.len() * 2 + 40).sum();
                name.len() + buckets * slot + names
            })
            .sum()
    }

    /// Tenants with tracked series, sorted.
    pub fn tenants(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .tenants
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests;
