//! The table (`scenario | proxy | peer | ratio | target | met?`) and `docs/benchmarks.md`
//! around it: machine, versions, date, command, and the notes of every row.

use std::fmt::Write as _;
use std::time::Duration;

use super::Row;
use super::env::Ctx;

fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

pub fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| scenario | unit | proxy | peer | proxy vs peer (>1 = proxy better) | target | met? |\n|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let proxy = r.proxy.map_or("—".to_string(), fmt_num);
        let peer = r
            .peer
            .as_ref()
            .map_or("—".to_string(), |(n, v)| format!("{} ({n})", fmt_num(*v)));
        let ratio = r.ratio().map_or("—".to_string(), |x| format!("{x:.2}×"));
        let target = r.target.map_or("—".to_string(), |t| {
            let op = match r.better {
                super::Better::Higher => "≥",
                super::Better::Lower => "≤",
            };
            match r.ratio_goal {
                Some(goal) => format!("{op} {} and ≥ {goal:.1}× peer", fmt_num(t)),
                None => format!("{op} {}", fmt_num(t)),
            }
        });
        let met = match r.met() {
            Some(true) => "yes",
            Some(false) => "**no**",
            None if r.proxy.is_none() => "not measured",
            None => "—",
        };
        let _ = writeln!(
            s,
            "| {} | {} | {proxy} | {peer} | {ratio} | {target} | {met} |",
            r.scenario, r.unit
        );
    }
    s
}

fn first_line_of(path: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

fn machine() -> String {
    let cpu = first_line_of("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = first_line_of("/proc/meminfo", "MemTotal")
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or("unknown".to_string(), |kib| {
            format!("{:.1} GiB", kib / 1024.0 / 1024.0)
        });
    let os = first_line_of("/etc/os-release", "PRETTY_NAME")
        .map(|s| s.trim_matches('"').to_string())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, {mem} RAM, {os}")
}

fn date_utc() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

pub fn document(
    ctx: &Ctx,
    table: &str,
    rows: &[Row],
    scenarios: &[&str],
    took: Duration,
) -> String {
    let mut cmd = format!(
        "cargo xtask bench {}",
        if scenarios.len() > 1 {
            "all"
        } else {
            scenarios[0]
        }
    );
    if ctx.quick {
        cmd.push_str(" --quick");
    } else {
        let _ = write!(cmd, " --duration {}s", ctx.duration.as_secs());
    }
    if ctx.repeats > 1 {
        let _ = write!(cmd, " --repeats {}", ctx.repeats);
    }
    let mut d = String::new();
    let _ = writeln!(d, "# Benchmarks\n");
    let _ = writeln!(
        d,
        "Produced by `{cmd}` on {} ({} min). Regenerate with the same command; it rewrites this file.\n",
        date_utc(),
        took.as_secs() / 60
    );
    let _ = writeln!(d, "* Machine: {}", machine());
    let _ = writeln!(d, "* proxy: {} (release build)", env!("CARGO_PKG_VERSION"));
    for (k, v) in &ctx.versions {
        let _ = writeln!(d, "* {k}: {v}");
    }
    let _ = writeln!(
        d,
        "* Load runs: {} s each after a warm-up run, {} repeat(s), median shown{}.",
        ctx.duration.as_secs(),
        ctx.repeats,
        if ctx.quick {
            "; **quick mode: shorter runs, criterion --quick, 200k collector series — indicative only**"
        } else {
            ""
        }
    );
    let _ = writeln!(
        d,
        "\nFigures are per CPU-second of the process under test (wrk, the target, the nginx sink and \
         Prometheus share the machine's cores), the harness is `bench/harness/` (a copy of the \
         shared peer harness: same payloads, same sink). Ingest figures count the target's CPU \
         until the sink has received everything it accepted (the drain after wrk stops), for the \
         proxy and vmagent alike: both answer before they deliver. Ratio > 1 means the proxy does \
         better than the peer. Targets come from issue #14; missing them is reported, not hidden, \
         and a row that could not be measured fails the command.\n"
    );
    d.push_str(table);
    d.push_str("\n## Notes per row\n\n");
    for r in rows.iter().filter(|r| !r.note.is_empty()) {
        let _ = writeln!(d, "* **{}**: {}", r.scenario, r.note);
    }
    d.push_str(
        "\nRaw records of the load runs: `target/bench/results/*.jsonl` (one measure.py record per run).\n",
    );
    d
}

/// The hand-written part of docs/benchmarks.md (from `## Where the time goes` on): profiles
/// are read by people, not generated, so a new run keeps them.
pub const NOTES_HEADING: &str = "\n## Where the time goes\n";

pub fn keep_notes(old: &str) -> String {
    match old.find(NOTES_HEADING) {
        Some(at) => old[at..].to_string(),
        None => format!(
            "{NOTES_HEADING}\n_To be filled from profiles (`perf record -g -p <proxy pid>` during `cargo xtask bench ingest`)._\n"
        ),
    }
}

#[cfg(test)]
mod notes_tests {
    use super::*;

    #[test]
    fn a_new_run_keeps_the_hand_written_notes() {
        let old = "# Benchmarks\n| table |\n\n## Where the time goes\n\n* ingest: decode.\n";
        assert_eq!(
            keep_notes(old),
            "\n## Where the time goes\n\n* ingest: decode.\n"
        );
        assert!(keep_notes("# Benchmarks\n").contains("To be filled"));
    }
}
