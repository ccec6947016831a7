//! End-to-end suite against real Prometheus processes.
//!
//! One test binary with its own harness (libtest-mimic) so that every test shares ONE set of
//! processes: an HA pair of infrastructure Prometheus seeded with the lab workload, one oracle
//! Prometheus per fixture tenant, and the proxy in-process. `main` owns them and drops them
//! (killing the processes) after the last test, whether tests passed or panicked.

mod backends;
mod bad_input;
mod binary;
mod bypass;
mod collector;
mod collector_lab;
mod faults;
mod fuzz_oracle;
mod ingest;
mod ingest_lab;
mod isolation;
mod oracle;
mod rules;
mod soak;
mod support;

use std::sync::Arc;

use libtest_mimic::{Arguments, Trial};

fn main() {
    let args = Arguments::from_args();
    if std::env::var("PMTP_E2E_KIND").as_deref() == Ok("1") {
        // `cargo xtask e2e --kind`: the cluster is the lab; tests/kind.rs runs against it.
        eprintln!("e2e: PMTP_E2E_KIND=1, the local-process suite is not run");
        return;
    }
    let env = if args.list {
        None
    } else {
        match support::Env::start() {
            Ok(Some(env)) => Some(Arc::new(env)),
            Ok(None) => None, // Prometheus missing and not in CI: skipped loudly.
            Err(e) => {
                eprintln!("e2e: could not start the shared lab: {e:#}");
                std::process::exit(1);
            }
        }
    };
    let mut trials: Vec<Trial> = Vec::new();
    type Suite = (&'static str, fn() -> Vec<support::Case>);
    let suites: [Suite; 11] = [
        ("isolation", isolation::cases),
        ("oracle", oracle::cases),
        ("bad_input", bad_input::cases),
        ("backends", backends::cases),
        ("binary", binary::cases),
        ("collector", collector::cases),
        ("ingest", ingest::cases),
        ("faults", faults::cases),
        ("soak", soak::cases),
        ("rules", rules::cases),
        ("bypass", bypass::cases),
    ];
    for (suite, cases) in suites {
        for case in cases() {
            let name = format!("{suite}::{}", case.name);
            let ignored = env.is_none() && !args.list;
            let env = env.clone();
            let run = case.run;
            trials.push(
                Trial::test(name, move || match env {
                    Some(env) => run(&env).map_err(|e| format!("{e:#}").into()),
                    None => Ok(()),
                })
                .with_ignored_flag(ignored),
            );
        }
    }
    let conclusion = libtest_mimic::run(&args, trials);
    drop(env);
    conclusion.exit();
}
