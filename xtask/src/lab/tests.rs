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
    for port in [
        p.api, p.admin, p.infra_a, p.infra_b, p.team_a, p.team_b_0, p.team_b_1, p.team_c, p.team_d,
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
            "proxy"
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
    assert!(
        s[8].command_line()
            .contains("--config /r/target/lab/lab.yaml")
    );
    assert_eq!(s[8].addr, local(20000));
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
