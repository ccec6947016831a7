//! The Prometheus relabel engine: compiles `metricRelabelings` rules ([`RelabelConfig`], the
//! rule type of the CRD and of the config file) once, with Prometheus' own validation
//! (`Config.Validate`), and applies them to sorted label sets the way Prometheus 2.x
//! `model/relabel/relabel.go` (`relabel`) does. This module is the one source of truth for
//! whether a relabel rule is valid; the CR validation delegates here.
//!
//! Regexes are Go RE2 syntax, translated to Rust syntax by [`goregex`] (ASCII `\d \w \s \b`,
//! literal `{`, `\Q..\E`, octal, ...) and fully anchored (`^(?:re)$`, textually, as Prometheus
//! does). Templates (`$1`, `${1}`, `$name`, `$$`) follow Go's `Regexp.Expand` and are parsed
//! once at compile time.
//!
//! Known deliberate differences from Prometheus:
//! - `labelmap` skips a result that is not a valid label name (Prometheus would set it and then
//!   reject the whole series as invalid), and when two labels map to the same name the one
//!   later in name order wins (Prometheus: later in its builder's order, which puts labels
//!   set by earlier rules last).
//!
//! Layout: `compile` turns configs into [`RelabelRule`]s (validation), with `matcher`
//! (anchored regexes and their fast paths) and `template` (`$1` / `${name}` expansion);
//! `apply` runs the rules over a label set ([`LabelSet`]: owned labels, or labels borrowed
//! from a request and copied only where a rule writes, [`CowLabel`]), optionally remembering
//! regex results across the series of a batch ([`RelabelMemo`]).

mod apply;
mod compile;
mod goregex;
mod labels;
mod matcher;
mod template;

pub use apply::RelabelMemo;
pub use labels::{CowLabel, LabelSet, Text};

use matcher::Matcher;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use template::Template;

// What the tests (`use super::*`) name besides this module's own items.
#[cfg(test)]
use crate::remote_write::Label;
#[cfg(test)]
use regex::Regex;

/// A Prometheus relabel rule with prometheus-operator's field names. `separator` and
/// `replacement` are options so that an explicit `""` differs from absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RelabelConfig {
    // The aliases accept Prometheus' own `metric_relabel_configs` spelling in the config file.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        alias = "source_labels"
    )]
    pub source_labels: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub separator: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "target_label"
    )]
    pub target_label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modulus: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement: Option<String>,
    /// replace (default), keep, drop, labeldrop, labelkeep, labelmap, hashmod, keepequal,
    /// dropequal, lowercase, uppercase; case-insensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// Relabel actions Prometheus knows (matched case-insensitively, as Prometheus does).
pub const ACTIONS: [&str; 11] = [
    "replace",
    "keep",
    "drop",
    "keepequal",
    "dropequal",
    "hashmod",
    "labelmap",
    "labeldrop",
    "labelkeep",
    "lowercase",
    "uppercase",
];

/// A compile problem: `field` is the rule's path (`metricRelabelings[2].regex`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct RelabelError {
    pub field: String,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

impl Action {
    fn parse(s: &str) -> Option<Action> {
        Some(match s.to_ascii_lowercase().as_str() {
            "replace" => Action::Replace,
            "keep" => Action::Keep,
            "drop" => Action::Drop,
            "keepequal" => Action::KeepEqual,
            "dropequal" => Action::DropEqual,
            "hashmod" => Action::HashMod,
            "labelmap" => Action::LabelMap,
            "labeldrop" => Action::LabelDrop,
            "labelkeep" => Action::LabelKeep,
            "lowercase" => Action::Lowercase,
            "uppercase" => Action::Uppercase,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        ACTIONS[self as usize]
    }
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct RelabelRule {
    action: Action,
    source_labels: Vec<String>,
    separator: String,
    matcher: Matcher,
    /// For `replace`, may hold templates; for the other actions a plain name.
    target: Template,
    /// A `replace` whose target expands to the same invalid name for every match: a no-op.
    noop: bool,
    replacement: Template,
    modulus: u64,
}

/// Compiled relabel rules, applied in order.
#[derive(Debug, Clone, Default)]
pub struct RelabelProgram {
    rules: Vec<RelabelRule>,
}

impl RelabelProgram {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests;
