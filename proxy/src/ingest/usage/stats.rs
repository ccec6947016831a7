//! Query statistics ([`QueryStats`]): per tenant and metric (or `__name__` regex), how often
//! and when it was last queried through the read path; bounded, with overflow tracking.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use regex::Regex;
use serde::Serialize;

use super::names::{PatternMatcher, UsedNames};
use crate::time::rfc3339;

/// Exact metric names recorded per tenant; a query naming a new one beyond this is not
/// recorded (after stale entries were pruned) and the tenant counts as overflowed.
pub const MAX_METRICS_PER_TENANT: usize = 100_000;
/// `__name__` regexes recorded per tenant, same overflow rule.
pub const MAX_PATTERNS_PER_TENANT: usize = 1_000;
/// Tenants tracked; queries of further tenants are not recorded and overflow globally.
pub const MAX_TENANTS: usize = 10_000;
/// A full tenant map is pruned at most this often (pruning walks the whole map).
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// One row of [`QueryStats::snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueryStat {
    pub tenant: String,
    /// The metric name, or the anchored `__name__` regex when `pattern`.
    pub metric: String,
    pub pattern: bool,
    pub queries: u64,
    /// RFC 3339, UTC.
    pub last_queried: String,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    queries: u64,
    last: SystemTime,
}

impl Seen {
    fn bump(&mut self, now: SystemTime) {
        self.queries += 1;
        self.last = self.last.max(now);
    }
}

#[derive(Debug)]
struct TenantStats {
    metrics: HashMap<String, Seen>,
    /// Anchored patterns in insertion order; `matcher` is rebuilt lazily after an insert.
    patterns: Vec<(String, Seen)>,
    matcher: Option<PatternMatcher>,
    /// Last time a name or pattern could not be recorded (the maps were full): metrics not
    /// in the maps may have been queried since then.
    overflow: Option<SystemTime>,
    last_prune: Option<SystemTime>,
}

impl TenantStats {
    fn new() -> Self {
        Self {
            metrics: HashMap::new(),
            patterns: Vec::new(),
            matcher: None,
            overflow: None,
            last_prune: None,
        }
    }

    /// Drops entries last queried before `now - retention` (they count as unused anyway, so
    /// forgetting them changes no verdict), at most every [`PRUNE_EVERY`].
    fn prune(&mut self, now: SystemTime, retention: Duration) {
        if self
            .last_prune
            .is_some_and(|t| now.duration_since(t).unwrap_or_default() < PRUNE_EVERY)
        {
            return;
        }
        self.last_prune = Some(now);
        let Some(cutoff) = now.checked_sub(retention) else {
            return;
        };
        self.metrics.retain(|_, s| s.last >= cutoff);
        let before = self.patterns.len();
        self.patterns.retain(|(_, s)| s.last >= cutoff);
        if self.patterns.len() != before {
            self.matcher = None;
        }
    }

    fn note_overflow(&mut self, tenant: &str, now: SystemTime) {
        if self.overflow.is_none() {
            tracing::warn!(
                tenant,
                max_metrics = MAX_METRICS_PER_TENANT,
                max_patterns = MAX_PATTERNS_PER_TENANT,
                "usage stats full: queried metrics beyond the limit are not recorded, so \
                 no metric of this tenant outside the stats is called unused for a while"
            );
        }
        self.overflow = Some(self.overflow.map_or(now, |t| t.max(now)));
    }

    /// Latest time `metric` was queried by name or through a pattern.
    fn last_used(&mut self, metric: &str) -> Option<SystemTime> {
        let exact = self.metrics.get(metric).map(|s| s.last);
        if self.patterns.is_empty() {
            return exact;
        }
        let matcher = self.matcher.get_or_insert_with(|| {
            let texts: Vec<&str> = self.patterns.iter().map(|(p, _)| p.as_str()).collect();
            PatternMatcher::new(&texts)
        });
        let via_pattern = match matcher {
            PatternMatcher::Set(_) => matcher
                .matching(metric)
                .into_iter()
                .filter_map(|i| self.patterns.get(i).map(|(_, s)| s.last))
                .max(),
            // The set did not compile: match each pattern by its own text.
            PatternMatcher::Each(_) => self
                .patterns
                .iter()
                .filter(|(p, _)| Regex::new(p).is_ok_and(|r| r.is_match(metric)))
                .map(|(_, s)| s.last)
                .max(),
        };
        exact.max(via_pattern)
    }
}

/// Query statistics per tenant and metric: count and last time queried. Recording takes a
/// read lock on the tenant map and the tenant's own mutex; tenants don't contend.
///
/// Bounded: at most [`MAX_TENANTS`] tenants, [`MAX_METRICS_PER_TENANT`] names and
/// [`MAX_PATTERNS_PER_TENANT`] patterns each. A full tenant first forgets entries older than
/// the retention (they are unused whether remembered or not); what still does not fit is not
/// recorded, and the tenant is marked overflowed: for `retention` after the last refused
/// record, [`QueryStats::overflowed`] says so and [`Usage::is_unused`](super::Usage::is_unused) calls none of its
/// unrecorded metrics unused.
#[derive(Debug)]
pub struct QueryStats {
    tenants: RwLock<HashMap<String, Arc<Mutex<TenantStats>>>>,
    /// Last time a new tenant was refused ([`MAX_TENANTS`]).
    tenant_overflow: Mutex<Option<SystemTime>>,
    retention: Duration,
}

impl Default for QueryStats {
    fn default() -> Self {
        Self::new()
    }
}

impl QueryStats {
    /// Stats that keep entries for a day when full (see [`QueryStats::with_retention`]).
    pub fn new() -> Self {
        Self::with_retention(Duration::from_secs(24 * 3600))
    }

    /// `retention`: how long an entry is worth keeping when the maps are full, and how long
    /// an overflow makes unrecorded metrics count as used; [`Usage`](super::Usage) passes `unused_after`.
    pub fn with_retention(retention: Duration) -> Self {
        Self {
            tenants: RwLock::new(HashMap::new()),
            tenant_overflow: Mutex::new(None),
            retention,
        }
    }

    /// Records one query of `tenant` reading `names`: each exact name and each pattern
    /// counts one query at `now`.
    pub fn record(&self, tenant: &str, names: &UsedNames, now: SystemTime) {
        if names.is_empty() {
            return;
        }
        let Some(stats) = self.tenant(tenant, now) else {
            return;
        };
        let mut t = stats.lock().unwrap_or_else(PoisonError::into_inner);
        for name in &names.names {
            if let Some(s) = t.metrics.get_mut(name.as_str()) {
                s.bump(now);
                continue;
            }
            if t.metrics.len() >= MAX_METRICS_PER_TENANT {
                t.prune(now, self.retention);
            }
            if t.metrics.len() >= MAX_METRICS_PER_TENANT {
                t.note_overflow(tenant, now);
                continue;
            }
            t.metrics.insert(
                name.clone(),
                Seen {
                    queries: 1,
                    last: now,
                },
            );
        }
        for pattern in &names.patterns {
            if let Some((_, s)) = t.patterns.iter_mut().find(|(p, _)| p == pattern) {
                s.bump(now);
                continue;
            }
            if t.patterns.len() >= MAX_PATTERNS_PER_TENANT {
                t.prune(now, self.retention);
            }
            if t.patterns.len() >= MAX_PATTERNS_PER_TENANT {
                t.note_overflow(tenant, now);
                continue;
            }
            t.patterns.push((
                pattern.clone(),
                Seen {
                    queries: 1,
                    last: now,
                },
            ));
            t.matcher = None;
        }
    }

    fn tenant(&self, tenant: &str, now: SystemTime) -> Option<Arc<Mutex<TenantStats>>> {
        if let Some(t) = self.read_tenants().get(tenant) {
            return Some(Arc::clone(t));
        }
        let mut map = self.tenants.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = map.get(tenant) {
            return Some(Arc::clone(t));
        }
        if map.len() >= MAX_TENANTS {
            let mut o = self
                .tenant_overflow
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if o.is_none() {
                tracing::warn!(
                    max_tenants = MAX_TENANTS,
                    "usage stats: too many tenants, not recording new ones"
                );
            }
            *o = Some(o.map_or(now, |t| t.max(now)));
            return None;
        }
        let t = Arc::new(Mutex::new(TenantStats::new()));
        map.insert(tenant.to_owned(), Arc::clone(&t));
        Some(t)
    }

    fn read_tenants(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Mutex<TenantStats>>>> {
        self.tenants.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Latest time `tenant` queried `metric`, by name or through a recorded pattern.
    pub fn last_used(&self, tenant: &str, metric: &str) -> Option<SystemTime> {
        let stats = Arc::clone(self.read_tenants().get(tenant)?);
        let mut t = stats.lock().unwrap_or_else(PoisonError::into_inner);
        t.last_used(metric)
    }

    /// Whether queries of `tenant` went unrecorded within the retention before `now` (its
    /// maps or the tenant map were full): metrics it has no entry for may still be in use.
    pub fn overflowed(&self, tenant: &str, now: SystemTime) -> bool {
        let recent = |t: Option<SystemTime>| {
            t.is_some_and(|t| now.duration_since(t).map_or(true, |d| d < self.retention))
        };
        let tenant_stats = self.read_tenants().get(tenant).map(Arc::clone);
        match tenant_stats {
            Some(s) => recent(s.lock().unwrap_or_else(PoisonError::into_inner).overflow),
            None => recent(
                *self
                    .tenant_overflow
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            ),
        }
    }

    /// Every entry (of one tenant, or all), sorted by tenant, then names before patterns,
    /// then metric.
    pub fn snapshot(&self, tenant: Option<&str>) -> Vec<QueryStat> {
        let tenants: Vec<(String, Arc<Mutex<TenantStats>>)> = self
            .read_tenants()
            .iter()
            .filter(|(name, _)| tenant.is_none_or(|t| t == name.as_str()))
            .map(|(name, s)| (name.clone(), Arc::clone(s)))
            .collect();
        let mut out = Vec::new();
        for (name, stats) in tenants {
            let t = stats.lock().unwrap_or_else(PoisonError::into_inner);
            let row = |metric: &str, pattern: bool, s: &Seen| QueryStat {
                tenant: name.clone(),
                metric: metric.to_owned(),
                pattern,
                queries: s.queries,
                last_queried: rfc3339(s.last),
            };
            out.extend(t.metrics.iter().map(|(m, s)| row(m, false, s)));
            out.extend(t.patterns.iter().map(|(p, s)| row(p, true, s)));
        }
        out.sort_by(|a, b| {
            (&a.tenant, a.pattern, &a.metric).cmp(&(&b.tenant, b.pattern, &b.metric))
        });
        out
    }
}
