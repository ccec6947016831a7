//! The oracle test: for every query of the corpus, the proxy's answer for a tenant equals the
//! answer of a Prometheus that holds only that tenant's series (built by asking infrastructure
//! Prometheus, not the code under test, which series the tenant may see).

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};

use crate::support::{Answer, Case, Env, TENANTS, case, compare_answers, result_len};

pub fn cases() -> Vec<Case> {
    vec![
        case("corpus_instant_and_range", corpus_instant_and_range),
        case(
            "deviation_bare_range_selector",
            deviation_bare_range_selector,
        ),
        case(
            "printer_shapes_match_the_oracle",
            printer_shapes_match_the_oracle,
        ),
    ]
}

/// `ORACLE_CORPUS=path` swaps the corpus: one query per line, `#` comments.
pub fn load_corpus() -> Result<Vec<String>> {
    let path = std::env::var_os("ORACLE_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::support::workspace_root().join("fixtures/queries/corpus.promql"));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

/// Values are compared exactly, except that a sum over a union of clauses may add in another
/// order than the oracle does: 1e-9 relative covers that and nothing else.
const REL: f64 = 1e-9;

struct Outcome {
    query: String,
    tenant: &'static str,
    mode: &'static str,
    result: std::result::Result<(), String>,
    non_empty: bool,
    approx: bool,
}

fn corpus_instant_and_range(env: &Env) -> Result<()> {
    let corpus = load_corpus()?;
    ensure!(!corpus.is_empty(), "empty corpus");
    let mut jobs = Vec::new();
    for q in &corpus {
        for tenant in TENANTS {
            let mut instant = vec![("query", q.clone()), ("time", env.eval_time_param())];
            let mut range = env.range_params();
            range.push(("query", q.clone()));
            jobs.push((
                q.clone(),
                tenant,
                "instant",
                "/api/v1/query",
                std::mem::take(&mut instant),
            ));
            jobs.push((q.clone(), tenant, "range", "/api/v1/query_range", range));
        }
    }
    let outcomes: Vec<Outcome> = env.block_on(async {
        let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(8));
        let mut set = tokio::task::JoinSet::new();
        for (i, (query, tenant, mode, path, params)) in jobs.into_iter().enumerate() {
            let got = env.tenant_request(Some(tenant), path, &params);
            let want = env.oracle_request(tenant, path, &params);
            let sem = sem.clone();
            set.spawn(async move {
                let _permit = sem.acquire_owned().await;
                let got = crate::support::send(got).await;
                let want = crate::support::send(want).await;
                (i, query, tenant, mode, got, want)
            });
        }
        let mut out = Vec::new();
        while let Some(done) = set.join_next().await {
            let (i, query, tenant, mode, got, want) = done.expect("oracle task");
            let (result, non_empty, approx) = match (got, want) {
                (Ok(g), Ok(w)) => judge(&g, &w),
                (g, w) => (
                    Err(format!("transport: {:?} / {:?}", g.err(), w.err())),
                    false,
                    false,
                ),
            };
            out.push((
                i,
                Outcome {
                    query,
                    tenant,
                    mode,
                    result,
                    non_empty,
                    approx,
                },
            ));
        }
        out.sort_by_key(|(i, _)| *i);
        out.into_iter().map(|(_, o)| o).collect()
    });

    let mut mismatched: Vec<&Outcome> = outcomes.iter().filter(|o| o.result.is_err()).collect();
    mismatched.sort_by(|a, b| a.query.cmp(&b.query));
    let queries_mismatched: std::collections::BTreeSet<&str> =
        mismatched.iter().map(|o| o.query.as_str()).collect();
    let queries_non_empty: std::collections::BTreeSet<&str> = outcomes
        .iter()
        .filter(|o| o.non_empty)
        .map(|o| o.query.as_str())
        .collect();
    println!(
        "oracle: {} queries, {} mismatches, {} non-empty",
        corpus.len(),
        queries_mismatched.len(),
        queries_non_empty.len()
    );
    println!(
        "oracle: {} comparisons ({} tenants x instant+range), {} with series, {} equal within {REL:e} only",
        outcomes.len(),
        TENANTS.len(),
        outcomes.iter().filter(|o| o.non_empty).count(),
        outcomes.iter().filter(|o| o.approx).count()
    );
    for o in &mismatched {
        println!(
            "oracle mismatch [{} {}] {}: {}",
            o.tenant,
            o.mode,
            o.query,
            o.result.as_ref().err().map_or("", |s| s)
        );
    }
    ensure!(
        mismatched.is_empty(),
        "{} comparisons differ from the oracle",
        mismatched.len()
    );
    // A corpus whose answers are all empty would prove nothing.
    ensure!(
        queries_non_empty.len() * 4 >= corpus.len() * 3,
        "only {} of {} queries returned series for any tenant",
        queries_non_empty.len(),
        corpus.len()
    );
    Ok(())
}

fn judge(got: &Answer, want: &Answer) -> (std::result::Result<(), String>, bool, bool) {
    let non_empty = want.error_type().is_none() && result_len(want) > 0;
    match compare_answers(got, want, 0.0) {
        Ok(()) => (Ok(()), non_empty, false),
        Err(_) => {
            let r = compare_answers(got, want, REL);
            let approx = r.is_ok();
            (r, non_empty, approx)
        }
    }
}

/// Documented deviation (docs/read-path.md): a bare range selector as the whole query cannot be
/// unioned over several clauses, so it is refused with a hint; with one clause it is exact.
fn deviation_bare_range_selector(env: &Env) -> Result<()> {
    let at = env.eval_time_param();
    let instant = |q: &str| vec![("query", q.to_string()), ("time", at.clone())];
    // team-a: two clauses may both match `{namespace="team-a"}`.
    let q = instant(r#"{namespace="team-a"}[5m]"#);
    let got = env.tenant_get(Some("team-a"), "/api/v1/query", &q)?;
    got.expect_error(400, "bad_data")?;
    ensure!(
        got.body["error"]
            .as_str()
            .unwrap_or("")
            .contains("last_over_time"),
        "hint missing: {}",
        got.body
    );
    // The suggested form is exact.
    let q = instant(r#"last_over_time({namespace="team-a"}[5m])"#);
    let got = env.tenant_get(Some("team-a"), "/api/v1/query", &q)?;
    let want = env.oracle_get("team-a", "/api/v1/query", &q)?;
    compare_answers(&got, &want, 0.0).map_err(anyhow::Error::msg)?;
    ensure!(result_len(&want) > 0, "empty answer proves nothing");
    // team-c has one clause: a bare range selector works and equals the oracle.
    let q = instant("http_requests_total[5m]");
    let got = env.tenant_get(Some("team-c"), "/api/v1/query", &q)?;
    let want = env.oracle_get("team-c", "/api/v1/query", &q)?;
    compare_answers(&got, &want, 0.0).map_err(anyhow::Error::msg)?;
    ensure!(
        want.body["data"]["resultType"] == "matrix" && result_len(&want) > 0,
        "{}",
        want.body
    );
    Ok(())
}

/// Shapes promql-parser's own printer could not write back (empty label lists, a negative `@`
/// time), so the proxy used to refuse them: its printer writes them faithfully, and the answers
/// equal the oracle's for every tenant (docs/read-path.md, "The printer").
fn printer_shapes_match_the_oracle(env: &Env) -> Result<()> {
    let at = env.eval_time_param();
    // A metric each tenant has series of.
    let shapes = |m: &str| {
        [
            (format!("sum by () ({m})"), true),
            (format!("count without () ({m})"), true),
            (format!("sum({m}) by ()"), true),
            (format!("count({m} * ignoring () {m})"), true),
            (format!("count({m} and on () {m})"), true),
            (
                format!("count by (job) ({m}) > bool on () group_left () count({m})"),
                true,
            ),
            (format!("count({m} @ -100)"), false),
        ]
    };
    for (tenant, metric) in [
        ("team-a", "up"),
        ("team-b", "container_cpu_usage_seconds_total"),
    ] {
        for (q, must_have_data) in shapes(metric) {
            let params = vec![("query", q.clone()), ("time", at.clone())];
            let got = env.tenant_get(Some(tenant), "/api/v1/query", &params)?;
            let want = env.oracle_get(tenant, "/api/v1/query", &params)?;
            compare_answers(&got, &want, REL).map_err(|e| anyhow::anyhow!("{tenant} {q}: {e}"))?;
            ensure!(
                got.status == 200,
                "{tenant} {q}: the proxy answered {}: {}",
                got.status,
                got.body
            );
            ensure!(
                !must_have_data || result_len(&want) > 0,
                "{tenant} {q}: an empty answer proves nothing: {}",
                want.body
            );
        }
    }
    Ok(())
}
