//! The labels of one collected series in one string ([`SeriesLabels`]). A cycle reads millions
//! of series: a `Vec<Label>` costs two allocations per label (about 18 per series), this costs
//! two per series. Names and values are `&str` when pushed, so they are valid UTF-8.

use std::fmt;

use crate::relabel::CowLabel;
use crate::remote_write::Label;
use crate::remote_write::wire::cmp_short;

/// Label names and values back to back in one string, in the order the source sent them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SeriesLabels {
    text: String,
    /// Per label: where its name ends and where its value ends in `text` (a name starts where
    /// the previous value ended).
    ends: Vec<(usize, usize)>,
}

impl SeriesLabels {
    pub fn with_capacity(labels: usize, bytes: usize) -> SeriesLabels {
        SeriesLabels {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(labels),
        }
    }

    pub fn push(&mut self, name: &str, value: &str) {
        self.text.push_str(name);
        let name_end = self.text.len();
        self.text.push_str(value);
        self.ends.push((name_end, self.text.len()));
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Label `i` as `(name, value)`.
    pub fn get(&self, i: usize) -> Option<(&str, &str)> {
        let &(name_end, value_end) = self.ends.get(i)?;
        let start = match i {
            0 => 0,
            _ => self.ends[i - 1].1,
        };
        Some((
            self.text.get(start..name_end)?,
            self.text.get(name_end..value_end)?,
        ))
    }

    /// The value of the (first) label called `name`.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    pub fn to_labels(&self) -> Vec<Label> {
        self.iter()
            .map(|(name, value)| Label {
                name: name.to_owned(),
                value: value.to_owned(),
            })
            .collect()
    }

    /// The labels borrowed, sorted by name, as the relabel engine takes them. Sources send them
    /// sorted (Prometheus always does); a stable sort puts others in order.
    pub fn sorted_cow(&self) -> Vec<CowLabel<'_>> {
        let mut set: Vec<CowLabel<'_>> = self
            .iter()
            .map(|(name, value)| CowLabel::borrowed(name, value))
            .collect();
        if !set.is_sorted_by(|a, b| cmp_short(a.name.as_bytes(), b.name.as_bytes()).is_le()) {
            set.sort_by(|a, b| a.name.cmp(&b.name));
        }
        set
    }
}

/// Builds a [`SeriesLabels`] from bytes off the wire, checking UTF-8 once for the whole set
/// rather than once per name and value (most of a label's cost when they are this short).
#[derive(Debug, Default)]
pub struct SeriesLabelsBuilder {
    bytes: Vec<u8>,
    ends: Vec<(usize, usize)>,
}

impl SeriesLabelsBuilder {
    pub fn with_capacity(labels: usize, bytes: usize) -> SeriesLabelsBuilder {
        SeriesLabelsBuilder {
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(labels),
        }
    }

    pub fn push(&mut self, name: &[u8], value: &[u8]) {
        self.bytes.extend_from_slice(name);
        let name_end = self.bytes.len();
        self.bytes.extend_from_slice(value);
        self.ends.push((name_end, self.bytes.len()));
    }

    /// The labels, or `None` when a name or value is not valid UTF-8. The whole text is valid
    /// and every name and value starts and ends on a character boundary exactly when each one
    /// is valid on its own.
    pub fn finish(self) -> Option<SeriesLabels> {
        let text = String::from_utf8(self.bytes).ok()?;
        self.ends
            .iter()
            .all(|&(name, value)| text.is_char_boundary(name) && text.is_char_boundary(value))
            .then_some(SeriesLabels {
                text,
                ends: self.ends,
            })
    }
}

impl From<&[Label]> for SeriesLabels {
    fn from(labels: &[Label]) -> SeriesLabels {
        let bytes = labels.iter().map(|l| l.name.len() + l.value.len()).sum();
        let mut out = SeriesLabels::with_capacity(labels.len(), bytes);
        for l in labels {
            out.push(&l.name, &l.value);
        }
        out
    }
}

impl From<Vec<Label>> for SeriesLabels {
    fn from(labels: Vec<Label>) -> SeriesLabels {
        SeriesLabels::from(labels.as_slice())
    }
}

/// `{a="1", b="2"}`.
impl fmt::Debug for SeriesLabels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (name, value)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{name}={value:?}")?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(name: &str, value: &str) -> Label {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn labels_round_trip_through_one_string() {
        let labels = vec![
            label("b", "2"),
            label("a", ""),
            label("", "x"),
            label("ü", "ß"),
        ];
        let flat = SeriesLabels::from(labels.clone());
        assert_eq!(flat.len(), 4);
        assert_eq!(flat.to_labels(), labels);
        assert_eq!(flat.get(2), Some(("", "x")));
        assert_eq!(flat.get(4), None);
        assert_eq!(flat.value("ü"), Some("ß"));
        assert_eq!(format!("{flat:?}"), r#"{b="2", a="", ="x", ü="ß"}"#);
    }

    #[test]
    fn bytes_are_checked_as_utf8_name_by_name_and_value_by_value() {
        let mut b = SeriesLabelsBuilder::default();
        b.push(b"a", "ü".as_bytes());
        b.push(b"", b"x");
        let flat = b.finish().expect("valid");
        assert_eq!(flat.get(0), Some(("a", "ü")));
        assert_eq!(flat.get(1), Some(("", "x")));
        // "ü" split between a name and its value: the whole text is valid, each half is not.
        let u = "ü".as_bytes();
        let mut b = SeriesLabelsBuilder::default();
        b.push(&u[..1], &u[1..]);
        assert!(b.finish().is_none());
        let mut b = SeriesLabelsBuilder::default();
        b.push(b"a", b"\xff");
        assert!(b.finish().is_none());
    }

    #[test]
    fn borrowed_view_is_sorted_by_name() {
        let flat = SeriesLabels::from(vec![label("job", "j"), label("__name__", "up")]);
        let set = flat.sorted_cow();
        let names: Vec<&str> = set.iter().map(|l| &*l.name).collect();
        assert_eq!(names, ["__name__", "job"]);
        assert!(set.iter().all(CowLabel::is_borrowed));
    }
}
