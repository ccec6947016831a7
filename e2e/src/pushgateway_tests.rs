//! The collector's Pushgateway output against a real Pushgateway: `render` + `group_path` round
//! trip, PUT-replaces-the-group semantics, and what happens to a pushed `job` label.

use proxy::collector::pushgateway::{group_path, render};
use proxy::remote_write::{Label, Sample, TimeSeries};

use crate::api;
use crate::pushgateway::Pushgateway;
use crate::tools::{pushgateway_bin, skip_or_fail};

fn ts(labels: &[(&str, &str)], value: f64) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| Label {
                name: (*n).to_owned(),
                value: (*v).to_owned(),
            })
            .collect(),
        samples: vec![Sample {
            value,
            timestamp: 1_000,
        }],
        ..Default::default()
    }
}

fn put(client: &reqwest::Client, url: &str, body: String) {
    let (status, text) = api::block_on(async {
        let resp = client
            .put(url)
            .header("Content-Type", "text/plain; version=0.0.4")
            .body(body)
            .send()
            .await?;
        let status = resp.status();
        Ok::<_, reqwest::Error>((status, resp.text().await?))
    })
    .unwrap()
    .unwrap();
    assert!(status.is_success(), "PUT {url}: {status} {text}");
}

fn metrics(client: &reqwest::Client, pg: &Pushgateway) -> String {
    api::block_on(async {
        client
            .get(format!("{}/metrics", pg.url()))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await
    })
    .unwrap()
    .unwrap()
}

/// The exposition lines of metric `name` (exactly that name, with labels).
fn lines_of<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .collect()
}

/// The one line of `name` carrying all of `labels`, if any.
fn find<'a>(text: &'a str, name: &str, labels: &[&str]) -> Option<&'a str> {
    lines_of(text, name)
        .into_iter()
        .find(|l| labels.iter().all(|want| l.contains(want)))
}

#[test]
fn pushgateway_round_trip_and_put_replaces_group() {
    if pushgateway_bin().is_none() {
        skip_or_fail(
            "Pushgateway binary not found; run `cargo xtask tools` or set PUSHGATEWAY_BIN",
        );
        return;
    }
    let pg = Pushgateway::start("pushgateway").unwrap();
    let client = api::client().unwrap();
    let path = group_path("lab-job", &[("ns".into(), "a/b".into())]);
    assert_eq!(path, "/metrics/job/lab-job/ns@base64/YS9i");
    let url = format!("{}{path}", pg.url());

    let a = ts(&[("__name__", "e2e_pg_a"), ("x", "q\"uo\\te")], 1.5);
    let b = ts(&[("__name__", "e2e_pg_b")], 42.0);
    put(&client, &url, render(&[a.clone(), b]));
    let text = metrics(&client, &pg);
    let group = [r#"job="lab-job""#, r#"ns="a/b""#];
    let line_a = find(&text, "e2e_pg_a", &group).unwrap_or_else(|| panic!("{text}"));
    assert!(line_a.contains(r#"x="q\"uo\\te""#), "{line_a}");
    assert!(line_a.ends_with(" 1.5"), "{line_a}");
    let line_b = find(&text, "e2e_pg_b", &group).unwrap_or_else(|| panic!("{text}"));
    assert!(line_b.ends_with(" 42"), "{line_b}");

    // PUT replaces the whole group: b, missing from the body, disappears.
    put(&client, &url, render(&[a]));
    let text = metrics(&client, &pg);
    assert!(find(&text, "e2e_pg_a", &group).is_some(), "{text}");
    assert!(lines_of(&text, "e2e_pg_b").is_empty(), "{text}");
    pg.kill();
}

/// Observed (Pushgateway 1.5.1): a pushed series' own `job` label (or any grouping-key label) is
/// silently overwritten with the grouping-key value; the push succeeds and the original value is
/// not kept anywhere (no `exported_job`).
#[test]
fn pushgateway_job_label_clash() {
    if pushgateway_bin().is_none() {
        skip_or_fail(
            "Pushgateway binary not found; run `cargo xtask tools` or set PUSHGATEWAY_BIN",
        );
        return;
    }
    let pg = Pushgateway::start("pushgateway-clash").unwrap();
    let client = api::client().unwrap();
    let url = format!(
        "{}{}",
        pg.url(),
        group_path("lab-job", &[("ns".into(), "a/b".into())])
    );
    let s = ts(
        &[
            ("__name__", "e2e_pg_clash"),
            ("job", "other"),
            ("ns", "mine"),
        ],
        7.0,
    );
    put(&client, &url, render(&[s]));
    let text = metrics(&client, &pg);
    let lines = lines_of(&text, "e2e_pg_clash");
    assert_eq!(lines.len(), 1, "{text}");
    let line = lines[0];
    assert!(line.contains(r#"job="lab-job""#), "{line}");
    assert!(line.contains(r#"ns="a/b""#), "{line}");
    assert!(!line.contains("other") && !line.contains("mine"), "{line}");
    assert!(line.ends_with(" 7"), "{line}");
    pg.kill();
}

/// Grouping values needing escaping reach the Pushgateway intact.
#[test]
fn pushgateway_group_path_escaping() {
    if pushgateway_bin().is_none() {
        skip_or_fail(
            "Pushgateway binary not found; run `cargo xtask tools` or set PUSHGATEWAY_BIN",
        );
        return;
    }
    let pg = Pushgateway::start("pushgateway-escape").unwrap();
    let client = api::client().unwrap();
    let cases = [
        ("e2e_pg_slash", "x/y/z"),
        ("e2e_pg_space", "a b"),
        ("e2e_pg_unicode", "é ✓ %2F"),
        ("e2e_pg_plus", "a+b:c@d"),
    ];
    for (name, value) in cases {
        let path = group_path("esc job", &[("ns".into(), value.into())]);
        put(
            &client,
            &format!("{}{path}", pg.url()),
            render(&[ts(&[("__name__", name)], 1.0)]),
        );
    }
    // An empty value: Pushgateway exposes `ns=""` (absent once scraped, by Prometheus semantics).
    let path = group_path("esc job", &[("ns".into(), String::new())]);
    assert!(path.ends_with("/ns@base64/="), "{path}");
    put(
        &client,
        &format!("{}{path}", pg.url()),
        render(&[ts(&[("__name__", "e2e_pg_empty")], 1.0)]),
    );
    let text = metrics(&client, &pg);
    for (name, value) in cases {
        let ns = format!("ns=\"{value}\"");
        assert!(
            find(&text, name, &[r#"job="esc job""#, &ns]).is_some(),
            "{name} {ns}:\n{text}"
        );
    }
    let empty =
        find(&text, "e2e_pg_empty", &[r#"job="esc job""#]).unwrap_or_else(|| panic!("{text}"));
    assert!(empty.contains(r#"ns="""#), "{empty}");
    pg.kill();
}
