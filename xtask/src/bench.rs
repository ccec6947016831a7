//! `cargo xtask bench [ingest|read|rewrite|collector|memory|scale|all]`: every performance
//! figure of the proxy, measured in one run beside its peers (vmagent, vmauth) on the harness
//! copied into `bench/harness/`, printed as one table and written to `docs/benchmarks.md`.
//!
//! This module owns the command line, the scenario order, the result rows and the table; the
//! submodules own the setup ([`env`]), the criterion/example scenarios ([`micro`]), the memory
//! scenario ([`memory`]), the load scenarios through the harness ([`load`], [`read`]) and the
//! growth table ([`scale`]). A scenario that cannot run (a tool can't be fetched, a process
//! doesn't start) becomes a row that says why; the others still run, and the command then exits
//! 1 naming every figure it could not measure. Missing a target is reported in the table, not
//! by the exit code: benchmarks are measurements, never assertions.

mod env;
mod load;
mod memory;
mod micro;
mod read;
mod report;
mod scale;

use std::path::Path;
use std::time::Duration;

use anyhow::bail;

/// Arguments of `cargo xtask bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// ingest | read | rewrite | collector | memory | scale | all
    #[arg(default_value = "all")]
    pub scenario: String,
    /// Length of each load run (ingest, read), after its warm-up.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Load runs per (target, case); the table shows the median.
    #[arg(long, default_value_t = 1)]
    pub repeats: u32,
    /// Shorter runs for a smoke check: 8 s load runs, criterion's quick mode, the collector at
    /// 100k and 1M series only (5M without it). The table says it was a quick run.
    #[arg(long)]
    pub quick: bool,
    /// Don't write docs/benchmarks.md (print only).
    #[arg(long)]
    pub no_write: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad duration {s:?} (e.g. 20s, 500ms, 1m)"))?;
    if !(v > 0.0 && v * mult <= 3600.0) {
        return Err(format!("duration {s:?} out of range"));
    }
    Ok(Duration::from_secs_f64(v * mult))
}

/// Which way a figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// One line of the table: the proxy's figure, the peer's (if there is one) and the target.
#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: String,
    pub unit: &'static str,
    pub proxy: Option<f64>,
    pub peer: Option<(String, f64)>,
    pub target: Option<f64>,
    /// The least ratio to the peer (`ratio()`) the goal asks for besides `target`.
    pub ratio_goal: Option<f64>,
    pub better: Better,
    /// Why a figure is missing, or what to know about it.
    pub note: String,
    /// The peer this row compares with, when its figure could not be measured.
    pub peer_missing: Option<String>,
}

impl Row {
    pub fn new(scenario: &str, unit: &'static str, better: Better, target: Option<f64>) -> Row {
        Row {
            scenario: scenario.to_string(),
            unit,
            proxy: None,
            peer: None,
            target,
            ratio_goal: None,
            better,
            note: String::new(),
            peer_missing: None,
        }
    }

    pub fn proxy(mut self, v: Option<f64>) -> Row {
        self.proxy = v;
        self
    }

    /// The goal also asks for at least `ratio` times the peer.
    pub fn ratio_goal(mut self, ratio: f64) -> Row {
        self.ratio_goal = Some(ratio);
        self
    }

    pub fn peer(mut self, name: &str, v: Option<f64>) -> Row {
        self.peer = v.map(|v| (name.to_string(), v));
        if self.peer.is_none() {
            self.note_add(&format!("{name}: not measured"));
            self.peer_missing = Some(name.to_string());
        }
        self
    }

    pub fn note(mut self, n: &str) -> Row {
        self.note_add(n);
        self
    }

    fn note_add(&mut self, n: &str) {
        if n.is_empty() {
            return;
        }
        if !self.note.is_empty() {
            self.note.push_str("; ");
        }
        self.note.push_str(n);
    }

    /// The rows of a scenario that could not run: every expected row, with the reason.
    pub fn failed(rows: Vec<Row>, why: &str) -> Vec<Row> {
        rows.into_iter()
            .map(|r| r.note(&format!("not run: {why}")))
            .collect()
    }

    /// proxy ÷ peer, oriented so that > 1 means the proxy is better.
    pub fn ratio(&self) -> Option<f64> {
        let p = self.proxy?;
        let (_, q) = self.peer.as_ref()?;
        if p <= 0.0 || *q <= 0.0 {
            return None;
        }
        Some(match self.better {
            Better::Higher => p / q,
            Better::Lower => q / p,
        })
    }

    /// What of this row could not be measured (the proxy's figure or its peer's), with the
    /// row's notes, which say why.
    pub fn unmeasured(&self) -> Option<String> {
        let mut missing = Vec::new();
        if self.proxy.is_none() {
            missing.push("the proxy".to_string());
        }
        if let Some(peer) = &self.peer_missing {
            missing.push(peer.clone());
        }
        if missing.is_empty() {
            return None;
        }
        Some(format!(
            "{}: {} not measured ({})",
            self.scenario,
            missing.join(" and "),
            if self.note.is_empty() {
                "no reason recorded"
            } else {
                &self.note
            }
        ))
    }

    /// Whether the figure meets the target and, where the goal has one, the ratio to the peer.
    pub fn met(&self) -> Option<bool> {
        let (p, t) = (self.proxy?, self.target?);
        let absolute = match self.better {
            Better::Higher => p >= t,
            Better::Lower => p <= t,
        };
        match self.ratio_goal {
            None => Some(absolute),
            Some(goal) => Some(absolute && self.ratio()? >= goal),
        }
    }
}

const SCENARIOS: [&str; 6] = ["rewrite", "collector", "memory", "ingest", "read", "scale"];

/// `cargo xtask bench`.
pub fn run(root: &Path, args: &BenchArgs) -> anyhow::Result<i32> {
    let scenarios: Vec<&str> = match args.scenario.as_str() {
        "all" => SCENARIOS.to_vec(),
        s if SCENARIOS.contains(&s) => vec![s],
        s => bail!(
            "unknown scenario {s:?}: one of ingest, read, rewrite, collector, memory, scale, all"
        ),
    };
    let started = std::time::Instant::now();
    let mut ctx = env::Ctx::new(root, args)?;
    let mut rows = Vec::new();
    for s in &scenarios {
        eprintln!("xtask bench: == {s} ==");
        let got = match *s {
            "rewrite" => micro::rewrite(&mut ctx),
            "collector" => micro::collector(&mut ctx),
            "memory" => memory::run(&mut ctx),
            "ingest" => load::ingest(&mut ctx),
            "read" => read::run(&mut ctx),
            "scale" => scale::run(&mut ctx),
            _ => unreachable!("checked above"),
        };
        rows.extend(got);
        // Nothing started by one scenario outlives it.
        ctx.stop_all();
    }
    let table = report::table(&rows);
    println!("\n{table}");
    if !args.no_write {
        let path = root.join("docs/benchmarks.md");
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let mut doc = report::document(&ctx, &table, &rows, &scenarios, started.elapsed());
        doc.push_str(&report::keep_notes(&old));
        std::fs::write(&path, doc)?;
        eprintln!("xtask bench: wrote {}", path.display());
    }
    // A figure that could not be measured fails the run: a table with holes is not a result.
    let unmeasured: Vec<String> = rows.iter().filter_map(Row::unmeasured).collect();
    if !unmeasured.is_empty() {
        eprintln!(
            "xtask bench: {} row(s) could not be measured:",
            unmeasured.len()
        );
        for u in &unmeasured {
            eprintln!("  - {u}");
        }
        return Ok(1);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn ratio_is_oriented_so_above_one_is_better() {
        let r = Row::new("x", "ms", Better::Lower, Some(1.0))
            .proxy(Some(2.0))
            .peer("peer", Some(1.0));
        assert_eq!(r.ratio(), Some(0.5));
        assert_eq!(r.met(), Some(false));
        let r = Row::new("x", "/s", Better::Higher, Some(1.0))
            .proxy(Some(2.0))
            .peer("peer", Some(1.0));
        assert_eq!(r.ratio(), Some(2.0));
        assert_eq!(r.met(), Some(true));
    }

    #[test]
    fn a_ratio_goal_must_hold_besides_the_target() {
        let row = |proxy: f64, peer: f64| {
            Row::new("x", "ms", Better::Lower, Some(0.3))
                .ratio_goal(2.0)
                .proxy(Some(proxy))
                .peer("vmauth", Some(peer))
        };
        assert_eq!(row(0.29, 0.52).met(), Some(false), "under 0.3 but 1.8x");
        assert_eq!(row(0.25, 0.52).met(), Some(true));
        assert_eq!(row(0.4, 1.0).met(), Some(false), "2.5x but over 0.3");
    }

    #[test]
    fn a_row_without_a_figure_is_unmeasured_with_its_reason() {
        let measured = Row::new("x", "ms", Better::Lower, None)
            .proxy(Some(1.0))
            .peer("vmauth", Some(1.0));
        assert_eq!(measured.unmeasured(), None);
        let no_peer = Row::new("x", "ms", Better::Lower, None)
            .proxy(Some(1.0))
            .peer("vmauth", None);
        let why = no_peer.unmeasured().expect("peer missing");
        assert!(why.contains("vmauth not measured"), "{why}");
        let failed = Row::failed(
            vec![Row::new("y", "ms", Better::Lower, None)],
            "wrk: libluajit",
        );
        let why = failed[0].unmeasured().expect("proxy missing");
        assert!(
            why.contains("the proxy not measured") && why.contains("libluajit"),
            "{why}"
        );
    }
}
