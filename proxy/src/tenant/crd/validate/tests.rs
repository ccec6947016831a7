use std::time::Duration;

use super::*;

fn cr(spec_yaml: &str) -> MetricAccess {
    let text = format!(
        "apiVersion: observability.ethos.io/v1alpha1\nkind: MetricAccess\nmetadata:\n  name: x\n  namespace: team-a\nspec:\n{spec_yaml}"
    );
    serde_saphyr::from_str(&text).unwrap()
}

fn problems(spec_yaml: &str) -> String {
    cr(spec_yaml).validate().join("\n")
}

#[test]
fn a_complete_remote_write_cr_is_valid() {
    let ma = cr(r#"
  metrics: [up]
  remoteWrite:
    enabled: true
    interval: 1m
    target: {type: remote_write}
    remoteWrite:
      url: https://mimir.example.com/api/v1/push
      bearerTokenSecret: {name: s, key: token}
      headers: {X-Team: team-a}
      tlsConfig: {caFile: /etc/ca.pem, insecureSkipVerify: false}
    extraLabels: {tenant: team-a}
    metricRelabelings:
      - {sourceLabels: [__name__], regex: "c_(.*)", targetLabel: "${1}_x"}
      - {sourceLabels: [pod], modulus: 4, targetLabel: shard, action: HashMod}
      - {regex: "tmp_.*", action: labeldrop}
"#);
    assert_eq!(ma.validate(), Vec::<String>::new());
    assert_eq!(
        ma.spec.collection_interval_or(Duration::from_secs(30)),
        Some(Duration::from_secs(60))
    );
}

#[test]
fn metadata_is_required() {
    let mut ma = cr("  metrics: [up]\n");
    ma.metadata.name = None;
    ma.metadata.namespace = Some(String::new());
    let p = ma.validate().join("\n");
    assert!(
        p.contains("metadata.name: required") && p.contains("metadata.namespace: required"),
        "{p}"
    );
}

#[test]
fn interval_and_target_blocks() {
    let p = problems(
        "  remoteWrite:\n    enabled: true\n    interval: 2s\n    target: {type: pushgateway}\n    prometheus: {serviceName: p}\n",
    );
    for needle in [
        "spec.remoteWrite.interval: \"2s\" is too short; at least 5s",
        "spec.remoteWrite.pushgateway: required with target.type \"pushgateway\"",
        "spec.remoteWrite.prometheus: set, but target.type is \"pushgateway\"",
    ] {
        assert!(p.contains(needle), "missing {needle:?} in:\n{p}");
    }
    let p = problems(
        "  remoteWrite:\n    enabled: true\n    interval: soon\n    target: {type: prometheus}\n    prometheus: {serviceName: p}\n",
    );
    assert!(
        p.starts_with("spec.remoteWrite.interval: invalid duration"),
        "{p}"
    );
    // Disabled: the interval and the target type are not checked yet.
    let ma = cr(
        "  remoteWrite:\n    enabled: false\n    interval: 1s\n    target: {type: pushgateway}\n",
    );
    assert_eq!(ma.validate(), Vec::<String>::new());
    assert_eq!(
        ma.spec.collection_interval_or(Duration::from_secs(30)),
        None
    );
}

#[test]
fn target_fields() {
    let p = problems(
        "  remoteWrite:\n    target: {type: prometheus}\n    prometheus: {serviceName: \"\", servicePort: 0, replicas: 2}\n    pushgateway: {serviceName: g, jobName: \"\"}\n",
    );
    for needle in [
        "prometheus.serviceName: must not be empty",
        "prometheus.servicePort: must be 1-65535",
        "replicas and statefulSetName go together",
        "pushgateway.jobName: must not be empty",
    ] {
        assert!(p.contains(needle), "missing {needle:?} in:\n{p}");
    }
    let p = problems(
        "  remoteWrite:\n    target: {type: prometheus}\n    prometheus: {serviceName: p, replicas: 0, statefulSetName: sts}\n",
    );
    assert!(p.contains("prometheus.replicas: must be at least 1"), "{p}");
}

#[test]
fn endpoint_fields() {
    let p = problems(
        r#"  remoteWrite:
    target: {type: remote_write}
    remoteWrite:
      url: ftp://x
      basicAuth: {username: "", passwordSecret: {name: s, key: ""}}
      bearerTokenSecret: {name: s, key: k}
      headers: {Authorization: "Bearer x", "bad header": v, X-Ok: "line\nbreak"}
"#,
    );
    for needle in [
        "remoteWrite.url: \"ftp://x\" is not an http:// or https:// URL",
        "basicAuth.username: must not be empty",
        "basicAuth.passwordSecret: name and key must not be empty",
        "set basicAuth or bearerTokenSecret, not both",
        "headers: \"Authorization\" is set by the proxy",
        "headers: \"bad header\" is not a valid header name",
        "headers.X-Ok: the value is not a valid header value",
    ] {
        assert!(p.contains(needle), "missing {needle:?} in:\n{p}");
    }
}

#[test]
fn extra_labels_and_relabel_rules() {
    let p = problems(
        r#"  remoteWrite:
    target: {type: prometheus}
    extraLabels: {__name__: x, "a-b": y, ok: z}
    metricRelabelings:
      - {sourceLabels: [__name__], regex: "("}
      - {sourceLabels: [a], action: explode}
      - {sourceLabels: [a], action: hashmod, targetLabel: s}
      - {sourceLabels: ["a-b"], action: drop}
      - {sourceLabels: [a], targetLabel: "not-a-label"}
"#,
    );
    for needle in [
        "extraLabels: \"__name__\" is not a label name a tenant may set",
        "extraLabels: \"a-b\" is not a label name",
        "metricRelabelings[0].regex: not a valid regex",
        "metricRelabelings[0].targetLabel: required with action replace",
        "metricRelabelings[1].action: unknown action \"explode\" (one of: replace, keep",
        "metricRelabelings[2].modulus: required (> 0) with action hashmod",
        "metricRelabelings[3].sourceLabels[0]: \"a-b\" is not a label name",
        "metricRelabelings[4].targetLabel: \"not-a-label\" is not a label name",
    ] {
        assert!(p.contains(needle), "missing {needle:?} in:\n{p}");
    }
    assert!(!p.contains("\"ok\""), "{p}");
}

#[test]
fn a_cr_cannot_set_the_tenant_header() {
    let ma = cr(r#"
  metrics: [up]
  remoteWrite:
    enabled: true
    target: {type: remote_write}
    remoteWrite:
      url: https://mimir.example.com/api/v1/push
      headers: {x-scope-orgid: someone-else}
"#);
    let problems = ma.validate().join("\n");
    assert!(
        problems.contains("headers: \"x-scope-orgid\" is set by the proxy"),
        "{problems}"
    );
}

#[test]
fn credentials_in_a_remote_write_url_are_refused() {
    let ma = cr(r#"
  metrics: [up]
  remoteWrite:
    enabled: true
    target: {type: remote_write}
    remoteWrite:
      url: https://user:secret@mimir.example.com/api/v1/push
"#);
    let problems = ma.validate().join("\n");
    assert!(
        problems.contains("credentials in the URL are not allowed"),
        "{problems}"
    );
    assert!(
        !problems.contains("secret@"),
        "the error must not repeat the password: {problems}"
    );
}
