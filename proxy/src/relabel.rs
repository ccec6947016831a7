//! The Prometheus relabel engine: compiles `metricRelabelings` rules ([`RelabelConfig`]) once,
//! with Prometheus' own validation (`Config.Validate`), and applies them to sorted label sets
//! the way Prometheus 2.x `model/relabel/relabel.go` (`relabel`) does. This module is the one
//! source of truth for whether a relabel rule is valid; the CR validation delegates here.
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

use std::fmt::Write as _;
use std::sync::LazyLock;

use md5::{Digest, Md5};
use regex::Regex;

use crate::remote_write::Label;
use crate::tenant::crd::RelabelConfig;
use crate::tenant::policy::is_legacy_label_name;

mod goregex;

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

const DEFAULT_SEPARATOR: &str = ";";
const DEFAULT_REPLACEMENT: &str = "$1";

/// Prometheus' `relabelTarget`: a label name in which `$1`/`${name}` templates may appear.
static RELABEL_TARGET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:(?:[a-zA-Z_]|\$(?:\{[0-9A-Za-z_]+\}|[0-9A-Za-z_]+))+[0-9A-Za-z_]*)+$")
        .expect("static regex")
});

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

/// A compiled, anchored regex, with fast paths for the default `(.*)` and plain literals.
#[derive(Debug, Clone)]
enum Matcher {
    /// `(.*)`: any value without a newline (Go's `.` does not match `\n`); group 1 = value.
    AnyLine,
    /// A regex without metacharacters: matches exactly this text; no groups.
    Literal(String),
    Regex(Regex),
}

/// Captures of one match; group 0 is the whole match.
enum Caps<'v> {
    /// The fast paths: every group (there are this many) is the whole value.
    Whole(&'v str, usize),
    Re(regex::Captures<'v>),
}

impl<'v> Caps<'v> {
    fn group(&self, i: usize) -> Option<&'v str> {
        match self {
            Caps::Whole(v, n) => (i < *n).then_some(*v),
            Caps::Re(c) => c.get(i).map(|m| m.as_str()),
        }
    }
}

impl Matcher {
    fn compile(re: Option<&str>) -> Result<Matcher, String> {
        let Some(re) = re else {
            return Ok(Matcher::AnyLine);
        };
        if re == "(.*)" {
            return Ok(Matcher::AnyLine);
        }
        const META: &[char] = &[
            '\\', '.', '+', '*', '?', '(', ')', '|', '[', ']', '{', '}', '^', '$',
        ];
        if !re.contains(META) {
            return Ok(Matcher::Literal(re.to_string()));
        }
        let rust = goregex::translate(re)?;
        Regex::new(&format!("^(?:{rust})$"))
            .map(Matcher::Regex)
            .map_err(|e| match e {
                // The multi-line display quotes the translated pattern; keep only the reason.
                regex::Error::Syntax(s) => s
                    .lines()
                    .find_map(|l| l.strip_prefix("error: "))
                    .unwrap_or(&s)
                    .to_string(),
                e => e.to_string(),
            })
    }

    fn is_match(&self, v: &str) -> bool {
        match self {
            Matcher::AnyLine => !v.contains('\n'),
            Matcher::Literal(l) => v == l,
            Matcher::Regex(re) => re.is_match(v),
        }
    }

    fn captures<'v>(&self, v: &'v str) -> Option<Caps<'v>> {
        match self {
            Matcher::Regex(re) => re.captures(v).map(Caps::Re),
            Matcher::AnyLine => self.is_match(v).then_some(Caps::Whole(v, 2)),
            Matcher::Literal(_) => self.is_match(v).then_some(Caps::Whole(v, 1)),
        }
    }

    /// The name of each group (index 0 = whole match), as Go's `SubexpNames`.
    fn group_names(&self) -> Vec<Option<&str>> {
        match self {
            Matcher::AnyLine => vec![None, None],
            Matcher::Literal(_) => vec![None],
            Matcher::Regex(re) => re.capture_names().collect(),
        }
    }
}

#[derive(Debug, Clone)]
enum Seg {
    Lit(String),
    Group(usize),
}

/// A Go `Regexp.Expand` template, resolved against one regex's groups.
#[derive(Debug, Clone)]
struct Template {
    segs: Vec<Seg>,
    /// The text when the template references no (existing) group.
    literal: Option<String>,
}

impl Template {
    fn compile(t: &str, names: &[Option<&str>]) -> Template {
        let mut segs = Vec::new();
        let mut lit = String::new();
        let mut rest = t;
        while let Some(d) = rest.find('$') {
            lit.push_str(&rest[..d]);
            rest = &rest[d + 1..];
            if let Some(r) = rest.strip_prefix('$') {
                lit.push('$');
                rest = r;
                continue;
            }
            let Some((name, r)) = extract(rest) else {
                lit.push('$'); // malformed: `$` is raw text
                continue;
            };
            rest = r;
            let group = match group_number(name) {
                Some(n) => (n < names.len()).then_some(n),
                None => names.iter().position(|g| *g == Some(name)),
            };
            if let Some(g) = group {
                if !lit.is_empty() {
                    segs.push(Seg::Lit(std::mem::take(&mut lit)));
                }
                segs.push(Seg::Group(g));
            }
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            segs.push(Seg::Lit(lit));
        }
        let literal = segs.iter().all(|s| matches!(s, Seg::Lit(_))).then(|| {
            segs.iter()
                .map(|s| match s {
                    Seg::Lit(l) => l.as_str(),
                    Seg::Group(_) => "",
                })
                .collect()
        });
        Template { segs, literal }
    }

    /// Go's `Regexp.Expand` into `out` (cleared first); `group(i)` is capture `i`, if it took part.
    fn expand<'v>(&self, group: impl Fn(usize) -> Option<&'v str>, out: &mut String) {
        out.clear();
        for s in &self.segs {
            match s {
                Seg::Lit(l) => out.push_str(l),
                Seg::Group(g) => out.push_str(group(*g).unwrap_or("")),
            }
        }
    }
}

/// Go's `extract`: the name after `$` (`name` or `{name}`) and the rest of the template.
fn extract(s: &str) -> Option<(&str, &str)> {
    let (brace, body) = match s.strip_prefix('{') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let end = body
        .char_indices()
        .find(|&(_, c)| !is_name_char(c))
        .map_or(body.len(), |(i, _)| i);
    if end == 0 {
        return None;
    }
    let name = &body[..end];
    if !brace {
        return Some((name, &body[end..]));
    }
    body[end..].strip_prefix('}').map(|r| (name, r))
}

/// Go: `unicode.IsLetter || unicode.IsDigit || '_'`.
fn is_name_char(c: char) -> bool {
    static LETTER_OR_DIGIT: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^[\p{L}\p{Nd}]$").expect("static regex"));
    c.is_ascii_alphanumeric()
        || c == '_'
        || !c.is_ascii() && LETTER_OR_DIGIT.is_match(c.encode_utf8(&mut [0; 4]))
}

/// Go: a name of ASCII digits without a leading zero, below 1e8, is a group number.
fn group_number(name: &str) -> Option<usize> {
    let digits = name.bytes().all(|b| b.is_ascii_digit());
    if !digits || name.len() > 9 || name.len() > 1 && name.starts_with('0') {
        return None;
    }
    name.parse().ok()
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

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Apply in order to `labels` (sorted by name on input and on output; keep it sorted).
    /// Returns false when the series is dropped. Labels with an empty value are removed at the
    /// end, as Prometheus does.
    pub fn apply(&self, labels: &mut Vec<Label>) -> bool {
        let mut scratch = Scratch::default();
        for r in &self.rules {
            if !r.apply(labels, &mut scratch) {
                return false;
            }
        }
        labels.retain(|l| !l.value.is_empty());
        true
    }
}

/// Buffers reused across the rules of one `apply` (allocated only when used).
#[derive(Default)]
struct Scratch {
    value: String,
    out: String,
    target: String,
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

fn find(labels: &[Label], name: &str) -> Result<usize, usize> {
    labels.binary_search_by(|l| l.name.as_str().cmp(name))
}

fn get<'a>(labels: &'a [Label], name: &str) -> &'a str {
    find(labels, name).map_or("", |i| labels[i].value.as_str())
}

/// Prometheus' `Builder.Set`: an empty value deletes. Keeps `labels` sorted; allocates only
/// for a new label.
fn set(labels: &mut Vec<Label>, name: &str, value: &str) {
    match find(labels, name) {
        Ok(i) if value.is_empty() => {
            labels.remove(i);
        }
        Ok(i) => {
            let v = &mut labels[i].value;
            if v != value {
                v.clear();
                v.push_str(value);
            }
        }
        Err(_) if value.is_empty() => {}
        Err(i) => labels.insert(
            i,
            Label {
                name: name.to_string(),
                value: value.to_string(),
            },
        ),
    }
}

impl RelabelRule {
    /// The source label values joined by the separator (borrowed when there is one source).
    fn value<'a>(&self, labels: &'a [Label], buf: &'a mut String) -> &'a str {
        match self.source_labels.as_slice() {
            [] => "",
            [one] => get(labels, one),
            many => {
                buf.clear();
                for (k, l) in many.iter().enumerate() {
                    if k > 0 {
                        buf.push_str(&self.separator);
                    }
                    buf.push_str(get(labels, l));
                }
                buf
            }
        }
    }

    /// The plain target label name (validated at compile) of the non-`replace` actions.
    fn target_name(&self) -> &str {
        self.target.literal.as_deref().unwrap_or("")
    }

    fn apply(&self, labels: &mut Vec<Label>, s: &mut Scratch) -> bool {
        let Scratch { value, out, target } = s;
        match self.action {
            Action::Drop => !self.matcher.is_match(self.value(labels, value)),
            Action::Keep => self.matcher.is_match(self.value(labels, value)),
            Action::DropEqual => get(labels, self.target_name()) != self.value(labels, value),
            Action::KeepEqual => get(labels, self.target_name()) == self.value(labels, value),
            Action::Replace if self.noop => true,
            Action::Replace => {
                let val = self.value(labels, value);
                let (name, res) = match (&self.target.literal, &self.replacement.literal) {
                    (Some(t), Some(r)) => {
                        if !self.matcher.is_match(val) {
                            return true;
                        }
                        (t.as_str(), r.as_str())
                    }
                    (t, r) => {
                        let Some(caps) = self.matcher.captures(val) else {
                            return true;
                        };
                        let name = match t {
                            Some(t) => t.as_str(),
                            None => {
                                self.target.expand(|i| caps.group(i), target);
                                if !is_legacy_label_name(target) {
                                    return true;
                                }
                                target.as_str()
                            }
                        };
                        let res = match r {
                            Some(r) => r.as_str(),
                            None => {
                                self.replacement.expand(|i| caps.group(i), out);
                                out.as_str()
                            }
                        };
                        (name, res)
                    }
                };
                set(labels, name, res);
                true
            }
            Action::Lowercase | Action::Uppercase => {
                let val = self.value(labels, value);
                out.clear();
                if self.action == Action::Lowercase {
                    go_lower(val, out);
                } else {
                    go_upper(val, out);
                }
                set(labels, self.target_name(), out);
                true
            }
            Action::HashMod => {
                let sum = Md5::digest(self.value(labels, value).as_bytes());
                let low: [u8; 8] = sum[8..].try_into().expect("md5 is 16 bytes");
                out.clear();
                write!(out, "{}", u64::from_be_bytes(low) % self.modulus).expect("string write");
                set(labels, self.target_name(), out);
                true
            }
            Action::LabelMap => {
                let mut pending: Vec<(String, String)> = Vec::new();
                for l in labels.iter() {
                    let new = match &self.matcher {
                        Matcher::Regex(re) => {
                            if !re.is_match(&l.name) {
                                continue;
                            }
                            re.replace_all(&l.name, |c: &regex::Captures<'_>| {
                                let mut o = String::new();
                                self.replacement
                                    .expand(|i| c.get(i).map(|m| m.as_str()), &mut o);
                                o
                            })
                            .into_owned()
                        }
                        m => {
                            let Some(caps) = m.captures(&l.name) else {
                                continue;
                            };
                            let mut o = String::new();
                            self.replacement.expand(|i| caps.group(i), &mut o);
                            o
                        }
                    };
                    if is_legacy_label_name(&new) {
                        pending.push((new, l.value.clone()));
                    }
                }
                for (n, v) in pending {
                    set(labels, &n, &v);
                }
                true
            }
            Action::LabelDrop => {
                labels.retain(|l| !self.matcher.is_match(&l.name));
                true
            }
            Action::LabelKeep => {
                labels.retain(|l| self.matcher.is_match(&l.name));
                true
            }
        }
    }
}

/// Go's `strings.ToLower`: per-character simple case mapping (no context, no expansion).
fn go_lower(s: &str, out: &mut String) {
    if s.is_ascii() {
        out.push_str(s);
        out.make_ascii_lowercase();
        return;
    }
    for c in s.chars() {
        let mut m = c.to_lowercase();
        match (m.next(), m.next()) {
            (Some(l), None) => out.push(l),
            // Only U+0130 (İ) lowercases to two characters; its simple mapping is `i`.
            _ if c == '\u{130}' => out.push('i'),
            _ => out.push(c),
        }
    }
}

/// Go's `strings.ToUpper`: per-character simple case mapping (`ß` stays `ß`).
fn go_upper(s: &str, out: &mut String) {
    if s.is_ascii() {
        out.push_str(s);
        out.make_ascii_uppercase();
        return;
    }
    for c in s.chars() {
        let mut m = c.to_uppercase();
        match (m.next(), m.next()) {
            (Some(u), None) => out.push(u),
            // Full mappings that expand; Unicode's simple mapping for these, else unchanged.
            _ => {
                let simple = match c as u32 {
                    x @ (0x1F80..=0x1F87 | 0x1F90..=0x1F97 | 0x1FA0..=0x1FA7) => x + 8,
                    0x1FB3 => 0x1FBC,
                    0x1FC3 => 0x1FCC,
                    0x1FF3 => 0x1FFC,
                    x => x,
                };
                out.push(char::from_u32(simple).unwrap_or(c));
            }
        }
    }
}

#[cfg(test)]
mod tests;
