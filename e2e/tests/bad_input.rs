//! Bad input: each is answered with the right status and a Prometheus-style error, and none
//! reaches the backend. The proxy here fronts a recording fake backend, so "never an upstream
//! call" is checked by counting what arrived there.

use anyhow::{Result, ensure};

use crate::support::{Case, Env, case};

pub fn cases() -> Vec<Case> {
    vec![
        case(
            "refused_before_any_upstream_call",
            refused_before_any_upstream_call,
        ),
        case(
            "percent_encoded_match_is_enforced",
            percent_encoded_match_is_enforced,
        ),
        case(
            "client_tenant_headers_never_forwarded",
            client_tenant_headers_never_forwarded,
        ),
    ]
}

struct Bad {
    what: &'static str,
    method: &'static str,
    path: String,
    query: String,
    body: Option<(&'static str, String)>,
    tenant: Option<&'static str>,
    status: u16,
    error_type: &'static str,
}

fn bad(what: &'static str, path: &str, query: &str, status: u16, error_type: &'static str) -> Bad {
    Bad {
        what,
        method: "GET",
        path: path.into(),
        query: query.into(),
        body: None,
        tenant: Some("team-a"),
        status,
        error_type,
    }
}

fn refused_before_any_upstream_call(env: &Env) -> Result<()> {
    let (proxy, backend) = env.start_proxy_with_fake_backend()?;
    let deep = format!("{}up{}", "(".repeat(5000), ")".repeat(5000));
    let huge = format!("up{{job=~\"{}\"}}", "a".repeat(200_000));
    let form = "application/x-www-form-urlencoded";
    let mut cases = vec![
        bad(
            "unparsable PromQL",
            "/api/v1/query",
            "query=sum(",
            400,
            "bad_data",
        ),
        bad("empty query", "/api/v1/query", "query=", 400, "bad_data"),
        bad("missing query", "/api/v1/query", "", 400, "bad_data"),
        bad(
            "repeated query",
            "/api/v1/query",
            "query=up&query=count(up)",
            400,
            "bad_data",
        ),
        bad(
            "semicolon separator",
            "/api/v1/query",
            "query=up;query=count(up)",
            400,
            "bad_data",
        ),
        bad(
            "repeated time",
            "/api/v1/query",
            "query=up&time=1&time=2",
            400,
            "bad_data",
        ),
        bad(
            "or inside a selector",
            "/api/v1/query",
            "query=up%7Bjob%3D%22a%22%20or%20job%3D%22b%22%7D",
            400,
            "bad_data",
        ),
        bad(
            "info() looks series up internally",
            "/api/v1/query",
            "query=info(up)",
            400,
            "bad_data",
        ),
        bad(
            "deep nesting",
            "/api/v1/query",
            &format!("query={}", encode(&deep)),
            400,
            "bad_data",
        ),
        bad(
            "unsupported: status/config",
            "/api/v1/status/config",
            "",
            403,
            "forbidden",
        ),
        bad(
            "unsupported: admin",
            "/api/v1/admin/tsdb/snapshot",
            "",
            403,
            "forbidden",
        ),
        bad(
            "unsupported: targets",
            "/api/v1/targets",
            "",
            403,
            "forbidden",
        ),
        // Rules and alerts are served filtered (e2e rules suite); a bad `type` never goes up.
        bad(
            "rules of an unknown type",
            "/api/v1/rules",
            "type=everything",
            400,
            "bad_data",
        ),
        bad(
            "series without match[]",
            "/api/v1/series",
            "",
            400,
            "bad_data",
        ),
        bad(
            "match[] not a selector",
            "/api/v1/series",
            "match[]=sum(up)",
            400,
            "bad_data",
        ),
        bad(
            "unparsable match[] on labels",
            "/api/v1/labels",
            "match[]=up%7B",
            400,
            "bad_data",
        ),
        bad(
            "unparsable match[] on federate",
            "/federate",
            "match[]=%7B%7D%7D",
            400,
            "bad_data",
        ),
    ];
    let mut huge_case = bad("huge query", "/api/v1/query", "", 400, "bad_data");
    huge_case.method = "POST";
    huge_case.body = Some((form, format!("query={}", encode(&huge))));
    cases.push(huge_case);
    let mut dup = bad(
        "query in URL and body",
        "/api/v1/query",
        "query=up",
        400,
        "bad_data",
    );
    dup.method = "POST";
    dup.body = Some((form, "query=count(up)".into()));
    cases.push(dup);
    let mut multipart = bad("multipart body", "/api/v1/query", "", 400, "bad_data");
    multipart.method = "POST";
    multipart.body = Some((
        "multipart/form-data; boundary=X",
        "--X\r\nContent-Disposition: form-data; name=\"query\"\r\n\r\nup\r\n--X--\r\n".into(),
    ));
    cases.push(multipart);
    let mut unknown = bad(
        "unknown tenant",
        "/api/v1/query",
        "query=up",
        403,
        "forbidden",
    );
    unknown.tenant = Some("no-such-team");
    cases.push(unknown);
    let mut anon = bad(
        "missing auth",
        "/api/v1/query",
        "query=up",
        401,
        "unauthorized",
    );
    anon.tenant = None;
    cases.push(anon);
    let mut denied = bad(
        "tenant with empty policy",
        "/api/v1/query",
        "query=up",
        403,
        "forbidden",
    );
    denied.tenant = Some("team-e");
    cases.push(denied);
    let mut no_alerts = bad(
        "alerts of a tenant with empty policy",
        "/api/v1/alerts",
        "",
        403,
        "forbidden",
    );
    no_alerts.tenant = Some("team-e");
    cases.push(no_alerts);

    let mut failures = Vec::new();
    for c in &cases {
        let before = backend.api_calls();
        let url = format!("{}{}?{}", proxy.api_url(), c.path, c.query);
        let mut req = if c.method == "POST" {
            env.http.post(&url)
        } else {
            env.http.get(&url)
        };
        if let Some(t) = c.tenant {
            req = req.header("X-Tenant-Namespace", t);
        }
        if let Some((ct, body)) = &c.body {
            req = req.header("Content-Type", *ct).body(body.clone());
        }
        let answer = env.block_on(crate::support::send(req))?;
        if let Err(e) = answer.expect_error(c.status, c.error_type) {
            failures.push(format!("{}: {e}", c.what));
        }
        if backend.api_calls() != before {
            failures.push(format!("{}: reached the backend", c.what));
        }
    }
    ensure!(
        failures.is_empty(),
        "bad input handling:\n{}",
        failures.join("\n")
    );
    // The proxy is still serving after all that.
    let ok = env.get_via(
        &proxy,
        Some("team-a"),
        "/api/v1/query",
        &[("query", "up".to_string())],
    )?;
    ok.ok_data()?;
    ensure!(
        backend.api_calls() == 1,
        "a good query reaches the backend once"
    );
    Ok(())
}

/// Go (and so Prometheus) decodes parameter names: `match%5B%5D` IS `match[]`. The proxy must see
/// it the same way, or the backend would apply a selector the proxy never enforced.
fn percent_encoded_match_is_enforced(env: &Env) -> Result<()> {
    let (proxy, backend) = env.start_proxy_with_fake_backend()?;
    let url = format!(
        "{}/api/v1/series?match%5B%5D=%7Bnamespace%3D%22team-b%22%7D",
        proxy.api_url()
    );
    let req = env.http.get(&url).header("X-Tenant-Namespace", "team-a");
    let a = env.block_on(crate::support::send(req))?;
    ensure!(a.status == 200, "{}", a.body);
    let sent = backend.last_params();
    let matches: Vec<&String> = sent
        .iter()
        .filter(|(k, _)| k == "match[]")
        .map(|(_, v)| v)
        .collect();
    ensure!(!matches.is_empty(), "no match[] sent upstream: {sent:?}");
    for m in matches {
        ensure!(
            m.contains(r#"namespace="team-a""#),
            "unenforced match[] upstream: {m}"
        );
    }
    ensure!(
        !sent.iter().any(|(k, _)| k.contains('%')),
        "raw parameter forwarded: {sent:?}"
    );
    Ok(())
}

fn client_tenant_headers_never_forwarded(env: &Env) -> Result<()> {
    let (proxy, backend) = env.start_proxy_with_fake_backend()?;
    let url = format!("{}/api/v1/query?query=up", proxy.api_url());
    let req = env
        .http
        .get(&url)
        .header("X-Tenant-Namespace", "team-a")
        .header("X-Scope-OrgID", "team-b")
        .header("Authorization", "Bearer secret-token")
        .header("Cookie", "session=1");
    let a = env.block_on(crate::support::send(req))?;
    ensure!(a.status == 200, "{}", a.body);
    let headers = backend.last_headers();
    for h in [
        "x-tenant-namespace",
        "x-scope-orgid",
        "authorization",
        "cookie",
    ] {
        ensure!(
            !headers.iter().any(|(k, _)| k == h),
            "{h} forwarded upstream: {headers:?}"
        );
    }
    let params = backend.last_params();
    ensure!(
        params
            .iter()
            .all(|(k, _)| k == "query" || k == "time" || k == "timeout"),
        "unexpected upstream params {params:?}"
    );
    Ok(())
}

pub fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
