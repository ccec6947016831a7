//! The properties of the fuzz targets, in one place: each `pub fn <target>(data: &[u8])` panics
//! when the property is violated and returns quietly otherwise. Two callers:
//!
//! - the cargo-fuzz binaries in `proxy/fuzz/fuzz_targets/` (one line each, nightly flags via
//!   `cargo xtask fuzz`);
//! - the stable in-suite run, `fuzzing/tests/corpus.rs`: every seed of `proxy/fuzz/corpus/`
//!   plus deterministic mutations of them, in `cargo test --workspace`.
//!
//! The proxy crate holds no fuzz code; these functions only call its public API.

mod crd;
mod relabel;
mod remote_write;
mod rewrite;

pub mod mutate;

pub use crd::crd;
pub use relabel::relabel;
pub use remote_write::{LIMIT as REMOTE_WRITE_LIMIT, remote_write};
pub use rewrite::{check_output as check_rewrite_output, policies as rewrite_policies, rewrite};

/// A target's property: panics when it is violated.
pub type Property = fn(&[u8]);

/// Every target: its name (the cargo-fuzz binary and the `proxy/fuzz/corpus/<name>` folder) and
/// its property.
pub const TARGETS: [(&str, Property); 5] = [
    ("rewrite", rewrite),
    ("remote_write", remote_write),
    ("relabel", relabel),
    ("config", config),
    ("crd", crd),
];

/// The property of a target by name.
pub fn target(name: &str) -> Option<Property> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// `config`: any text → [`proxy::config::Config::from_yaml`] answers (a config or an error)
/// without panicking, and a config it accepts is accepted again from the same text (no hidden
/// state between loads).
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let first = proxy::config::Config::from_yaml(&text, "fuzz");
    let second = proxy::config::Config::from_yaml(&text, "fuzz");
    assert_eq!(
        first.is_ok(),
        second.is_ok(),
        "Config::from_yaml is not deterministic for {text:?}"
    );
}
