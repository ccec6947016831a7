//! Shaping collected series for a tenant's targets, in the order Prometheus applies them to a
//! scrape: `metricRelabelings`, then `extraLabels` (with `honorLabels`), then staleness markers
//! for series that were written last cycle and are gone now.

use std::collections::{BTreeMap, BTreeSet};

use crate::relabel::RelabelProgram;
use crate::remote_write::{Label, Sample, TimeSeries};

/// Prometheus' staleness marker: a NaN with this exact bit pattern.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Counts of one shaping pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ShapeStats {
    pub series_in: usize,
    pub samples_in: usize,
    /// Dropped by a `keep`/`drop` rule (or left without a metric name).
    pub series_dropped: usize,
    /// Series that relabeling made identical, merged into one.
    pub series_merged: usize,
    pub stale_markers: usize,
    pub series_out: usize,
    pub samples_out: usize,
}

/// The per-CR shaping state: the compiled rules and the series written last cycle.
#[derive(Debug)]
pub struct Shaper {
    program: RelabelProgram,
    extra_labels: Vec<(String, String)>,
    honor_labels: bool,
    previous: BTreeSet<Vec<Label>>,
}

impl Shaper {
    pub fn new(
        program: RelabelProgram,
        extra_labels: &BTreeMap<String, String>,
        honor_labels: bool,
    ) -> Shaper {
        Shaper {
            program,
            extra_labels: extra_labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            honor_labels,
            previous: BTreeSet::new(),
        }
    }

    /// Shape one window's series. `window_end_ms` stamps the staleness markers. The output is
    /// sorted by label set, labels sorted by name, samples by time without duplicate timestamps.
    pub fn shape(
        &mut self,
        input: Vec<TimeSeries>,
        window_end_ms: i64,
    ) -> (Vec<TimeSeries>, ShapeStats) {
        let mut stats = ShapeStats {
            series_in: input.len(),
            ..Default::default()
        };
        let mut out: BTreeMap<Vec<Label>, Vec<Sample>> = BTreeMap::new();
        for series in input {
            stats.samples_in += series.samples.len();
            let mut labels = series.labels;
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            if !self.program.apply(&mut labels) || !has_name(&labels) {
                stats.series_dropped += 1;
                continue;
            }
            self.add_extra_labels(&mut labels);
            match out.entry(labels) {
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(series.samples);
                }
                std::collections::btree_map::Entry::Occupied(mut e) => {
                    stats.series_merged += 1;
                    e.get_mut().extend(series.samples);
                }
            }
        }
        let current: BTreeSet<Vec<Label>> = out.keys().cloned().collect();
        for gone in self.previous.difference(&current) {
            stats.stale_markers += 1;
            out.insert(
                gone.clone(),
                vec![Sample {
                    value: stale_nan(),
                    timestamp: window_end_ms,
                }],
            );
        }
        self.previous = current;
        let series: Vec<TimeSeries> = out
            .into_iter()
            .filter_map(|(labels, mut samples)| {
                samples.sort_by_key(|s| s.timestamp);
                // The first of equal timestamps wins: a receiver would refuse the second.
                samples.dedup_by_key(|s| s.timestamp);
                (!samples.is_empty()).then(|| TimeSeries {
                    labels,
                    samples,
                    ..Default::default()
                })
            })
            .collect();
        stats.series_out = series.len();
        stats.samples_out = series.iter().map(|s| s.samples.len()).sum();
        (series, stats)
    }

    /// Like a scrape's target labels: with `honorLabels` a collected label wins; without, the
    /// collected one moves to `exported_<name>` (repeatedly, as Prometheus does, if that is taken
    /// too) and the extra label is set.
    fn add_extra_labels(&self, labels: &mut Vec<Label>) {
        for (name, value) in &self.extra_labels {
            match labels.binary_search_by(|l| l.name.as_str().cmp(name)) {
                Ok(i) if self.honor_labels => {
                    let _ = i;
                }
                Ok(i) => {
                    let collected = std::mem::replace(&mut labels[i].value, value.clone());
                    if !collected.is_empty() {
                        let mut exported = format!("exported_{name}");
                        while labels.iter().any(|l| l.name == exported) {
                            exported = format!("exported_{exported}");
                        }
                        insert_sorted(labels, exported, collected);
                    }
                }
                Err(_) => insert_sorted(labels, name.clone(), value.clone()),
            }
        }
    }
}

fn has_name(labels: &[Label]) -> bool {
    labels
        .iter()
        .any(|l| l.name == "__name__" && !l.value.is_empty())
}

fn insert_sorted(labels: &mut Vec<Label>, name: String, value: String) {
    let at = labels.partition_point(|l| l.name < name);
    labels.insert(at, Label { name, value });
}

#[cfg(test)]
mod tests;
