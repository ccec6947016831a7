//! Isolation, per read endpoint and per tenant: what the proxy answers a tenant equals what the
//! tenant's oracle Prometheus (holding only its series) answers, and the snapshot of what each
//! tenant sees is reviewed by hand.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail, ensure};

use crate::support::{Case, Env, TENANTS, case, series_set};

pub fn cases() -> Vec<Case> {
    vec![
        case(
            "series_equal_oracle_and_snapshot",
            series_equal_oracle_and_snapshot,
        ),
        case("series_with_match_selectors", series_with_match_selectors),
        case("labels_equal_oracle", labels_equal_oracle),
        case("label_values_equal_oracle", label_values_equal_oracle),
        case("federate_equal_oracle", federate_equal_oracle),
        case("query_and_range_post_form", query_and_range_post_form),
        case("exemplars_and_metadata", exemplars_and_metadata),
        case(
            "deny_by_default_and_unknown_tenants",
            deny_by_default_and_unknown_tenants,
        ),
        case(
            "tenant_never_sees_other_namespaces",
            tenant_never_sees_other_namespaces,
        ),
        case(
            "tenant_file_change_applies_within_2s",
            tenant_file_change_applies_within_2s,
        ),
    ]
}

fn all_series(env: &Env, tenant: &str) -> Result<BTreeSet<crate::support::LabelSet>> {
    let w = env.window_params();
    let mut p = vec![("match[]", r#"{__name__=~".+"}"#.to_string())];
    p.extend(w);
    let got = env.tenant_get(Some(tenant), "/api/v1/series", &p)?;
    Ok(series_set(got.ok_data()?))
}

fn series_equal_oracle_and_snapshot(env: &Env) -> Result<()> {
    for tenant in TENANTS {
        let got = all_series(env, tenant)?;
        let want = env.oracle_series(tenant)?;
        ensure!(!want.is_empty(), "{tenant}: oracle holds no series");
        if got != want {
            let extra: Vec<_> = got.difference(&want).take(5).collect();
            let missing: Vec<_> = want.difference(&got).take(5).collect();
            bail!("{tenant}: series differ; extra {extra:?} missing {missing:?}");
        }
        // What the tenant sees, as metric name → namespaces → series count.
        let mut summary: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        for s in &got {
            let name = s.get("__name__").cloned().unwrap_or_default();
            let ns = s.get("namespace").cloned().unwrap_or_else(|| "-".into());
            *summary.entry(name).or_default().entry(ns).or_default() += 1;
        }
        let text: String = summary
            .iter()
            .map(|(name, nss)| {
                let nss: Vec<String> = nss.iter().map(|(ns, n)| format!("{ns}={n}")).collect();
                format!("{name}: {}\n", nss.join(" "))
            })
            .collect();
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path(env.snapshot_dir());
        settings.set_prepend_module_to_snapshot(false);
        settings.bind(|| insta::assert_snapshot!(format!("sees_{tenant}"), text));
    }
    Ok(())
}

fn series_with_match_selectors(env: &Env) -> Result<()> {
    let matches = [
        vec!["up"],
        vec![r#"{namespace="team-b"}"#],
        vec!["up", "kube_pod_info", r#"{job="kubelet"}"#],
        vec![r#"{__name__=~"node_.*|http_.*"}"#],
    ];
    for tenant in TENANTS {
        for m in &matches {
            let mut p: Vec<(&str, String)> = m.iter().map(|s| ("match[]", s.to_string())).collect();
            p.extend(env.window_params());
            let got = env.tenant_get(Some(tenant), "/api/v1/series", &p)?;
            let want = env.oracle_get(tenant, "/api/v1/series", &p)?;
            ensure!(
                series_set(got.ok_data()?) == series_set(want.ok_data()?),
                "{tenant} {m:?}: {} vs {}",
                got.body,
                want.body
            );
        }
    }
    Ok(())
}

pub fn sorted_strings(v: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect();
    out.sort();
    out
}

fn labels_equal_oracle(env: &Env) -> Result<()> {
    for tenant in TENANTS {
        for m in [None, Some("up"), Some(r#"{__name__=~"kube_.*"}"#)] {
            let mut p: Vec<(&str, String)> = env.window_params();
            if let Some(m) = m {
                p.push(("match[]", m.to_string()));
            }
            let got = env.tenant_get(Some(tenant), "/api/v1/labels", &p)?;
            let want = env.oracle_get(tenant, "/api/v1/labels", &p)?;
            ensure!(
                sorted_strings(got.ok_data()?) == sorted_strings(want.ok_data()?),
                "{tenant} labels match[]={m:?}: {} vs {}",
                got.body,
                want.body
            );
        }
    }
    Ok(())
}

fn label_values_equal_oracle(env: &Env) -> Result<()> {
    for tenant in TENANTS {
        for label in ["__name__", "namespace", "pod", "job", "node"] {
            let p = env.window_params();
            let path = format!("/api/v1/label/{label}/values");
            let got = env.tenant_get(Some(tenant), &path, &p)?;
            let want = env.oracle_get(tenant, &path, &p)?;
            ensure!(
                sorted_strings(got.ok_data()?) == sorted_strings(want.ok_data()?),
                "{tenant} {label}: {} vs {}",
                got.body,
                want.body
            );
        }
    }
    Ok(())
}

/// Series identities (`name{labels}`) of a federate answer.
pub fn federated_series(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            // `name{labels} value timestamp`: label values may hold spaces, so cut at the `}`.
            match l.rfind('}') {
                Some(i) => Some(l[..=i].to_string()),
                None => l.split_whitespace().next().map(str::to_string),
            }
        })
        .collect()
}

fn federate_equal_oracle(env: &Env) -> Result<()> {
    for tenant in TENANTS {
        for m in [r#"{__name__=~".+"}"#, "up", r#"{namespace="team-a"}"#] {
            let p = vec![("match[]", m.to_string()), ("time", env.eval_time_param())];
            let got = env.tenant_get_text(Some(tenant), "/federate", &p)?;
            let want = env.oracle_get_text(tenant, "/federate", &p)?;
            ensure!(
                got.0 == 200 && want.0 == 200,
                "{tenant}: federate {} / {}",
                got.0,
                want.0
            );
            let (g, w) = (federated_series(&got.1), federated_series(&want.1));
            ensure!(
                g == w,
                "{tenant} federate {m}: {} vs {} series",
                g.len(),
                w.len()
            );
        }
    }
    Ok(())
}

fn query_and_range_post_form(env: &Env) -> Result<()> {
    let q = "sum by (namespace, __name__) ({__name__=~\".+\"})";
    for tenant in TENANTS {
        let p = vec![("query", q.to_string()), ("time", env.eval_time_param())];
        let get = env.tenant_get(Some(tenant), "/api/v1/query", &p)?;
        let post = env.tenant_post(Some(tenant), "/api/v1/query", &p)?;
        let want = env.oracle_get(tenant, "/api/v1/query", &p)?;
        crate::support::compare_answers(&get, &want, 1e-9).map_err(anyhow::Error::msg)?;
        crate::support::compare_answers(&post, &want, 1e-9).map_err(anyhow::Error::msg)?;
        let mut r = env.range_params();
        r.push(("query", q.to_string()));
        let post = env.tenant_post(Some(tenant), "/api/v1/query_range", &r)?;
        let want = env.oracle_get(tenant, "/api/v1/query_range", &r)?;
        crate::support::compare_answers(&post, &want, 1e-9).map_err(anyhow::Error::msg)?;
        ensure!(
            crate::support::result_len(&want) > 0,
            "{tenant}: empty answer proves nothing"
        );
    }
    Ok(())
}

fn exemplars_and_metadata(env: &Env) -> Result<()> {
    for tenant in TENANTS {
        let mut p = env.window_params();
        p.push(("query", "http_requests_total".to_string()));
        let got = env.tenant_get(Some(tenant), "/api/v1/query_exemplars", &p)?;
        let want = env.oracle_get(tenant, "/api/v1/query_exemplars", &p)?;
        ensure!(
            got.ok_data()? == want.ok_data()?,
            "{tenant} exemplars: {} vs {}",
            got.body,
            want.body
        );

        let got = env.tenant_get(Some(tenant), "/api/v1/metadata", &[])?;
        let visible: BTreeSet<String> = env
            .oracle_series(tenant)?
            .iter()
            .filter_map(|s| s.get("__name__").cloned())
            .collect();
        let names: Vec<String> = got
            .ok_data()?
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for n in &names {
            ensure!(
                visible.contains(n),
                "{tenant}: metadata for {n}, which it may not see"
            );
        }
    }
    Ok(())
}

fn deny_by_default_and_unknown_tenants(env: &Env) -> Result<()> {
    let q = vec![("query", "up".to_string())];
    env.tenant_get(Some("team-e"), "/api/v1/query", &q)?
        .expect_error(403, "forbidden")?;
    let m = vec![("match[]", "up".to_string())];
    env.tenant_get(Some("team-e"), "/api/v1/series", &m)?
        .expect_error(403, "forbidden")?;
    env.tenant_get(Some("team-nope"), "/api/v1/query", &q)?
        .expect_error(403, "forbidden")?;
    env.tenant_get(None, "/api/v1/query", &q)?
        .expect_error(401, "unauthorized")?;
    // The `namespace` parameter is the header's alternative (Go proxy compatible).
    let p = vec![
        ("query", "count(up)".to_string()),
        ("namespace", "team-c".to_string()),
    ];
    let got = env.tenant_get(None, "/api/v1/query", &p)?;
    got.ok_data()?;
    Ok(())
}

/// The strongest statement, endpoint by endpoint: for tenants with metricIsolation, no answer
/// carries another namespace.
fn tenant_never_sees_other_namespaces(env: &Env) -> Result<()> {
    for tenant in ["team-a", "team-b"] {
        for s in all_series(env, tenant)? {
            ensure!(
                s.get("namespace").map(String::as_str) == Some(tenant),
                "{tenant} saw {s:?}"
            );
        }
        let p = vec![
            ("query", r#"{__name__=~".+"}"#.to_string()),
            ("time", env.eval_time_param()),
        ];
        let got = env.tenant_get(Some(tenant), "/api/v1/query", &p)?;
        for s in got.ok_data()?["result"].as_array().into_iter().flatten() {
            ensure!(
                s["metric"]["namespace"] == tenant,
                "{tenant} saw {}",
                s["metric"]
            );
        }
        let p = env.window_params();
        let got = env.tenant_get(Some(tenant), "/api/v1/label/namespace/values", &p)?;
        ensure!(
            got.ok_data()? == &serde_json::json!([tenant]),
            "{tenant}: {}",
            got.body
        );
    }
    Ok(())
}

fn tenant_file_change_applies_within_2s(env: &Env) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cr = |metrics: &str| {
        format!(
            "apiVersion: observability.ethos.io/v1alpha1\nkind: MetricAccess\nmetadata:\n  name: x\n  namespace: team-x\nspec:\n  metricIsolation: true\n  metrics: [{metrics}]\n"
        )
    };
    std::fs::write(dir.path().join("x.yaml"), cr("kube_pod_info"))?;
    let proxy = env.start_proxy(dir.path())?;
    let q = vec![(
        "query",
        "count by (__name__) ({__name__=~\"kube_pod_info|up\"})".to_string(),
    )];
    let names = |env: &Env| -> Result<BTreeSet<String>> {
        let a = env.get_via(&proxy, Some("team-x"), "/api/v1/query", &q)?;
        Ok(a.ok_data()?["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["metric"]["__name__"].as_str().map(str::to_string))
            .collect())
    };
    // team-x is no fixture namespace: the workload has no series there.
    ensure!(
        names(env)?.is_empty(),
        "team-x has no data in its namespace"
    );
    std::fs::write(
        dir.path().join("x.yaml"),
        cr("up").replace("team-x", "team-a"),
    )?;
    let t0 = std::time::Instant::now();
    let q2 = vec![("query", "count(up)".to_string())];
    loop {
        let a = env.get_via(&proxy, Some("team-a"), "/api/v1/query", &q2)?;
        if a.status == 200 {
            break;
        }
        ensure!(
            t0.elapsed() < std::time::Duration::from_secs(2),
            "change not applied in 2s: {}",
            a.body
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The old namespace is gone with the file's change.
    env.get_via(&proxy, Some("team-x"), "/api/v1/query", &q)?
        .expect_error(403, "forbidden")?;
    Ok(())
}
