//! Differential fuzzing against the oracle: a deterministic generator writes PromQL from the
//! grammar over the lab workload's metric and label names (selectors and matchers, range and
//! instant functions, aggregations with by/without, binary operators with on/ignoring and
//! group_left/group_right, set operators, subqueries, offset, @, literals, label_replace). Each
//! query goes through the proxy as a tenant and straight to that tenant's oracle Prometheus.
//!
//! A series outside the tenant's policy in the proxy's answer is a LEAK and fails the test.
//! Other differences are reported by class and do not fail: some are documented deviations
//! (refused syntax, a bare range selector over several clauses, union collisions), others
//! are float order or NaN. `PMTP_FUZZ_SEED` and `PMTP_FUZZ_QUERIES` override the seed and the
//! count (`cargo xtask fuzz-oracle`); `PMTP_FUZZ_TENANTS` the tenants (comma-separated).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, ensure};

use crate::support::{
    Answer, Env, PolicyView, answer_series, compare_answers, proxy_and_oracle, result_len,
};

/// The in-suite run: bounded, well under a minute.
const DEFAULT_QUERIES: usize = 150;
const DEFAULT_SEED: u64 = 0x8_b1ba55;
const DEFAULT_TENANTS: &str = "team-a,team-d";

/// A small deterministic PRNG (splitmix64): the same seed writes the same queries everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Names the generator draws from: the lab workload's metric names and label values (every
/// tenant's, so queries constantly reach for foreign series).
pub struct Vocabulary {
    pub metrics: Vec<String>,
    pub labels: Vec<(String, Vec<String>)>,
    /// Seconds of the evaluation times that `@` may name.
    pub at_times: Vec<f64>,
}

impl Vocabulary {
    pub fn from_env(env: &Env) -> Vocabulary {
        let mut metrics = BTreeSet::new();
        let mut labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for d in &env.lab.series {
            for (k, v) in &d.labels {
                if k == "__name__" {
                    metrics.insert(v.clone());
                } else {
                    labels.entry(k.clone()).or_default().insert(v.clone());
                }
            }
        }
        let end = env.lab.window.end_ms as f64 / 1000.0;
        Vocabulary {
            metrics: metrics.into_iter().collect(),
            labels: labels
                .into_iter()
                .map(|(k, v)| (k, v.into_iter().take(12).collect()))
                .collect(),
            at_times: vec![end, end - 600.0, end - 1500.0],
        }
    }
}

/// The generator: `query()` writes one PromQL expression.
pub struct Gen<'a> {
    pub rng: Rng,
    pub vocab: &'a Vocabulary,
}

const LABELS_OFTEN: [&str; 6] = ["namespace", "job", "instance", "pod", "node", "le"];
const RANGES: [&str; 4] = ["1m", "5m", "10m", "30m"];
const RANGE_FUNCS: [&str; 12] = [
    "rate",
    "irate",
    "increase",
    "delta",
    "changes",
    "resets",
    "avg_over_time",
    "max_over_time",
    "min_over_time",
    "count_over_time",
    "last_over_time",
    "present_over_time",
];
const INSTANT_FUNCS: [&str; 9] = [
    "abs",
    "ceil",
    "floor",
    "sqrt",
    "ln",
    "sort",
    "sort_desc",
    "timestamp",
    "-",
];
const AGGS: [&str; 8] = [
    "sum", "avg", "min", "max", "count", "group", "stddev", "stdvar",
];
const ARITH: [&str; 6] = ["+", "-", "*", "/", "%", "^"];
const CMP: [&str; 6] = ["==", "!=", ">", "<", ">=", "<="];
const SET: [&str; 3] = ["and", "or", "unless"];

impl Gen<'_> {
    fn label_name(&mut self) -> String {
        if self.rng.chance(70) {
            self.rng.pick(&LABELS_OFTEN).to_string()
        } else {
            self.rng.pick(&self.vocab.labels).0.clone()
        }
    }

    /// One or two label names; now and then none (`by ()`, `ignoring()`).
    fn label_list(&mut self) -> String {
        let n = if self.rng.chance(10) {
            0
        } else {
            1 + self.rng.below(2)
        };
        let mut names: Vec<String> = (0..n).map(|_| self.label_name()).collect();
        names.sort();
        names.dedup();
        names.join(", ")
    }

    fn matcher(&mut self) -> String {
        let (name, values) = self.rng.pick(&self.vocab.labels).clone();
        let name = if self.rng.chance(50) && self.vocab.labels.iter().any(|(n, _)| n == "namespace")
        {
            "namespace".to_string()
        } else {
            name
        };
        let values = self
            .vocab
            .labels
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or(values);
        let value = self.rng.pick(&values).clone();
        match self.rng.below(8) {
            0..=2 => format!(r#"{name}="{value}""#),
            3 => format!(r#"{name}!="{value}""#),
            4 => format!(
                r#"{name}=~"{}.*""#,
                value.chars().take(5).collect::<String>()
            ),
            5 => format!(r#"{name}=~"{value}|{}""#, self.rng.pick(&values)),
            6 => format!(r#"{name}!~"{value}""#),
            _ => format!(r#"{name}=~".+""#),
        }
    }

    fn selector(&mut self) -> String {
        let n = match self.rng.below(20) {
            0..=9 => 0,
            10..=16 => 1,
            _ => 2,
        };
        let mut matchers: Vec<String> = (0..n).map(|_| self.matcher()).collect();
        let name = match self.rng.below(10) {
            0 => {
                let m = self.rng.pick(&self.vocab.metrics).clone();
                let prefix: String = m.chars().take(4).collect();
                matchers.push(format!(r#"__name__=~"{prefix}.*""#));
                None
            }
            1 if !matchers.is_empty() => None,
            _ => Some(self.rng.pick(&self.vocab.metrics).clone()),
        };
        let body = if matchers.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", matchers.join(","))
        };
        match name {
            Some(n) => format!("{n}{body}"),
            None if body.is_empty() => r#"{__name__=~".+"}"#.to_string(),
            None => body,
        }
    }

    fn modifiers(&mut self) -> String {
        let mut out = String::new();
        if self.rng.chance(15) {
            let t = *self.rng.pick(&self.vocab.at_times);
            out.push_str(&match self.rng.below(3) {
                0 => " @ end()".to_string(),
                1 => " @ start()".to_string(),
                _ => format!(" @ {t}"),
            });
        }
        if self.rng.chance(15) {
            out.push_str(&format!(" offset {}", self.rng.pick(&["1m", "5m", "10m"])));
        }
        out
    }

    fn matrix(&mut self, depth: usize) -> String {
        let r = self.rng.pick(&RANGES);
        if depth > 0 && self.rng.chance(20) {
            let inner = self.vector(depth - 1);
            let step = self.rng.pick(&["", "1m", "30s"]);
            format!("({inner})[{r}:{step}]{}", self.modifiers())
        } else {
            format!("{}[{r}]{}", self.selector(), self.modifiers())
        }
    }

    fn scalar(&mut self, depth: usize) -> String {
        match self.rng.below(4) {
            0 if depth > 0 => format!("scalar({})", self.vector(depth - 1)),
            1 => format!("{}", self.rng.below(100)),
            2 => format!("{}.5", self.rng.below(10)),
            _ => self.rng.pick(&["0", "1", "2", "1e3", "-1"]).to_string(),
        }
    }

    fn grouping(&mut self) -> String {
        match self.rng.below(3) {
            0 => String::new(),
            1 => format!(" by ({})", self.label_list()),
            _ => format!(" without ({})", self.label_list()),
        }
    }

    fn vector_matching(&mut self, set_op: bool) -> String {
        let mut out = match self.rng.below(3) {
            0 => String::new(),
            1 => format!(" on({})", self.label_list()),
            _ => format!(" ignoring({})", self.label_list()),
        };
        if !set_op && !out.is_empty() && self.rng.chance(35) {
            let side = self.rng.pick(&["group_left", "group_right"]);
            out.push_str(&format!(" {side}({})", self.label_list()));
        }
        out
    }

    pub fn vector(&mut self, depth: usize) -> String {
        if depth == 0 {
            return format!("{}{}", self.selector(), self.modifiers());
        }
        let d = depth - 1;
        match self.rng.below(16) {
            0 | 1 => format!("{}{}", self.selector(), self.modifiers()),
            2 | 3 => format!("{}({})", self.rng.pick(&RANGE_FUNCS), self.matrix(depth)),
            4 => format!(
                "quantile_over_time(0.{}, {})",
                1 + self.rng.below(9),
                self.matrix(depth)
            ),
            5 | 6 => {
                let agg = self.rng.pick(&AGGS);
                let g = self.grouping();
                format!("{agg}{g} ({})", self.vector(d))
            }
            7 => {
                let agg = self.rng.pick(&["topk", "bottomk"]);
                format!("{agg}({}, {})", 1 + self.rng.below(3), self.vector(d))
            }
            8 => format!("quantile{} (0.9, {})", self.grouping(), self.vector(d)),
            9 => format!(
                "count_values{} (\"v\", {})",
                self.grouping(),
                self.vector(d)
            ),
            10 => {
                let (l, r) = (self.vector(d), self.vector(d));
                let op = self.rng.pick(&ARITH);
                format!("({l}) {op}{} ({r})", self.vector_matching(false))
            }
            11 => {
                let (l, r) = (self.vector(d), self.vector(d));
                let op = self.rng.pick(&CMP);
                let b = if self.rng.chance(40) { " bool" } else { "" };
                format!("({l}) {op}{b}{} ({r})", self.vector_matching(false))
            }
            12 => {
                let (l, r) = (self.vector(d), self.vector(d));
                let op = self.rng.pick(&SET);
                format!("({l}) {op}{} ({r})", self.vector_matching(true))
            }
            13 => {
                let v = self.vector(d);
                let s = self.scalar(d);
                let op = self.rng.pick(&ARITH);
                if self.rng.chance(50) {
                    format!("({v}) {op} {s}")
                } else {
                    format!("{s} {op} ({v})")
                }
            }
            14 => {
                let v = self.vector(d);
                let src = self.label_name();
                let dst = self.rng.pick(&["fz_dst", "namespace", "job", "fz_copy"]);
                if self.rng.chance(70) {
                    let repl = self.rng.pick(&["$1", "fz", "${1}-fz"]);
                    format!(r#"label_replace({v}, "{dst}", "{repl}", "{src}", "(.*)")"#)
                } else {
                    let other = self.label_name();
                    format!(r#"label_join({v}, "{dst}", "-", "{src}", "{other}")"#)
                }
            }
            _ => match self.rng.below(6) {
                0 => format!("absent({})", self.vector(d)),
                1 => format!("absent_over_time({})", self.matrix(depth)),
                2 => format!("vector({})", self.scalar(d)),
                3 => format!(
                    "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket{}[5m])))",
                    self.rng.pick(&[
                        "",
                        r#"{namespace="team-a"}"#,
                        r#"{namespace="team-b"}"#,
                        r#"{environment="production"}"#
                    ])
                ),
                4 => format!("clamp_min({}, {})", self.vector(d), self.rng.below(5)),
                _ => format!("{}({})", self.rng.pick(&INSTANT_FUNCS), self.vector(d)),
            },
        }
    }

    /// One query: mostly an instant vector expression, sometimes a literal or a scalar.
    pub fn query(&mut self) -> String {
        match self.rng.below(40) {
            0 => self.scalar(1),
            _ => {
                let depth = 1 + self.rng.below(3);
                self.vector(depth)
            }
        }
    }
}

/// How the proxy's answer compares with the oracle's (a leak is reported separately).
fn classify(query: &str, got: &Answer, want: &Answer) -> &'static str {
    match (got.error_type(), want.error_type()) {
        (Some(_), Some(_)) => {
            return if compare_answers(got, want, 0.0).is_ok() {
                "equal"
            } else {
                "both_refused_differently"
            };
        }
        (Some(_), None) => {
            let msg = got.body["error"].as_str().unwrap_or("");
            return if msg.contains("printed back faithfully") || msg.contains("does not parse back")
            {
                "proxy_refused_printer_roundtrip"
            } else if msg.contains("last_over_time") {
                "proxy_refused_bare_range_selector"
            } else if msg.contains("parse error") {
                "proxy_refused_parse"
            } else if got.status >= 500 {
                "proxy_error_5xx"
            } else {
                "proxy_refused_other"
            };
        }
        (None, Some(_)) => {
            let msg = want.body["error"].as_str().unwrap_or("");
            return if msg.contains("at least one non-empty matcher") || msg.contains("non-empty") {
                "oracle_refused_empty_matchers"
            } else if msg.contains("same labelset")
                || msg.contains("many-to-many")
                || msg.contains("duplicate")
            {
                "oracle_refused_duplicate_series"
            } else {
                "oracle_refused_other"
            };
        }
        (None, None) => {}
    }
    if compare_answers(got, want, 0.0).is_ok() {
        return "equal";
    }
    if compare_answers(got, want, 1e-9).is_ok() {
        return "equal_within_1e-9";
    }
    if got.body["data"]["resultType"] != want.body["data"]["resultType"] {
        return "result_type_differs";
    }
    let (g, w) = (answer_series(got), answer_series(want));
    // topk/bottomk break ties by series order; count_values turns float noise into labels.
    let order_dependent = ["topk", "bottomk", "count_values"]
        .iter()
        .any(|f| query.contains(f));
    if order_dependent {
        "differ_order_dependent"
    } else if g == w {
        "values_differ"
    } else if g.is_subset(&w) {
        "proxy_subset_of_oracle"
    } else if w.is_subset(&g) {
        "proxy_superset_of_oracle"
    } else {
        "series_differ"
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Differential run: every generated query for every tenant, as an instant and as a range query.
pub fn differential(env: &Env) -> Result<()> {
    let seed: u64 = env_or("PMTP_FUZZ_SEED", DEFAULT_SEED);
    let count: usize = env_or("PMTP_FUZZ_QUERIES", DEFAULT_QUERIES);
    let tenant_list: String = env_or("PMTP_FUZZ_TENANTS", DEFAULT_TENANTS.to_string());
    let tenants: Vec<&'static str> = crate::support::TENANTS
        .into_iter()
        .filter(|t| tenant_list.split(',').any(|x| x.trim() == *t))
        .collect();
    ensure!(
        !tenants.is_empty(),
        "PMTP_FUZZ_TENANTS={tenant_list}: no fixture tenant"
    );
    let vocab = Vocabulary::from_env(env);
    let mut generator = Gen {
        rng: Rng::new(seed),
        vocab: &vocab,
    };
    let queries: Vec<String> = (0..count).map(|_| generator.query()).collect();
    let views: BTreeMap<&str, PolicyView> = tenants
        .iter()
        .map(|t| PolicyView::new(env, t).map(|v| (*t, v)))
        .collect::<Result<_>>()?;

    let mut jobs = Vec::new();
    for q in &queries {
        for t in &tenants {
            let mut instant = vec![("query", q.clone()), ("time", env.eval_time_param())];
            jobs.push((*t, "/api/v1/query", std::mem::take(&mut instant)));
            let mut range = env.range_params();
            range.push(("query", q.clone()));
            jobs.push((*t, "/api/v1/query_range", range));
        }
    }
    let started = std::time::Instant::now();
    let answers = proxy_and_oracle(env, &jobs, 8);

    let mut classes: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut leaks = Vec::new();
    let mut non_empty = 0;
    for ((tenant, path, params), (got, want)) in jobs.iter().zip(answers) {
        let q = &params
            .iter()
            .find(|(k, _)| *k == "query")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let mode = if path.ends_with("range") {
            "range"
        } else {
            "instant"
        };
        let (got, want) = match (got, want) {
            (Ok(g), Ok(w)) => (g, w),
            (g, w) => {
                classes.entry("transport_error").or_default().push(format!(
                    "[{tenant} {mode}] {q}: {:?} / {:?}",
                    g.err(),
                    w.err()
                ));
                continue;
            }
        };
        for l in views[tenant].leaks(&got, &want, q) {
            leaks.push(format!("[{mode}] {q}: {l}"));
        }
        if want.error_type().is_none() && result_len(&want) > 0 {
            non_empty += 1;
        }
        let class = classify(q, &got, &want);
        let detail = compare_answers(&got, &want, 1e-9).err().unwrap_or_default();
        classes
            .entry(class)
            .or_default()
            .push(format!("[{tenant} {mode}] {q}: {detail:.300}"));
    }
    let mismatches: usize = classes
        .iter()
        .filter(|(c, _)| !c.starts_with("equal"))
        .map(|(_, v)| v.len())
        .sum();
    println!(
        "fuzz-oracle: seed={seed} queries={} tenants={} comparisons={} non_empty={non_empty} leaks={} mismatches={mismatches} in {:.1?}",
        queries.len(),
        tenants.join(","),
        jobs.len(),
        leaks.len(),
        started.elapsed()
    );
    for (class, items) in &classes {
        println!("fuzz-oracle: class {class} {}", items.len());
    }
    let shown: usize = env_or("PMTP_FUZZ_SHOW", 3);
    for (class, items) in classes.iter().filter(|(c, _)| !c.starts_with("equal")) {
        for item in items.iter().take(shown) {
            println!("fuzz-oracle: mismatch {class} {item}");
        }
    }
    for l in &leaks {
        println!("fuzz-oracle: LEAK {l}");
    }
    ensure!(
        leaks.is_empty(),
        "{} answers hold series outside the tenant's policy:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
    // A run whose oracle answers are nearly all empty proves nothing.
    ensure!(
        non_empty * 10 >= jobs.len(),
        "only {non_empty} of {} oracle answers hold series",
        jobs.len()
    );
    Ok(())
}
