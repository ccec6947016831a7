//! A tenant's governance rules, compiled once per config load, applied to every series that
//! passed the limits, in this order: naming standards, relabel rules, label drops, cardinality
//! limits, unused metrics. In dry-run mode every rule is evaluated on a copy and what it would
//! drop is counted apart, but the series is forwarded unchanged.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use regex::Regex;

use super::analytics::Analytics;
use super::cardinality::{Admit, SeriesTracker, TenantEntry, series_hash};
use super::limits::{Refusal, metric_name};
use super::usage::Usage;
use crate::config::ingest::{
    CardinalityLimits, GovernanceConfig, NamingAction, TenantRules, UnusedAction,
};
use crate::relabel::{CowLabel, LabelSet, RelabelMemo, RelabelProgram};
use crate::remote_write::TimeSeries;
use crate::remote_write::wire::{LabelPair, LabelRef, eq_short};

/// What happens to one series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Dropped and counted under `reason`.
    Drop {
        reason: &'static str,
    },
    /// The request is answered 400 (the series is not forwarded).
    Reject(Refusal),
}

#[derive(Debug)]
struct Naming {
    name: Option<Regex>,
    required: Vec<String>,
    forbidden: Vec<String>,
    action: NamingAction,
}

/// One tenant's compiled rules.
#[derive(Debug)]
pub struct TenantPipeline {
    pub dry_run: bool,
    naming: Option<Naming>,
    relabel: RelabelProgram,
    label_drops: Vec<String>,
    cardinality: CardinalityLimits,
    unused: UnusedAction,
}

/// Every tenant's pipeline.
#[derive(Debug)]
pub struct Governance {
    default: Arc<TenantPipeline>,
    tenants: HashMap<String, Arc<TenantPipeline>>,
}

/// What a pipeline reads besides the series, for one request of one tenant. The tenant's
/// tracker entry is looked up once, and accepted samples are tallied per metric and recorded
/// in the analytics when the context is dropped: a request's series share few metric names,
/// so that is one lock and lookup per name instead of two per series.
pub struct Context<'a> {
    tenant: &'a str,
    tracked: TenantEntry,
    tracker: &'a SeriesTracker,
    analytics: &'a Analytics,
    usage: &'a Usage,
    now: Instant,
    wall: SystemTime,
    /// Relabel results by input, across the request's series.
    memo: RefCell<RelabelMemo>,
    /// Accepted samples of the metric of the last series (series come grouped by metric), then
    /// per metric.
    last_metric: RefCell<(String, u64)>,
    samples: RefCell<HashMap<String, u64, foldhash::fast::RandomState>>,
    /// Dropped series by metric, then (reason, dry run).
    drops: RefCell<HashMap<String, Vec<DropCount>>>,
}

/// Series dropped for a reason, in dry run or not.
type DropCount = (&'static str, bool, u64);

impl<'a> Context<'a> {
    pub fn new(
        tenant: &'a str,
        tracker: &'a SeriesTracker,
        analytics: &'a Analytics,
        usage: &'a Usage,
    ) -> Self {
        Context {
            tenant,
            tracked: tracker.entry(tenant),
            tracker,
            analytics,
            usage,
            now: Instant::now(),
            wall: SystemTime::now(),
            memo: RefCell::new(RelabelMemo::default()),
            last_metric: RefCell::new((String::new(), 0)),
            samples: RefCell::new(HashMap::default()),
            drops: RefCell::new(HashMap::new()),
        }
    }

    fn count_drop(&self, metric: &str, reason: &'static str, dry_run: bool) {
        let mut drops = self.drops.borrow_mut();
        let counts = match drops.get_mut(metric) {
            Some(c) => c,
            None => drops.entry(metric.to_owned()).or_default(),
        };
        match counts
            .iter_mut()
            .find(|(r, d, _)| *r == reason && *d == dry_run)
        {
            Some((_, _, n)) => *n += 1,
            None => counts.push((reason, dry_run, 1)),
        }
    }

    /// The tracker's admission of a request's series `(hash, metric)`, in order, at once (see
    /// [`SeriesTracker::admit_batch`]); not for dry-run pipelines.
    pub fn admit_batch<'m>(
        &self,
        series: impl IntoIterator<Item = (u64, &'m str)>,
        limits: &CardinalityLimits,
        out: &mut Vec<Admit>,
    ) {
        self.tracker
            .admit_batch(&self.tracked, series, limits, false, self.now, out);
    }

    fn count_samples(&self, metric: &str, samples: u64) {
        let mut last = self.last_metric.borrow_mut();
        if eq_short(last.0.as_bytes(), metric.as_bytes()) {
            last.1 += samples;
            return;
        }
        if last.1 > 0 {
            let mut tally = self.samples.borrow_mut();
            match tally.get_mut(last.0.as_str()) {
                Some(n) => *n += last.1,
                None => {
                    tally.insert(last.0.clone(), last.1);
                }
            }
        }
        // The name's buffer is reused: no allocation per change of metric.
        last.0.clear();
        last.0.push_str(metric);
        last.1 = samples;
    }
}

impl Drop for Context<'_> {
    fn drop(&mut self) {
        let (name, n) = std::mem::take(self.last_metric.get_mut());
        if n > 0 {
            *self.samples.get_mut().entry(name).or_default() += n;
        }
        for (metric, n) in self.samples.get_mut().drain() {
            self.analytics
                .record_samples(self.tenant, &metric, n, self.now);
        }
        for (metric, counts) in self.drops.get_mut().drain() {
            for (reason, dry_run, n) in counts {
                self.analytics
                    .record_drop(self.tenant, &metric, reason, n, dry_run);
            }
        }
    }
}

impl Governance {
    /// Compile every tenant's rules; errors name the key (the config validation ran the same
    /// compilers, so this only fails on a config that skipped it).
    pub fn compile(config: &GovernanceConfig) -> Result<Governance, Vec<String>> {
        let mut errors = Vec::new();
        let mut build = |at: String, rules: &TenantRules| match TenantPipeline::compile(&at, rules)
        {
            Ok(p) => Some(Arc::new(p)),
            Err(e) => {
                errors.extend(e);
                None
            }
        };
        let default = build("ingest.governance.default".into(), &config.default);
        let tenants: HashMap<String, Arc<TenantPipeline>> = config
            .tenants
            .iter()
            .filter_map(|(t, r)| {
                build(format!("ingest.governance.tenants.{t}"), r).map(|p| (t.clone(), p))
            })
            .collect();
        match default {
            Some(default) if errors.is_empty() => Ok(Governance { default, tenants }),
            _ => Err(errors),
        }
    }

    pub fn for_tenant(&self, tenant: &str) -> &TenantPipeline {
        self.tenants.get(tenant).unwrap_or(&self.default)
    }

    /// Tenants with their own rules: the only tenant values used as metric labels (senders
    /// choose tenant names, so others are counted together).
    pub fn has_rules(&self, tenant: &str) -> bool {
        self.tenants.contains_key(tenant)
    }
}

impl TenantPipeline {
    fn compile(at: &str, rules: &TenantRules) -> Result<TenantPipeline, Vec<String>> {
        let relabel = RelabelProgram::compile_at(&format!("{at}.relabel"), &rules.relabel)
            .map_err(|e| e.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        let naming = match &rules.naming {
            None => None,
            Some(n) => Some(Naming {
                name: match &n.metric_name_regex {
                    None => None,
                    Some(re) => Some(
                        Regex::new(&format!("^(?:{re})$"))
                            .map_err(|e| vec![format!("{at}.naming.metric_name_regex: {e}")])?,
                    ),
                },
                required: n.required_labels.clone(),
                forbidden: n.forbidden_labels.clone(),
                action: n.action,
            }),
        };
        Ok(TenantPipeline {
            dry_run: rules.dry_run,
            naming,
            relabel,
            label_drops: rules.label_drops.clone(),
            cardinality: rules.cardinality.clone(),
            unused: rules.unused_metrics,
        })
    }

    /// Whether a rule may change a series' labels (relabeling, label drops) or the series must
    /// be evaluated on a copy (dry run). Series of a pipeline that does none of these are
    /// forwarded as they came, see [`TenantPipeline::apply_unchanged`].
    pub fn rewrites(&self) -> bool {
        self.dry_run || !self.relabel.is_empty() || !self.label_drops.is_empty()
    }

    /// Apply the rules to one checked series (labels sorted, named). On `Keep` the series
    /// holds what to forward.
    pub fn apply(&self, tenant: &str, series: &mut TimeSeries, cx: &Context<'_>) -> Verdict {
        let samples = sample_count(series);
        if self.dry_run {
            let mut copy = series.labels.clone();
            let metric = metric_name(&series.labels).to_string();
            if let Verdict::Drop { reason } | Verdict::Reject(Refusal { reason, .. }) =
                self.run(tenant, &mut copy, cx)
            {
                cx.count_drop(&metric, reason, true);
            }
            cx.analytics
                .record_samples(tenant, &metric, samples, cx.now);
            return Verdict::Keep;
        }
        let verdict = self.run(tenant, &mut series.labels, cx);
        account(&verdict, metric_name(&series.labels), samples, cx);
        verdict
    }

    fn naming_verdict<L: LabelPair>(&self, labels: &[L]) -> Option<Verdict> {
        let n = self.naming.as_ref()?;
        let violation = n.check(labels)?;
        Some(match n.action {
            NamingAction::Drop => Verdict::Drop { reason: "naming" },
            NamingAction::Reject => Verdict::Reject(violation),
        })
    }

    fn run<P: LabelPair>(&self, tenant: &str, labels: &mut Vec<P>, cx: &Context<'_>) -> Verdict
    where
        Vec<P>: LabelSet,
    {
        self.run_with(tenant, labels, cx, series_hash)
    }

    /// The rules in order; `unchanged_hash` gives the hash of the labels as they came, used
    /// when no rule changed them.
    fn run_with<P: LabelPair>(
        &self,
        tenant: &str,
        labels: &mut Vec<P>,
        cx: &Context<'_>,
        unchanged_hash: impl FnOnce(&[P]) -> u64,
    ) -> Verdict
    where
        Vec<P>: LabelSet,
    {
        let before = labels.len();
        if let Err(v) = self.rules(labels, cx) {
            return v;
        }
        let hash = if labels.unchanged_since(before) {
            unchanged_hash(labels.as_slice())
        } else {
            series_hash(labels.as_slice())
        };
        self.judge(tenant, labels, hash, cx)
    }

    /// The rules that may rewrite a series, in order: naming standards, relabeling, label
    /// drops.
    fn rules<P: LabelPair>(&self, labels: &mut Vec<P>, cx: &Context<'_>) -> Result<(), Verdict>
    where
        Vec<P>: LabelSet,
    {
        if let Some(v) = self.naming_verdict(labels) {
            return Err(v);
        }
        if !self.relabel.is_empty() && !self.relabel.apply_with(labels, &mut cx.memo.borrow_mut()) {
            return Err(Verdict::Drop { reason: "relabel" });
        }
        if !self.label_drops.is_empty() {
            labels.retain_labels(|name, _| {
                name == "__name__" || !self.label_drops.iter().any(|d| d == name)
            });
        }
        Ok(())
    }

    /// The rewriting rules (naming, relabeling, label drops) on a checked series whose labels
    /// are borrowed from the request, in `cow` (a buffer the caller keeps across series; not
    /// for dry-run pipelines). Labels are copied only where a rule writes. `Ok(true)` when a
    /// rule changed them (`cow` holds the labels to forward), `Ok(false)` when the series goes
    /// on as it came, `Err` with the verdict (counted) when a rule drops or rejects it. The
    /// cardinality and unused-metric rules come after, for the whole request at once
    /// ([`TenantPipeline::after_admission`]).
    pub fn rewrite_borrowed<'a>(
        &self,
        labels: &[LabelRef<'a>],
        samples: u64,
        cx: &Context<'_>,
        cow: &mut Vec<CowLabel<'a>>,
    ) -> Result<bool, Verdict> {
        debug_assert!(!self.dry_run);
        cow.clear();
        cow.extend(labels.iter().map(|l| CowLabel::borrowed(l.name, l.value)));
        if let Err(v) = self.rules(cow, cx) {
            account(&v, metric_name(cow.as_slice()), samples, cx);
            return Err(v);
        }
        Ok(!cow.unchanged_since(labels.len()))
    }

    /// The naming standards alone (a pipeline that does not rewrite), counted when they drop
    /// or reject.
    pub fn naming(
        &self,
        labels: &[LabelRef<'_>],
        samples: u64,
        cx: &Context<'_>,
    ) -> Option<Verdict> {
        let v = self.naming_verdict(labels)?;
        account(&v, metric_name(labels), samples, cx);
        Some(v)
    }

    /// Count a verdict reached outside the pipeline's own steps (accepted samples, or a drop).
    pub fn count(&self, verdict: &Verdict, metric: &str, samples: u64, cx: &Context<'_>) {
        account(verdict, metric, samples, cx);
    }

    /// The cardinality limits the tracker applies ([`SeriesTracker::admit_batch`]).
    pub fn cardinality(&self) -> &CardinalityLimits {
        &self.cardinality
    }

    /// The verdict on a series the rewriting rules kept, given the tracker's admission of it
    /// (`metric` non-empty): cardinality, then unused metrics; counted.
    pub fn after_admission(
        &self,
        tenant: &str,
        metric: &str,
        admit: Admit,
        samples: u64,
        cx: &Context<'_>,
    ) -> Verdict {
        let v = self.admitted(tenant, metric, admit, cx);
        account(&v, metric, samples, cx);
        v
    }

    /// The rules after the rewriting ones: a name left, cardinality limits, unused metrics.
    fn judge<L: LabelPair>(
        &self,
        tenant: &str,
        labels: &[L],
        hash: u64,
        cx: &Context<'_>,
    ) -> Verdict {
        let metric = metric_name(labels);
        if metric.is_empty() {
            return Verdict::Drop {
                reason: "relabel_removed_name",
            };
        }
        // Every series is tracked (active series feed the analytics); limits of 0 admit all.
        debug_assert_eq!(tenant, cx.tenant);
        let admit = cx.tracker.admit_entry(
            &cx.tracked,
            metric,
            hash,
            &self.cardinality,
            self.dry_run,
            cx.now,
        );
        self.admitted(tenant, metric, admit, cx)
    }

    /// The rules that follow the tracker's admission: cardinality, unused metrics.
    fn admitted(&self, tenant: &str, metric: &str, admit: Admit, cx: &Context<'_>) -> Verdict {
        match admit {
            Admit::Existing | Admit::New => {}
            Admit::OverTenantLimit => {
                return Verdict::Drop {
                    reason: "cardinality_tenant",
                };
            }
            Admit::OverMetricLimit => {
                return Verdict::Drop {
                    reason: "cardinality_metric",
                };
            }
        }
        match self.unused {
            UnusedAction::Off => {}
            UnusedAction::Report => {
                if cx.usage.is_unused(tenant, metric, cx.wall) {
                    cx.count_drop(metric, "unused", true);
                }
            }
            UnusedAction::Drop => {
                if cx.usage.is_unused(tenant, metric, cx.wall) {
                    return Verdict::Drop { reason: "unused" };
                }
            }
        }
        Verdict::Keep
    }
}

/// Samples kept, or the series dropped, in the tenant's analytics.
fn account(verdict: &Verdict, metric: &str, samples: u64, cx: &Context<'_>) {
    match verdict {
        Verdict::Keep => cx.count_samples(metric, samples),
        Verdict::Drop { reason } | Verdict::Reject(Refusal { reason, .. }) => {
            cx.count_drop(metric, reason, false);
        }
    }
}

impl Naming {
    fn check<L: LabelPair>(&self, labels: &[L]) -> Option<Refusal> {
        let metric = metric_name(labels);
        if let Some(re) = &self.name
            && !re.is_match(metric)
        {
            return Some(Refusal {
                reason: "naming",
                message: format!(
                    "metric name {metric:?} does not follow the naming standard ^(?:{})$",
                    re.as_str()
                        .trim_start_matches("^(?:")
                        .trim_end_matches(")$")
                ),
            });
        }
        let has = |name: &str| {
            labels
                .iter()
                .any(|l| l.name() == name && !l.value().is_empty())
        };
        if let Some(missing) = self.required.iter().find(|r| !has(r)) {
            return Some(Refusal {
                reason: "naming",
                message: format!("{metric} lacks the required label {missing:?}"),
            });
        }
        if let Some(forbidden) = self.forbidden.iter().find(|f| has(f)) {
            return Some(Refusal {
                reason: "naming",
                message: format!("{metric} carries the forbidden label {forbidden:?}"),
            });
        }
        None
    }
}

fn sample_count(series: &TimeSeries) -> u64 {
    (series.samples.len() + series.histograms.len()) as u64
}

#[cfg(test)]
mod tests;
