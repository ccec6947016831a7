//! Unit tests of the lab's pure pieces: ports, process specs, query-answer parsing.

use super::*;

#[test]
fn default_ports_match_lab_yaml() {
    let p = Ports::from_base(DEFAULT_BASE_PORT);
    assert_eq!(
        (p.api, p.admin, p.infra_a, p.infra_b, p.workload),
        (19080, 19081, 19090, 19091, 19100)
    );
    let lab = include_str!("../../../fixtures/configs/lab.yaml");
    assert_eq!(
        (p.team_a, p.team_b_0, p.team_b_1, p.team_c, p.team_d),
        (19110, 19111, 19112, 19113, 19120)
    );
    assert_eq!((p.ingest_storage, p.ingest_agent), (19130, 19131));
    for port in [
        p.api,
        p.admin,
        p.infra_a,
        p.infra_b,
        p.team_a,
        p.team_b_0,
        p.team_b_1,
        p.team_c,
        p.team_d,
        p.ingest_storage,
    ] {
        assert!(
            lab.contains(&format!("127.0.0.1:{port}")),
            "{port} not in lab.yaml"
        );
    }
}

#[test]
fn specs_use_ports_and_configs() {
    let root = Path::new("/r");
    let ports = Ports::from_base(20000);
    let cfg = proxy_config_path(root, 20000);
    assert_eq!(cfg, Path::new("/r/target/lab/lab.yaml"));
    assert_eq!(
        proxy_config_path(root, DEFAULT_BASE_PORT),
        Path::new("/r/fixtures/configs/lab.yaml")
    );
    let s = specs(root, &ports, &cfg);
    let names: Vec<_> = s.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "workload",
            "infra-a",
            "infra-b",
            "team-a-prom",
            "team-b-prom-0",
            "team-b-prom-1",
            "team-c-rw",
            "team-d-pushgw",
            "storage",
            "proxy",
            "agent"
        ]
    );
    assert_eq!(
        s[0].command_line(),
        "/r/target/debug/lab-workload --listen 127.0.0.1:20020"
    );
    assert!(
        s[1].command_line()
            .contains("--web.listen-address=127.0.0.1:20010")
    );
    assert!(
        s[2].command_line()
            .contains("--storage.tsdb.path=/r/target/lab/data/infra-b")
    );
    let proxy = &s[index_of(&s, PROXY)];
    assert!(
        proxy
            .command_line()
            .contains("--config /r/target/lab/lab.yaml")
    );
    assert_eq!(proxy.addr, local(20000));
    // lab.yaml's relative paths are relative to its directory: the proxy runs there.
    assert_eq!(proxy.cwd.as_deref(), Some(Path::new("/r/fixtures/configs")));
    assert!(
        s.iter()
            .filter(|x| x.name != PROXY)
            .all(|x| x.cwd.is_none())
    );
    // Storage is up before the proxy forwards to it, the agent after the proxy it writes to.
    assert_eq!(index_of(&s, "storage") + 1, index_of(&s, PROXY));
    assert_eq!(index_of(&s, "agent"), s.len() - 1);
    assert_eq!(s[index_of(&s, "storage")].addr, local(20050));
    assert_eq!(s[index_of(&s, "agent")].addr, local(20051));
}

#[test]
fn stop_order_is_agent_then_proxy_then_the_rest() {
    let s = specs(
        Path::new("/r"),
        &Ports::from_base(20000),
        Path::new("/r/c.yaml"),
    );
    let mut names: Vec<&str> = s.iter().map(|s| s.name).collect();
    names.sort_by_key(|n| stop_stage(n));
    assert_eq!(&names[..2], ["agent", "proxy"]);
    assert!(names[2..].iter().all(|n| stop_stage(n) == 2));
    assert!(names.contains(&"storage") && names.contains(&"workload"));
}

#[test]
fn lab_yaml_ingest_points_at_the_lab() {
    let lab = include_str!("../../../fixtures/configs/lab.yaml");
    let p = Ports::from_base(DEFAULT_BASE_PORT);
    assert!(lab.contains("\ningest:\n  enabled: true\n  tenant_header: X-Scope-OrgID\n"));
    assert!(lab.contains(&format!(
        "{{name: storage, url: \"http://127.0.0.1:{}/api/v1/write\"}}",
        p.ingest_storage
    )));
    assert!(lab.contains(&format!("\n      {}:\n", ingest::TENANT)));
    assert!(lab.contains(&format!("\n  default_tenant: {}\n", ingest::TENANT)));
    // Relative to fixtures/configs (the proxy's working directory and the config's directory).
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/configs");
    assert!(lab.contains("spill_directory: ../../target/lab/ingest-spill"));
    // What `up` wipes is what the proxy spills to: /r/fixtures/configs/../../target/lab/...
    let mut resolved = PathBuf::from("/r/fixtures/configs");
    for part in Path::new("../../target/lab/ingest-spill").components() {
        match part {
            std::path::Component::ParentDir => assert!(resolved.pop()),
            other => resolved.push(other),
        }
    }
    assert_eq!(resolved, ingest::spill_dir(&lab_dir(Path::new("/r"))));
    for f in ["../usage/lab/rules.yaml", "../usage/lab/dashboard.json"] {
        assert!(lab.contains(&format!("[{f}]")), "{f}");
        assert!(
            cfg.join(f).is_file(),
            "{f} does not resolve from fixtures/configs"
        );
    }
}

#[test]
fn target_specs_have_their_ports_and_flags() {
    let root = Path::new("/r");
    let s = specs(root, &Ports::from_base(20000), Path::new("/r/c.yaml"));
    let by_name = |n: &str| s.iter().find(|s| s.name == n).unwrap();
    for (name, port) in [
        ("team-a-prom", 20030),
        ("team-b-prom-0", 20031),
        ("team-b-prom-1", 20032),
        ("team-c-rw", 20033),
    ] {
        let spec = by_name(name);
        let cmd = spec.command_line();
        assert_eq!(spec.addr, local(port));
        assert_eq!(spec.program, Path::new("/r/target/tools/bin/prometheus"));
        assert!(
            cmd.contains(&format!("--web.listen-address=127.0.0.1:{port}")),
            "{cmd}"
        );
        assert!(cmd.contains("--web.enable-remote-write-receiver"), "{cmd}");
        assert!(
            cmd.contains("--config.file=/r/target/lab/tenant.yml"),
            "{cmd}"
        );
        assert!(
            cmd.contains(&format!("--storage.tsdb.path=/r/target/lab/data/{name}")),
            "{cmd}"
        );
        assert_eq!(
            cmd.contains("--web.config.file=/r/target/lab/team-c-web.yml"),
            name == "team-c-rw",
            "{cmd}"
        );
    }
    let pgw = by_name("team-d-pushgw");
    assert_eq!(pgw.addr, local(20040));
    assert_eq!(
        pgw.command_line(),
        "/r/target/tools/bin/prometheus-pushgateway --web.listen-address=127.0.0.1:20040 \
         --persistence.file=/r/target/lab/data/team-d-pushgw/pushgateway.db"
    );
}

#[test]
fn lab_yaml_overrides_point_at_the_targets() {
    let lab = include_str!("../../../fixtures/configs/lab.yaml");
    let p = Ports::from_base(DEFAULT_BASE_PORT);
    for (from, port) in [
        ("prometheus.team-a.svc:9090", p.team_a),
        (
            "prometheus-team-b-0.prometheus-operated.team-b.svc:9090",
            p.team_b_0,
        ),
        (
            "prometheus-team-b-1.prometheus-operated.team-b.svc:9090",
            p.team_b_1,
        ),
        ("remote-write.team-c.svc:9090", p.team_c),
        ("pushgateway.team-d.svc:9091", p.team_d),
    ] {
        let want = format!("\"{from}\": \"http://127.0.0.1:{port}\"");
        assert!(lab.contains(&want), "{want} not in lab.yaml");
    }
    assert!(lab.contains("secrets_directory: ../../target/lab/secrets"));
    // The collector's file-mode layout <dir>/<namespace>/<secret>/<key> is where `up` writes.
    assert_eq!(
        targets::password_file(Path::new("/r/target/lab")),
        Path::new("/r/target/lab/secrets/team-c/remote-write-auth/password")
    );
}

#[test]
fn result_parsing() {
    let ok = http::Response {
        status: 200,
        body: r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]}]}}"#.into(),
    };
    let empty = http::Response {
        status: 200,
        body: r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#.into(),
    };
    assert!(has_results(&ok).unwrap());
    assert!(!has_results(&empty).unwrap());
    assert!(
        has_results(&http::Response {
            status: 200,
            body: "nope".into()
        })
        .is_err()
    );
    assert!(is_success(&empty.body));
    assert!(!is_success(r#"{"status":"error"}"#));
}
