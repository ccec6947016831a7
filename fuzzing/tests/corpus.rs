//! The stable, bounded fuzz run of `cargo test --workspace`: each target's property over its
//! whole committed seed corpus (`proxy/fuzz/corpus/<target>/`), then over deterministic
//! mutations of it ([`pmtp_fuzzing::mutate`], seeded: a failure names the seed, the round and
//! the input, and reproduces on every run). `PMTP_FUZZ_ROUNDS=<n>` multiplies the mutations
//! for a longer local run.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use pmtp_fuzzing::mutate::{Rng, mutate};

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../proxy/fuzz/corpus")
        .join(target)
}

/// The seeds of a target, sorted by file name.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("dir entry").path();
            let name = path
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (name, bytes)
        })
        .collect();
    out.sort();
    out
}

/// Run `property` on `input`; on a panic, fail naming what was run.
fn check(target: &str, what: &str, input: &[u8]) {
    let property = pmtp_fuzzing::target(target).expect("known target");
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| property(input))) {
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        panic!(
            "{target}: property violated on {what}: {msg}\ninput ({} bytes): {:?}",
            input.len(),
            String::from_utf8_lossy(input)
        );
    }
}

/// Every seed, then `mutations` mutated inputs (seed chosen round-robin, spliced with another).
fn run(target: &str, mutations: usize) {
    let seeds = seeds(target);
    assert!(!seeds.is_empty(), "{target}: no seeds");
    for (name, bytes) in &seeds {
        check(target, &format!("seed {name}"), bytes);
    }
    let rounds: usize = std::env::var("PMTP_FUZZ_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let mut rng = Rng::new(0x5eed_0000 ^ target.len() as u64);
    for i in 0..mutations * rounds {
        let (name, seed) = &seeds[i % seeds.len()];
        let (_, other) = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, seed, other);
        check(target, &format!("mutation {i} of seed {name}"), &input);
    }
}

#[test]
fn rewrite_corpus_and_mutations() {
    run("rewrite", 20_000);
}

#[test]
fn remote_write_corpus_and_mutations() {
    run("remote_write", 100_000);
}

#[test]
fn relabel_corpus_and_mutations() {
    run("relabel", 20_000);
}

#[test]
fn config_corpus_and_mutations() {
    run("config", 5_000);
}

#[test]
fn crd_corpus_and_mutations() {
    run("crd", 4_000);
}

/// Each target's property can fail: a violated property panics, and the run reports it.
#[test]
fn a_violated_property_fails_the_run() {
    let caught = catch_unwind(|| check("rewrite", "a query the rewrite must refuse", b"\xff"));
    assert!(
        caught.is_ok(),
        "an unparsable query is a refusal, not a violation"
    );
    // The output-side check rejects a query that escapes the policy.
    let policy = &pmtp_fuzzing::rewrite_policies()[0];
    let escaped = catch_unwind(|| pmtp_fuzzing::check_rewrite_output("up", "up", policy));
    assert!(
        escaped.is_err(),
        "`up` alone carries no clause: the check must fail"
    );
    let enforced = r#"up{namespace="team-a"}"#;
    pmtp_fuzzing::check_rewrite_output("up", enforced, policy);
}

/// Regression (found reviewing the remote_write target's memory bound): 100,000 empty
/// histograms are 200 KB decompressed, under the limit, and over 20 MB decoded; the codec
/// refuses them before decoding.
#[test]
fn regression_remote_write_histogram_bomb_is_refused() {
    let mut series = vec![0x0a, 0x05, 0x0a, 0x01, b'a', 0x12, 0x00];
    series.extend_from_slice(&[0x22u8, 0x00].repeat(100_000));
    let mut raw = vec![0x0a];
    let mut n = series.len();
    while n >= 0x80 {
        raw.push((n as u8) | 0x80);
        n >>= 7;
    }
    raw.push(n as u8);
    raw.extend_from_slice(&series);
    let body = snap::raw::Encoder::new()
        .compress_vec(&raw)
        .expect("compress");
    assert!(raw.len() <= pmtp_fuzzing::REMOTE_WRITE_LIMIT);
    let decoded =
        proxy::remote_write::decode_write_request(&body, pmtp_fuzzing::REMOTE_WRITE_LIMIT);
    assert!(
        matches!(
            decoded,
            Err(proxy::remote_write::CodecError::Amplified { .. })
        ),
        "{:?}",
        decoded.map(|r| r.timeseries.len())
    );
    check("remote_write", "the histogram bomb", &body);
}
