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
    /// Requests recorded but not yet entered in `series`: a request delivered before the next
    /// one is planned (a gateway whose queues keep up) never is.
    recent: Vec<(u32, u64, Vec<u64>)>,
    prune_at: usize,
}

impl Default for Affinity {
    fn default() -> Self {
        Affinity {
            series: HashMap::default(),
            recent: Vec::new(),
            prune_at: PRUNE_FLOOR,
        }
    }
}

fn queued(oldest: &[Option<u64>], shard: u32, seq: u64) -> bool {
    oldest
        .get(shard as usize)
        .copied()
        .flatten()
        .is_some_and(|o| o <= seq)
}

impl Affinity {
    /// The plan for a request of series `hashes`. `oldest[s]` is shard `s`'s oldest queued
    /// sequence number, `depth[s]` its queue depth.
    pub fn plan(&mut self, hashes: &[u64], oldest: &[Option<u64>], depth: &[usize]) -> Plan {
        let shards = oldest.len();
        if shards <= 1 {
            return Plan::Whole(0);
        }
        // Recent requests still queued become entries; the delivered ones are forgotten.
        for (shard, seq, recent) in std::mem::take(&mut self.recent) {
            if queued(oldest, shard, seq) {
                for h in recent {
                    self.series.insert(h, (shard, seq));
                }
            }
        }
        self.prune(|s| oldest.get(s).copied().flatten());
        if oldest.iter().all(Option::is_none) {
            // Nothing queued anywhere (a gateway that keeps up): no series to look up.
            return Plan::Whole(least_busy(depth, shards));
        }
        let queued_in = |h: &u64| -> Option<usize> {
            let &(shard, seq) = self.series.get(h)?;
            queued(oldest, shard, seq).then_some(shard as usize)
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
            return Plan::Whole(holder.unwrap_or_else(|| least_busy(depth, shards)));
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
    pub fn record(&mut self, hashes: Vec<u64>, plan: &Plan, last_seq: &[Option<u64>]) {
        match plan {
            Plan::Whole(shard) => {
                if let Some(Some(seq)) = last_seq.get(*shard) {
                    self.recent.push((*shard as u32, *seq, hashes));
                }
            }
            Plan::Split(_) => {
                for (i, h) in hashes.iter().enumerate() {
                    let shard = plan.shard_of(i);
                    if let Some(Some(seq)) = last_seq.get(shard) {
                        self.series.insert(*h, (shard as u32, *seq));
                    }
                }
            }
        }
    }

    /// Forget the entries of delivered requests once the map has doubled.
    fn prune(&mut self, oldest: impl Fn(usize) -> Option<u64>) {
        if self.series.len() <= self.prune_at {
            return;
        }
        self.series
            .retain(|_, (shard, seq)| oldest(*shard as usize).is_some_and(|o| o <= *seq));
        self.prune_at = (self.series.len() * 2).max(PRUNE_FLOOR);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.series.len() + self.recent.iter().map(|r| r.2.len()).sum::<usize>()
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
        a.record(vec![1, 2, 3], &Plan::Whole(1), &[None, Some(10)]);
        // Still queued in shard 1 (its oldest is 10): the next request with series 2 follows,
        // even if shard 0 is idle.
        assert_eq!(a.plan(&[2, 4], &[None, Some(10)], &[0, 5]), Plan::Whole(1));
        // Delivered (shard 1's oldest is past 10): free to go anywhere.
        assert_eq!(a.plan(&[2, 4], &[None, Some(11)], &[0, 5]), Plan::Whole(0));
    }

    #[test]
    fn series_queued_in_two_shards_split_the_request() {
        let mut a = Affinity::default();
        a.record(vec![1], &Plan::Whole(0), &[Some(5), None]);
        a.record(vec![2], &Plan::Whole(1), &[None, Some(7)]);
        let plan = a.plan(&[1, 2, 9, 10], &[Some(5), Some(7)], &[1, 1]);
        // Each queued series stays where it is; the others by their hash.
        assert_eq!(plan, Plan::Split(vec![0, 1, 1, 0]));
        // Where a split request went is recorded per series.
        a.record(vec![1, 2, 9, 10], &plan, &[Some(8), Some(9)]);
        assert_eq!(
            a.plan(&[9], &[Some(5), Some(7)], &[0, 0]),
            Plan::Whole(1),
            "series 9 waits in shard 1"
        );
    }

    #[test]
    fn delivered_requests_are_forgotten() {
        let mut a = Affinity::default();
        let hashes: Vec<u64> = (0..PRUNE_FLOOR as u64 * 3).collect();
        a.record(hashes.clone(), &Plan::Whole(0), &[Some(1), None]);
        // Delivered before the next plan: never entered in the map.
        a.plan(&[1], &[None, None], &[0, 0]);
        assert_eq!(a.len(), 0);
        // Still queued at the next plan: entered, kept while queued, pruned once delivered.
        a.record(hashes.clone(), &Plan::Whole(0), &[Some(2), None]);
        a.plan(&[1], &[Some(2), None], &[1, 0]);
        assert_eq!(a.len(), hashes.len());
        // Shard 0's request delivered: its series go wherever is least busy again.
        assert_eq!(a.plan(&[1], &[Some(3), None], &[5, 0]), Plan::Whole(1));
        // And once the map has doubled, their entries are pruned.
        let more: Vec<u64> = (1 << 40..(1 << 40) + PRUNE_FLOOR as u64 * 6).collect();
        a.record(more.clone(), &Plan::Whole(1), &[None, Some(4)]);
        a.plan(&[1], &[Some(3), Some(4)], &[5, 1]);
        assert_eq!(
            a.len(),
            more.len(),
            "only the queued request's series are left"
        );
    }

    #[test]
    fn one_shard_needs_no_bookkeeping() {
        let mut a = Affinity::default();
        assert_eq!(a.plan(&[1, 2], &[Some(0)], &[9]), Plan::Whole(0));
    }
}
