use super::*;

fn allow_all() -> RemoteWriteConfig {
    RemoteWriteConfig {
        allowed_urls: vec![".*".into()],
        ..RemoteWriteConfig::default()
    }
}

#[test]
fn remote_write_urls_need_the_operators_allowlist() {
    let rw = |url: &str| {
        spec(&format!(
            "enabled: true\ntarget: {{type: remote_write}}\nremoteWrite: {{url: \"{url}\"}}\n"
        ))
    };
    let secrets = FileSecrets::default();
    // Default: no remote_write target at all (a tenant's CR could point anywhere).
    let e = endpoints(
        "team-a",
        &rw("http://169.254.169.254/latest"),
        &RemoteWriteConfig::default(),
        &secrets,
    )
    .unwrap_err();
    assert!(e.contains("remote_write.allowed_urls"), "{e}");
    let config = RemoteWriteConfig {
        allowed_urls: vec![
            r"https://mimir\.example\.com/api/v1/push".into(),
            r"http://[a-z0-9-]+\.team-a\.svc:9090/.*".into(),
        ],
        ..RemoteWriteConfig::default()
    };
    assert!(
        endpoints(
            "team-a",
            &rw("https://mimir.example.com/api/v1/push"),
            &config,
            &secrets
        )
        .is_ok()
    );
    assert!(
        endpoints(
            "team-a",
            &rw("http://receiver.team-a.svc:9090/api/v1/write"),
            &config,
            &secrets
        )
        .is_ok()
    );
    // Anchored: a prefix or a suffix of an allowed URL is not allowed.
    for bad in [
        "https://mimir.example.com/api/v1/push/../../admin",
        "https://evil.example/https://mimir.example.com/api/v1/push",
        "http://169.254.169.254/latest/meta-data",
    ] {
        let e = endpoints("team-a", &rw(bad), &config, &secrets).unwrap_err();
        assert!(
            e.contains("matches none of remote_write.allowed_urls"),
            "{bad}: {e}"
        );
    }
}

fn spec(yaml: &str) -> RemoteWriteSpec {
    serde_saphyr::from_str(yaml).unwrap()
}

#[test]
fn every_statefulset_replica_gets_its_own_endpoint() {
    let rw = spec(
        "enabled: true\ntarget: {type: prometheus}\nprometheus: {serviceName: prometheus-operated, servicePort: 9090, replicas: 2, statefulSetName: prom-b}\n",
    );
    let mut config = RemoteWriteConfig::default();
    config.address_overrides.insert(
        "prom-b-1.prometheus-operated.team-b.svc:9090".into(),
        "http://127.0.0.1:4321".into(),
    );
    let eps = endpoints("team-b", &rw, &config, &FileSecrets::default()).unwrap();
    let urls: Vec<&str> = eps.iter().map(|e| e.url.as_str()).collect();
    assert_eq!(
        urls,
        [
            "http://prom-b-0.prometheus-operated.team-b.svc:9090/api/v1/write",
            "http://127.0.0.1:4321/api/v1/write"
        ]
    );
    assert_eq!(eps[0].name, "prom-b-0");
    assert_eq!(eps[1].headers["x-scope-orgid"], "team-b");
}

#[test]
fn a_single_service_uses_the_service_template() {
    let rw = spec("enabled: true\ntarget: {type: prometheus}\nprometheus: {serviceName: prom}\n");
    let config = RemoteWriteConfig {
        prometheus_address: "https://{service}.{namespace}.svc.cluster.local:{port}".into(),
        ..Default::default()
    };
    let eps = endpoints("t", &rw, &config, &FileSecrets::default()).unwrap();
    assert_eq!(eps.len(), 1);
    assert_eq!(
        eps[0].url,
        "https://prom.t.svc.cluster.local:9090/api/v1/write"
    );
}

#[test]
fn pushgateway_url_holds_the_job_group() {
    let rw = spec(
        "enabled: true\ntarget: {type: pushgateway}\npushgateway: {serviceName: pgw, jobName: \"a/b\"}\n",
    );
    let eps = endpoints(
        "t",
        &rw,
        &RemoteWriteConfig::default(),
        &FileSecrets::default(),
    )
    .unwrap();
    assert_eq!(eps[0].protocol, Protocol::Pushgateway);
    assert_eq!(eps[0].url, "http://pgw.t.svc:9091/metrics/job@base64/YS9i");
}

#[test]
fn basic_auth_reads_the_secret_of_the_crs_namespace_and_tenant_header_wins() {
    let dir = tempfile::tempdir().unwrap();
    let secret_dir = dir.path().join("team-c/rw-auth");
    std::fs::create_dir_all(&secret_dir).unwrap();
    std::fs::write(secret_dir.join("password"), "s3cret\n").unwrap();
    // The same secret name in another namespace must never be used.
    std::fs::create_dir_all(dir.path().join("team-x/rw-auth")).unwrap();
    std::fs::write(dir.path().join("team-x/rw-auth/password"), "other").unwrap();
    let rw = spec(
        "enabled: true\ntarget: {type: remote_write}\nremoteWrite:\n  url: http://store.example:9090/api/v1/write\n  basicAuth: {username: u, passwordSecret: {name: rw-auth, key: password}}\n  headers: {X-Scope-OrgID: team-x, X-Extra: yes}\n",
    );
    let secrets = FileSecrets {
        directory: Some(dir.path().to_path_buf()),
    };
    let eps = endpoints("team-c", &rw, &allow_all(), &secrets).unwrap();
    let auth = &eps[0].headers["authorization"];
    // base64("u:s3cret")
    assert_eq!(auth, "Basic dTpzM2NyZXQ=");
    assert!(auth.is_sensitive());
    assert_eq!(eps[0].headers["x-scope-orgid"], "team-c");
    assert_eq!(eps[0].headers["x-extra"], "yes");
    assert!(!format!("{:?}", eps[0]).contains("dTpzM2NyZXQ"));
}

#[test]
fn a_missing_secret_says_where_it_looked() {
    let rw = spec(
        "enabled: true\ntarget: {type: remote_write}\nremoteWrite:\n  url: http://store.example/api/v1/write\n  bearerTokenSecret: {name: tok, key: token}\n",
    );
    let secrets = FileSecrets {
        directory: Some("/nonexistent-secrets".into()),
    };
    let e = endpoints("team-q", &rw, &allow_all(), &secrets).unwrap_err();
    assert!(
        e.contains("Secret team-q/tok key \"token\" not found"),
        "{e}"
    );
    assert!(e.contains("/nonexistent-secrets/team-q/tok/token"), "{e}");
    assert!(e.contains("$PMTP_SECRET_TEAM_Q_TOK_TOKEN"), "{e}");
}

#[test]
fn overrides_replace_only_a_matching_authority() {
    let o: BTreeMap<String, String> =
        [("a.svc:9090".to_string(), "http://127.0.0.1:1/".to_string())].into();
    assert_eq!(
        override_address("http://a.svc:9090/api/v1/write", &o),
        "http://127.0.0.1:1/api/v1/write"
    );
    assert_eq!(
        override_address("http://a.svc:9091/api/v1/write", &o),
        "http://a.svc:9091/api/v1/write"
    );
    assert_eq!(override_address("not a url", &o), "not a url");
}
