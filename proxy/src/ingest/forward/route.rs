//! Which shard (delivery queue) of a destination each series of a request goes to.
//!
//! Every sample of a series must reach storage in order, and each shard sends one request at a
//! time, oldest first: a series must never be queued in two shards at once. It may move between
//! shards once it is queued nowhere. So a request goes **whole** to one shard, as the bytes it
//! came as when nothing changed it, unless its series are already queued in two or more shards;
//! only then is it split, each series to the shard that holds it (the others by their hash).
//! A remote-write sender's consecutive requests carry the same series (one sender shard's
//! batch after batch), so they keep going whole to the same queue, and a shard that is free
//! takes the next sender's requests.
//!
//! [`Affinity`] remembers, per series hash, the shard and the sequence number of the last
//! request that carries it; the series is queued while that request is (sequence numbers are
//! completed in order: see `Delivery::oldest_queued`). Entries of delivered requests are
//! pruned when the map doubles.

use std::collections::HashMap;

use super::BuildNoHash;

/// Where a request's series go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Every series to this shard.
    Whole(usize),
    /// Series `i` to shard `shards[i]`.
    Split(Vec<usize>),
}

impl Plan {
    pub fn shard_of(&self, i: usize) -> usize {
        match self {
            Plan::Whole(s) => *s,
            Plan::Split(v) => v[i],
        }
    }
}

/// Smallest map size at which delivered entries are pruned: small, so that a gateway whose
/// queues keep up looks its series up in a map that stays in the cache.
const PRUNE_FLOOR: usize = 1 << 13;

fn least_busy(depth: &[usize], shards: usize) -> usize {
    (0..shards)
        .min_by_key(|&s| depth.get(s).copied().unwrap_or(0))
        .unwrap_or(0)
}

/// Per destination: the shard and last request (sequence number) of every recently queued
/// series.
#[derive(Debug)]
pub struct Affinity {
    series: HashMap<u64, (u32, u64), BuildNoHash>,
    prune_at: usize,
}

impl Default for Affinity {
    fn default() -> Self {
        Affinity {
            series: HashMap::default(),
            prune_at: PRUNE_FLOOR,
        }
    }
}

impl Affinity {
    /// The plan for a request of series `hashes`. `oldest[s]` is shard `s`'s oldest queued
    /// sequence number, `depth[s]` its queue depth.
    pub fn plan(&self, hashes: &[u64], oldest: &[Option<u64>], depth: &[usize]) -> Plan {
        let shards = oldest.len();
        if shards <= 1 {
            return Plan::Whole(0);
        }
        if oldest.iter().all(Option::is_none) {
            // Nothing queued anywhere (a gateway that keeps up): no series to look up.
            return Plan::Whole(least_busy(depth, shards));
        }
        let queued_in = |h: &u64| -> Option<usize> {
            let &(shard, seq) = self.series.get(h)?;
            let shard = shard as usize;
            oldest
                .get(shard)
                .copied()
                .flatten()
                .is_some_and(|o| o <= seq)
                .then_some(shard)
        };
        let mut holder: Option<usize> = None;
        let mut split = false;
        for h in hashes {
            if let Some(s) = queued_in(h) {
                match holder {
                    None => holder = Some(s),
                    Some(t) if t != s => {
                        split = true;
                        break;
                    }
                    Some(_) => {}
                }
            }
        }
        if !split {
            // The shard that holds some of these series, else the least busy one.
            let shard = holder.unwrap_or_else(|| {
                (0..shards)
                    .min_by_key(|&s| depth.get(s).copied().unwrap_or(0))
                    .unwrap_or(0)
            });
            return Plan::Whole(shard);
        }
        Plan::Split(
            hashes
                .iter()
                .map(|h| queued_in(h).unwrap_or((h % shards as u64) as usize))
                .collect(),
        )
    }

    /// Record where the request went: series `i` (hash `hashes[i]`) in shard
    /// `plan.shard_of(i)`, whose request holding it has sequence number `last_seq[shard]`.
    pub fn record(
        &mut self,
        hashes: &[u64],
        plan: &Plan,
        last_seq: &[Option<u64>],
        oldest: impl Fn(usize) -> Option<u64>,
    ) {
        for (i, h) in hashes.iter().enumerate() {
            let shard = plan.shard_of(i);
            if let Some(Some(seq)) = last_seq.get(shard) {
                self.series.insert(*h, (shard as u32, *seq));
            }
        }
        if self.series.len() > self.prune_at {
            let oldest: Vec<Option<u64>> = (0..last_seq.len()).map(oldest).collect();
            self.series.retain(|_, (shard, seq)| {
                oldest
                    .get(*shard as usize)
                    .copied()
                    .flatten()
                    .is_some_and(|o| o <= *seq)
            });
            self.prune_at = (self.series.len() * 2).max(PRUNE_FLOOR);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.series.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_goes_whole_to_the_shard_that_holds_its_series() {
        let mut a = Affinity::default();
        // Nothing queued: the least busy shard.
        assert_eq!(a.plan(&[1, 2, 3], &[None, None], &[3, 1]), Plan::Whole(1));
        a.record(&[1, 2, 3], &Plan::Whole(1), &[None, Some(10)], |_| None);
        // Still queued in shard 1 (its oldest is 10): the next request with series 2 follows,
        // even if shard 0 is idle.
        assert_eq!(a.plan(&[2, 4], &[None, Some(10)], &[0, 5]), Plan::Whole(1));
        // Delivered (shard 1's oldest is past 10): free to go anywhere.
        assert_eq!(a.plan(&[2, 4], &[None, Some(11)], &[0, 5]), Plan::Whole(0));
    }

    #[test]
    fn series_queued_in_two_shards_split_the_request() {
        let mut a = Affinity::default();
        a.record(&[1], &Plan::Whole(0), &[Some(5), None], |_| None);
        a.record(&[2], &Plan::Whole(1), &[None, Some(7)], |_| None);
        let plan = a.plan(&[1, 2, 9, 10], &[Some(5), Some(7)], &[1, 1]);
        // Each queued series stays where it is; the others by their hash.
        assert_eq!(plan, Plan::Split(vec![0, 1, 1, 0]));
    }

    #[test]
    fn delivered_entries_are_pruned() {
        let mut a = Affinity::default();
        let hashes: Vec<u64> = (0..PRUNE_FLOOR as u64 + 10).collect();
        a.record(&hashes, &Plan::Whole(0), &[Some(1), None], |_| Some(1));
        // Everything still queued: nothing pruned.
        assert_eq!(a.len(), hashes.len());
        let more: Vec<u64> = (1_000_000..1_000_000 + PRUNE_FLOOR as u64 * 2).collect();
        a.record(&more, &Plan::Whole(1), &[None, Some(3)], |s| {
            // Shard 0 delivered everything up to 1; shard 1 holds 3.
            if s == 0 { Some(2) } else { Some(3) }
        });
        assert_eq!(a.len(), more.len());
    }

    #[test]
    fn one_shard_needs_no_bookkeeping() {
        let a = Affinity::default();
        assert_eq!(a.plan(&[1, 2], &[Some(0)], &[9]), Plan::Whole(0));
    }
}
