//! Replacement and target templates ([`Template`]): Go's `Regexp.Expand` syntax (`$1`,
//! `${1}`, `$name`, `$$`), parsed once against a regex's group names and expanded per match.

use std::sync::LazyLock;

use regex::Regex;

#[derive(Debug, Clone)]
enum Seg {
    Lit(String),
    Group(usize),
}

/// A Go `Regexp.Expand` template, resolved against one regex's groups.
#[derive(Debug, Clone)]
pub(super) struct Template {
    segs: Vec<Seg>,
    /// The text when the template references no (existing) group.
    pub(super) literal: Option<String>,
}

impl Template {
    pub(super) fn compile(t: &str, names: &[Option<&str>]) -> Template {
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
    pub(super) fn expand<'v>(&self, group: impl Fn(usize) -> Option<&'v str>, out: &mut String) {
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
