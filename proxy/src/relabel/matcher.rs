//! The rule's regex ([`Matcher`]): Go RE2 translated by [`goregex`] and fully anchored, with
//! fast paths for the default `(.*)`, plain literals, and regexes whose language is simple
//! enough to match without the regex engine ([`Shape`]): a finite set of strings
//! (`id|uid`, `tenant-[0-3][0-9]|monitoring|`) and alternations of `literal.*`, `.*literal`
//! and `.*literal.*` branches (`go_memstats_.*|container_fs_.*`). Matching a short label value
//! with the engine costs tens of nanoseconds of setup; a set lookup or a `starts_with` costs a
//! few. Captures always come from the engine.

use std::collections::HashSet;

use regex::Regex;
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::{Dot, Hir, HirKind};

use super::goregex;
use crate::remote_write::wire::eq_short;

/// A compiled, anchored regex, with fast paths for the default `(.*)` and plain literals.
#[derive(Debug, Clone)]
pub(super) enum Matcher {
    /// `(.*)`: any value without a newline (Go's `.` does not match `\n`); group 1 = value.
    AnyLine,
    /// A regex without metacharacters: matches exactly this text; no groups.
    Literal(String),
    /// Any other regex; `shape` matches like it when the language allows (see the module docs).
    Regex { re: Regex, shape: Option<Shape> },
}

/// The language of a regex in a form matched without the engine: the value is one of `exact`,
/// or, when it has no newline (`.` does not match one), has one of the `prefixes`, `suffixes`
/// or contains one of `infixes`.
#[derive(Debug, Clone, Default)]
pub(super) struct Shape {
    exact: StringSet,
    prefixes: Vec<String>,
    suffixes: Vec<String>,
    infixes: Vec<String>,
}

/// A set of strings: a list while it is short, a hash set beyond.
#[derive(Debug, Clone)]
enum StringSet {
    List(Vec<String>),
    Hashed(HashSet<String, foldhash::fast::RandomState>),
}

impl Default for StringSet {
    fn default() -> Self {
        StringSet::List(Vec::new())
    }
}

impl StringSet {
    fn new(mut items: Vec<String>) -> StringSet {
        items.sort();
        items.dedup();
        if items.len() <= 6 {
            StringSet::List(items)
        } else {
            StringSet::Hashed(items.into_iter().collect())
        }
    }

    fn contains(&self, v: &str) -> bool {
        match self {
            StringSet::List(l) => l.iter().any(|x| eq_short(x.as_bytes(), v.as_bytes())),
            StringSet::Hashed(h) => h.contains(v),
        }
    }
}

/// Largest finite language matched as a set (`[a-z][a-z]` is 676 strings: too many).
const MAX_SET: u32 = 256;

impl Shape {
    /// The shape of the (translated, unanchored) pattern, if it has one.
    fn of(pattern: &str) -> Option<Shape> {
        let hir = regex_syntax::ParserBuilder::new()
            .build()
            .parse(pattern)
            .ok()?;
        // Literal extraction treats `^`, `$`, `\b` as matching everywhere: only patterns
        // without them have a language the extracted strings describe exactly.
        if !hir.properties().look_set().is_empty() {
            return None;
        }
        let mut hir = &hir;
        // A group around everything (`(a|b)`) changes captures, not the language.
        while let HirKind::Capture(c) = hir.kind() {
            hir = &c.sub;
        }
        if let Some(exact) = finite(hir) {
            return Some(Shape {
                exact: StringSet::new(exact),
                ..Shape::default()
            });
        }
        let branches: Vec<&Hir> = match hir.kind() {
            HirKind::Alternation(b) => b.iter().collect(),
            _ => vec![hir],
        };
        let mut shape = Shape::default();
        let mut exact = Vec::new();
        for b in branches {
            if let Some(strings) = finite(b) {
                exact.extend(strings);
                continue;
            }
            let parts: Vec<&Hir> = match b.kind() {
                HirKind::Concat(parts) => parts.iter().collect(),
                _ => vec![b],
            };
            match parts.as_slice() {
                [l, a] if is_any(a) => shape.prefixes.push(literal(l)?),
                [a, l] if is_any(a) => shape.suffixes.push(literal(l)?),
                [a, l, z] if is_any(a) && is_any(z) => shape.infixes.push(literal(l)?),
                [a] if is_any(a) => shape.prefixes.push(String::new()),
                _ => return None,
            }
        }
        shape.exact = StringSet::new(exact);
        Some(shape)
    }

    fn is_match(&self, v: &str) -> bool {
        if self.exact.contains(v) {
            return true;
        }
        // A finite language (`id|uid`, the usual labeldrop) has nothing more to try: no scan
        // for a newline.
        if self.prefixes.is_empty() && self.suffixes.is_empty() && self.infixes.is_empty() {
            return false;
        }
        if v.contains('\n') {
            return false;
        }
        let b = v.as_bytes();
        self.prefixes
            .iter()
            .any(|p| b.len() >= p.len() && eq_short(&b[..p.len()], p.as_bytes()))
            || self
                .suffixes
                .iter()
                .any(|s| b.len() >= s.len() && eq_short(&b[b.len() - s.len()..], s.as_bytes()))
            || self.infixes.iter().any(|i| v.contains(i.as_str()))
    }
}

/// The strings of a finite language, when there are at most [`MAX_SET`].
fn finite(hir: &Hir) -> Option<Vec<String>> {
    let mut extractor = Extractor::new();
    extractor
        .kind(ExtractKind::Prefix)
        .limit_class(MAX_SET as usize)
        .limit_repeat(64)
        .limit_literal_len(1024)
        .limit_total(MAX_SET as usize);
    let seq = extractor.extract(hir);
    // Exact literals are whole matches: a finite, exact sequence is the language itself.
    if !seq.is_exact() {
        return None;
    }
    seq.literals()?
        .iter()
        .map(|l| String::from_utf8(l.as_bytes().to_vec()).ok())
        .collect()
}

/// `.*` (greedy or not) where `.` is any character but `\n`.
fn is_any(hir: &Hir) -> bool {
    match hir.kind() {
        HirKind::Repetition(r) => {
            r.min == 0 && r.max.is_none() && *r.sub == Hir::dot(Dot::AnyCharExceptLF)
        }
        _ => false,
    }
}

fn literal(hir: &Hir) -> Option<String> {
    match hir.kind() {
        HirKind::Literal(l) => String::from_utf8(l.0.to_vec()).ok(),
        _ => None,
    }
}

/// Captures of one match; group 0 is the whole match.
pub(super) enum Caps<'v> {
    /// The fast paths: every group (there are this many) is the whole value.
    Whole(&'v str, usize),
    Re(regex::Captures<'v>),
}

impl<'v> Caps<'v> {
    pub(super) fn group(&self, i: usize) -> Option<&'v str> {
        match self {
            Caps::Whole(v, n) => (i < *n).then_some(*v),
            Caps::Re(c) => c.get(i).map(|m| m.as_str()),
        }
    }
}

impl Matcher {
    pub(super) fn compile(re: Option<&str>) -> Result<Matcher, String> {
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
        let compiled = Regex::new(&format!("^(?:{rust})$")).map_err(|e| match e {
            // The multi-line display quotes the translated pattern; keep only the reason.
            regex::Error::Syntax(s) => s
                .lines()
                .find_map(|l| l.strip_prefix("error: "))
                .unwrap_or(&s)
                .to_string(),
            e => e.to_string(),
        })?;
        Ok(Matcher::Regex {
            re: compiled,
            shape: Shape::of(&rust),
        })
    }

    pub(super) fn is_match(&self, v: &str) -> bool {
        match self {
            Matcher::AnyLine => !v.contains('\n'),
            Matcher::Literal(l) => v == l,
            Matcher::Regex {
                shape: Some(shape), ..
            } => shape.is_match(v),
            Matcher::Regex { re, shape: None } => re.is_match(v),
        }
    }

    /// Whether matching skips the regex engine.
    pub(super) fn is_fast(&self) -> bool {
        !matches!(self, Matcher::Regex { shape: None, .. })
    }

    pub(super) fn captures<'v>(&self, v: &'v str) -> Option<Caps<'v>> {
        match self {
            Matcher::Regex { re, .. } => re.captures(v).map(Caps::Re),
            Matcher::AnyLine => self.is_match(v).then_some(Caps::Whole(v, 2)),
            Matcher::Literal(_) => self.is_match(v).then_some(Caps::Whole(v, 1)),
        }
    }

    /// The regex, for the actions that replace within a name (`labelmap`).
    pub(super) fn regex(&self) -> Option<&Regex> {
        match self {
            Matcher::Regex { re, .. } => Some(re),
            _ => None,
        }
    }

    /// The name of each group (index 0 = whole match), as Go's `SubexpNames`.
    pub(super) fn group_names(&self) -> Vec<Option<&str>> {
        match self {
            Matcher::AnyLine => vec![None, None],
            Matcher::Literal(_) => vec![None],
            Matcher::Regex { re, .. } => re.capture_names().collect(),
        }
    }
}
