//! Memory of the ingest gateway's active-series tracker per series: admits N distinct series of
//! one tenant (100 metric names, as a real tenant's series spread over its metrics) into a
//! `SeriesTracker`, the way the gateway does for every accepted series, and prints the bytes
//! its tables hold per active series (at the maps' capacity: between 7/16 and 7/8 full), and
//! beside it the growth of the process' resident memory (binary's allocator, mimalloc), which
//! moves in whole (huge) pages and keeps freed tables for a while.
//!
//! ```text
//! cargo run --release -p proxy --example tracker_memory -- --series 1000000
//! ```

use std::time::{Duration, Instant};

use clap::Parser;
use proxy::config::ingest::CardinalityLimits;
use proxy::ingest::cardinality::SeriesTracker;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Measure the tracker's bytes per active series.
#[derive(Debug, Parser)]
#[command(name = "tracker_memory")]
struct Args {
    /// Distinct active series to admit.
    #[arg(long, default_value_t = 1_000_000)]
    series: u64,
}

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let metrics: Vec<String> = (0..100).map(|i| format!("metric_{i}_total")).collect();
    let tracker = SeriesTracker::new(Duration::from_secs(600));
    let limits = CardinalityLimits::default();
    let now = Instant::now();
    // The tenant's entry exists before the baseline, as it does once a tenant has sent once.
    tracker.admit("bench", &metrics[0], 0, &limits, false, now);
    std::thread::sleep(Duration::from_millis(200));
    let before = rss_kib().ok_or_else(|| anyhow::anyhow!("no VmRSS"))?;
    let entry = tracker.entry("bench");
    for i in 1..=args.series {
        // Series hashes are xxh3 values: spread them as such (a multiplicative scramble).
        let hash = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let metric = &metrics[(i % 100) as usize];
        tracker.admit_entry(&entry, metric, hash, &limits, false, now);
    }
    let (active, _) = tracker.active("bench");
    // Let the allocator return what the map's growth freed.
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib().ok_or_else(|| anyhow::anyhow!("no VmRSS"))?;
    let grown = after.saturating_sub(before) as f64 * 1024.0;
    let heap = tracker.heap_bytes() as f64;
    // The tables' own size is the figure; RSS moves in the allocator's (huge) pages and keeps
    // what the map's growth freed for a while, so it is shown beside it.
    println!(
        "tracker: {active} active series, tables {:.1} MiB, {:.1} bytes per active series (RSS grew {:.1} MiB)",
        heap / 1_048_576.0,
        heap / active.max(1) as f64,
        grown / 1_048_576.0,
    );
    Ok(())
}
