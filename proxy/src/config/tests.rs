use std::time::Duration;

use super::*;

const LAB: &str = include_str!("../../../fixtures/configs/lab.yaml");
const EXAMPLE: &str = include_str!("../../../fixtures/configs/example.yaml");

/// One backend group, no `auth` section.
fn backends_only() -> &'static str {
    "backends:\n  groups:\n    - name: infra\n      members: [\"http://127.0.0.1:9090\"]\n"
}

/// The smallest config that loads: a backend group and an explicit auth mode.
fn minimal() -> String {
    format!("{}auth:\n  mode: header\n", backends_only())
}

#[test]
fn defaults_are_the_documented_ones() {
    let c = Config::from_yaml(&minimal(), "c.yaml").unwrap();
    assert_eq!(c.server.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(c.server.admin_listen.to_string(), "127.0.0.1:9091");
    assert_eq!(c.proxy.backend_timeout, Duration::from_secs(30));
    assert_eq!(c.proxy.max_concurrent_requests, 100);
    assert_eq!(c.proxy.max_query_bytes, 65536);
    assert_eq!(c.remote_write.batch_size, 1000);
    assert_eq!(c.remote_write.collection_interval, Duration::from_secs(30));
    assert_eq!(c.discovery.refresh_interval, Duration::from_secs(30));
    assert_eq!(c.auth.mode, Some(AuthMode::Header));
    assert_eq!(c.auth.header.name, "X-Tenant-Namespace");
    assert_eq!(c.auth.header.query_param.as_deref(), Some("namespace"));
    assert_eq!(c.tenants.source, TenantSourceKind::File);
}

#[test]
fn fixture_configs_parse() {
    let lab = Config::from_yaml(LAB, "lab.yaml").unwrap();
    assert_eq!(lab.backends.groups[0].members.len(), 2);
    let ex = Config::from_yaml(EXAMPLE, "example.yaml").unwrap();
    assert_eq!(ex.auth.mode, Some(AuthMode::Bearer));
    assert_eq!(
        ex.discovery.kubernetes.unwrap().resource_types,
        vec![ResourceType::Pod]
    );
}

#[test]
fn the_go_proxy_config_of_the_seed_parses() {
    // The config example of the Go proxy's README, unchanged, plus a backend group.
    let seed = r#"
discovery:
  kubernetes:
    namespaces:
      - monitoring
    label_selectors:
      app.kubernetes.io/name: prometheus
    port: "9090"
    resource_types:
      - Pod
  refresh_interval: 30s
tenants:
  watch_all_namespaces: true
proxy:
  enable_caching: true
  cache_ttl: 5m
  enable_metrics: true
  enable_request_logging: true
  max_concurrent_requests: 100
  backend_timeout: 30s
remote_write:
  enabled: true
  collection_interval: 30s
  batch_size: 1000
"#;
    let c = Config::from_yaml(&format!("{seed}{}", minimal()), "seed.yaml").unwrap();
    assert!(c.proxy.enable_caching);
    assert_eq!(c.proxy.cache_ttl, Duration::from_secs(300));
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let text = format!("{}proxy:\n  enable_cachng: true\n", minimal());
    let e = Config::from_yaml(&text, "config.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("config.yaml:8:3: key `proxy.enable_cachng`: unknown field `enable_cachng`"),
        "{e}"
    );
    assert!(e.contains("enable_caching"), "lists the valid keys: {e}");
}

#[test]
fn bad_value_names_key() {
    let text = format!("{}proxy:\n  backend_timeout: soon\n", minimal());
    let e = Config::from_yaml(&text, "c.yaml").unwrap_err().to_string();
    assert!(
        e.contains("c.yaml:8:")
            && e.contains("proxy.backend_timeout")
            && e.contains("invalid duration"),
        "{e}"
    );
}

#[test]
fn every_semantic_problem_is_listed_together() {
    let text = "server:\n  listen: 127.0.0.1:1\n  admin_listen: 127.0.0.1:1\nbackends:\n  groups:\n    - name: a\n      members: [\"ftp://x\"]\n    - name: a\n      members: []\nauth:\n  mode: bearer\n  bearer:\n    tokens:\n      - tenant: \"a|b\"\n        sha256: abc\n";
    let e = Config::from_yaml(text, "c.yaml").unwrap_err();
    let ConfigError::Invalid { problems, .. } = &e else {
        panic!("{e}")
    };
    let all = problems.join("\n");
    for needle in [
        "server.admin_listen",
        "backends.groups[0].members[0]",
        "backends.groups[1].name: duplicate",
        "backends.groups[1].members",
        "auth.bearer.tokens[0].tenant",
        "auth.bearer.tokens[0].sha256",
    ] {
        assert!(all.contains(needle), "missing {needle} in:\n{all}");
    }
}

#[test]
fn file_mode_needs_a_backend() {
    let e = Config::from_yaml("proxy:\n  enable_metrics: true\n", "c.yaml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("backends.groups"), "{e}");
}

#[test]
fn load_resolves_relative_paths_against_the_config_folder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, format!("tenants:\n  directory: t\n{}", minimal())).unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(c.tenants.directory, dir.path().join("t"));
    let missing = Config::load(&dir.path().join("nope.yaml"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("nope.yaml"), "{missing}");
}

#[test]
fn durations() {
    for (s, ms) in [
        ("500ms", 500),
        ("30s", 30_000),
        ("5m", 300_000),
        ("1h30m", 5_400_000),
        ("1d", 86_400_000),
        ("1w", 604_800_000),
        ("1m30s500ms", 90_500),
    ] {
        assert_eq!(parse_duration(s).unwrap(), Duration::from_millis(ms), "{s}");
    }
    for bad in ["", "30", "s", "5m1h", "1.5s", "-1s", "1h1h", "30sec"] {
        assert!(parse_duration(bad).is_err(), "{bad} should be refused");
    }
    assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
}

#[test]
fn more_semantic_checks() {
    let text = r#"
server: {listen: "0.0.0.0:9000", admin_listen: "127.0.0.1:9000"}
discovery:
  kubernetes: {namespaces: [Monitoring], port: "-web", resource_types: []}
tenants: {watch_all_namespaces: false, namespaces: [team-a, "team_b"]}
proxy: {enable_caching: true, cache_ttl: 0s}
backends:
  probe_interval: 1s
  probe_timeout: 2s
  groups:
    - name: infra
      members: ["http://127.0.0.1:9090", "http://127.0.0.1:9090/"]
auth:
  header: {query_param: ""}
  bearer:
    tokens:
      - {tenant: a, sha256: "0000000000000000000000000000000000000000000000000000000000000000"}
      - {tenant: b, sha256: "0000000000000000000000000000000000000000000000000000000000000000"}
"#;
    let e = Config::from_yaml(text, "c.yaml").unwrap_err();
    let ConfigError::Invalid { problems, .. } = &e else {
        panic!("{e}")
    };
    let all = problems.join("\n");
    for needle in [
        "server.admin_listen: must differ",
        "discovery.kubernetes.namespaces[0]: \"Monitoring\" is not a namespace name",
        "discovery.kubernetes.port: \"-web\" is neither",
        "discovery.kubernetes.resource_types: list at least one",
        "tenants.namespaces[1]: \"team_b\"",
        "proxy.cache_ttl: must be greater than 0 when enable_caching",
        "backends.groups[0].members[1]: \"http://127.0.0.1:9090/\" is listed twice",
        "auth.header.query_param: must not be empty",
        "auth.bearer.tokens[1].sha256: the same token is also given to tenant \"a\"",
        "auth.mode is not set",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
    assert_eq!(problems.len(), 10, "{all}");
    // The Display lists them all, one per line.
    assert_eq!(e.to_string().lines().count(), 11, "{e}");
}

#[test]
fn ports_and_namespaces_that_are_fine() {
    let text = format!(
        "discovery:\n  kubernetes: {{namespaces: [monitoring], port: http-metrics}}\n{}",
        minimal()
    );
    Config::from_yaml(&text, "c.yaml").unwrap();
    let text = format!("discovery:\n  kubernetes: {{port: \"0\"}}\n{}", minimal());
    let e = Config::from_yaml(&text, "c.yaml").unwrap_err().to_string();
    assert!(e.contains("\"0\" is not a port number"), "{e}");
}

#[test]
fn nested_unknown_keys_name_their_path() {
    let text = "backends:\n  groups:\n    - name: infra\n      memberz: []\n";
    let e = Config::from_yaml(text, "c.yaml").unwrap_err().to_string();
    assert_eq!(
        e,
        "c.yaml:4:7: key `backends.groups.memberz`: unknown field `memberz`, expected one of name, members"
    );
    let e = Config::from_yaml("proxy: [\n", "c.yaml")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("c.yaml:1:"), "{e}");
}

#[test]
fn token_files_resolve_against_the_config_folder_and_overrides_revalidate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    let text = format!(
        "auth:\n  mode: bearer\n  bearer:\n    tokens:\n      - {{tenant: a, token_file: secrets/a}}\n      - {{tenant: b, token_file: /abs/b}}\n{}",
        backends_only()
    );
    std::fs::write(&path, text).unwrap();
    let mut c = Config::load(&path).unwrap();
    let files: Vec<_> = c
        .auth
        .bearer
        .tokens
        .iter()
        .map(|t| t.token_file.clone().unwrap())
        .collect();
    assert_eq!(
        files,
        [dir.path().join("secrets/a"), PathBuf::from("/abs/b")]
    );
    assert!(c.validate().is_empty());
    c.server.listen.set_port(c.server.admin_listen.port());
    c.server.listen.set_ip(c.server.admin_listen.ip());
    assert_eq!(c.validate().len(), 1, "{:?}", c.validate());
}

#[test]
fn every_section_has_a_default() {
    let c = Config::default();
    assert_eq!(c.backends.probe_interval, Duration::from_secs(5));
    assert_eq!(c.backends.probe_timeout, Duration::from_secs(2));
    assert_eq!(c.proxy.cache_ttl, Duration::from_secs(300));
    assert!(!c.proxy.enable_caching && c.proxy.enable_metrics);
    assert_eq!(c.tenants.directory, PathBuf::from("./tenants"));
    assert!(c.tenants.watch_all_namespaces);
    assert_eq!(KubernetesDiscovery::default().port, "9090");
    assert_eq!(
        KubernetesDiscovery::default().resource_types,
        [ResourceType::Pod]
    );
    // The missing backend group and the unset auth mode keep the defaults from being a
    // usable config.
    assert_eq!(
        c.validate(),
        [
            "backends.groups: at least one group with one member is required in file mode",
            AuthConfig::MODE_UNSET
        ]
    );
}

#[test]
fn accepted_but_unbuilt_settings_are_named() {
    let c = Config::from_yaml(&minimal(), "c.yaml").unwrap();
    assert!(c.unimplemented_settings().is_empty());
    let text = format!(
        "{}proxy:\n  enable_caching: true\nremote_write:\n  enabled: true\n",
        minimal()
    );
    let c = Config::from_yaml(&text, "c.yaml").unwrap();
    let warned = c.unimplemented_settings().join("\n");
    assert!(
        warned.contains("proxy.enable_caching") && !warned.contains("remote_write"),
        "{warned}"
    );
}

#[test]
fn collector_settings_have_defaults_and_checked_templates() {
    let c = Config::from_yaml(&minimal(), "c.yaml").unwrap();
    assert_eq!(c.remote_write.collection_lag, Duration::from_secs(15));
    assert_eq!(
        c.remote_write.prometheus_replica_address,
        "http://{statefulset}-{replica}.{service}.{namespace}.svc:{port}"
    );
    let text = format!(
        "{}remote_write:\n  enabled: true\n  prometheus_address: \"http://{{svc}}:{{port}}\"\n  prometheus_replica_address: \"http://{{service}}:{{port}}\"\n  address_overrides:\n    p-0.p.t.svc:9090: \"127.0.0.1:1\"\n  min_backoff: 10s\n  max_backoff: 1s\n",
        minimal()
    );
    let e = Config::from_yaml(&text, "c.yaml").unwrap_err().to_string();
    for needle in [
        "remote_write.prometheus_address: unknown placeholder {svc}",
        "remote_write.prometheus_replica_address: must contain {replica}",
        "remote_write.address_overrides.p-0.p.t.svc:9090: \"127.0.0.1:1\" is not an http",
        "remote_write.max_backoff: must be at least remote_write.min_backoff",
    ] {
        assert!(e.contains(needle), "{needle} not in {e}");
    }
}

#[test]
fn ingest_paths_resolve_against_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        format!(
            "{}ingest:\n  enabled: true\n  forward:\n    destinations: [{{name: s, url: \"http://127.0.0.1:1/api/v1/write\"}}]\n    spill_directory: spill\n  usage:\n    rule_files: [rules/a.yaml]\n    dashboard_files: [/abs/d.json]\n",
            minimal()
        ),
    )
    .unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(
        c.ingest.forward.spill_directory,
        Some(dir.path().join("spill"))
    );
    assert_eq!(c.ingest.usage.rule_files, [dir.path().join("rules/a.yaml")]);
    assert_eq!(
        c.ingest.usage.dashboard_files,
        [std::path::PathBuf::from("/abs/d.json")]
    );
}

#[test]
fn ingest_needs_a_destination_and_valid_rules() {
    let text = format!(
        "{}ingest:\n  enabled: true\n  governance:\n    tenants:\n      t:\n        relabel: [{{source_labels: [a], regex: \"(\", action: drop}}]\n        naming: {{metric_name_regex: \"[\"}}\n",
        minimal()
    );
    let e = Config::from_yaml(&text, "c.yaml").unwrap_err().to_string();
    for needle in [
        "ingest.forward.destinations: at least one destination",
        "ingest.governance.tenants.t.relabel[0].regex",
        "ingest.governance.tenants.t.naming.metric_name_regex",
    ] {
        assert!(e.contains(needle), "{needle} not in {e}");
    }
}

#[test]
fn discovery_stands_in_for_static_backend_groups() {
    let c = Config::from_yaml(
        "discovery:\n  kubernetes:\n    port: web\nauth:\n  mode: header\n",
        "c.yaml",
    )
    .unwrap();
    assert!(c.validate().is_empty(), "{:?}", c.validate());
}

fn auth_problems(auth: &str) -> Vec<String> {
    match Config::from_yaml(&format!("{}{auth}", backends_only()), "c.yaml") {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid { problems, .. }) => problems,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn jwt_auth_is_validated() {
    let good = "auth:\n  mode: jwt\n  jwt:\n    issuer: https://issuer.example\n    audiences: [proxy]\n    jwks_url: https://issuer.example/jwks\n";
    assert_eq!(auth_problems(good), Vec::<String>::new());
    let file = "auth:\n  mode: jwt\n  jwt: { issuer: i, audiences: [proxy], jwks_file: /etc/jwks.json, tenant_claim: kubernetes.io.namespace }\n";
    assert_eq!(auth_problems(file), Vec::<String>::new());

    let p = auth_problems("auth:\n  mode: jwt\n  jwt: { tenant_claim: \"\" }\n").join("\n");
    for expected in [
        "auth.jwt.issuer: required",
        "auth.jwt.audiences: list at least one",
        "auth.jwt.tenant_claim: must not be empty",
        "auth.jwt: set exactly one of jwks_file or jwks_url",
    ] {
        assert!(p.contains(expected), "{expected:?} missing from\n{p}");
    }
    let both = "auth:\n  mode: jwt\n  jwt: { issuer: i, audiences: [a], jwks_file: /j, jwks_url: https://x/j }\n";
    assert_eq!(
        auth_problems(both),
        vec!["auth.jwt: set exactly one of jwks_file or jwks_url".to_string()]
    );
    let bad_url = "auth:\n  mode: jwt\n  jwt: { issuer: i, audiences: [\"\"], jwks_url: ftp://x/j, jwks_refresh: 0s }\n";
    let p = auth_problems(bad_url).join("\n");
    assert!(
        p.contains("auth.jwt.jwks_url: \"ftp://x/j\" is not an http"),
        "{p}"
    );
    assert!(
        p.contains("auth.jwt.audiences[0]: must not be empty"),
        "{p}"
    );
    assert!(
        p.contains("auth.jwt.jwks_refresh: must be greater than 0"),
        "{p}"
    );
    // The section is only checked in its mode.
    assert!(auth_problems("auth:\n  mode: header\n  jwt: { issuer: \"\" }\n").is_empty());
}

#[test]
fn kubernetes_auth_is_validated() {
    let good = "auth:\n  mode: kubernetes\n  kubernetes:\n    audiences: [proxy]\n    cache_ttl: 30s\n    access_review: { verb: get, group: observability.ethos.io, resource: metrics }\n";
    assert_eq!(auth_problems(good), Vec::<String>::new());
    assert!(auth_problems("auth: { mode: kubernetes }\n").is_empty());
    let bad = "auth:\n  mode: kubernetes\n  kubernetes:\n    audiences: [\"\"]\n    cache_ttl: 0s\n    access_review: { verb: \"\", resource: \" \" }\n";
    let p = auth_problems(bad);
    assert_eq!(p.len(), 4, "{p:?}");
    let p = p.join("\n");
    for expected in [
        "auth.kubernetes.cache_ttl: must be greater than 0",
        "auth.kubernetes.audiences[0]: must not be empty",
        "auth.kubernetes.access_review.verb: must not be empty",
        "auth.kubernetes.access_review.resource: must not be empty",
    ] {
        assert!(p.contains(expected), "{expected:?} missing from\n{p}");
    }
}

#[test]
fn auth_mode_must_be_set_explicitly() {
    // No `auth` section, and an `auth` section without `mode`: both refused, naming the fix.
    for text in [
        backends_only().to_string(),
        format!("{}auth:\n  header: {{name: X-Tenant}}\n", backends_only()),
    ] {
        let e = Config::from_yaml(&text, "c.yaml").unwrap_err().to_string();
        assert!(
            e.contains("auth.mode is not set: set it to bearer, kubernetes or jwt, or to header only behind a trusted gateway"),
            "{e}"
        );
    }
    // An empty file too (it is all defaults).
    assert!(Config::from_yaml("", "c.yaml").is_err());
    // Header mode still works when asked for.
    let c = Config::from_yaml(&minimal(), "c.yaml").unwrap();
    assert_eq!(c.auth.mode, Some(AuthMode::Header));
    // A config built in code without a mode can't be run either: see
    // `app::settings::tests::a_config_without_auth_mode_is_refused`.
}

#[test]
fn server_limits_and_tls_are_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    let text = format!(
        "server:\n  request_timeout: 5s\n  header_read_timeout: 2s\n  max_header_bytes: 9000\n  tls: {{cert_file: tls.crt, key_file: /abs/tls.key}}\n{}",
        minimal()
    );
    std::fs::write(&path, text).unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(c.server.request_timeout, Duration::from_secs(5));
    assert_eq!(c.server.header_read_timeout, Duration::from_secs(2));
    assert_eq!(c.server.max_header_bytes, 9000);
    let tls = c.server.tls.unwrap();
    assert_eq!(tls.cert_file, dir.path().join("tls.crt"));
    assert_eq!(tls.key_file, PathBuf::from("/abs/tls.key"));
    let bad = format!(
        "server:\n  request_timeout: 0s\n  header_read_timeout: 0s\n  max_header_bytes: 100\n{}",
        minimal()
    );
    let e = Config::from_yaml(&bad, "c.yaml").unwrap_err().to_string();
    for needle in [
        "server.request_timeout: must be greater than 0",
        "server.header_read_timeout: must be greater than 0",
        "server.max_header_bytes: must be at least 8192",
    ] {
        assert!(e.contains(needle), "{needle} not in {e}");
    }
}

#[test]
fn rewrite_cache_size_is_bounded_and_may_be_off() {
    let c = Config::from_yaml(&minimal(), "c.yaml").unwrap();
    assert_eq!(c.proxy.rewrite_cache_bytes, 16 * 1024 * 1024);
    let off = format!("proxy:\n  rewrite_cache_bytes: 0\n{}", minimal());
    assert_eq!(
        Config::from_yaml(&off, "c.yaml")
            .unwrap()
            .proxy
            .rewrite_cache_bytes,
        0
    );
    let huge = format!("proxy:\n  rewrite_cache_bytes: 2147483648\n{}", minimal());
    let e = Config::from_yaml(&huge, "c.yaml").unwrap_err().to_string();
    assert!(
        e.contains("proxy.rewrite_cache_bytes: 2147483648 is over the limit of 1073741824"),
        "{e}"
    );
    let negative = format!("proxy:\n  rewrite_cache_bytes: -1\n{}", minimal());
    let e = Config::from_yaml(&negative, "c.yaml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("rewrite_cache_bytes"), "{e}");
}
