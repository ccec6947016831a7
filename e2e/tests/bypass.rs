//! Enforcement bypass catalogue: one case per known way of slipping past a PromQL
//! label-enforcing proxy, each checked for the tenants whose policy shape matters (team-a:
//! namespace isolation and two clauses; team-c: label selectors, one clause; team-d: no
//! namespace, sees several namespaces' kubelet series). An answer must hold no series outside
//! the tenant's policy: it equals what the tenant's oracle Prometheus answers, or is a subset
//! of the tenant's own series; a refusal is a 400 `bad_data` that never reaches a backend
//! (checked on a proxy in front of a recording fake backend). `differential` (in
//! `fuzz_oracle.rs`) fuzzes the same property with generated queries.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::bad_input::encode;
use crate::isolation::{federated_series, sorted_strings};
use crate::support::{
    Answer, Case, Env, FakeBackend, PolicyView, case, compare_answers, result_len, series_set,
};

pub fn cases() -> Vec<Case> {
    vec![
        case("duplicate_query_params_get", duplicate_query_params_get),
        case("url_vs_body_precedence_post", url_vs_body_precedence_post),
        case("match_tricks_series", match_tricks_series),
        case(
            "match_tricks_labels_and_values",
            match_tricks_labels_and_values,
        ),
        case("match_tricks_federate", match_tricks_federate),
        case("name_regex_tricks", name_regex_tricks),
        case("label_replace_into_namespace", label_replace_into_namespace),
        case("subqueries", subqueries),
        case("at_and_offset_modifiers", at_and_offset_modifiers),
        case("or_unless_with_on", or_unless_with_on),
        case(
            "group_left_copies_foreign_labels",
            group_left_copies_foreign_labels,
        ),
        case("empty_looking_matchers", empty_looking_matchers),
        case("extremely_long_regex", extremely_long_regex),
        case("unicode_and_escaped_labels", unicode_and_escaped_labels),
        case("absent_vector_scalar", absent_vector_scalar),
        case(
            "count_by_namespace_everything",
            count_by_namespace_everything,
        ),
        case("differential", crate::fuzz_oracle::differential),
    ]
}

/// Tenants whose policy shapes differ: namespace isolation with two clauses, label selectors
/// with one clause, no namespace at all.
const SHAPES: [&str; 3] = ["team-a", "team-c", "team-d"];

/// Values may differ by float summation order across the clauses' union, nothing more.
const REL: f64 = 1e-9;

fn instant(env: &Env, q: &str) -> Vec<(&'static str, String)> {
    vec![("query", q.to_string()), ("time", env.eval_time_param())]
}

fn range(env: &Env, q: &str) -> Vec<(&'static str, String)> {
    let mut p = env.range_params();
    p.push(("query", q.to_string()));
    p
}

/// `q` through the proxy equals the oracle's answer, as an instant and as a range query, for
/// every tenant of `tenants`, and holds no series outside the policy ([`PolicyView::leaks`]).
/// At least one answer must hold series: all empty would prove nothing.
fn same_as_oracle(env: &Env, tenants: &[&'static str], queries: &[&str]) -> Result<()> {
    let mut non_empty = 0;
    let mut failures = Vec::new();
    for tenant in tenants {
        let view = PolicyView::new(env, tenant)?;
        for q in queries {
            for (mode, path, params) in [
                ("instant", "/api/v1/query", instant(env, q)),
                ("range", "/api/v1/query_range", range(env, q)),
            ] {
                let got = env.tenant_get(Some(tenant), path, &params)?;
                let want = env.oracle_get(tenant, path, &params)?;
                if let Err(e) = compare_answers(&got, &want, REL) {
                    failures.push(format!("{tenant} {mode} {q}: {e}"));
                }
                failures.extend(
                    view.leaks(&got, &want, q)
                        .into_iter()
                        .map(|l| format!("{mode} {q}: LEAK {l}")),
                );
                if got.error_type().is_none() && result_len(&got) > 0 {
                    non_empty += 1;
                }
            }
        }
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n"));
    ensure!(non_empty > 0, "every answer empty: proves nothing");
    Ok(())
}

/// Path, raw URL query and optional form body of a request.
type RawRequest<'a> = (&'a str, &'a str, Option<String>);

/// A proxy in front of a recording fake backend: what it refuses must never reach a backend.
struct Fake {
    proxy: proxy::app::RunningProxy,
    backend: FakeBackend,
}

impl Fake {
    fn start(env: &Env) -> Result<Fake> {
        let (proxy, backend) = env.start_proxy_with_fake_backend()?;
        Ok(Fake { proxy, backend })
    }

    /// Send a raw request (path, URL query, form body) as `tenant`; a body makes it a POST.
    /// Returns the answer and how many requests reached the backend meanwhile.
    fn send(&self, env: &Env, tenant: &str, raw: RawRequest) -> Result<(Answer, usize)> {
        let (path, raw_query, body) = raw;
        let before = self.backend.api_calls();
        let url = format!("{}{path}?{raw_query}", self.proxy.api_url());
        let req = match body {
            Some(b) => env
                .http
                .post(&url)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(b),
            None => env.http.get(&url),
        };
        let answer = env.block_on(crate::support::send(
            req.header("X-Tenant-Namespace", tenant),
        ))?;
        Ok((answer, self.backend.api_calls() - before))
    }

    /// The request is refused with 400 `bad_data` and nothing reaches the backend.
    fn refused(
        &self,
        env: &Env,
        tenant: &str,
        path: &str,
        raw_query: &str,
        body: Option<String>,
    ) -> Result<Answer> {
        let (answer, upstream) = self.send(env, tenant, (path, raw_query, body))?;
        answer
            .expect_error(400, "bad_data")
            .with_context(|| format!("{tenant} {path}?{raw_query}"))?;
        ensure!(
            upstream == 0,
            "{tenant} {path}?{raw_query}: refused but {upstream} upstream calls"
        );
        Ok(answer)
    }

    /// Every selector the fake backend received carries the tenant's namespace.
    fn forwarded_enforced(&self, needle: &str) -> Result<()> {
        let sent = self.backend.last_params();
        let selectors: Vec<&String> = sent
            .iter()
            .filter(|(k, _)| k == "query" || k == "match[]")
            .map(|(_, v)| v)
            .collect();
        ensure!(!selectors.is_empty(), "nothing forwarded: {sent:?}");
        for s in selectors {
            ensure!(s.contains(needle), "unenforced selector forwarded: {s}");
        }
        Ok(())
    }
}

fn duplicate_query_params_get(env: &Env) -> Result<()> {
    let fake = Fake::start(env)?;
    let foreign = encode(r#"{namespace="team-b"}"#);
    for tenant in SHAPES {
        for raw in [
            format!("query=up&query={foreign}"),
            format!("query={foreign}&query=up"),
            // The name percent-encoded: Prometheus decodes it to `query`, so must the proxy.
            format!("query=up&%71uery={foreign}"),
            format!("query=up&time=1&time={}", env.eval_time_param()),
            format!("query=up;query={foreign}"),
        ] {
            fake.refused(env, tenant, "/api/v1/query", &raw, None)?;
            fake.refused(
                env,
                tenant,
                "/api/v1/query_range",
                &format!("{raw}&start=1&end=2&step=1"),
                None,
            )?;
        }
    }
    // One `query` is accepted and forwarded enforced.
    let raw = format!("query={foreign}");
    let (a, upstream) = fake.send(env, "team-a", ("/api/v1/query", &raw, None))?;
    ensure!(a.status == 200 && upstream == 1, "{} {}", a.status, a.body);
    fake.forwarded_enforced(r#"namespace="team-a""#)
}

fn url_vs_body_precedence_post(env: &Env) -> Result<()> {
    let fake = Fake::start(env)?;
    let foreign = encode(r#"{namespace="team-b"}"#);
    for tenant in SHAPES {
        // Prometheus (Go's ParseForm) prefers the body; a proxy that reads the URL would
        // enforce one query and forward another. Both present: refused.
        fake.refused(
            env,
            tenant,
            "/api/v1/query",
            "query=up",
            Some(format!("query={foreign}")),
        )?;
        fake.refused(
            env,
            tenant,
            "/api/v1/query",
            &format!("query={foreign}"),
            Some("query=up".into()),
        )?;
        fake.refused(
            env,
            tenant,
            "/api/v1/query_range",
            "query=up&start=1&end=2&step=1",
            Some(format!("query={foreign}")),
        )?;
    }
    // `match[]` is repeated by design: from the URL and the body, every one is enforced.
    let body = Some(format!("match[]={foreign}"));
    let (a, upstream) = fake.send(env, "team-a", ("/api/v1/series", "match[]=up", body))?;
    ensure!(a.status == 200 && upstream == 1, "{} {}", a.status, a.body);
    fake.forwarded_enforced(r#"namespace="team-a""#)?;
    // Against real Prometheus: a POST body query equals the oracle, a POST series stays own.
    for tenant in SHAPES {
        let view = PolicyView::new(env, tenant)?;
        let p = instant(env, r#"{__name__=~".+"}"#);
        let got = env.tenant_post(Some(tenant), "/api/v1/query", &p)?;
        let want = env.oracle_get(tenant, "/api/v1/query", &p)?;
        compare_answers(&got, &want, REL).map_err(anyhow::Error::msg)?;
        let leaks = view.leaks(&got, &want, r#"{__name__=~".+"}"#);
        ensure!(leaks.is_empty(), "{leaks:?}");
        let mut p: Vec<(&str, String)> = vec![
            ("match[]", "up".into()),
            ("match[]", r#"{namespace="team-b"}"#.into()),
        ];
        p.extend(env.window_params());
        let got = series_set(
            env.tenant_post(Some(tenant), "/api/v1/series", &p)?
                .ok_data()?,
        );
        ensure!(
            got.is_subset(&view.own),
            "{tenant}: POST series outside the policy: {:?}",
            got.difference(&view.own).take(3).collect::<Vec<_>>()
        );
    }
    Ok(())
}

/// `match[]` sets that try to widen a metadata query: empty, match-everything, one foreign
/// among own ones.
const MATCH_SETS: &[&[&str]] = &[
    &[r#"{__name__=~".+"}"#],
    &[r#"{__name__=~".*"}"#],
    &["{}"],
    &[r#"{namespace=~".*"}"#],
    &[r#"{namespace!="team-a"}"#],
    &["up", r#"{namespace="team-b"}"#],
    &[
        r#"{__name__=~"kube_.*"}"#,
        r#"{namespace=~"team-b|kube-system|monitoring"}"#,
        r#"{job="kubelet"}"#,
    ],
    &[
        r#"{__name__=~".+",namespace="team-b"}"#,
        r#"{__name__=~".+",namespace!=""}"#,
    ],
];

fn match_params(env: &Env, set: &[&str]) -> Vec<(&'static str, String)> {
    let mut p: Vec<(&'static str, String)> =
        set.iter().map(|m| ("match[]", m.to_string())).collect();
    p.extend(env.window_params());
    p
}

fn match_tricks_series(env: &Env) -> Result<()> {
    let mut answered = 0;
    for tenant in SHAPES {
        let view = PolicyView::new(env, tenant)?;
        for set in MATCH_SETS {
            let p = match_params(env, set);
            let got = env.tenant_get(Some(tenant), "/api/v1/series", &p)?;
            if got.status == 400 {
                got.expect_error(400, "bad_data")?;
                continue;
            }
            let got = series_set(got.ok_data()?);
            ensure!(
                got.is_subset(&view.own),
                "{tenant} {set:?}: outside the policy {:?}",
                got.difference(&view.own).take(3).collect::<Vec<_>>()
            );
            let want = env.oracle_get(tenant, "/api/v1/series", &p)?;
            if want.error_type().is_none() {
                ensure!(
                    got == series_set(want.ok_data()?),
                    "{tenant} {set:?}: differs from the oracle"
                );
            }
            answered += usize::from(!got.is_empty());
        }
    }
    ensure!(
        answered >= SHAPES.len(),
        "only {answered} non-empty answers: proves nothing"
    );
    Ok(())
}

fn match_tricks_labels_and_values(env: &Env) -> Result<()> {
    for tenant in SHAPES {
        for path in [
            "/api/v1/labels",
            "/api/v1/label/namespace/values",
            "/api/v1/label/__name__/values",
            "/api/v1/label/job/values",
        ] {
            // Everything the tenant may see: the oracle's answer without match[].
            let all = env.oracle_get(tenant, path, &env.window_params())?;
            let all: BTreeSet<String> = sorted_strings(all.ok_data()?).into_iter().collect();
            for set in MATCH_SETS.iter().copied().chain([&[][..]]) {
                let p = match_params(env, set);
                let got = env.tenant_get(Some(tenant), path, &p)?;
                if got.status == 400 {
                    got.expect_error(400, "bad_data")?;
                    continue;
                }
                let got: BTreeSet<String> = sorted_strings(got.ok_data()?).into_iter().collect();
                ensure!(
                    got.is_subset(&all),
                    "{tenant} {path} {set:?}: outside the policy {:?}",
                    got.difference(&all).collect::<Vec<_>>()
                );
                let want = env.oracle_get(tenant, path, &p)?;
                if want.error_type().is_none() {
                    let want: BTreeSet<String> =
                        sorted_strings(want.ok_data()?).into_iter().collect();
                    ensure!(
                        got == want,
                        "{tenant} {path} {set:?}: {got:?} vs oracle {want:?}"
                    );
                }
            }
        }
    }
    Ok(())
}

fn match_tricks_federate(env: &Env) -> Result<()> {
    for tenant in SHAPES {
        let all_p = vec![
            ("match[]", r#"{__name__=~".+"}"#.to_string()),
            ("time", env.eval_time_param()),
        ];
        let (status, text) = env.oracle_get_text(tenant, "/federate", &all_p)?;
        ensure!(status == 200, "oracle federate {status}");
        let all = federated_series(&text);
        ensure!(!all.is_empty(), "{tenant}: oracle federates nothing");
        for set in MATCH_SETS {
            let mut p: Vec<(&str, String)> =
                set.iter().map(|m| ("match[]", m.to_string())).collect();
            p.push(("time", env.eval_time_param()));
            let (status, text) = env.tenant_get_text(Some(tenant), "/federate", &p)?;
            if status == 400 {
                continue;
            }
            ensure!(status == 200, "{tenant} federate {set:?}: {status} {text}");
            let got = federated_series(&text);
            ensure!(
                got.is_subset(&all),
                "{tenant} federate {set:?}: outside the policy {:?}",
                got.difference(&all).take(3).collect::<Vec<_>>()
            );
            let (ws, wt) = env.oracle_get_text(tenant, "/federate", &p)?;
            if ws == 200 {
                ensure!(
                    got == federated_series(&wt),
                    "{tenant} federate {set:?}: differs from the oracle"
                );
            }
        }
    }
    Ok(())
}

const NAME_REGEX_TRICKS: &[&str] = &[
    r#"{__name__=~"container_.*|http_requests_total"}"#,
    r#"{__name__=~"kube_pod_info|up|node_load1|kube_deployment_spec_replicas"}"#,
    r#"{__name__=~"HTTP_REQUESTS_TOTAL|UP"}"#,
    r#"{__name__=~"(?i)HTTP_REQUESTS_TOTAL|(?i)up"}"#,
    r#"{__name__=~"(?i:KUBE_.*)"}"#,
    r#"{__name__=~"http_requests_total|.*"}"#,
    r#"{__name__=~".+|http_requests_total"}"#,
    r#"{__name__=~"(?s).+"}"#,
    r#"{__name__!=""}"#,
    r#"{__name__!~"http_requests_total"}"#,
    r#"{__name__=~"up.*|.*_total"}"#,
    r#"count({__name__=~"[a-z].*"})"#,
];

fn name_regex_tricks(env: &Env) -> Result<()> {
    same_as_oracle(env, &SHAPES, NAME_REGEX_TRICKS)
}

/// Relabelling own series to another namespace is the tenant's business (the oracle does the
/// same); what must not happen is foreign series relabelled into the tenant's namespace.
const LABEL_REPLACE_INTO_NAMESPACE: &[&str] = &[
    r#"label_replace(up, "namespace", "team-b", "", "")"#,
    r#"label_replace({__name__=~".+"}, "namespace", "team-a", "", "")"#,
    r#"sum by (namespace) (label_replace({__name__=~".+"}, "namespace", "team-a", "namespace", ".*"))"#,
    r#"count(label_replace({namespace="team-b"}, "namespace", "team-a", "", ""))"#,
    r#"label_join({__name__=~"up|node_load1|http_requests_total"}, "namespace", "", "namespace", "job")"#,
    r#"label_replace(up, "__name__", "kube_pod_info", "", "") * on(namespace) group_left kube_pod_info"#,
];

fn label_replace_into_namespace(env: &Env) -> Result<()> {
    same_as_oracle(env, &SHAPES, LABEL_REPLACE_INTO_NAMESPACE)
}

const SUBQUERIES: &[&str] = &[
    r#"max_over_time(up{namespace="team-b"}[30m:1m])"#,
    r#"count_over_time({__name__=~".+"}[10m:1m])"#,
    r#"sum(max_over_time(rate({__name__=~".+_total"}[5m])[20m:2m]))"#,
    r#"last_over_time(count by (namespace) ({__name__=~".+"})[15m:5m])"#,
    r#"max_over_time(sum(up)[30m:30s] offset 10m)"#,
];

fn subqueries(env: &Env) -> Result<()> {
    same_as_oracle(env, &SHAPES, SUBQUERIES)
}

fn at_and_offset_modifiers(env: &Env) -> Result<()> {
    let mid = env.lab.window.end_ms as f64 / 1000.0 - 900.0;
    let queries = [
        "up offset 5m".to_string(),
        r#"count({__name__=~".+"} offset 10m)"#.to_string(),
        "up @ end()".to_string(),
        r#"count({__name__=~".+"} @ start())"#.to_string(),
        format!(r#"{{namespace="team-b"}} @ {mid}"#),
        format!(r#"sum by (namespace) (up @ {mid} offset 5m)"#),
        r#"rate(http_requests_total{namespace="team-b"}[5m] offset 5m)"#.to_string(),
    ];
    let q: Vec<&str> = queries.iter().map(String::as_str).collect();
    same_as_oracle(env, &SHAPES, &q)
}

const OR_UNLESS_WITH_ON: &[&str] = &[
    r#"up or on() {namespace="team-b"}"#,
    r#"vector(1) or on() {__name__=~".+"}"#,
    r#"{namespace="team-b"} unless on() vector(0)"#,
    r#"up unless on(namespace) {namespace="team-b"}"#,
    r#"vector(1) and on() up{namespace="team-b"}"#,
    r#"count(up or on() kube_pod_info{namespace="team-b"})"#,
    r#"count({__name__=~".+"} or ignoring(namespace) {namespace="kube-system"})"#,
];

fn or_unless_with_on(env: &Env) -> Result<()> {
    same_as_oracle(env, &SHAPES, OR_UNLESS_WITH_ON)
}

const GROUP_LEFT_COPIES_FOREIGN_LABELS: &[&str] = &[
    r#"up * on(instance) group_left(namespace, pod) kube_pod_info{namespace="team-b"}"#,
    r#"up * on() group_left(namespace) count by (namespace) (kube_pod_info{namespace="team-b"})"#,
    r#"http_requests_total * on(namespace) group_left(node) kube_pod_info"#,
    r#"kubelet_running_pods * on(node) group_left(namespace, pod) max by (node, namespace, pod) (kube_pod_info)"#,
    r#"count by (namespace) (kube_pod_info) * on() group_right(namespace) vector(1)"#,
];

fn group_left_copies_foreign_labels(env: &Env) -> Result<()> {
    same_as_oracle(env, &SHAPES, GROUP_LEFT_COPIES_FOREIGN_LABELS)
}

fn empty_looking_matchers(env: &Env) -> Result<()> {
    // Prometheus refuses a selector whose matchers all match the empty string; the proxy adds
    // the tenant's matchers, so it may answer: either way nothing outside the policy.
    for tenant in SHAPES {
        let view = PolicyView::new(env, tenant)?;
        for q in [
            r#"{__name__=~".*"}"#,
            r#"{namespace=~".*"}"#,
            r#"{namespace!="team-a"}"#,
            r#"{namespace=""}"#,
            r#"count({__name__=~".+",namespace!="team-a"})"#,
            r#"count({__name__=~".+",namespace=""})"#,
            r#"{__name__=~".+",namespace=~".*"}"#,
        ] {
            let p = instant(env, q);
            let got = env.tenant_get(Some(tenant), "/api/v1/query", &p)?;
            if got.status == 400 {
                got.expect_error(400, "bad_data")?;
                continue;
            }
            got.ok_data()?;
            let want = env.oracle_get(tenant, "/api/v1/query", &p)?;
            let leaks = view.leaks(&got, &want, q);
            ensure!(leaks.is_empty(), "{q}: {leaks:?}");
            let own: BTreeSet<_> = view.own.clone();
            for s in crate::support::answer_series(&got) {
                ensure!(
                    !s.contains_key("__name__") || own.contains(&s),
                    "{tenant} {q}: not the tenant's series {s:?}"
                );
            }
            if want.error_type().is_none() {
                compare_answers(&got, &want, REL)
                    .map_err(|e| anyhow::anyhow!("{tenant} {q}: {e}"))?;
            }
        }
    }
    Ok(())
}

fn extremely_long_regex(env: &Env) -> Result<()> {
    let fake = Fake::start(env)?;
    let alternation: Vec<String> = (0..12_000).map(|i| format!("a{i}")).collect();
    let queries = [
        format!(r#"up{{job=~"{}"}}"#, "a".repeat(100_000)),
        format!(r#"{{__name__=~"{}"}}"#, alternation.join("|")),
        format!(r#"count({{namespace=~"({})*x"}})"#, "a|aa".repeat(20_000)),
    ];
    for q in &queries {
        for tenant in SHAPES {
            let started = Instant::now();
            fake.refused(
                env,
                tenant,
                "/api/v1/query",
                "",
                Some(format!("query={}", encode(q))),
            )?;
            fake.refused(
                env,
                tenant,
                "/api/v1/series",
                "",
                Some(format!(
                    "match[]={}",
                    encode(q.trim_start_matches("count(").trim_end_matches(')'))
                )),
            )?;
            ensure!(
                started.elapsed() < Duration::from_secs(5),
                "{tenant}: refusing a {}-byte regex took {:?}",
                q.len(),
                started.elapsed()
            );
        }
    }
    // Long but under the limit: answered quickly and within the policy.
    let alternation: Vec<String> = (0..3_000).map(|i| format!("pod-{i}")).collect();
    let q = format!(
        r#"count by (namespace) ({{__name__=~".+",pod!~"{}"}})"#,
        alternation.join("|")
    );
    let started = Instant::now();
    same_as_oracle(env, &SHAPES, &[q.as_str()])?;
    ensure!(
        started.elapsed() < Duration::from_secs(30),
        "long regex took {:?}",
        started.elapsed()
    );
    Ok(())
}

const UNICODE_AND_ESCAPED_LABELS: &[&str] = &[
    // `\x2d` is `-`: team-b spelled with an escape must be seen as team-b.
    r#"{namespace="team\x2db"}"#,
    r#"count({__name__=~".+",namespace="team\x2da"})"#,
    r#"count({__name__=~".+",namespace="team\u002da"})"#,
    r#"{namespace="t\u0065am-b"}"#,
    // Cyrillic е: not team-a.
    r#"{namespace="tеam-a"}"#,
    r#"{namespace=~"TEAM-B"}"#,
    r#"{namespace=~"(?i)TEAM-B"}"#,
    r#"count({__name__=~".+",namespace=~"team-[a-z]"})"#,
    r#"{job="team-a-app\u0000"}"#,
    r#"{job="kubelet\n"}"#,
    r#"{environment="production",team="webapp",namespace=~".+"}"#,
    r#"label_replace(up, "nämespace", "x", "", "")"#,
];

fn unicode_and_escaped_labels(env: &Env) -> Result<()> {
    same_as_oracle(env, &SHAPES, UNICODE_AND_ESCAPED_LABELS)
}

const ABSENT_VECTOR_SCALAR: &[&str] = &[
    r#"absent(up{namespace="team-b"})"#,
    r#"absent(kube_pod_info{namespace="team-b",pod="x"})"#,
    "absent(nonexistent_metric)",
    r#"absent_over_time(up{namespace="team-b"}[5m])"#,
    "vector(1)",
    r#"scalar(count(up{namespace="team-b"}))"#,
    r#"scalar(count({__name__=~".+"}))"#,
    r#"vector(scalar(sum({__name__=~".+"})))"#,
    r#"up * scalar(count({namespace="team-b"}))"#,
];

fn absent_vector_scalar(env: &Env) -> Result<()> {
    same_as_oracle(env, &SHAPES, ABSENT_VECTOR_SCALAR)
}

const COUNT_BY_NAMESPACE_EVERYTHING: &[&str] = &[
    r#"count by (namespace) ({__name__=~".+"})"#,
    r#"group by (namespace, __name__) ({__name__=~".+"})"#,
    r#"count(count by (namespace) ({__name__=~".+"}))"#,
    r#"topk(100, count by (namespace, job) ({namespace!=""}))"#,
    r#"count_values("v", count by (namespace) ({__name__=~".+"}))"#,
];

fn count_by_namespace_everything(env: &Env) -> Result<()> {
    same_as_oracle(env, &crate::support::TENANTS, COUNT_BY_NAMESPACE_EVERYTHING)
}
