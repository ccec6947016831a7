use super::*;
use crate::tenant::crd::RelabelConfig;

fn ts(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| Sample { value, timestamp })
            .collect(),
        ..Default::default()
    }
}

fn names(s: &TimeSeries) -> Vec<String> {
    s.labels
        .iter()
        .map(|l| format!("{}={}", l.name, l.value))
        .collect()
}

fn extra(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn extra_labels_without_honor_move_the_collected_one_to_exported() {
    let mut s = Shaper::new(
        RelabelProgram::default(),
        &extra(&[("job", "copied"), ("tenant", "t")]),
        false,
    );
    let (out, _) = s.shape(
        vec![ts(&[("job", "orig"), ("__name__", "up")], &[(1, 1.0)])],
        10,
    );
    assert_eq!(
        names(&out[0]),
        ["__name__=up", "exported_job=orig", "job=copied", "tenant=t"]
    );
}

#[test]
fn extra_labels_with_honor_keep_the_collected_one() {
    let mut s = Shaper::new(
        RelabelProgram::default(),
        &extra(&[("job", "copied"), ("tenant", "t")]),
        true,
    );
    let (out, _) = s.shape(
        vec![ts(&[("__name__", "up"), ("job", "orig")], &[(1, 1.0)])],
        10,
    );
    assert_eq!(names(&out[0]), ["__name__=up", "job=orig", "tenant=t"]);
}

#[test]
fn exported_prefix_repeats_when_taken() {
    let mut s = Shaper::new(RelabelProgram::default(), &extra(&[("job", "new")]), false);
    let (out, _) = s.shape(
        vec![ts(
            &[
                ("__name__", "up"),
                ("exported_job", "older"),
                ("job", "orig"),
            ],
            &[(1, 1.0)],
        )],
        10,
    );
    assert_eq!(
        names(&out[0]),
        [
            "__name__=up",
            "exported_exported_job=orig",
            "exported_job=older",
            "job=new"
        ]
    );
}

#[test]
fn relabel_drop_and_collapse_are_counted_and_samples_merged_in_order() {
    let rules = [
        RelabelConfig {
            source_labels: vec!["__name__".into()],
            regex: Some("secret_.*".into()),
            action: Some("drop".into()),
            ..Default::default()
        },
        RelabelConfig {
            regex: Some("pod".into()),
            action: Some("labeldrop".into()),
            ..Default::default()
        },
    ];
    let program = RelabelProgram::compile(&rules).unwrap();
    let mut s = Shaper::new(program, &BTreeMap::new(), false);
    let (out, stats) = s.shape(
        vec![
            ts(&[("__name__", "a"), ("pod", "p1")], &[(2, 2.0), (4, 4.0)]),
            ts(&[("__name__", "a"), ("pod", "p2")], &[(1, 1.0), (4, 40.0)]),
            ts(&[("__name__", "secret_x")], &[(1, 1.0)]),
        ],
        10,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(names(&out[0]), ["__name__=a"]);
    let times: Vec<i64> = out[0].samples.iter().map(|s| s.timestamp).collect();
    assert_eq!(times, [1, 2, 4], "sorted, duplicate timestamp dropped");
    assert_eq!(stats.series_dropped, 1);
    assert_eq!(stats.series_merged, 1);
    assert_eq!(stats.samples_in, 5);
    assert_eq!(stats.samples_out, 3);
}

#[test]
fn a_series_that_vanishes_gets_one_staleness_marker() {
    let mut s = Shaper::new(RelabelProgram::default(), &extra(&[("t", "x")]), false);
    let a = || ts(&[("__name__", "a")], &[(1, 1.0)]);
    let b = || ts(&[("__name__", "b")], &[(1, 1.0)]);
    let (first, _) = s.shape(vec![a(), b()], 100);
    assert_eq!(first.len(), 2);
    let (second, stats) = s.shape(vec![a()], 200);
    assert_eq!(stats.stale_markers, 1);
    let stale: Vec<_> = second
        .iter()
        .filter(|s| s.samples.iter().any(|x| is_stale(x.value)))
        .collect();
    assert_eq!(stale.len(), 1);
    assert_eq!(
        names(stale[0]),
        ["__name__=b", "t=x"],
        "marked with the shaped labels"
    );
    assert_eq!(stale[0].samples[0].timestamp, 200);
    assert_eq!(stale[0].samples[0].value.to_bits(), STALE_NAN_BITS);
    // Marked once: the next cycle does not repeat it.
    let (third, stats) = s.shape(vec![a()], 300);
    assert_eq!(stats.stale_markers, 0);
    assert_eq!(third.len(), 1);
}

#[test]
fn a_series_without_samples_in_the_window_is_not_sent() {
    let mut s = Shaper::new(RelabelProgram::default(), &BTreeMap::new(), false);
    let (out, stats) = s.shape(vec![ts(&[("__name__", "a")], &[])], 10);
    assert!(out.is_empty());
    assert_eq!(stats.series_out, 0);
}
