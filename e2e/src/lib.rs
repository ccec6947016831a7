//! The e2e harness: real Prometheus processes, the deterministic lab workload, and remote-write
//! seeding. Runtime-agnostic: processes start through [`Launcher`] (local processes today).

pub mod api;
pub mod lab;
pub mod process;
pub mod prometheus;
pub mod pushgateway;
pub mod seed;
pub mod tools;
pub mod workload;

#[cfg(test)]
mod process_tests;
#[cfg(test)]
mod pushgateway_tests;
#[cfg(test)]
mod smoke_tests;

pub use lab::SharedLab;
pub use prometheus::{Launcher, LocalProcessLauncher, Prometheus, StartOptions};
pub use pushgateway::Pushgateway;
