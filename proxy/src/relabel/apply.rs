//! Applying compiled rules to a sorted label set, the way Prometheus 2.x
//! `model/relabel/relabel.go` (`relabel`) does: every action, label lookup and set, and Go's
//! simple case mapping for `lowercase` / `uppercase`.

use std::fmt::Write as _;

use md5::{Digest, Md5};

use super::{Action, Matcher, RelabelProgram, RelabelRule};
use crate::remote_write::Label;
use crate::tenant::policy::is_legacy_label_name;

impl RelabelProgram {
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
