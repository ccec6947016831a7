//! Runs the collector's streaming pipeline "collect → relabel → encode" over synthetic kube
//! series and prints its speed (wall and CPU time of the pipeline thread), the encoded bytes and
//! the peak RSS.
//!
//! ```text
//! cargo run --release -p proxy --example collector_pipeline -- --series 1000000 --cycles 3
//! ```
//!
//! The input is what a Prometheus streams for a remote read with `STREAMED_XOR_CHUNKS`: one
//! frame per series (uvarint length, CRC32-C, `ChunkedReadResponse`), each with one XOR chunk
//! that starts `--samples-before` samples before the window (Prometheus sends whole chunks). A
//! generator thread builds the frames series by series and hands them over in 64 KiB pieces
//! through a bounded channel, as a socket would: the answer is never whole in memory, and the
//! generator's CPU time is not the pipeline's.
//!
//! The pipeline thread runs the collector's own code: `SeriesReader` (framing, CRC, XOR
//! decoding, the window's edges) → `Cycle::push` (dedup by hash, `metricRelabelings`,
//! `extraLabels`, merge, batches of `--batch-size`) → `Batch::encode` (snappy protobuf) → the
//! request is dropped (delivery is the network's cost) and the batch handed back for reuse,
//! as the collector's job does. One `Shaper` is kept across cycles, as the collector keeps one
//! per CR: the first cycle has no previous series, the later ones
//! compare their hashes with the previous cycle's (the steady state: nothing vanishes, so
//! nothing is read again).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use proxy::collector::shape::{ShapeStats, Shaper};
use proxy::collector::stream::SeriesReader;
use proxy::relabel::RelabelProgram;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Measure the collector's streaming pipeline (frames → decode → relabel/shape → encode).
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
    /// Samples of each chunk before the window (decoded, then dropped).
    #[arg(long, default_value_t = 58)]
    samples_before: usize,
}

#[path = "../benches/support/workload.rs"]
mod workload;
use workload::*;

fn field_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Reset `VmHWM` to the current RSS (Linux ≥ 4.0: write 5 to `clear_refs`), so the peak that
/// follows is the pipeline's.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "unknown".to_owned(),
        |k| format!("{:.1} MiB", k as f64 / 1024.0),
    )
}

/// CPU time (user + system) of the calling thread.
#[allow(unsafe_code)]
fn thread_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage only writes the struct we pass; RUSAGE_THREAD is Linux's per-thread
    // accounting.
    let ok = unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) } == 0;
    if !ok {
        return Duration::ZERO;
    }
    // SAFETY: initialised by the successful call above (and zeroed before it).
    let usage = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Frames of `n` series, in 64 KiB pieces, from a thread, through a channel of 16 pieces.
type Generated = (mpsc::IntoIter<Bytes>, std::thread::JoinHandle<u64>);

fn generate(n: usize, before: usize) -> std::io::Result<Generated> {
    let (tx, rx) = mpsc::sync_channel::<Bytes>(16);
    let spawned = std::thread::Builder::new()
        .name("generator".into())
        .spawn(move || {
            let mut piece = Vec::with_capacity(64 * 1024);
            let mut total = 0u64;
            for i in 0..n {
                piece.extend_from_slice(&streamed_frame(i, before));
                if piece.len() >= 64 * 1024 {
                    total += piece.len() as u64;
                    if tx.send(Bytes::from(std::mem::take(&mut piece))).is_err() {
                        return total;
                    }
                    piece.reserve(64 * 1024);
                }
            }
            total += piece.len() as u64;
            let _ = tx.send(Bytes::from(piece));
            total
        })?;
    Ok((rx.into_iter(), spawned))
}

struct Run {
    wall: Duration,
    cpu: Duration,
    stats: ShapeStats,
    frames: u64,
    encoded: usize,
    requests: usize,
}

fn run_cycle(shaper: &mut Shaper, args: &Args) -> anyhow::Result<Run> {
    let (pieces, generator) = generate(args.series, args.samples_before)?;
    let wall = Instant::now();
    let cpu = thread_cpu();
    let mut reader = SeriesReader::streamed_from_pieces(pieces, WINDOW, 1);
    let mut cycle = shaper.begin(END_MS, 1, args.batch_size);
    let mut encoded = 0;
    let mut requests = 0;
    let mut encode = |batch: &proxy::collector::shape::Batch| {
        if !batch.is_empty() {
            encoded += batch.encode().len();
            requests += 1;
        }
    };
    futures::executor::block_on(async {
        while let Some(series) = reader.next().await.map_err(anyhow::Error::msg)? {
            if let Some(batch) = cycle.push(shaper, series) {
                encode(&batch);
                cycle.recycle(batch);
            }
        }
        anyhow::Ok(())
    })?;
    let (last, written, stats) = cycle.finish();
    encode(&last);
    let vanished = shaper.vanished(&written);
    anyhow::ensure!(vanished.is_empty(), "steady state: nothing vanishes");
    shaper.commit(written, None);
    let cpu = thread_cpu().saturating_sub(cpu);
    let wall = wall.elapsed();
    let _ = generator.join();
    Ok(Run {
        wall,
        cpu,
        stats,
        frames: reader.stats.frames,
        encoded,
        requests,
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cycles = args.cycles.max(1);
    println!(
        "input: {} series streamed as {} frames, one XOR chunk each ({} samples before the window, 2 in it)",
        args.series, args.series, args.samples_before,
    );
    let setup_peak = field_kib("VmHWM:");
    let reset = reset_peak_rss();
    let base_rss = field_kib("VmRSS:");

    let program = RelabelProgram::compile(&rules()).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut shaper = Shaper::new(program, &extra_labels(), false);
    let mut runs = Vec::with_capacity(cycles);
    for c in 1..=cycles {
        let r = run_cycle(&mut shaper, &args)?;
        println!(
            "cycle {c}: wall {:>8.1?}  cpu {:>8.1?}  ({:.0} series/s, {:.0} series per CPU-s; frames {}, in {}, dropped {}, out {}, {} requests, RSS now {})",
            r.wall,
            r.cpu,
            args.series as f64 / r.wall.as_secs_f64(),
            args.series as f64 / r.cpu.as_secs_f64().max(1e-9),
            r.frames,
            r.stats.series_in,
            r.stats.series_dropped,
            r.stats.series_out,
            r.requests,
            mib(field_kib("VmRSS:")),
        );
        runs.push(r);
    }
    let mean = |f: fn(&Run) -> Duration| runs.iter().map(f).sum::<Duration>() / cycles as u32;
    let best = |f: fn(&Run) -> Duration| runs.iter().map(f).min().unwrap_or_default();
    let n = args.series as f64;
    println!(
        "whole pipeline: {:.0} series/s (mean), {:.0} series/s (best)",
        n / mean(|r| r.wall).as_secs_f64(),
        n / best(|r| r.wall).as_secs_f64(),
    );
    println!(
        "pipeline CPU: {:.3} s per cycle (mean), {:.0} series per CPU-second (mean), {:.0} (best)",
        mean(|r| r.cpu).as_secs_f64(),
        n / mean(|r| r.cpu).as_secs_f64().max(1e-9),
        n / best(|r| r.cpu).as_secs_f64().max(1e-9),
    );
    if let Some(last) = runs.last() {
        println!(
            "encoded: {} bytes ({:.1} MiB) in {} requests of ≤{} series",
            last.encoded,
            last.encoded as f64 / 1_048_576.0,
            last.requests,
            args.batch_size,
        );
    }
    println!(
        "series remembered between cycles: {} (hashes)",
        shaper.remembered()
    );
    println!("peak RSS (VmHWM) before the pipeline: {}", mib(setup_peak));
    if reset {
        println!(
            "peak RSS (VmHWM) during the pipeline: {} (RSS before it: {})",
            mib(field_kib("VmHWM:")),
            mib(base_rss),
        );
    } else {
        println!(
            "peak RSS (VmHWM) at exit:               {}",
            mib(field_kib("VmHWM:"))
        );
    }
    Ok(())
}
