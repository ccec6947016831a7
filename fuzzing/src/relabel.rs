//! `relabel`: arbitrary relabel rules and series → compile, apply.
//!
//! The input is either a YAML case (`rules:` a list of relabel configs as in a MetricAccess or
//! `metric_relabel_configs`, `series:` a list of label maps) — the committed seeds are such
//! cases, e.g. the benches' governance rules — or, when it is not one, raw bytes from which
//! [`arbitrary`] builds rules and series (strings drawn from a dictionary of realistic label
//! names, regexes and templates, or arbitrary).
//!
//! Property: compiling never panics; when it succeeds, applying the program to each series
//! (sorted by name, as the pipeline hands them over) never panics, and a kept series is again
//! sorted by name with unique names and no empty value; applying is deterministic.

use std::collections::BTreeMap;

use arbitrary::{Arbitrary, Unstructured};
use proxy::relabel::{ACTIONS, RelabelConfig, RelabelProgram};
use proxy::remote_write::Label;

#[derive(serde::Deserialize)]
struct Case {
    rules: Vec<RelabelConfig>,
    #[serde(default)]
    series: Vec<BTreeMap<String, String>>,
}

const NAMES: &[&str] = &[
    "__name__",
    "job",
    "instance",
    "namespace",
    "pod",
    "le",
    "tenant",
    "image",
    "env",
    "shard",
    "__tmp",
    "a",
    "b",
    "",
    "0bad",
    "é",
];
const VALUES: &[&str] = &[
    "up",
    "http_requests_total",
    "team-a",
    "monitoring",
    "0.5",
    "registry/x/y:v1.2",
    "",
    "a;b",
    "ÉCOLE",
    "ǅ",
    "tenant-07",
];
const REGEXES: &[&str] = &[
    "(.*)",
    ".+",
    "tenant-[0-3][0-9]|monitoring|",
    "(?i)UP",
    "(a)(b)?",
    "\\d+",
    "[[:alpha:]]+",
    "\\Qa.b\\E",
    "x{2,3}",
    "a{",
    "(?P<n>.*)",
    "\\101",
    "\\pL+",
    "(",
    "[z-a]",
    "^a$",
    "\\b",
];
const TEMPLATES: &[&str] = &[
    "$1",
    "${1}",
    "$n",
    "${n}_x",
    "$$",
    "$",
    "${",
    "$1$2",
    "x_${1}",
    "$0",
    "${99999999999}",
    "prod",
    "",
];

fn pick(u: &mut Unstructured, dict: &[&str]) -> arbitrary::Result<String> {
    if u.ratio(3, 4)? {
        Ok((*u.choose(dict)?).to_string())
    } else {
        String::arbitrary(u)
    }
}

fn opt(u: &mut Unstructured, dict: &[&str]) -> arbitrary::Result<Option<String>> {
    if bool::arbitrary(u)? {
        Ok(Some(pick(u, dict)?))
    } else {
        Ok(None)
    }
}

fn rule(u: &mut Unstructured) -> arbitrary::Result<RelabelConfig> {
    let mut actions: Vec<&str> = ACTIONS.to_vec();
    actions.extend(["KeepEqual", "LOWERCASE", "bogus"]);
    let n_sources = u.int_in_range(0..=3)?;
    let mut source_labels = Vec::with_capacity(n_sources);
    for _ in 0..n_sources {
        source_labels.push(pick(u, NAMES)?);
    }
    Ok(RelabelConfig {
        source_labels,
        separator: opt(u, &[";", "", "/", "é"])?,
        target_label: opt(u, &[NAMES, TEMPLATES].concat())?,
        regex: opt(u, REGEXES)?,
        modulus: if bool::arbitrary(u)? {
            Some(*u.choose(&[0, 1, 8, u64::MAX])?)
        } else {
            None
        },
        replacement: opt(u, TEMPLATES)?,
        action: opt(u, &actions)?,
    })
}

fn build(u: &mut Unstructured) -> arbitrary::Result<Case> {
    let n_rules = u.int_in_range(0..=6)?;
    let mut rules = Vec::with_capacity(n_rules);
    for _ in 0..n_rules {
        rules.push(rule(u)?);
    }
    let n_series = u.int_in_range(1..=4)?;
    let mut series = Vec::with_capacity(n_series);
    for _ in 0..n_series {
        let mut labels = BTreeMap::new();
        for _ in 0..u.int_in_range(0..=6)? {
            labels.insert(pick(u, NAMES)?, pick(u, VALUES)?);
        }
        series.push(labels);
    }
    Ok(Case { rules, series })
}

fn case(data: &[u8]) -> Option<Case> {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(case) = serde_saphyr::from_str::<Case>(text)
    {
        return Some(case);
    }
    build(&mut Unstructured::new(data)).ok()
}

pub fn relabel(data: &[u8]) {
    let Some(case) = case(data) else { return };
    let Ok(program) = RelabelProgram::compile(&case.rules) else {
        return;
    };
    for series in case.series {
        // A BTreeMap: sorted by name, names unique — what `check_series` hands the rules.
        let input: Vec<Label> = series
            .into_iter()
            .map(|(name, value)| Label { name, value })
            .collect();
        let mut labels = input.clone();
        let kept = program.apply(&mut labels);
        let mut again = input.clone();
        assert_eq!(
            program.apply(&mut again),
            kept,
            "apply is not deterministic on {input:?}"
        );
        if !kept {
            continue;
        }
        assert_eq!(labels, again, "apply is not deterministic on {input:?}");
        assert!(
            labels.windows(2).all(|w| w[0].name < w[1].name),
            "{input:?} was relabelled to unsorted or duplicate names: {labels:?}"
        );
        assert!(
            labels.iter().all(|l| !l.value.is_empty()),
            "{input:?} was relabelled with an empty value: {labels:?}"
        );
    }
}
