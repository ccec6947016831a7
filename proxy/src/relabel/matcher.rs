//! The rule's regex ([`Matcher`]): Go RE2 translated by [`goregex`] and fully
//! anchored, with fast paths for the default `(.*)` and plain literals, and its captures.

use regex::Regex;

use super::goregex;

/// A compiled, anchored regex, with fast paths for the default `(.*)` and plain literals.
#[derive(Debug, Clone)]
pub(super) enum Matcher {
    /// `(.*)`: any value without a newline (Go's `.` does not match `\n`); group 1 = value.
    AnyLine,
    /// A regex without metacharacters: matches exactly this text; no groups.
    Literal(String),
    Regex(Regex),
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

    pub(super) fn is_match(&self, v: &str) -> bool {
        match self {
            Matcher::AnyLine => !v.contains('\n'),
            Matcher::Literal(l) => v == l,
            Matcher::Regex(re) => re.is_match(v),
        }
    }

    pub(super) fn captures<'v>(&self, v: &'v str) -> Option<Caps<'v>> {
        match self {
            Matcher::Regex(re) => re.captures(v).map(Caps::Re),
            Matcher::AnyLine => self.is_match(v).then_some(Caps::Whole(v, 2)),
            Matcher::Literal(_) => self.is_match(v).then_some(Caps::Whole(v, 1)),
        }
    }

    /// The name of each group (index 0 = whole match), as Go's `SubexpNames`.
    pub(super) fn group_names(&self) -> Vec<Option<&str>> {
        match self {
            Matcher::AnyLine => vec![None, None],
            Matcher::Literal(_) => vec![None],
            Matcher::Regex(re) => re.capture_names().collect(),
        }
    }
}
