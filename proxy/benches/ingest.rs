//! The ingest gateway's request path, in process: `Ingest::receive` of one remote-write request
//! of 2,000 series × 2 samples (snappy, ~8 labels each, namespaces renamed as below), as configured by the two configs of
//! the wire benchmark (`bench/ingest/gateway-plain.yaml`: no rules; `gateway.yaml`: the 10
//! governance relabel rules), forwarding to a 204 sink on loopback served by the same process.
//!
//! It times decoding, the limits, the rules, tracking, and encoding or passing the body through
//! to the queue; the delivery to the sink runs on the runtime's worker meanwhile (not timed).
//! Then its parts on one harness-like request of 2,000 series (`support/harness.rs`):
//! - `ingest_parts/scan`: the in-place read of the decompressed body (`wire::scan_into`, into
//!   kept tables, as the gateway does);
//! - `ingest_parts/relabel_borrowed`: the 10 governance rules on labels borrowed from that body,
//!   with the request's memo, as the gateway runs them (`RelabelMemo`, `CowLabel`);
//! - `ingest_parts/relabel_owned`: the same rules on owned labels without a memo, for
//!   comparison.
//!
//! `cargo bench -p proxy --bench ingest`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use proxy::config::Config;
use proxy::ingest::Ingest;
use proxy::ingest::receiver::Outcome;
use proxy::remote_write::{WriteRequest, encode_write_request};
use proxy::telemetry::Metrics;

#[path = "support/workload.rs"]
mod workload;

#[path = "support/harness.rs"]
mod harness;

// The allocator of the proxy binary (src/main.rs): the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SERIES: usize = 2000;

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let sink = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new().route(
            "/api/v1/write",
            post(|| async { axum::http::StatusCode::NO_CONTENT }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/api/v1/write")
    });
    // The wire benchmark's namespaces are tenant-00..49 and its first rule keeps
    // tenant-[0-3][0-9]: name the workload's 12 namespaces tenant-00, -04, … -44 so that the
    // rules keep about as much (10 of 12) and the later rules have work to do.
    let mut series = workload::kube_series(SERIES);
    for label in series.iter_mut().flat_map(|s| s.labels.iter_mut()) {
        if label.name == "namespace"
            && let Some(i) = workload::NAMESPACES.iter().position(|n| *n == label.value)
        {
            label.value = format!("tenant-{:02}", i * 4);
        }
    }
    let samples: usize = series.iter().map(|s| s.samples.len()).sum();
    let body: bytes::Bytes = encode_write_request(&WriteRequest {
        timeseries: series,
        metadata: vec![],
    })
    .into();
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(samples as u64));
    group.measurement_time(Duration::from_secs(5));
    for (name, file) in [("plain", "gateway-plain.yaml"), ("rules", "gateway.yaml")] {
        let path = format!("{}/../bench/ingest/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path)
            .expect("bench config")
            .replace("http://127.0.0.1:18080/api/v1/write", &sink);
        let config = Config::from_yaml(&text, &path).expect("bench config parses");
        let ingest: Arc<Ingest> = runtime
            .block_on(async { Ingest::start(&config.ingest, Arc::new(Metrics::new())) })
            .expect("ingest starts");
        let receive = || {
            ingest.receive(
                "bench",
                Some("application/x-protobuf"),
                Some("snappy"),
                body.clone(),
            )
        };
        let first = receive();
        assert_eq!(first.outcome, Outcome::Accepted, "{}", first.message);
        let mut refused = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                let answer = black_box(receive());
                refused += u64::from(answer.outcome != Outcome::Accepted);
            })
        });
        // A full queue answers 503 and does less work: the figure would flatter the gateway.
        assert_eq!(refused, 0, "{name}: requests refused (queue full?)");
    }
    group.finish();
}

fn parts(c: &mut Criterion) {
    use proxy::relabel::{CowLabel, RelabelMemo, RelabelProgram};
    use proxy::remote_write::wire::{Scanned, scan_into};

    let request = harness::write_request(SERIES);
    let raw = proxy::remote_write::encode_write_request(&request);
    let raw = proxy::remote_write::decompress(&raw, 64 << 20).expect("decompresses");
    let program = RelabelProgram::compile(&harness::governance_rules()).expect("rules compile");
    let mut group = c.benchmark_group("ingest_parts");
    group.throughput(Throughput::Elements(SERIES as u64));
    group.measurement_time(Duration::from_secs(3));
    let mut tables = Some(Scanned::default());
    group.bench_function("scan", |b| {
        b.iter(|| {
            let scanned = scan_into(
                black_box(&raw),
                usize::MAX,
                tables.take().unwrap_or_default(),
            )
            .expect("scans");
            let n = scanned.series.len();
            tables = Some(Scanned {
                series: proxy::ingest::buffers::recycle(scanned.series),
                labels: proxy::ingest::buffers::recycle(scanned.labels),
                metadata: Vec::new(),
            });
            n
        })
    });
    let scanned = scan_into(&raw, usize::MAX, Scanned::default()).expect("scans");
    group.bench_function("relabel_borrowed", |b| {
        let mut cow: Vec<CowLabel<'_>> = Vec::new();
        b.iter(|| {
            let mut memo = RelabelMemo::default();
            let mut kept = 0;
            for s in &scanned.series {
                cow.clear();
                cow.extend(
                    scanned
                        .labels_of(s)
                        .iter()
                        .map(|l| CowLabel::borrowed(l.name, l.value)),
                );
                kept += usize::from(program.apply_with(&mut cow, &mut memo));
            }
            kept
        })
    });
    group.bench_function("relabel_owned", |b| {
        b.iter_batched(
            || request.timeseries.clone(),
            |mut series| {
                series.retain_mut(|s| program.apply(&mut s.labels));
                series
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench, parts);
criterion_main!(benches);
