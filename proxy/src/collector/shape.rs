//! Shaping collected series for a tenant's targets, series by series as they are read, in the
//! order Prometheus applies them to a scrape: `metricRelabelings`, then `extraLabels` (with
//! `honorLabels`), then staleness markers for series that were written last cycle and are gone.
//!
//! Memory does not hold the window: a [`Cycle`] keeps one [`Batch`] of shaped series (handed
//! out when `batch_size` is reached; labels already encoded) and, per series of the window,
//! 64-bit hashes only: the shaped
//! series written this cycle (with their newest timestamp) and, when several policy clauses are
//! read, the raw series already seen for an earlier clause. Between cycles the [`Shaper`] keeps
//! the previous cycle's shaped hashes; the labels a staleness marker needs are read again from
//! the source (see `docs/collector.md`, "Staleness by hash").

use std::collections::BTreeMap;

use nohash_hasher::IntMap;

use super::stream::RawSeries;
use crate::relabel::{CowLabel, RelabelProgram};
use crate::remote_write::wire::{LabelPair, cmp_short, encode_label, labels_hash as series_hash};
use crate::remote_write::{Label, Sample};

mod batch;
pub use batch::Batch;
use batch::BatchSeries;

/// Prometheus' staleness marker: a NaN with this exact bit pattern.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// A series whose newest sample is older than this before the marker's time is not marked: the
/// target's queries already stop showing it after Prometheus' default lookback of 5 minutes.
pub const STALENESS_LOOKBACK_MS: i64 = 5 * 60 * 1000;

pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Counts of one cycle.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ShapeStats {
    pub series_in: usize,
    pub samples_in: usize,
    /// The same series answered again for another (overlapping) policy clause: skipped.
    pub series_duplicate: usize,
    /// Dropped by a `keep`/`drop` rule (or left without a metric name).
    pub series_dropped: usize,
    /// Series that relabeling made identical to another, merged into it.
    pub series_merged: usize,
    /// Samples of a merged series that were not newer than what was already written for it in
    /// an earlier batch (the target would refuse them as out of order).
    pub samples_merged_away: usize,
    pub stale_markers: usize,
    pub series_out: usize,
    pub samples_out: usize,
}

/// The per-CR shaping state: the compiled rules and the hashes of the series written last cycle.
#[derive(Debug)]
pub struct Shaper {
    program: RelabelProgram,
    extra_labels: Vec<(String, String)>,
    honor_labels: bool,
    /// Shaped-series hash and newest sample time written, for every series of the last cycle,
    /// and for series that vanished but whose marker could not be written yet.
    previous: Vec<(u64, i64)>,
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
            previous: Vec::new(),
        }
    }

    /// Relabel `labels` (sorted by name), add the extra labels and append the result, encoded
    /// as remote write does (its hash is `xxh3` of those bytes, see `labels_hash`), to `out`;
    /// false, with nothing appended, when the series is dropped. Labels no rule writes stay
    /// borrowed from the source's series until they are encoded.
    fn shape_into(&self, mut labels: Vec<CowLabel<'_>>, out: &mut Vec<u8>) -> bool {
        if !self.program.apply(&mut labels) || !has_name(&labels) {
            return false;
        }
        self.encode_with_extra_labels(&labels, out);
        true
    }

    /// Encode `labels` (sorted by name) merged with the extra labels, in name order.
    fn encode_with_extra_labels<L: LabelPair>(&self, labels: &[L], out: &mut Vec<u8>) {
        // Short label names compare inline (see `cmp_short`).
        let cmp = |a: &str, b: &str| cmp_short(a.as_bytes(), b.as_bytes());
        let collected = |name: &str| labels.binary_search_by(|l| cmp(l.name(), name)).is_ok();
        if !self.honor_labels && self.extra_labels.iter().any(|(name, _)| collected(name)) {
            // Rare: a collected label the extra one replaces moves to `exported_<name>`.
            let mut owned: Vec<Label> = labels
                .iter()
                .map(|l| Label {
                    name: l.name().to_owned(),
                    value: l.value().to_owned(),
                })
                .collect();
            self.add_extra_labels(&mut owned);
            for l in &owned {
                encode_label(out, &l.name, &l.value);
            }
            return;
        }
        let mut extra = self.extra_labels.iter().peekable();
        for l in labels {
            while let Some((name, value)) = extra.next_if(|(name, _)| cmp(name, l.name()).is_lt()) {
                encode_label(out, name, value);
            }
            // With honorLabels the collected label wins (without, it collided above).
            extra.next_if(|(name, _)| cmp(name, l.name()).is_eq());
            encode_label(out, l.name(), l.value());
        }
        for (name, value) in extra {
            encode_label(out, name, value);
        }
    }

    /// Start shaping a window ending at `window_end_ms` (which stamps the staleness markers),
    /// read with `queries` queries, handing out batches of `batch_size` series.
    pub fn begin(&self, window_end_ms: i64, queries: usize, batch_size: usize) -> Cycle {
        Cycle {
            window_end_ms,
            batch_size: batch_size.max(1),
            dedup_queries: queries > 1,
            current: IntMap::with_capacity_and_hasher(self.previous.len(), Default::default()),
            raw_seen: IntMap::default(),
            last_raw: None,
            batch: Batch::with_capacity(batch_size.clamp(1, 1024), 0),
            spare: None,
            hashes: Vec::new(),
            in_batch: IntMap::default(),
            stats: ShapeStats::default(),
        }
    }

    /// The series written before and not in `current`, newest sample within the lookback of
    /// the marker time: they need a staleness marker.
    pub fn vanished(&self, current: &Written) -> Vanished {
        let since = current.window_end_ms - STALENESS_LOOKBACK_MS;
        Vanished {
            window_end_ms: current.window_end_ms,
            series: self
                .previous
                .iter()
                .filter(|(hash, newest)| *newest >= since && !current.series.contains_key(hash))
                .copied()
                .collect(),
            markers: Batch::default(),
            batch_size: current.batch_size,
            written: 0,
        }
    }

    /// The cycle's series become the previous ones; `unmarked` (vanished series whose marker
    /// could not be written, because reading them again failed) stay for the next cycle.
    pub fn commit(&mut self, current: Written, unmarked: Option<Vanished>) {
        // Free the old list first: the peak is then the cycle's map and the new list.
        self.previous = Vec::new();
        let mut previous: Vec<(u64, i64)> = current.series.into_iter().collect();
        if let Some(v) = unmarked {
            previous.extend(v.series);
        }
        previous.shrink_to_fit();
        self.previous = previous;
    }

    /// Series remembered from the last cycle (and vanished ones still waiting for a marker).
    pub fn remembered(&self) -> usize {
        self.previous.len()
    }

    /// Like a scrape's target labels: with `honorLabels` a collected label wins; without, the
    /// collected one moves to `exported_<name>` (repeatedly, as Prometheus does, if that is taken
    /// too) and the extra label is set.
    fn add_extra_labels(&self, labels: &mut Vec<Label>) {
        for (name, value) in &self.extra_labels {
            match labels.binary_search_by(|l| l.name.as_str().cmp(name)) {
                Ok(_) if self.honor_labels => {}
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

/// One window being shaped.
#[derive(Debug)]
pub struct Cycle {
    window_end_ms: i64,
    batch_size: usize,
    dedup_queries: bool,
    /// Shaped-series hash → newest sample time written in an earlier batch of this cycle
    /// (`i64::MIN` while it is only in the open batch).
    current: IntMap<u64, i64>,
    /// Raw-series hash → the query that returned it first (only with several queries).
    raw_seen: IntMap<u64, u32>,
    /// The last raw series (query, hash): the next frame of a long series continues it.
    last_raw: Option<(usize, u64)>,
    batch: Batch,
    /// A batch handed back by [`Cycle::recycle`]: the next one reuses its buffers.
    spare: Option<Batch>,
    /// The shaped-series hash of each series in `batch`.
    hashes: Vec<u64>,
    /// Shaped-series hash → index in `batch`.
    in_batch: IntMap<u64, usize>,
    pub stats: ShapeStats,
}

/// What a finished cycle wrote: the input of [`Shaper::vanished`] and [`Shaper::commit`].
#[derive(Debug)]
pub struct Written {
    window_end_ms: i64,
    batch_size: usize,
    series: IntMap<u64, i64>,
}

impl Cycle {
    /// Shape one series; returns a batch once `batch_size` series are waiting.
    pub fn push(&mut self, shaper: &Shaper, series: RawSeries) -> Option<Batch> {
        let RawSeries {
            query,
            labels,
            mut samples,
        } = series;
        let labels = labels.sorted_cow();
        let raw = series_hash(&labels);
        let continues = self.last_raw == Some((query, raw));
        self.last_raw = Some((query, raw));
        if !continues && self.dedup_queries {
            let query = u32::try_from(query).unwrap_or(u32::MAX);
            match self.raw_seen.get(&raw) {
                Some(first) if *first != query => {
                    self.stats.series_duplicate += 1;
                    return None;
                }
                Some(_) => {}
                None => {
                    self.raw_seen.insert(raw, query);
                }
            }
        }
        if !continues {
            self.stats.series_in += 1;
        }
        self.stats.samples_in += samples.len();
        if samples.is_empty() {
            return None;
        }
        let start = self.batch.labels.len();
        if !shaper.shape_into(labels, &mut self.batch.labels) {
            if !continues {
                self.stats.series_dropped += 1;
            }
            return None;
        }
        let hash = xxhash_rust::xxh3::xxh3_64(&self.batch.labels[start..]);
        if let Some(&at) = self.in_batch.get(&hash) {
            self.batch.labels.truncate(start);
            if !continues {
                self.stats.series_merged += 1;
            }
            self.batch.series[at].samples.append(&mut samples);
            return None;
        }
        match self.current.get(&hash) {
            Some(&newest) => {
                // Written in an earlier batch: only what is newer can follow it.
                if !continues {
                    self.stats.series_merged += 1;
                }
                let before = samples.len();
                samples.retain(|s| s.timestamp > newest);
                self.stats.samples_merged_away += before - samples.len();
                if samples.is_empty() {
                    self.batch.labels.truncate(start);
                    return None;
                }
            }
            None => {
                self.current.insert(hash, i64::MIN);
            }
        }
        self.in_batch.insert(hash, self.batch.len());
        self.hashes.push(hash);
        self.batch.series.push(BatchSeries {
            labels: start..self.batch.labels.len(),
            samples,
        });
        (self.batch.len() >= self.batch_size).then(|| self.take_batch())
    }

    /// The series waiting in the open batch: samples sorted by time, the first of equal
    /// timestamps kept (a receiver would refuse the second).
    pub fn take_batch(&mut self) -> Batch {
        self.in_batch.clear();
        let next = self.spare.take().unwrap_or_else(|| {
            // The next batch is likely the size of this one.
            Batch::with_capacity(self.batch.len(), self.batch.labels.len())
        });
        let mut batch = std::mem::replace(&mut self.batch, next);
        for (series, hash) in batch.series.iter_mut().zip(self.hashes.drain(..)) {
            if !series.samples.is_sorted_by_key(|s| s.timestamp) {
                series.samples.sort_by_key(|s| s.timestamp);
            }
            series.samples.dedup_by_key(|s| s.timestamp);
            if let Some(last) = series.samples.last()
                && let Some(newest) = self.current.get_mut(&hash)
            {
                *newest = (*newest).max(last.timestamp);
            }
            self.stats.samples_out += series.samples.len();
        }
        batch
    }

    /// Hand back a batch that was sent: the next batch reuses its buffers (a fresh buffer of
    /// a batch's labels, about 150 KiB, was new pages to fault in for every batch).
    pub fn recycle(&mut self, mut batch: Batch) {
        batch.clear();
        self.spare = Some(batch);
    }

    /// End of the window: the last batch, and what the cycle wrote.
    pub fn finish(mut self) -> (Batch, Written, ShapeStats) {
        let last = self.take_batch();
        self.stats.series_out = self.current.len();
        let written = Written {
            window_end_ms: self.window_end_ms,
            batch_size: self.batch_size,
            series: self.current,
        };
        (last, written, self.stats)
    }
}

/// Series that vanished since the last cycle: their markers are written as the source's
/// series are read again and shaped to the same hash.
#[derive(Debug)]
pub struct Vanished {
    window_end_ms: i64,
    /// Shaped-series hash and its newest sample time.
    series: IntMap<u64, i64>,
    markers: Batch,
    batch_size: usize,
    written: usize,
}

impl Vanished {
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// The oldest newest-sample among them: reading from there finds every one.
    pub fn oldest_ms(&self) -> Option<i64> {
        self.series.values().min().copied()
    }

    /// A series read again: if it shapes to a vanished hash, its marker (once); returns a
    /// batch of markers when `batch_size` are waiting.
    pub fn push(&mut self, shaper: &Shaper, series: RawSeries) -> Option<Batch> {
        let start = self.markers.labels.len();
        if !shaper.shape_into(series.labels.sorted_cow(), &mut self.markers.labels) {
            return None;
        }
        let hash = xxhash_rust::xxh3::xxh3_64(&self.markers.labels[start..]);
        if self.series.remove(&hash).is_none() {
            self.markers.labels.truncate(start);
            return None;
        }
        self.written += 1;
        self.markers.series.push(BatchSeries {
            labels: start..self.markers.labels.len(),
            samples: vec![Sample {
                value: stale_nan(),
                timestamp: self.window_end_ms,
            }],
        });
        (self.markers.len() >= self.batch_size).then(|| std::mem::take(&mut self.markers))
    }

    /// The markers still waiting.
    pub fn take_markers(&mut self) -> Batch {
        std::mem::take(&mut self.markers)
    }

    /// Markers produced so far.
    pub fn written(&self) -> usize {
        self.written
    }
}

fn has_name<L: LabelPair>(labels: &[L]) -> bool {
    labels
        .iter()
        .any(|l| l.name() == "__name__" && !l.value().is_empty())
}

fn insert_sorted(labels: &mut Vec<Label>, name: String, value: String) {
    let at = labels.partition_point(|l| l.name < name);
    labels.insert(at, Label { name, value });
}

#[cfg(test)]
mod tests;
