//! The label sets the engine edits ([`LabelSet`]): owned labels (the collector's), and labels
//! borrowed from a remote-write request ([`CowLabel`]), copied only where a rule writes, so a
//! series the rules leave alone is forwarded as the bytes it came as.

use std::fmt;
use std::ops::Deref;
use std::rc::Rc;

use crate::remote_write::Label;
use crate::remote_write::wire::{LabelPair, cmp_short};

/// A label set sorted by name that the engine reads and edits in place.
pub trait LabelSet {
    fn count(&self) -> usize;
    fn name_at(&self, i: usize) -> &str;
    fn value_at(&self, i: usize) -> &str;
    /// Replace the value of label `i`.
    fn set_value(&mut self, i: usize, value: &str);
    fn insert_at(&mut self, i: usize, name: &str, value: &str);
    fn remove_at(&mut self, i: usize);
    /// Keep the labels for which `keep(name, value)` holds.
    fn retain_labels(&mut self, keep: impl FnMut(&str, &str) -> bool);

    /// Whether the set is known to be exactly as it came, `count_before` labels long and
    /// none written since (`false` when that can't be told).
    fn unchanged_since(&self, count_before: usize) -> bool {
        let _ = count_before;
        false
    }

    /// Binary search by name.
    fn find(&self, name: &str) -> Result<usize, usize> {
        let (mut lo, mut hi) = (0, self.count());
        let first = name.as_bytes().first().copied();
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let here = self.name_at(mid);
            // Label names mostly differ in their first byte: compare it before calling for a
            // full comparison.
            let order = match (here.as_bytes().first().copied(), first) {
                (Some(a), Some(b)) if a != b => a.cmp(&b),
                _ => cmp_short(here.as_bytes(), name.as_bytes()),
            };
            match order {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    fn get(&self, name: &str) -> &str {
        self.find(name).map_or("", |i| self.value_at(i))
    }

    /// [`LabelSet::set`] with strings the caller keeps for many series: a set that can hold
    /// them shares them instead of copying.
    fn set_shared(&mut self, name: &Rc<str>, value: &Rc<str>) {
        self.set(name, value);
    }

    /// Prometheus' `Builder.Set`: an empty value deletes. Keeps the set sorted; writes only
    /// when the value changes.
    fn set(&mut self, name: &str, value: &str) {
        match self.find(name) {
            Ok(i) if value.is_empty() => self.remove_at(i),
            Ok(i) => {
                if self.value_at(i) != value {
                    self.set_value(i, value);
                }
            }
            Err(_) if value.is_empty() => {}
            Err(i) => self.insert_at(i, name, value),
        }
    }
}

impl LabelSet for Vec<Label> {
    fn count(&self) -> usize {
        self.len()
    }
    fn name_at(&self, i: usize) -> &str {
        &self[i].name
    }
    fn value_at(&self, i: usize) -> &str {
        &self[i].value
    }
    fn set_value(&mut self, i: usize, value: &str) {
        let v = &mut self[i].value;
        v.clear();
        v.push_str(value);
    }
    fn insert_at(&mut self, i: usize, name: &str, value: &str) {
        self.insert(
            i,
            Label {
                name: name.to_string(),
                value: value.to_string(),
            },
        );
    }
    fn remove_at(&mut self, i: usize) {
        self.remove(i);
    }
    fn retain_labels(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        self.retain(|l| keep(&l.name, &l.value));
    }
}

/// A label's text: borrowed from the request, or written by a rule (shared with the rule's
/// memo when it computed the same text for an earlier series).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Text<'a> {
    Borrowed(&'a str),
    Shared(Rc<str>),
}

impl Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Text::Borrowed(s) => s,
            Text::Shared(s) => s,
        }
    }
}

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

/// A label borrowed from a request until a rule writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CowLabel<'a> {
    pub name: Text<'a>,
    pub value: Text<'a>,
}

impl<'a> CowLabel<'a> {
    pub fn borrowed(name: &'a str, value: &'a str) -> CowLabel<'a> {
        CowLabel {
            name: Text::Borrowed(name),
            value: Text::Borrowed(value),
        }
    }

    pub fn is_borrowed(&self) -> bool {
        matches!(
            (&self.name, &self.value),
            (Text::Borrowed(_), Text::Borrowed(_))
        )
    }
}

impl LabelPair for CowLabel<'_> {
    fn name(&self) -> &str {
        &self.name
    }
    fn value(&self) -> &str {
        &self.value
    }
}

impl LabelSet for Vec<CowLabel<'_>> {
    fn count(&self) -> usize {
        self.len()
    }
    /// Every write makes a label shared, and only removals keep them borrowed, which shorten
    /// the set: the same length, all borrowed, is the set as it came.
    fn unchanged_since(&self, count_before: usize) -> bool {
        self.len() == count_before && self.iter().all(CowLabel::is_borrowed)
    }
    fn name_at(&self, i: usize) -> &str {
        &self[i].name
    }
    fn value_at(&self, i: usize) -> &str {
        &self[i].value
    }
    fn set_value(&mut self, i: usize, value: &str) {
        self[i].value = Text::Shared(value.into());
    }
    fn insert_at(&mut self, i: usize, name: &str, value: &str) {
        self.insert(
            i,
            CowLabel {
                name: Text::Shared(name.into()),
                value: Text::Shared(value.into()),
            },
        );
    }
    fn remove_at(&mut self, i: usize) {
        self.remove(i);
    }
    fn retain_labels(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        self.retain(|l| keep(&l.name, &l.value));
    }
    fn set_shared(&mut self, name: &Rc<str>, value: &Rc<str>) {
        match self.find(name) {
            Ok(i) if value.is_empty() => self.remove_at(i),
            Ok(i) => {
                if *self[i].value != **value {
                    self[i].value = Text::Shared(value.clone());
                }
            }
            Err(_) if value.is_empty() => {}
            Err(i) => self.insert(
                i,
                CowLabel {
                    name: Text::Shared(name.clone()),
                    value: Text::Shared(value.clone()),
                },
            ),
        }
    }
}
