//! Which metrics are used (DESIGN §6): queried through the proxy's read path recently, or
//! referenced by a Prometheus rule file or a Grafana dashboard the operator names. The
//! pipeline asks [`Usage::is_unused`] per series to drop (or only report) the rest.
//!
//! - [`UsedNames`]: the metric names (and `__name__` regexes) an expression reads;
//! - [`load_static`]: the names of every expression of the rule files and dashboards;
//! - [`QueryStats`]: per tenant and metric, how often and when it was last queried;
//! - [`Usage`]: the verdict, from both, after an observation period.
//!
//! Everything errs on the side of "used": a metric is only called unused when the gateway
//! knows enough to say so (it has observed for `unused_after`, the stats were not full).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

mod names;
mod sources;
mod stats;
mod variables;

pub use names::{UsedNames, names_in_query};
pub use sources::load_static;
pub use stats::{
    MAX_METRICS_PER_TENANT, MAX_PATTERNS_PER_TENANT, MAX_TENANTS, QueryStat, QueryStats,
};

#[cfg(test)]
use variables::{Fill, substitute_variables};

#[cfg(test)]
mod tests;

/// The verdict used by the pipeline: query stats, the static set from rule files and
/// dashboards (swapped on reload), and the observation period.
#[derive(Debug)]
pub struct Usage {
    stats: QueryStats,
    static_used: ArcSwap<UsedNames>,
    started: SystemTime,
    unused_after: Duration,
}

impl Usage {
    pub fn new(unused_after: Duration, started: SystemTime) -> Self {
        Self {
            stats: QueryStats::with_retention(unused_after),
            static_used: ArcSwap::from_pointee(UsedNames::default()),
            started,
            unused_after,
        }
    }

    pub fn stats(&self) -> &QueryStats {
        &self.stats
    }

    /// Replaces the names from rule files and dashboards (at start and on reload).
    pub fn set_static(&self, used: UsedNames) {
        self.static_used.store(Arc::new(used));
    }

    /// The current static set.
    pub fn static_names(&self) -> Arc<UsedNames> {
        self.static_used.load_full()
    }

    /// Unused: not in the static set, not matched by a static pattern, not queried by this
    /// tenant (by name or a pattern) within `unused_after`. False while the gateway has run
    /// for less than `unused_after` (nothing is called unused before there was time to
    /// observe it), and for metrics the tenant's stats had no room to record lately.
    pub fn is_unused(&self, tenant: &str, metric: &str, now: SystemTime) -> bool {
        let observed = now.duration_since(self.started).unwrap_or_default();
        if observed < self.unused_after {
            return false;
        }
        if self.static_used.load().matches(metric) {
            return false;
        }
        let recent = self.stats.last_used(tenant, metric).is_some_and(|last| {
            // A last use in the future (clock stepped back) is recent.
            now.duration_since(last)
                .map_or(true, |d| d < self.unused_after)
        });
        !recent && !self.stats.overflowed(tenant, now)
    }
}
