//! Runs the collector's pipeline "collect → relabel → encode" over synthetic kube series and
//! prints the time of each stage, the whole pipeline's series/s, the encoded bytes and the peak
//! RSS.
//!
//! ```text
//! cargo run --release -p proxy --example collector_pipeline -- --series 100000 --cycles 3
//! ```
//!
//! Stages, as the collector runs them:
//! 1. collect: decode a snappy remote-read answer (`decode_snappy::<ReadResponse>`) and flatten
//!    its results (the real merge is private; a flatten is the same work for disjoint results);
//! 2. shape: `metricRelabelings`, `extraLabels`, staleness (`Shaper::shape`);
//! 3. encode: remote-write requests of 1000 series (`encode_batches`);
//! 4. free: dropping the shaped series and the payloads, which the collector pays too.
//!
//! One `Shaper` is kept across cycles, as the collector keeps one per CR: the first cycle has no
//! previous series, the later ones diff against the previous cycle's (identical) series, which
//! is the steady state. `--fresh-shaper` makes a new one per cycle instead.

use std::time::{Duration, Instant};

use clap::Parser;
use proxy::collector::job::encode_batches;
use proxy::collector::shape::Shaper;
use proxy::relabel::RelabelProgram;
use proxy::remote_write::proto::QueryResult;
use proxy::remote_write::{ReadResponse, TimeSeries, decode_snappy, encode_snappy};

/// Measure the collector pipeline (decode → relabel/shape → encode).
#[derive(Debug, Parser)]
#[command(name = "collector_pipeline")]
struct Args {
    /// Number of series in the collected window.
    #[arg(long, default_value_t = 100_000)]
    series: usize,
    /// How many times to run the whole pipeline.
    #[arg(long, default_value_t = 3)]
    cycles: usize,
    /// Series per remote-write request.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// Build a new Shaper every cycle (no staleness diff) instead of keeping one.
    #[arg(long)]
    fresh_shaper: bool,
}

#[path = "../benches/support/workload.rs"]
mod workload;
use workload::*;

fn peak_rss_kib() -> Option<u64> {
    field_kib("VmHWM:")
}

fn rss_kib() -> Option<u64> {
    field_kib("VmRSS:")
}

fn field_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Reset `VmHWM` to the current RSS (Linux ≥ 4.0: write 5 to `clear_refs`), so the peak that
/// follows is the pipeline's rather than the input generator's.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "unknown".to_owned(),
        |k| format!("{:.1} MiB", k as f64 / 1024.0),
    )
}

#[derive(Default)]
struct Stages {
    decode: Duration,
    shape: Duration,
    encode: Duration,
    /// Freeing the shaped series and the payloads (~2M small strings at 100k series).
    free: Duration,
}

impl Stages {
    fn total(&self) -> Duration {
        self.decode + self.shape + self.encode + self.free
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cycles = args.cycles.max(1);

    let body = {
        let timeseries = kube_series(args.series);
        encode_snappy(&ReadResponse {
            results: vec![QueryResult { timeseries }],
        })
    };
    let max_len = snap::raw::decompress_len(&body)?;
    println!(
        "input: {} series, {} samples, read answer {:.1} MiB snappy ({:.1} MiB raw)",
        args.series,
        args.series * 2,
        body.len() as f64 / 1_048_576.0,
        max_len as f64 / 1_048_576.0,
    );
    let setup_peak = peak_rss_kib();
    let reset = reset_peak_rss();
    let base_rss = rss_kib();

    let program = RelabelProgram::compile(&rules()).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let extra = extra_labels();
    let mut shaper = Shaper::new(program.clone(), &extra, false);

    let mut all = Vec::with_capacity(cycles);
    let mut encoded_bytes = 0;
    let mut requests = 0;
    for cycle in 1..=cycles {
        let mut st = Stages::default();

        let t = Instant::now();
        let response: ReadResponse = decode_snappy(&body, max_len)?;
        let input: Vec<TimeSeries> = response
            .results
            .into_iter()
            .flat_map(|r| r.timeseries)
            .collect();
        st.decode = t.elapsed();

        let t = Instant::now();
        if args.fresh_shaper {
            shaper = Shaper::new(program.clone(), &extra, false);
        }
        let (series, stats) = shaper.shape(input, END_MS);
        st.shape = t.elapsed();

        let t = Instant::now();
        let payloads = encode_batches(&series, args.batch_size);
        st.encode = t.elapsed();

        encoded_bytes = payloads.iter().map(|p| p.body.len()).sum::<usize>();
        requests = payloads.len();
        let t = Instant::now();
        drop(series);
        drop(payloads);
        st.free = t.elapsed();
        println!(
            "cycle {cycle}: decode {:>8.1?}  shape {:>8.1?}  encode {:>8.1?}  free {:>8.1?}  total {:>8.1?}  \
             ({:.0} series/s; in {}, dropped {}, stale {}, out {})",
            st.decode,
            st.shape,
            st.encode,
            st.free,
            st.total(),
            args.series as f64 / st.total().as_secs_f64(),
            stats.series_in,
            stats.series_dropped,
            stats.stale_markers,
            stats.series_out,
        );
        all.push(st);
    }

    let best = |f: fn(&Stages) -> Duration| all.iter().map(f).min().unwrap_or_default();
    let mean = |f: fn(&Stages) -> Duration| all.iter().map(f).sum::<Duration>() / cycles as u32;
    println!("stage      mean        best");
    for (name, f) in [
        ("decode", (|s: &Stages| s.decode) as fn(&Stages) -> Duration),
        ("shape", |s| s.shape),
        ("encode", |s| s.encode),
        ("free", |s| s.free),
        ("total", |s| s.total()),
    ] {
        println!("{name:<8} {:>9.1?} {:>9.1?}", mean(f), best(f));
    }
    println!(
        "whole pipeline: {:.0} series/s (mean), {:.0} series/s (best)",
        args.series as f64 / mean(Stages::total).as_secs_f64(),
        args.series as f64 / best(Stages::total).as_secs_f64(),
    );
    println!(
        "encoded: {encoded_bytes} bytes ({:.1} MiB) in {requests} requests of ≤{} series",
        encoded_bytes as f64 / 1_048_576.0,
        args.batch_size,
    );
    println!(
        "peak RSS (VmHWM) incl. input generation: {}",
        mib(setup_peak)
    );
    if reset {
        println!(
            "peak RSS (VmHWM) during the pipeline:    {} (RSS before it: {})",
            mib(peak_rss_kib()),
            mib(base_rss),
        );
    } else {
        println!(
            "peak RSS (VmHWM) at exit:               {}",
            mib(peak_rss_kib())
        );
    }
    Ok(())
}
