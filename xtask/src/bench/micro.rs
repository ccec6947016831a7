//! The in-process scenarios: `rewrite` runs `cargo bench -p proxy --bench rewrite` (criterion:
//! the query corpus, the 10 governance rules, the remote-write codec) and `collector` runs
//! `examples/collector_pipeline.rs` in release; both parse what those print.

use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use regex::Regex;

use super::env::Ctx;
use super::{Better, Row};

fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

pub(super) fn run_capture(ctx: &Ctx, args: &[&str]) -> anyhow::Result<String> {
    eprintln!("xtask bench: cargo {}", args.join(" "));
    let out = Command::new(cargo())
        .args(args)
        .current_dir(&ctx.root)
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{text}");
    if !out.status.success() {
        bail!("cargo {} failed ({})", args.join(" "), out.status);
    }
    Ok(text)
}

/// A criterion time as seconds: `1.23 µs`, `4.5 ms`, `900 ns`, `1.1 s`.
fn seconds(value: &str, unit: &str) -> Option<f64> {
    let v: f64 = value.parse().ok()?;
    let m = match unit {
        "ps" => 1e-12,
        "ns" => 1e-9,
        "µs" | "us" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        _ => return None,
    };
    Some(v * m)
}

/// The point estimate (middle value) of criterion's `time: [lo mid hi]` for benchmark `id`.
pub fn criterion_time(out: &str, id: &str) -> Option<f64> {
    let re = Regex::new(&format!(
        r"(?m)^{}\s+time:\s+\[\S+ \S+ (\S+) (\S+) ",
        regex::escape(id)
    ))
    .ok()?;
    let c = re.captures(out)?;
    seconds(&c[1], &c[2])
}

/// `{label}: median X µs p90 Y µs max Z µs (N queries, M refused)` as printed by the bench:
/// groups 1-5 are median, p90, max, queries, refused.
fn per_query_line(out: &str, label: &str) -> Option<Vec<String>> {
    let re = Regex::new(&format!(
        r"(?m)^{}: median ([\d.]+) µs p90 ([\d.]+) µs max ([\d.]+) µs \((\d+) queries, (\d+) refused\)",
        regex::escape(label)
    ))
    .ok()?;
    let c = re.captures(out)?;
    Some(
        c.iter()
            .map(|m| m.map_or("", |m| m.as_str()).to_string())
            .collect(),
    )
}

fn rewrite_rows() -> Vec<Row> {
    vec![
        Row::new(
            "rewrite: corpus, median per query",
            "µs",
            Better::Lower,
            Some(20.0),
        ),
        Row::new("rewrite: corpus, p90 per query", "µs", Better::Lower, None),
        Row::new(
            "rewrite: corpus, cached, median per query",
            "µs",
            Better::Lower,
            Some(2.0),
        ),
        Row::new("rewrite: 1-clause policy, cold", "µs", Better::Lower, None),
        Row::new("rewrite: 10-clause policy, cold", "µs", Better::Lower, None),
        Row::new(
            "rewrite: 100-clause policy, cold",
            "µs",
            Better::Lower,
            None,
        ),
        Row::new(
            "relabel: 10 governance rules",
            "ns/series",
            Better::Lower,
            None,
        ),
        Row::new(
            "codec: decode + encode 2,000-series WriteRequest",
            "ms",
            Better::Lower,
            None,
        ),
    ]
}

pub fn rewrite(ctx: &mut Ctx) -> Vec<Row> {
    let mut args = vec!["bench", "-p", "proxy", "--bench", "rewrite", "--"];
    if ctx.quick {
        args.push("--quick");
    }
    let out = match run_capture(ctx, &args) {
        Ok(o) => o,
        Err(e) => return Row::failed(rewrite_rows(), &format!("{e:#}")),
    };
    let per_query = per_query_line(&out, "rewrite per-query");
    let cached = per_query_line(&out, "rewrite cached per-query");
    let num = |i: usize| per_query.as_ref().and_then(|c| c[i].parse::<f64>().ok());
    let mut rows = rewrite_rows().into_iter();
    let mut out_rows = Vec::new();
    let note = match &per_query {
        Some(c) => format!(
            "{} queries ({} refused by policy), each query's median; max {} µs",
            &c[4], &c[5], &c[3]
        ),
        None => "per-query line not found in the bench output".to_string(),
    };
    let take = |r: Option<Row>| r.unwrap_or_else(|| Row::new("?", "", Better::Lower, None));
    out_rows.push(take(rows.next()).proxy(num(1)).note(&note));
    out_rows.push(take(rows.next()).proxy(num(2)));
    let cached_median = cached.as_ref().and_then(|c| c[1].parse::<f64>().ok());
    out_rows.push(
        take(rows.next())
            .proxy(cached_median)
            .note("the same corpus through a warm rewrite cache (a dashboard's repeated queries)"),
    );
    for n in [1, 10, 100] {
        let cold = criterion_time(&out, &format!("rewrite-clauses/cold/{n}"));
        let warm = criterion_time(&out, &format!("rewrite-clauses/cached/{n}"));
        let mut row = take(rows.next()).proxy(cold.map(|s| s * 1e6));
        row = match warm {
            Some(w) => row.note(&format!(
                "cold; cached {:.2} µs; `sum by (namespace) (rate(http_requests_total{{job=\"api\"}}[5m]))`, every clause applies",
                w * 1e6
            )),
            None => row.note("cached time not found in the bench output"),
        };
        out_rows.push(row);
    }
    let relabel = criterion_time(&out, "relabel/governance").map(|s| s * 1e9 / 2000.0);
    out_rows.push(take(rows.next()).proxy(relabel).note(
        "incl. a clone of the 2,000 series per iteration; vmagent's rules cost ≈ 2.1–4.6 µs/sample more than its plain path (RESULTS-anchors)",
    ));
    let codec = match (
        criterion_time(&out, "codec/decode"),
        criterion_time(&out, "codec/encode"),
    ) {
        (Some(d), Some(e)) => Some((d + e) * 1e3),
        _ => None,
    };
    out_rows.push(
        take(rows.next())
            .proxy(codec)
            .note("snappy + protobuf, in-process"),
    );
    out_rows
}

/// Series counts of the collector's memory curve (the 1M point also gives the speed rows).
fn collector_points(quick: bool) -> &'static [usize] {
    if quick {
        &[100_000, 1_000_000]
    } else {
        &[100_000, 1_000_000, 5_000_000]
    }
}

fn rss_row(series: usize) -> Row {
    let target = (series == 1_000_000).then_some(256.0);
    Row::new(
        &format!("collector: peak RSS at {} series", human(series)),
        "MiB",
        Better::Lower,
        target,
    )
}

fn human(n: usize) -> String {
    if n >= 1_000_000 {
        format!("{}M", n / 1_000_000)
    } else {
        format!("{}k", n / 1000)
    }
}

fn collector_rows(quick: bool) -> Vec<Row> {
    let mut rows = vec![
        Row::new(
            "collector: collect→relabel→encode, 1M series",
            "series/CPU-s",
            Better::Higher,
            Some(300_000.0),
        ),
        Row::new(
            "collector: collect→relabel→encode, 1M series, wall",
            "series/s",
            Better::Higher,
            None,
        ),
    ];
    rows.extend(collector_points(quick).iter().map(|&n| rss_row(n)));
    rows
}

/// What one run of the example printed.
#[derive(Debug, Default, PartialEq)]
pub struct PipelineRun {
    pub wall_rate: Option<f64>,
    pub cpu_rate: Option<f64>,
    pub peak_rss_mib: Option<f64>,
}

pub fn parse_pipeline(out: &str) -> PipelineRun {
    let num = |re: &str| {
        Regex::new(re)
            .expect("static regex")
            .captures(out)
            .and_then(|c| c[1].parse::<f64>().ok())
    };
    PipelineRun {
        wall_rate: num(r"whole pipeline: (\d+) series/s \(mean\)"),
        cpu_rate: num(
            r"pipeline CPU: [\d.]+ s per cycle \(mean\), (\d+) series per CPU-second \(mean\)",
        ),
        peak_rss_mib: num(r"peak RSS \(VmHWM\) (?:during the pipeline|at exit):\s+([\d.]+) MiB"),
    }
}

pub fn collector(ctx: &mut Ctx) -> Vec<Row> {
    let mut runs = Vec::new();
    for &n in collector_points(ctx.quick) {
        let series = n.to_string();
        // Fewer cycles at 5M: each one streams 5M series.
        let cycles = if n > 1_000_000 { "2" } else { "3" };
        let args = [
            "run",
            "--release",
            "-q",
            "-p",
            "proxy",
            "--example",
            "collector_pipeline",
            "--",
            "--series",
            &series,
            "--cycles",
            cycles,
        ];
        let run = match run_capture(ctx, &args) {
            Ok(out) => Ok(parse_pipeline(&out)),
            Err(e) => Err(format!("{e:#}")),
        };
        runs.push((n, run));
    }
    let at_1m = runs
        .iter()
        .find(|(n, _)| *n == 1_000_000)
        .and_then(|(_, r)| r.as_ref().ok());
    let note = "streamed remote-read frames (one XOR chunk a series, 58 samples before the window and 2 in it) → decode → relabel/shape → encode, 3 cycles, pipeline thread only; no peer";
    let mut rows = collector_rows(ctx.quick).into_iter();
    let mut v = Vec::new();
    let why = |n: usize| {
        runs.iter()
            .find(|(m, _)| *m == n)
            .and_then(|(_, r)| r.as_ref().err().cloned())
    };
    for (row, value) in [
        (rows.next(), at_1m.and_then(|r| r.cpu_rate)),
        (rows.next(), at_1m.and_then(|r| r.wall_rate)),
    ] {
        if let Some(row) = row {
            let row = row.proxy(value).note(note);
            v.push(match why(1_000_000) {
                Some(e) => row.note(&format!("not run: {e}")),
                None => row,
            });
        }
    }
    for (&n, row) in collector_points(ctx.quick).iter().zip(rows) {
        let rss = runs
            .iter()
            .find(|(m, _)| *m == n)
            .and_then(|(_, r)| r.as_ref().ok())
            .and_then(|r| r.peak_rss_mib);
        let row = row
            .proxy(rss)
            .note("VmHWM of the whole process while the pipeline runs");
        v.push(match why(n) {
            Some(e) => row.note(&format!("not run: {e}")),
            None => row,
        });
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_criterion_times() {
        let out = "relabel/governance      time:   [2.4256 ms 2.4967 ms 2.5144 ms]\n\
                   codec/encode            time:   [932.16 µs 941.43 µs 943.74 µs]\n";
        let t = criterion_time(out, "relabel/governance").expect("found");
        assert!((t - 2.4967e-3).abs() < 1e-9);
        let t = criterion_time(out, "codec/encode").expect("found");
        assert!((t - 941.43e-6).abs() < 1e-9);
        assert_eq!(criterion_time(out, "codec/decode"), None);
    }

    #[test]
    fn parses_the_collector_example() {
        let out = "whole pipeline: 412345 series/s (mean), 450000 series/s (best)\n\
                   pipeline CPU: 2.500 s per cycle (mean), 400000 series per CPU-second (mean), 410000 (best)\n\
                   peak RSS (VmHWM) during the pipeline: 101.5 MiB (RSS before it: 3.0 MiB)\n";
        assert_eq!(
            parse_pipeline(out),
            PipelineRun {
                wall_rate: Some(412_345.0),
                cpu_rate: Some(400_000.0),
                peak_rss_mib: Some(101.5),
            }
        );
        assert_eq!(parse_pipeline("nothing"), PipelineRun::default());
    }

    #[test]
    fn parses_the_per_query_lines() {
        let out = "rewrite per-query: median 12.50 µs p90 30.00 µs max 400.10 µs (202 queries, 3 refused)\n\
                   rewrite cached per-query: median 0.41 µs p90 0.60 µs max 1.10 µs (202 queries, 3 refused)\n\
                   rewrite-clauses/cold/10 time:   [40.1 µs 41.2 µs 42.0 µs]\n";
        let cold = per_query_line(out, "rewrite per-query").expect("found");
        assert_eq!(
            (cold[1].as_str(), cold[4].as_str(), cold[5].as_str()),
            ("12.50", "202", "3")
        );
        let cached = per_query_line(out, "rewrite cached per-query").expect("found");
        assert_eq!(cached[1], "0.41");
        let t = criterion_time(out, "rewrite-clauses/cold/10").expect("found");
        assert!((t - 41.2e-6).abs() < 1e-12);
    }
}
