//! Applying compiled rules to a sorted label set, the way Prometheus 2.x
//! `model/relabel/relabel.go` (`relabel`) does: every action, label lookup and set, and Go's
//! simple case mapping for `lowercase` / `uppercase`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::rc::Rc;

use md5::{Digest, Md5};

use super::labels::LabelSet;
use super::{Action, RelabelProgram, RelabelRule};
use crate::names::is_legacy_label_name;

impl RelabelProgram {
    /// Apply in order to `labels` (sorted by name on input and on output; keep it sorted).
    /// Returns false when the series is dropped. Labels with an empty value are removed at the
    /// end, as Prometheus does.
    pub fn apply<L: LabelSet>(&self, labels: &mut L) -> bool {
        self.run(labels, &mut Scratch::default(), None)
    }

    /// [`apply`](Self::apply), remembering in `memo` what the regex-heavy rules computed for
    /// each input, for the next series of the same batch.
    pub fn apply_with<L: LabelSet>(&self, labels: &mut L, memo: &mut RelabelMemo) -> bool {
        if memo.rules.len() < self.rules.len() {
            memo.rules.resize_with(self.rules.len(), Default::default);
        }
        let mut scratch = std::mem::take(&mut memo.scratch);
        let kept = self.run(labels, &mut scratch, Some(memo));
        memo.scratch = scratch;
        kept
    }

    fn run<L: LabelSet>(
        &self,
        labels: &mut L,
        scratch: &mut Scratch,
        mut memo: Option<&mut RelabelMemo>,
    ) -> bool {
        for (i, r) in self.rules.iter().enumerate() {
            let memo = memo.as_deref_mut().map(|m| &mut m.rules[i]);
            if !r.apply(labels, scratch, memo) {
                return false;
            }
        }
        labels.retain_labels(|_, v| !v.is_empty());
        true
    }
}

/// What the regex-heavy rules computed per input value (or label name, for `labeldrop` and
/// `labelkeep`), kept across the series of one batch: a remote-write request's 2,000 series
/// share a few namespaces, images and pods, and a lookup costs a fraction of a regex match
/// with captures or an MD5. Bounded per rule.
#[derive(Default)]
pub struct RelabelMemo {
    rules: Vec<RuleMemo>,
    scratch: Scratch,
}

/// One rule's memo: results by input, and the `(target, replacement)` of a rule that sets a
/// fixed label, shared by every series it is set on (no copy per series).
#[derive(Default)]
struct RuleMemo {
    by_input: HashMap<Box<str>, Memoized, foldhash::fast::RandomState>,
    fixed: Option<(Rc<str>, Rc<str>)>,
}

impl RuleMemo {
    fn get(&self, input: &str) -> Option<&Memoized> {
        self.by_input.get(input)
    }
}

/// Entries kept per rule; past it the rule's memo starts over.
const MEMO_ENTRIES: usize = 4096;

#[derive(Debug, Clone)]
enum Memoized {
    /// The regex does not match (`replace` leaves the series alone).
    NoMatch,
    /// The regex matches (keep, drop, labeldrop, labelkeep, a literal `replace`).
    Match,
    /// `replace`, `hashmod`: set `target` to `value` (shared by every series it is set on).
    Set { target: Rc<str>, value: Rc<str> },
}

fn remember(memo: Option<&mut RuleMemo>, key: &str, value: Memoized) {
    if let Some(m) = memo {
        if m.by_input.len() >= MEMO_ENTRIES {
            m.by_input.clear();
        }
        m.by_input.insert(key.into(), value);
    }
}

/// Buffers reused across the rules of one `apply` (allocated only when used).
#[derive(Default)]
struct Scratch {
    value: String,
    out: String,
    target: String,
}

impl RelabelRule {
    /// The source label values joined by the separator (borrowed when there is one source).
    fn value<'a, L: LabelSet>(&self, labels: &'a L, buf: &'a mut String) -> &'a str {
        match self.source_labels.as_slice() {
            [] => "",
            [one] => labels.get(one),
            many => {
                buf.clear();
                for (k, l) in many.iter().enumerate() {
                    if k > 0 {
                        buf.push_str(&self.separator);
                    }
                    buf.push_str(labels.get(l));
                }
                buf
            }
        }
    }

    /// The plain target label name (validated at compile) of the non-`replace` actions.
    fn target_name(&self) -> &str {
        self.target.literal.as_deref().unwrap_or("")
    }

    /// `is_match` on the source value, through the memo when the regex is slow.
    fn matches(&self, v: &str, memo: Option<&mut RuleMemo>) -> bool {
        if self.matcher.is_fast() {
            return self.matcher.is_match(v);
        }
        if let Some(m) = memo.as_deref().and_then(|m| m.get(v)) {
            return matches!(m, Memoized::Match);
        }
        let hit = self.matcher.is_match(v);
        remember(
            memo,
            v,
            if hit {
                Memoized::Match
            } else {
                Memoized::NoMatch
            },
        );
        hit
    }

    fn apply<L: LabelSet>(
        &self,
        labels: &mut L,
        s: &mut Scratch,
        mut memo: Option<&mut RuleMemo>,
    ) -> bool {
        let Scratch { value, out, target } = s;
        match self.action {
            Action::Drop => !self.matches(self.value(labels, value), memo),
            Action::Keep => self.matches(self.value(labels, value), memo),
            Action::DropEqual => labels.get(self.target_name()) != self.value(labels, value),
            Action::KeepEqual => labels.get(self.target_name()) == self.value(labels, value),
            Action::Replace if self.noop => true,
            Action::Replace => {
                let val = self.value(labels, value);
                if let (Some(t), Some(r)) = (&self.target.literal, &self.replacement.literal) {
                    let hit = self.matches(val, memo.as_deref_mut());
                    match memo {
                        Some(m) if hit => {
                            let (t, r) = m
                                .fixed
                                .get_or_insert_with(|| (t.as_str().into(), r.as_str().into()));
                            labels.set_shared(t, r);
                        }
                        None if hit => labels.set(t, r),
                        _ => {}
                    }
                    return true;
                }
                if let Some(m) = memo.as_deref().and_then(|m| m.get(val)) {
                    if let Memoized::Set { target, value } = m {
                        labels.set_shared(target, value);
                    }
                    return true;
                }
                match self.replace(val, target, out) {
                    None => remember(memo, val, Memoized::NoMatch),
                    Some((name, res)) => {
                        if memo.is_some() {
                            let (name, res): (Rc<str>, Rc<str>) = (name.into(), res.into());
                            remember(
                                memo,
                                val,
                                Memoized::Set {
                                    target: name.clone(),
                                    value: res.clone(),
                                },
                            );
                            labels.set_shared(&name, &res);
                        } else {
                            labels.set(name, res);
                        }
                    }
                }
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
                labels.set(self.target_name(), out);
                true
            }
            Action::HashMod => {
                let val = self.value(labels, value);
                if let Some(Memoized::Set { target, value }) =
                    memo.as_deref().and_then(|m| m.get(val))
                {
                    labels.set_shared(target, value);
                    return true;
                }
                let sum = Md5::digest(val.as_bytes());
                let mut low = [0u8; 8];
                low.copy_from_slice(&sum[8..]);
                out.clear();
                let _ = write!(out, "{}", u64::from_be_bytes(low) % self.modulus);
                if memo.is_some() {
                    let (name, res): (Rc<str>, Rc<str>) =
                        (self.target_name().into(), out.as_str().into());
                    remember(
                        memo,
                        val,
                        Memoized::Set {
                            target: name.clone(),
                            value: res.clone(),
                        },
                    );
                    labels.set_shared(&name, &res);
                } else {
                    labels.set(self.target_name(), out);
                }
                true
            }
            Action::LabelMap => {
                let mut pending: Vec<(String, String)> = Vec::new();
                for i in 0..labels.count() {
                    let name = labels.name_at(i);
                    let new = match self.matcher.regex() {
                        Some(re) => {
                            if !re.is_match(name) {
                                continue;
                            }
                            re.replace_all(name, |c: &regex::Captures<'_>| {
                                let mut o = String::new();
                                self.replacement
                                    .expand(|i| c.get(i).map(|m| m.as_str()), &mut o);
                                o
                            })
                            .into_owned()
                        }
                        None => {
                            let Some(caps) = self.matcher.captures(name) else {
                                continue;
                            };
                            let mut o = String::new();
                            self.replacement.expand(|i| caps.group(i), &mut o);
                            o
                        }
                    };
                    if is_legacy_label_name(&new) {
                        pending.push((new, labels.value_at(i).to_string()));
                    }
                }
                for (n, v) in pending {
                    labels.set(&n, &v);
                }
                true
            }
            Action::LabelDrop | Action::LabelKeep => {
                let keep_matching = self.action == Action::LabelKeep;
                labels.retain_labels(|name, _| {
                    self.matches(name, memo.as_deref_mut()) == keep_matching
                });
                true
            }
        }
    }

    /// A `replace` with templates: the target name and the value to set, or `None` when the
    /// regex does not match or the expanded target is not a label name.
    fn replace<'s>(
        &'s self,
        val: &str,
        target: &'s mut String,
        out: &'s mut String,
    ) -> Option<(&'s str, &'s str)> {
        let caps = self.matcher.captures(val)?;
        let name = match &self.target.literal {
            Some(t) => t.as_str(),
            None => {
                self.target.expand(|i| caps.group(i), target);
                if !is_legacy_label_name(target) {
                    return None;
                }
                target.as_str()
            }
        };
        let res = match &self.replacement.literal {
            Some(r) => r.as_str(),
            None => {
                self.replacement.expand(|i| caps.group(i), out);
                out.as_str()
            }
        };
        Some((name, res))
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
