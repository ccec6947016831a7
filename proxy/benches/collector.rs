//! The collector's pipeline "collect → relabel → encode", whole and stage by stage, for 10k and
//! 100k series:
//!
//! - `decode`: `decode_snappy::<ReadResponse>` of a remote-read answer, then flatten the results
//!   (the real merge is private; for disjoint results a flatten is the same work);
//! - `shape`: `metricRelabelings` + `extraLabels` + staleness (`Shaper::shape`);
//! - `shape_steady`: the same with a Shaper that saw the same series last cycle, so the staleness
//!   diff runs over the whole previous set (the collector's steady state);
//! - `encode`: remote-write requests of 1000 series (`encode_batches`);
//! - `pipeline`: the three in a row.
//!
//! `cargo bench -p proxy --bench collector`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use proxy::collector::job::encode_batches;
use proxy::collector::shape::Shaper;
use proxy::relabel::RelabelProgram;
use proxy::remote_write::proto::QueryResult;
use proxy::remote_write::{ReadResponse, encode_snappy};

#[path = "support/workload.rs"]
mod workload;
use workload::*;

const BATCH: usize = 1000;

fn bench(c: &mut Criterion) {
    let program = RelabelProgram::compile(&rules()).expect("rules compile");
    let extra = extra_labels();
    // A fresh Shaper per iteration (built in the untimed setup of `iter_batched`, or, for
    // `pipeline`, inside the timed routine, where it costs a clone of 4 compiled rules): it has no
    // previous series, so every iteration does the same work and emits no staleness markers.
    // `shape_steady` instead reuses one Shaper over the same input, which also repeats the same
    // work every iteration (the previous set is always the same series).
    let fresh = || Shaper::new(program.clone(), &extra, false);

    for n in [10_000usize, 100_000] {
        let timeseries = kube_series(n);
        let body = encode_snappy(&ReadResponse {
            results: vec![QueryResult {
                timeseries: timeseries.clone(),
            }],
        });
        let max_len = snap::raw::decompress_len(&body).expect("snappy length");
        let decoded = decode(&body, max_len);
        let (shaped, _) = fresh().shape(decoded.clone(), END_MS);

        let mut g = c.benchmark_group(format!("collector/{}k", n / 1000));
        g.throughput(Throughput::Elements(n as u64));
        // Modest times for a 2-core machine: at 100k one pipeline run is ~1 s, so flat sampling
        // (one iteration per sample) keeps it to ~10 runs instead of linear sampling's 55.
        // The group's settings apply to the benchmarks defined after them: the 100k pipeline
        // gets a longer measurement time than its stages.
        let (pipeline_time, stage_time) = if n >= 100_000 {
            g.sampling_mode(SamplingMode::Flat);
            (Duration::from_secs(16), Duration::from_secs(9))
        } else {
            (Duration::from_secs(5), Duration::from_secs(4))
        };
        g.sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(pipeline_time);

        g.bench_function("pipeline", |b| {
            b.iter(|| {
                let input = decode(black_box(&body), max_len);
                let (series, stats) = fresh().shape(input, END_MS);
                let payloads = encode_batches(&series, BATCH);
                black_box((payloads, stats))
            })
        });
        g.measurement_time(stage_time);
        g.bench_function("decode", |b| b.iter(|| decode(black_box(&body), max_len)));
        g.bench_function("shape", |b| {
            b.iter_batched(
                || (fresh(), decoded.clone()),
                |(mut shaper, input)| shaper.shape(input, END_MS),
                BatchSize::LargeInput,
            )
        });
        let mut steady = fresh();
        let _ = steady.shape(decoded.clone(), END_MS);
        g.bench_function("shape_steady", |b| {
            b.iter_batched(
                || decoded.clone(),
                |input| steady.shape(input, END_MS),
                BatchSize::LargeInput,
            )
        });
        g.bench_function("encode", |b| {
            b.iter(|| encode_batches(black_box(&shaped), BATCH))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
