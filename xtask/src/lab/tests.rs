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
    for port in [p.api, p.admin, p.infra_a, p.infra_b] {
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
    assert_eq!(names, ["workload", "infra-a", "infra-b", "proxy"]);
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
        s[3].command_line()
            .contains("--config /r/target/lab/lab.yaml")
    );
    assert_eq!(s[3].addr, local(20000));
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
