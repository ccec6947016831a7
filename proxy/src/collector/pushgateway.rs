//! Pushgateway output of the collector: the text exposition of the latest sample of each series,
//! and the grouping-key push path (`/metrics/job/<job>/<label>/<value>...`).
//!
//! Pushgateway semantics relied upon (checked against a real Pushgateway in the e2e tests):
//! - `PUT` replaces every metric of the group, so a series missing from the body disappears;
//! - the grouping labels (`job` and the path labels) are attached to every pushed series.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::remote_write::TimeSeries;

/// The bit pattern of Prometheus's staleness marker (`value.StaleNaN`).
const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Characters left as is in a path segment: the RFC 3986 unreserved set (Go's `url.PathEscape`
/// keeps a few more, e.g. `:` `@` `+`, which is equivalent for the server).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Text exposition (format 0.0.4) of the LATEST sample of each series, without timestamps,
/// series grouped by metric name (all lines of one name contiguous, names sorted), no TYPE/HELP
/// lines (untyped).
///
/// - The latest sample is the one with the highest timestamp (the last one on ties).
/// - Series whose latest sample is a staleness marker (f64 bits `0x7ff0000000000002`) are omitted.
/// - Labels other than `__name__` are rendered sorted by name; values escaped (`\\`, `\"`, `\n`).
/// - Floats: `NaN`, `+Inf`, `-Inf`; integers without exponent when exact and below 1e15;
///   otherwise the shortest round-trip representation (exponent form outside `[1e-4, 1e15)`).
/// - Series with no `__name__` or no samples are skipped.
///
/// Within one name, lines are sorted by their label text, so the output is deterministic.
///
/// A series carrying its own `job` label (or any label of the grouping key) does not keep it:
/// Pushgateway (v1.x) overwrites it with the grouping-key value (the original is NOT kept as
/// `exported_job`), see the e2e test `pushgateway_job_label_clash`. [`render_for_group`] moves
/// such labels to `exported_<name>` first, as a scrape with `honor_labels: false` would.
pub fn render_for_group(series: &[TimeSeries], grouping: &[&str]) -> String {
    let mut group = Group::new(grouping);
    for t in series {
        group.add(t);
    }
    group.render()
}

/// See [`render_for_group`]; this renders the labels as they are.
pub fn render(series: &[TimeSeries]) -> String {
    render_for_group(series, &[])
}

/// A Pushgateway group built up batch by batch as a window is read: per series only its label
/// text and its latest sample are kept (about the size of the body that is PUT), never the
/// series themselves. A series seen again (the next frame of a long series, a series several
/// raw series were merged into) keeps its latest sample.
#[derive(Debug, Default)]
pub struct Group {
    grouping: Vec<String>,
    /// name → label text → (timestamp, value) of the latest sample.
    by_name: BTreeMap<String, BTreeMap<String, (i64, f64)>>,
}

impl Group {
    pub fn new(grouping: &[&str]) -> Group {
        Group {
            grouping: grouping.iter().map(|g| (*g).to_owned()).collect(),
            by_name: BTreeMap::new(),
        }
    }

    pub fn add(&mut self, ts: &TimeSeries) {
        let Some(name) = ts
            .labels
            .iter()
            .find(|l| l.name == "__name__")
            .map(|l| l.value.as_str())
        else {
            return;
        };
        let Some(latest) = ts
            .samples
            .iter()
            .reduce(|a, b| if b.timestamp >= a.timestamp { b } else { a })
        else {
            return;
        };
        let mut labels: Vec<(&str, &str)> = Vec::with_capacity(ts.labels.len());
        let mut moved: Vec<(String, &str)> = Vec::new();
        for l in &ts.labels {
            if l.name == "__name__" {
                continue;
            }
            if self.grouping.contains(&l.name) {
                let mut exported = format!("exported_{}", l.name);
                while ts.labels.iter().any(|o| o.name == exported)
                    || moved.iter().any(|(m, _)| *m == exported)
                {
                    exported = format!("exported_{exported}");
                }
                moved.push((exported, &l.value));
            } else {
                labels.push((&l.name, &l.value));
            }
        }
        labels.extend(moved.iter().map(|(n, v)| (n.as_str(), *v)));
        labels.sort();
        let mut text = String::new();
        if !labels.is_empty() {
            text.push('{');
            for (i, (n, v)) in labels.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                text.push_str(n);
                text.push_str("=\"");
                escape_value(&mut text, v);
                text.push('"');
            }
            text.push('}');
        }
        let lines = match self.by_name.get_mut(name) {
            Some(lines) => lines,
            None => self.by_name.entry(name.to_owned()).or_default(),
        };
        let sample = (latest.timestamp, latest.value);
        match lines.entry(text) {
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(sample);
            }
            std::collections::btree_map::Entry::Occupied(mut e) => {
                if sample.0 >= e.get().0 {
                    e.insert(sample);
                }
            }
        }
    }

    /// Series in the group so far.
    pub fn len(&self) -> usize {
        self.by_name.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The body to PUT.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, lines) in &self.by_name {
            for (labels, (_, value)) in lines {
                if value.to_bits() == STALE_NAN_BITS {
                    continue;
                }
                let _ = writeln!(out, "{name}{labels} {}", format_float(*value));
            }
        }
        out
    }
}

fn escape_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Prometheus text form of a sample value.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    let abs = v.abs();
    if v.fract() == 0.0 && abs < 1e15 {
        if v == 0.0 && v.is_sign_negative() {
            return "-0".to_owned();
        }
        // Exact: |v| < 1e15 < 2^63.
        #[allow(clippy::cast_possible_truncation)]
        return (v as i64).to_string();
    }
    if (1e-4..1e15).contains(&abs) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

/// The push path: `/metrics/job/<job>` plus `/<label>/<value>` per grouping label, URL-escaped
/// per the Pushgateway rules: a value containing `/` or empty is base64url-encoded (RFC 4648 §5,
/// with padding) as `<label>@base64/<encoded>` (empty value → `@base64/=`); other values are
/// percent-encoded as a path segment. The job follows the same rule (`job@base64/...`).
pub fn group_path(job: &str, grouping: &[(String, String)]) -> String {
    let mut path = String::from("/metrics");
    push_pair(&mut path, "job", job);
    for (name, value) in grouping {
        push_pair(&mut path, name, value);
    }
    path
}

fn push_pair(path: &mut String, name: &str, value: &str) {
    path.push('/');
    path.push_str(name);
    if value.is_empty() {
        path.push_str("@base64/=");
    } else if value.contains('/') {
        path.push_str("@base64/");
        path.push_str(&base64::engine::general_purpose::URL_SAFE.encode(value));
    } else {
        path.push('/');
        let _ = write!(path, "{}", utf8_percent_encode(value, SEGMENT));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote_write::{Label, Sample};

    fn ts(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> TimeSeries {
        TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: (*n).to_owned(),
                    value: (*v).to_owned(),
                })
                .collect(),
            samples: samples
                .iter()
                .map(|&(value, timestamp)| Sample { value, timestamp })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn groups_names_contiguously_and_sorted() {
        let series = [
            ts(&[("__name__", "b"), ("x", "1")], &[(1.0, 1)]),
            ts(&[("__name__", "a")], &[(2.0, 1)]),
            ts(&[("x", "2"), ("__name__", "b")], &[(3.0, 1)]),
            ts(&[("__name__", "a"), ("y", "z")], &[(4.0, 1)]),
        ];
        assert_eq!(
            render(&series),
            "a 2\na{y=\"z\"} 4\nb{x=\"1\"} 1\nb{x=\"2\"} 3\n"
        );
    }

    #[test]
    fn labels_sorted_and_escaped() {
        let series = [ts(
            &[("zz", "a\\b"), ("__name__", "m"), ("aa", "q\"u\nx")],
            &[(1.0, 0)],
        )];
        assert_eq!(render(&series), "m{aa=\"q\\\"u\\nx\",zz=\"a\\\\b\"} 1\n");
    }

    #[test]
    fn latest_sample_wins_and_stale_omitted() {
        let stale = f64::from_bits(STALE_NAN_BITS);
        let series = [
            ts(&[("__name__", "m"), ("s", "1")], &[(5.0, 20), (1.0, 10)]),
            ts(&[("__name__", "m"), ("s", "2")], &[(1.0, 10), (stale, 20)]),
            // Stale earlier, then a fresh value: kept.
            ts(&[("__name__", "m"), ("s", "3")], &[(stale, 10), (7.0, 20)]),
            // A plain NaN is not a staleness marker.
            ts(&[("__name__", "m"), ("s", "4")], &[(f64::NAN, 1)]),
        ];
        assert_eq!(
            render(&series),
            "m{s=\"1\"} 5\nm{s=\"3\"} 7\nm{s=\"4\"} NaN\n"
        );
    }

    #[test]
    fn skips_nameless_and_empty() {
        let series = [
            ts(&[("x", "1")], &[(1.0, 1)]),
            ts(&[("__name__", "m")], &[]),
        ];
        assert_eq!(render(&series), "");
        assert_eq!(render(&[]), "");
    }

    #[test]
    fn float_forms() {
        let cases = [
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (-42.0, "-42"),
            (123_456_789.0, "123456789"),
            (999_999_999_999_999.0, "999999999999999"),
            (1e15, "1e15"),
            (1e300, "1e300"),
            (0.1, "0.1"),
            (1.5, "1.5"),
            (-2.25, "-2.25"),
            (1e-4, "0.0001"),
            (1.5e-5, "1.5e-5"),
            (1.0 / 3.0, "0.3333333333333333"),
            (f64::MAX, "1.7976931348623157e308"),
            (5e-324, "5e-324"),
        ];
        for (v, want) in cases {
            let got = format_float(v);
            assert_eq!(got, want, "{v:?}");
            if !v.is_nan() && !v.is_infinite() {
                // Round-trips (Go's ParseFloat accepts the same forms).
                assert_eq!(got.parse::<f64>().unwrap().to_bits(), v.to_bits(), "{got}");
            }
        }
    }

    #[test]
    fn grouping_labels_move_to_exported() {
        let series = [ts(
            &[("__name__", "up"), ("exported_job", "x"), ("job", "node")],
            &[(1.0, 1)],
        )];
        let text = render_for_group(&series, &["job"]);
        assert_eq!(
            text,
            "up{exported_exported_job=\"node\",exported_job=\"x\"} 1\n"
        );
    }

    #[test]
    fn a_group_built_batch_by_batch_keeps_each_series_latest_sample() {
        let stale = f64::from_bits(STALE_NAN_BITS);
        let mut g = Group::new(&["job"]);
        // First batch.
        g.add(&ts(
            &[("__name__", "m"), ("s", "1")],
            &[(1.0, 10), (2.0, 20)],
        ));
        g.add(&ts(&[("__name__", "m"), ("s", "2")], &[(5.0, 10)]));
        // Later batches: the next frame of s=1, an older sample of s=2 (a merged series), and
        // a series that went stale.
        g.add(&ts(&[("__name__", "m"), ("s", "1")], &[(3.0, 30)]));
        g.add(&ts(&[("__name__", "m"), ("s", "2")], &[(9.0, 5)]));
        g.add(&ts(
            &[("__name__", "gone"), ("job", "x")],
            &[(1.0, 10), (stale, 20)],
        ));
        assert_eq!(g.len(), 3);
        assert_eq!(g.render(), "m{s=\"1\"} 3\nm{s=\"2\"} 5\n");
        let series = [
            ts(&[("__name__", "m"), ("s", "1")], &[(1.0, 10), (2.0, 20)]),
            ts(&[("__name__", "m"), ("s", "1")], &[(3.0, 30)]),
        ];
        assert_eq!(
            render(&series),
            "m{s=\"1\"} 3\n",
            "the same through render()"
        );
    }

    #[test]
    fn path_escaping() {
        let g = |v: &str| vec![("ns".to_owned(), v.to_owned())];
        assert_eq!(group_path("j", &[]), "/metrics/job/j");
        assert_eq!(group_path("j", &g("a/b")), "/metrics/job/j/ns@base64/YS9i");
        assert_eq!(group_path("j", &g("")), "/metrics/job/j/ns@base64/=");
        assert_eq!(group_path("j", &g("a b")), "/metrics/job/j/ns/a%20b");
        assert_eq!(group_path("j", &g("é")), "/metrics/job/j/ns/%C3%A9");
        // base64url alphabet with padding: "??>" would give "Pz8+" in standard base64.
        assert_eq!(
            group_path("j", &g("/??>")),
            "/metrics/job/j/ns@base64/Lz8_Pg=="
        );
        assert_eq!(group_path("a/b", &[]), "/metrics/job@base64/YS9i");
        assert_eq!(group_path("", &[]), "/metrics/job@base64/=");
        assert_eq!(
            group_path("j", &[("a".into(), "1".into()), ("b".into(), "x%y".into())]),
            "/metrics/job/j/a/1/b/x%25y"
        );
    }
}
