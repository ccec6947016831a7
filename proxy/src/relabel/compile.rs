//! Compiling rules: [`RelabelConfig`] → [`RelabelRule`], with Prometheus' own validation
//! (`Config.Validate`): actions, label names, target templates, and the fields each action
//! allows. Errors name the rule and field (`metricRelabelings[2].regex`).

use std::sync::LazyLock;

use regex::Regex;

use super::{
    ACTIONS, Action, Matcher, RelabelConfig, RelabelError, RelabelProgram, RelabelRule, Template,
};
use crate::names::is_legacy_label_name;

const DEFAULT_SEPARATOR: &str = ";";
const DEFAULT_REPLACEMENT: &str = "$1";

/// Prometheus' `relabelTarget`: a label name in which `$1`/`${name}` templates may appear.
static RELABEL_TARGET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:(?:[a-zA-Z_]|\$(?:\{[0-9A-Za-z_]+\}|[0-9A-Za-z_]+))+[0-9A-Za-z_]*)+$")
        .expect("static regex")
});

impl RelabelProgram {
    /// Compile rules; errors name the rule by its path: `{at}[i].field`.
    pub fn compile_at(
        at: &str,
        rules: &[RelabelConfig],
    ) -> Result<RelabelProgram, Vec<RelabelError>> {
        let mut errors = Vec::new();
        let mut out = Vec::with_capacity(rules.len());
        for (i, r) in rules.iter().enumerate() {
            let mut problem = |field: &str, reason: String| {
                errors.push(RelabelError {
                    field: format!("{at}[{i}].{field}"),
                    reason,
                })
            };
            if let Some(rule) = compile_rule(r, &mut problem) {
                out.push(rule);
            }
        }
        if errors.is_empty() {
            Ok(RelabelProgram { rules: out })
        } else {
            Err(errors)
        }
    }

    /// [`compile_at`](Self::compile_at) with `at` = `metricRelabelings`.
    pub fn compile(rules: &[RelabelConfig]) -> Result<RelabelProgram, Vec<RelabelError>> {
        Self::compile_at("metricRelabelings", rules)
    }
}

fn compile_rule(r: &RelabelConfig, problem: &mut impl FnMut(&str, String)) -> Option<RelabelRule> {
    let action = match r.action.as_deref() {
        None => Action::Replace,
        Some(a) => match Action::parse(a) {
            Some(a) => a,
            None => {
                problem(
                    "action",
                    format!("unknown action {a:?} (one of: {})", ACTIONS.join(", ")),
                );
                return None;
            }
        },
    };
    let name = action.name();
    let mut ok = true;
    let mut bad = |field: &str, reason: String| {
        ok = false;
        problem(field, reason);
    };
    for (j, l) in r.source_labels.iter().enumerate() {
        if !is_legacy_label_name(l) {
            bad(
                &format!("sourceLabels[{j}]"),
                format!("{l:?} is not a label name"),
            );
        }
    }
    let matcher = match Matcher::compile(r.regex.as_deref()) {
        Ok(m) => Some(m),
        Err(e) => {
            bad("regex", format!("not a valid regex: {e}"));
            None
        }
    };
    let separator = r.separator.as_deref().unwrap_or(DEFAULT_SEPARATOR);
    let replacement = r.replacement.as_deref().unwrap_or(DEFAULT_REPLACEMENT);
    let target = r.target_label.as_deref().unwrap_or("");
    let modulus = r.modulus.unwrap_or(0);
    use Action::*;
    if action == HashMod && modulus == 0 {
        bad("modulus", "required (> 0) with action hashmod".into());
    }
    let needs_target = matches!(
        action,
        Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual
    );
    if needs_target && target.is_empty() {
        bad("targetLabel", format!("required with action {name}"));
    } else if action == Replace && target.contains('$') {
        if !RELABEL_TARGET.is_match(target) {
            bad(
                "targetLabel",
                format!("{target:?} is not a label name (with optional $1 / ${{name}} templates)"),
            );
        }
    } else if needs_target && !is_legacy_label_name(target) {
        bad("targetLabel", format!("{target:?} is not a label name"));
    }
    let only = |fields: &str| format!("not allowed with action {name} (only {fields})");
    match action {
        Lowercase | Uppercase if replacement != DEFAULT_REPLACEMENT => {
            bad("replacement", format!("not allowed with action {name}"));
        }
        KeepEqual | DropEqual => {
            let fields = "sourceLabels and targetLabel may be set";
            if r.regex.is_some() {
                bad("regex", only(fields));
            }
            if modulus != 0 {
                bad("modulus", only(fields));
            }
            if separator != DEFAULT_SEPARATOR {
                bad("separator", only(fields));
            }
            if replacement != DEFAULT_REPLACEMENT {
                bad("replacement", only(fields));
            }
        }
        LabelDrop | LabelKeep => {
            let fields = "regex may be set";
            if !r.source_labels.is_empty() {
                bad("sourceLabels", only(fields));
            }
            if !target.is_empty() {
                bad("targetLabel", only(fields));
            }
            if modulus != 0 {
                bad("modulus", only(fields));
            }
            if separator != DEFAULT_SEPARATOR {
                bad("separator", only(fields));
            }
            if replacement != DEFAULT_REPLACEMENT {
                bad("replacement", only(fields));
            }
        }
        LabelMap if !RELABEL_TARGET.is_match(replacement) => {
            bad(
                "replacement",
                format!(
                    "{replacement:?} is not a label name (with optional $1 / ${{name}} templates)"
                ),
            );
        }
        _ => {}
    }
    let matcher = matcher?;
    if !ok {
        return None;
    }
    let names = matcher.group_names();
    let target = if action == Replace {
        Template::compile(target, &names)
    } else {
        Template::compile(&target.replace('$', "$$"), &[])
    };
    let noop = action == Replace
        && target
            .literal
            .as_deref()
            .is_some_and(|t| !is_legacy_label_name(t));
    Some(RelabelRule {
        noop,
        action,
        source_labels: r.source_labels.clone(),
        separator: separator.to_string(),
        replacement: Template::compile(replacement, &names),
        matcher,
        target,
        modulus,
    })
}
