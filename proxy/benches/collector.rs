//! The collector's hot path, per batch of 1000 series as it streams in (the same synthetic kube
//! series and rules as `examples/collector_pipeline.rs`):
//!
//! - `xor_decode/120`: one full XOR chunk (120 samples) decoded by the collector's loop
//!   (`xor::decode_window`);
//! - `frames`: 1000 streamed frames (one series each, one chunk of 60 samples of which 2 are in
//!   the window) read by `SeriesReader`: framing, CRC32-C, protobuf, XOR decoding, window edges;
//! - `shape`: those 1000 series through `Cycle::push` (hash dedup, `metricRelabelings`,
//!   `extraLabels`, merge) into one batch;
//! - `encode`: the batch as one remote-write request (`Batch::encode`: labels encoded while
//!   shaping, samples and snappy here);
//! - `batch`: the three in a row, what a cycle does per `batch_size` series.
//!
//! `cargo bench -p proxy --bench collector`

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use proxy::collector::shape::{Batch, Shaper};
use proxy::collector::stream::{RawSeries, SeriesReader};
use proxy::collector::xor;
use proxy::relabel::RelabelProgram;

#[path = "support/workload.rs"]
mod workload;
use workload::*;

const BATCH: usize = 1000;
const BEFORE: usize = 58;

fn read_frames(body: &Bytes) -> Vec<RawSeries> {
    let mut reader = SeriesReader::streamed_from_memory(vec![body.clone()], WINDOW, 1);
    let mut out = Vec::with_capacity(BATCH);
    futures::executor::block_on(async {
        while let Ok(Some(s)) = reader.next().await {
            out.push(s);
        }
    });
    out
}

fn shape(shaper: &Shaper, input: Vec<RawSeries>) -> Batch {
    let mut cycle = shaper.begin(END_MS, 1, BATCH + 1);
    for s in input {
        let _ = cycle.push(shaper, s);
    }
    cycle.finish().0
}

fn bench(c: &mut Criterion) {
    let program = RelabelProgram::compile(&rules()).expect("rules compile");
    let shaper = Shaper::new(program, &extra_labels(), false);

    let chunk = xor::encode(
        &(0..120)
            .map(|k| (END_MS + k * 15_000, (k * 3) as f64 + 0.5))
            .collect::<Vec<_>>(),
    );
    let body: Bytes = (0..BATCH)
        .flat_map(|i| streamed_frame(i, BEFORE))
        .collect::<Vec<u8>>()
        .into();
    let raw = read_frames(&body);
    assert_eq!(raw.len(), BATCH, "every series has samples in the window");
    let shaped = shape(&shaper, raw.clone());

    let mut g = c.benchmark_group("collector");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Elements(120));
    let mut decoded = Vec::with_capacity(120);
    g.bench_function("xor_decode/120", |b| {
        b.iter(|| {
            decoded.clear();
            xor::decode_window(
                black_box(&chunk),
                i64::MIN,
                i64::MAX,
                &mut decoded,
                |t, v| (t, v),
            )
            .map_or(0, |c| c.kept)
        })
    });
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("frames", |b| b.iter(|| read_frames(black_box(&body))));
    g.bench_function("shape", |b| {
        b.iter_batched(
            || raw.clone(),
            |input| shape(&shaper, input),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("encode", |b| b.iter(|| black_box(&shaped).encode()));
    g.bench_function("batch", |b| {
        b.iter(|| shape(&shaper, read_frames(black_box(&body))).encode())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
