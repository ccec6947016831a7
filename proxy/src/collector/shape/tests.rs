use super::*;
use crate::relabel::RelabelConfig;
use crate::remote_write::{TimeSeries, encode_series};

/// One whole cycle over `input` (one query), markers from `again` (the previous window read
/// again) when series vanished.
fn cycle_with(
    s: &mut Shaper,
    input: Vec<TimeSeries>,
    again: Vec<TimeSeries>,
    end: i64,
    batch_size: usize,
) -> (Vec<Vec<TimeSeries>>, ShapeStats) {
    let mut batches = Vec::new();
    let mut cycle = s.begin(end, 1, batch_size);
    for t in input {
        if let Some(b) = cycle.push(s, raw(0, t)) {
            batches.push(b.to_series());
        }
    }
    let (last, written, mut stats) = cycle.finish();
    if !last.is_empty() {
        batches.push(last.to_series());
    }
    let mut vanished = s.vanished(&written);
    for t in again {
        if let Some(b) = vanished.push(s, raw(0, t)) {
            batches.push(b.to_series());
        }
    }
    let markers = vanished.take_markers();
    if !markers.is_empty() {
        batches.push(markers.to_series());
    }
    stats.stale_markers = vanished.written();
    s.commit(written, None);
    (batches, stats)
}

fn raw(query: usize, t: TimeSeries) -> RawSeries {
    RawSeries {
        query,
        labels: t.labels.into(),
        samples: t.samples,
    }
}

/// The whole cycle's output as one list, sorted by labels.
fn shape(s: &mut Shaper, input: Vec<TimeSeries>, end: i64) -> (Vec<TimeSeries>, ShapeStats) {
    let (batches, stats) = cycle_with(s, input, Vec::new(), end, 1000);
    let mut all: Vec<TimeSeries> = batches.into_iter().flatten().collect();
    all.sort_by(|a, b| a.labels.cmp(&b.labels));
    (all, stats)
}

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
    let (out, _) = shape(
        &mut s,
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
    let (out, _) = shape(
        &mut s,
        vec![ts(&[("__name__", "up"), ("job", "orig")], &[(1, 1.0)])],
        10,
    );
    assert_eq!(names(&out[0]), ["__name__=up", "job=orig", "tenant=t"]);
}

#[test]
fn exported_prefix_repeats_when_taken() {
    let mut s = Shaper::new(RelabelProgram::default(), &extra(&[("job", "new")]), false);
    let (out, _) = shape(
        &mut s,
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
    let (out, stats) = shape(
        &mut s,
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
    let a = || ts(&[("__name__", "a")], &[(100_000, 1.0)]);
    let b = || ts(&[("__name__", "b")], &[(100_000, 1.0)]);
    let (first, _) = shape(&mut s, vec![a(), b()], 100_000);
    assert_eq!(first.len(), 2);
    assert_eq!(s.remembered(), 2, "two hashes, no labels");
    // "b" is gone; the previous window, read again, holds both.
    let (second, stats) = cycle_with(&mut s, vec![a()], vec![a(), b()], 200_000, 1000);
    assert_eq!(stats.stale_markers, 1);
    let stale: Vec<&TimeSeries> = second
        .iter()
        .flatten()
        .filter(|s| s.samples.iter().any(|x| is_stale(x.value)))
        .collect();
    assert_eq!(stale.len(), 1);
    assert_eq!(
        names(stale[0]),
        ["__name__=b", "t=x"],
        "marked with the shaped labels"
    );
    assert_eq!(stale[0].samples[0].timestamp, 200_000);
    assert_eq!(stale[0].samples[0].value.to_bits(), STALE_NAN_BITS);
    // Marked once: the next cycle does not repeat it, even if it reads "b" again.
    let (third, stats) = cycle_with(&mut s, vec![a()], vec![a(), b()], 300_000, 1000);
    assert_eq!(stats.stale_markers, 0);
    assert_eq!(third.iter().flatten().count(), 1);
}

#[test]
fn staleness_is_found_by_the_shaped_hash_after_relabeling() {
    // Two raw series collapse into one shaped series; when both vanish, one marker.
    let rules = [RelabelConfig {
        regex: Some("pod".into()),
        action: Some("labeldrop".into()),
        ..Default::default()
    }];
    let mut s = Shaper::new(
        RelabelProgram::compile(&rules).unwrap(),
        &BTreeMap::new(),
        false,
    );
    let p = |pod: &str, t: i64| ts(&[("__name__", "m"), ("pod", pod)], &[(t, 1.0)]);
    let other = |t: i64| ts(&[("__name__", "other")], &[(t, 1.0)]);
    cycle_with(
        &mut s,
        vec![p("1", 10_000), p("2", 20_000), other(20_000)],
        vec![],
        30_000,
        1000,
    );
    let (out, stats) = cycle_with(
        &mut s,
        vec![other(40_000)],
        vec![p("1", 10_000), p("2", 20_000), other(20_000)],
        60_000,
        1000,
    );
    assert_eq!(stats.stale_markers, 1);
    let marked: Vec<Vec<String>> = out
        .iter()
        .flatten()
        .filter(|t| is_stale(t.samples[0].value))
        .map(names)
        .collect();
    assert_eq!(marked, [vec!["__name__=m".to_string()]]);
}

#[test]
fn a_series_back_before_its_marker_is_not_marked_and_old_ones_are_forgotten() {
    let mut s = Shaper::new(RelabelProgram::default(), &BTreeMap::new(), false);
    let a = |t: i64| ts(&[("__name__", "a")], &[(t, 1.0)]);
    let b = |t: i64| ts(&[("__name__", "b")], &[(t, 1.0)]);
    cycle_with(&mut s, vec![a(1_000), b(1_000)], vec![], 2_000, 1000);
    // Nothing vanished: no marker even though the re-read would offer labels.
    let (_, stats) = cycle_with(
        &mut s,
        vec![a(3_000), b(3_000)],
        vec![a(1_000)],
        4_000,
        1000,
    );
    assert_eq!(stats.stale_markers, 0);
    // "b" vanishes, but its last sample is older than the 5 minute lookback at the marker
    // time: the target already stopped showing it, nothing to mark, nothing kept.
    let end = 3_000 + STALENESS_LOOKBACK_MS + 1;
    let mut cycle = s.begin(end, 1, 1000);
    assert!(cycle.push(&s, raw(0, a(end))).is_none());
    let (_, written, _) = cycle.finish();
    assert!(s.vanished(&written).is_empty());
}

#[test]
fn unmarked_series_wait_for_the_next_cycle() {
    let mut s = Shaper::new(RelabelProgram::default(), &BTreeMap::new(), false);
    let a = |t: i64| ts(&[("__name__", "a")], &[(t, 1.0)]);
    let b = |t: i64| ts(&[("__name__", "b")], &[(t, 1.0)]);
    cycle_with(&mut s, vec![a(1_000), b(1_000)], vec![], 2_000, 1000);
    // "b" vanished but reading it again failed: kept for the next cycle.
    let mut cycle = s.begin(4_000, 1, 1000);
    assert!(cycle.push(&s, raw(0, a(3_000))).is_none());
    let (_, written, _) = cycle.finish();
    let vanished = s.vanished(&written);
    assert_eq!(vanished.len(), 1);
    assert_eq!(vanished.oldest_ms(), Some(1_000));
    s.commit(written, Some(vanished));
    assert_eq!(s.remembered(), 2);
    let (out, stats) = cycle_with(&mut s, vec![a(5_000)], vec![b(1_000)], 6_000, 1000);
    assert_eq!(stats.stale_markers, 1);
    assert!(
        out.iter()
            .flatten()
            .any(|t| names(t) == ["__name__=b"] && is_stale(t.samples[0].value))
    );
}

#[test]
fn overlapping_clauses_return_a_series_once_and_long_series_continue_across_frames() {
    let s = Shaper::new(RelabelProgram::default(), &BTreeMap::new(), false);
    let a = |t: i64| ts(&[("__name__", "a")], &[(t, 1.0)]);
    let b = |t: i64| ts(&[("__name__", "b")], &[(t, 1.0)]);
    let mut cycle = s.begin(100, 2, 1);
    let mut out = Vec::new();
    // Query 0: "a" in two frames (a long series), then "b".
    for series in [raw(0, a(1)), raw(0, a(2)), raw(0, b(1))] {
        out.extend(cycle.push(&s, series).iter().flat_map(Batch::to_series));
    }
    // Query 1 (an overlapping clause) returns both again: skipped.
    for series in [raw(1, a(1)), raw(1, a(2)), raw(1, b(1))] {
        out.extend(cycle.push(&s, series).iter().flat_map(Batch::to_series));
    }
    let (last, _, stats) = cycle.finish();
    out.extend(last.to_series());
    assert_eq!(stats.series_in, 2);
    assert_eq!(stats.series_duplicate, 2);
    assert_eq!(stats.series_merged, 0, "a continuation is not a merge");
    assert_eq!(stats.series_out, 2);
    let samples: Vec<(String, i64)> = out
        .iter()
        .flat_map(|t| {
            t.samples
                .iter()
                .map(|x| (t.labels[0].value.clone(), x.timestamp))
        })
        .collect();
    assert_eq!(
        samples,
        [("a".into(), 1), ("a".into(), 2), ("b".into(), 1)],
        "every sample once, in order"
    );
}

#[test]
fn a_merge_across_batches_keeps_only_newer_samples() {
    let rules = [RelabelConfig {
        regex: Some("pod".into()),
        action: Some("labeldrop".into()),
        ..Default::default()
    }];
    let mut s = Shaper::new(
        RelabelProgram::compile(&rules).unwrap(),
        &BTreeMap::new(),
        false,
    );
    let p = |pod: &str, samples: &[(i64, f64)]| ts(&[("__name__", "m"), ("pod", pod)], samples);
    // Batches of one series: "p2" is merged into "m" after "p1"'s batch was handed out.
    let (batches, stats) = cycle_with(
        &mut s,
        vec![
            p("1", &[(2, 2.0), (4, 4.0)]),
            p("2", &[(1, 1.0), (4, 40.0), (5, 5.0)]),
        ],
        vec![],
        10,
        1,
    );
    let times: Vec<Vec<i64>> = batches
        .iter()
        .map(|b| b[0].samples.iter().map(|x| x.timestamp).collect())
        .collect();
    assert_eq!(
        times,
        [vec![2, 4], vec![5]],
        "what the target already has can't come again"
    );
    assert_eq!(stats.series_merged, 1);
    assert_eq!(stats.samples_merged_away, 2);
    assert_eq!(stats.series_out, 1);
}

#[test]
fn hashes_not_copies_are_remembered() {
    let mut s = Shaper::new(RelabelProgram::default(), &BTreeMap::new(), false);
    let many: Vec<TimeSeries> = (0..5000)
        .map(|i| ts(&[("__name__", "m"), ("i", &i.to_string())], &[(1, 1.0)]))
        .collect();
    cycle_with(&mut s, many, vec![], 2, 100);
    assert_eq!(s.remembered(), 5000);
    assert!(
        s.previous.capacity() * std::mem::size_of::<(u64, i64)>() <= 5000 * 16,
        "16 bytes a series"
    );
}

#[test]
fn a_series_without_samples_in_the_window_is_not_sent() {
    let mut s = Shaper::new(RelabelProgram::default(), &BTreeMap::new(), false);
    let (out, stats) = shape(&mut s, vec![ts(&[("__name__", "a")], &[])], 10);
    assert!(out.is_empty());
    assert_eq!(stats.series_out, 0);
}

#[test]
fn a_batch_encodes_as_its_series_would() {
    let mut s = Shaper::new(
        RelabelProgram::default(),
        &extra(&[("a_first", "x"), ("tenant", "t"), ("zz", "")]),
        true,
    );
    let long = "v".repeat(300);
    let input = vec![
        ts(&[("__name__", "up"), ("job", "j")], &[(2, 1.0), (1, 0.0)]),
        ts(&[("__name__", "up"), ("tenant", "mine")], &[(1, f64::NAN)]),
        ts(
            &[("__name__", "long"), ("v", &long)],
            &[(-5, -0.0), (7, 2.5)],
        ),
        // The same series as the first: merged into it.
        ts(&[("job", "j"), ("__name__", "up")], &[(3, 3.0)]),
    ];
    let mut cycle = s.begin(10, 1, 1000);
    for t in input {
        assert!(cycle.push(&s, raw(0, t)).is_none());
    }
    let (batch, written, stats) = cycle.finish();
    s.commit(written, None);
    let series = batch.to_series();
    assert_eq!(
        (batch.len(), batch.samples(), stats.series_merged),
        (3, 6, 1)
    );
    assert_eq!(
        names(&series[0]),
        ["__name__=up", "a_first=x", "job=j", "tenant=t", "zz="],
        "extra labels merged in name order"
    );
    assert_eq!(
        names(&series[1])[2],
        "tenant=mine",
        "honorLabels: collected wins"
    );
    let times: Vec<i64> = series[0].samples.iter().map(|x| x.timestamp).collect();
    assert_eq!(times, [1, 2, 3], "samples sorted");
    assert_eq!(batch.encode(), encode_series(&series));
}
