//! Hot paths of the read and write sides, measured alone (no HTTP, no network):
//!
//! - `rewrite/corpus`: every query of `fixtures/queries/corpus.promql` enforced for a realistic
//!   tenant policy (two clauses: the tenant's namespace, and a few cluster-level metrics of
//!   `monitoring`), cold: the policy compiled once as the proxy keeps it per tenant
//!   ([`CompiledPolicy`]), every query parsed, rewritten and printed. Criterion reports the time
//!   of one pass over the corpus (throughput = queries); after it, a per-query pass prints the
//!   distribution of each query's own median, as
//!   `rewrite per-query: median X µs p90 Y µs max Z µs (N queries, M refused)`.
//! - `rewrite/corpus-cached`: the same through a warm [`RewriteCache`] (a dashboard's repeated
//!   queries), and its line `rewrite cached per-query: median X µs p90 Y µs max Z µs (…)`.
//! - `rewrite-clauses/{cold,cached}/{1,10,100}`: one dashboard query for policies of 1, 10 and
//!   100 clauses that all apply to it (the rewrite is a union over every clause).
//!
//! `cargo xtask bench rewrite` parses the per-query lines and the criterion times.
//! - `relabel/governance`: the 10 rules of `bench/harness/configs/relabel-governance.yml` over
//!   2,000 harness-like series (one remote-write request of the harness).
//! - `codec/decode` and `codec/encode`: snappy + protobuf of that 2,000-series `WriteRequest`.
//!
//! `cargo bench -p proxy --bench rewrite` (`-- --quick` for criterion's quick mode).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::sync::Arc;

use proxy::promql::{CompiledPolicy, EnforceLimits, RewriteCache};
use proxy::relabel::RelabelProgram;
use proxy::remote_write::{decode_write_request, encode_write_request};
use proxy::tenant::policy::{Clause, LabelMatcher, MatchKind, Policy};

#[path = "support/harness.rs"]
mod harness;

const CORPUS: &str = include_str!("../../fixtures/queries/corpus.promql");
const SERIES_PER_REQUEST: usize = 2_000;

fn corpus() -> Vec<&'static str> {
    CORPUS
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

fn matcher(name: &str, kind: MatchKind, value: &str) -> LabelMatcher {
    LabelMatcher {
        name: name.into(),
        kind,
        value: value.into(),
    }
}

/// A tenant that reads its own namespace, plus `up`, `node_*` and `kube_pod_info` of the
/// cluster-level `monitoring` namespace: what a MetricAccess with two rules compiles to.
fn tenant_policy() -> Policy {
    Policy {
        clauses: vec![
            Clause {
                matchers: vec![matcher("namespace", MatchKind::Equal, "team-a")],
            },
            Clause {
                matchers: vec![
                    matcher("__name__", MatchKind::Regex, "up|node_.*|kube_pod_info"),
                    matcher("namespace", MatchKind::Equal, "monitoring"),
                ],
            },
        ],
    }
}

fn limits() -> EnforceLimits {
    EnforceLimits {
        max_query_bytes: 64 * 1024,
        max_depth: 100,
    }
}

/// `n` clauses that all apply to [`CLAUSES_QUERY`]: `{__name__=~"http_.*|app_i_.*",namespace="team-i"}`.
fn clauses_policy(n: usize) -> Arc<Policy> {
    Arc::new(Policy {
        clauses: (0..n)
            .map(|i| Clause {
                matchers: vec![
                    matcher("__name__", MatchKind::Regex, &format!("http_.*|app_{i}_.*")),
                    matcher("namespace", MatchKind::Equal, &format!("team-{i}")),
                ],
            })
            .collect(),
    })
}

const CLAUSES_QUERY: &str = "sum by (namespace) (rate(http_requests_total{job=\"api\"}[5m]))";

/// Each query's own median over `rounds` timed batches, then the distribution over queries,
/// printed as `{label}: median X µs p90 Y µs max Z µs (N queries, M refused)`.
fn per_query(label: &str, queries: &[&str], run: &dyn Fn(&str) -> bool, budget: Duration) {
    let rounds = 15usize;
    let per_query_budget = budget.as_secs_f64() / queries.len() as f64;
    let mut medians: Vec<f64> = Vec::with_capacity(queries.len());
    let mut refused = 0usize;
    for q in queries {
        if !run(q) {
            refused += 1;
        }
        // Calibrate a batch size so that `rounds` batches take about the per-query budget.
        let t = Instant::now();
        black_box(run(black_box(q)));
        let one = t.elapsed().as_secs_f64().max(1e-7);
        let batch = ((per_query_budget / rounds as f64 / one) as usize).clamp(1, 100_000);
        let mut samples: Vec<f64> = (0..rounds)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..batch {
                    black_box(run(black_box(q)));
                }
                t.elapsed().as_secs_f64() / batch as f64
            })
            .collect();
        samples.sort_by(f64::total_cmp);
        medians.push(samples[rounds / 2]);
    }
    medians.sort_by(f64::total_cmp);
    let pick = |p: f64| medians[((medians.len() - 1) as f64 * p).round() as usize] * 1e6;
    println!(
        "{label}: median {:.2} µs p90 {:.2} µs max {:.2} µs ({} queries, {} refused)",
        pick(0.5),
        pick(0.9),
        pick(1.0),
        medians.len(),
        refused
    );
}

fn bench(c: &mut Criterion) {
    let queries = corpus();
    let policy = Arc::new(tenant_policy());
    let compiled = CompiledPolicy::new(policy.clone()).expect("the policy compiles");
    let limits = limits();
    let cache = RewriteCache::new(16 << 20);
    let cached = |q: &str| cache.enforce_query("team-a", &policy, q, &limits).is_ok();
    let cold = |q: &str| compiled.enforce_query(q, &limits).is_ok();

    let mut g = c.benchmark_group("rewrite");
    g.throughput(Throughput::Elements(queries.len() as u64));
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    g.bench_function("corpus", |b| {
        b.iter(|| {
            for q in &queries {
                black_box(cold(black_box(q)));
            }
        })
    });
    g.bench_function("corpus-cached", |b| {
        b.iter(|| {
            for q in &queries {
                black_box(cached(black_box(q)));
            }
        })
    });
    g.finish();
    let quick = std::env::args().any(|a| a == "--quick");
    let budget = Duration::from_secs(if quick { 2 } else { 6 });
    per_query("rewrite per-query", &queries, &cold, budget);
    per_query("rewrite cached per-query", &queries, &cached, budget);

    let mut g = c.benchmark_group("rewrite-clauses");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in [1usize, 10, 100] {
        let policy = clauses_policy(n);
        let compiled = CompiledPolicy::new(policy.clone()).expect("the policy compiles");
        compiled
            .enforce_query(CLAUSES_QUERY, &limits)
            .expect("the query is enforced");
        g.bench_function(format!("cold/{n}"), |b| {
            b.iter(|| compiled.enforce_query(black_box(CLAUSES_QUERY), &limits))
        });
        let cache = RewriteCache::new(16 << 20);
        g.bench_function(format!("cached/{n}"), |b| {
            b.iter(|| cache.enforce_query("team-a", &policy, black_box(CLAUSES_QUERY), &limits))
        });
    }
    g.finish();

    let program = RelabelProgram::compile(&harness::governance_rules()).expect("rules compile");
    let req = harness::write_request(SERIES_PER_REQUEST);
    let mut g = c.benchmark_group("relabel");
    g.throughput(Throughput::Elements(SERIES_PER_REQUEST as u64));
    g.sample_size(20).warm_up_time(Duration::from_secs(1));
    g.bench_function("governance", |b| {
        b.iter_batched(
            || req.timeseries.clone(),
            |mut series| {
                series.retain_mut(|s| program.apply(&mut s.labels));
                series
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();

    let body = encode_write_request(&req);
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(SERIES_PER_REQUEST as u64));
    g.sample_size(20).warm_up_time(Duration::from_secs(1));
    g.bench_function("decode", |b| {
        b.iter(|| decode_write_request(black_box(&body), 64 << 20).expect("decodes"))
    });
    g.bench_function("encode", |b| {
        b.iter(|| encode_write_request(black_box(&req)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
