//! NetworkPolicy semantics (networking.k8s.io/v1), offline: given the namespaces, pods and
//! policies of a cluster, may a pod open a TCP connection to another pod's port? This module
//! owns that decision and nothing about which pods to ask about ([`super::reach`] does).
//!
//! A connection is allowed when both ends allow it: the policies of the destination's
//! namespace that select the destination for `Ingress` (none: allowed), and those of the
//! source's namespace that select the source for `Egress` (none: allowed). A policy's rule
//! allows a peer when one of its `from`/`to` entries matches it (absent or empty: every peer)
//! and one of its `ports` matches the port (absent or empty: every port; named ports resolve
//! against the destination pod's container ports; `endPort` makes a range; protocol TCP
//! unless given).
//!
//! `ipBlock` peers are taken to match every pod: a pod's IP may fall in the block, and the
//! check's purpose is to prove refusals, so it errs towards "allowed". Traffic from the node
//! (kubelet probes, `kubectl port-forward`) is outside NetworkPolicies and outside this model.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub type Labels = BTreeMap<String, String>;

/// One rule of a policy: its peers and its ports (either absent: all).
type Rule<'a> = (
    Option<&'a Vec<NetworkPolicyPeer>>,
    Option<&'a Vec<NetworkPolicyPort>>,
);

/// A pod as a policy sees it: where it runs, its labels and its named container ports.
#[derive(Debug, Clone, Default)]
pub struct Pod {
    /// What it is, for messages (`Deployment/grafana`, `any pod`).
    pub name: String,
    pub namespace: String,
    pub labels: Labels,
    /// Container port name → (number, protocol).
    pub ports: BTreeMap<String, (u16, String)>,
}

/// The cluster the decision is made in.
#[derive(Debug, Default)]
pub struct Cluster {
    /// Namespace → its labels (`kubernetes.io/metadata.name` is added as the API server does).
    pub namespaces: BTreeMap<String, Labels>,
    pub policies: Vec<NetworkPolicy>,
}

/// The answer, with the policies that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    pub why: String,
}

impl Cluster {
    /// Add (or relabel) a namespace.
    pub fn namespace(&mut self, name: &str, labels: Labels) {
        let mut labels = labels;
        labels.insert("kubernetes.io/metadata.name".into(), name.to_string());
        self.namespaces.insert(name.to_string(), labels);
    }

    fn namespace_labels(&self, name: &str) -> Labels {
        self.namespaces.get(name).cloned().unwrap_or_else(|| {
            Labels::from([("kubernetes.io/metadata.name".to_string(), name.to_string())])
        })
    }

    /// May `src` open a TCP connection to `dst` on `port`?
    pub fn verdict(&self, src: &Pod, dst: &Pod, port: u16) -> Verdict {
        let ingress = self.side(Side::Ingress, src, dst, port);
        let egress = self.side(Side::Egress, src, dst, port);
        match (ingress, egress) {
            (Ok(i), Ok(e)) => Verdict {
                allowed: true,
                why: format!("ingress {i}; egress {e}"),
            },
            (Err(why), _) => Verdict {
                allowed: false,
                why: format!("ingress refused: {why}"),
            },
            (_, Err(why)) => Verdict {
                allowed: false,
                why: format!("egress refused: {why}"),
            },
        }
    }

    /// `Ok(what allowed it)` or `Err(which policies refuse it)`.
    fn side(&self, side: Side, src: &Pod, dst: &Pod, port: u16) -> Result<String, String> {
        let (owner, other) = match side {
            Side::Ingress => (dst, src),
            Side::Egress => (src, dst),
        };
        let selecting: Vec<&NetworkPolicy> = self
            .policies
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(owner.namespace.as_str()))
            .filter(|p| applies_to(p, side))
            .filter(|p| {
                let selector = p.spec.as_ref().and_then(|s| s.pod_selector.as_ref());
                selector.is_none_or(|s| selector_matches(s, &owner.labels))
            })
            .collect();
        if selecting.is_empty() {
            return Ok("open (no policy selects the pod)".into());
        }
        for policy in &selecting {
            let Some(spec) = policy.spec.as_ref() else {
                continue;
            };
            let rules: Vec<Rule> = match side {
                Side::Ingress => spec
                    .ingress
                    .iter()
                    .flatten()
                    .map(|r| (r.from.as_ref(), r.ports.as_ref()))
                    .collect(),
                Side::Egress => spec
                    .egress
                    .iter()
                    .flatten()
                    .map(|r| (r.to.as_ref(), r.ports.as_ref()))
                    .collect(),
            };
            for (i, (peers, ports)) in rules.into_iter().enumerate() {
                let peer_ok = peers.is_none_or(|peers| {
                    peers.is_empty()
                        || peers
                            .iter()
                            .any(|peer| self.peer_matches(peer, &owner.namespace, other))
                });
                let port_ok = ports.is_none_or(|ports| {
                    ports.is_empty() || ports.iter().any(|p| port_matches(p, dst, port))
                });
                if peer_ok && port_ok {
                    return Ok(format!("allowed by {} rule {i}", policy_id(policy)));
                }
            }
        }
        let names: Vec<String> = selecting.iter().map(|p| policy_id(p)).collect();
        Err(format!("no rule of {} allows it", names.join(", ")))
    }

    fn peer_matches(&self, peer: &NetworkPolicyPeer, policy_ns: &str, pod: &Pod) -> bool {
        if peer.ip_block.is_some() {
            return true;
        }
        let namespace_ok = match &peer.namespace_selector {
            Some(selector) => selector_matches(selector, &self.namespace_labels(&pod.namespace)),
            None => pod.namespace == policy_ns,
        };
        let pod_ok = peer
            .pod_selector
            .as_ref()
            .is_none_or(|s| selector_matches(s, &pod.labels));
        // A peer with neither selector is refused by the API server; it matches nothing.
        let has_selector = peer.namespace_selector.is_some() || peer.pod_selector.is_some();
        has_selector && namespace_ok && pod_ok
    }
}

#[derive(Debug, Clone, Copy)]
enum Side {
    Ingress,
    Egress,
}

/// `policyTypes`, or its default: Ingress always, Egress when the policy has egress rules.
fn applies_to(policy: &NetworkPolicy, side: Side) -> bool {
    let Some(spec) = policy.spec.as_ref() else {
        return matches!(side, Side::Ingress);
    };
    match &spec.policy_types {
        Some(types) => types.iter().any(|t| match side {
            Side::Ingress => t == "Ingress",
            Side::Egress => t == "Egress",
        }),
        None => match side {
            Side::Ingress => true,
            Side::Egress => spec.egress.as_ref().is_some_and(|e| !e.is_empty()),
        },
    }
}

fn policy_id(policy: &NetworkPolicy) -> String {
    format!(
        "NetworkPolicy {}/{}",
        policy.metadata.namespace.as_deref().unwrap_or("-"),
        policy.metadata.name.as_deref().unwrap_or("-")
    )
}

/// A label selector against a label set; the empty selector matches everything, an unknown
/// operator nothing.
pub fn selector_matches(selector: &LabelSelector, labels: &Labels) -> bool {
    let exact = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    exact && expressions
}

/// Does a `ports` entry cover TCP `port` of `dst`?
fn port_matches(entry: &NetworkPolicyPort, dst: &Pod, port: u16) -> bool {
    let protocol = entry.protocol.as_deref().unwrap_or("TCP");
    if protocol != "TCP" {
        return false;
    }
    match &entry.port {
        None => true,
        Some(IntOrString::Int(n)) => {
            let end = entry.end_port.unwrap_or(*n);
            (*n..=end).contains(&i32::from(port))
        }
        Some(IntOrString::String(name)) => dst
            .ports
            .get(name)
            .is_some_and(|(number, proto)| *number == port && proto == "TCP"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> NetworkPolicy {
        let value: serde_json::Value = serde_saphyr::from_str(yaml).unwrap();
        serde_json::from_value(value).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pod(ns: &str, pairs: &[(&str, &str)]) -> Pod {
        Pod {
            name: format!("pod in {ns}"),
            namespace: ns.into(),
            labels: labels(pairs),
            ports: BTreeMap::from([
                ("http".to_string(), (8080, "TCP".to_string())),
                ("admin".to_string(), (9091, "TCP".to_string())),
            ]),
        }
    }

    fn cluster(policies: &[&str]) -> Cluster {
        let mut c = Cluster {
            policies: policies.iter().map(|p| policy(p)).collect(),
            ..Cluster::default()
        };
        c.namespace("mon", labels(&[]));
        c.namespace("team-a", labels(&[("tenant", "a")]));
        c.namespace("other", labels(&[]));
        c
    }

    const ADMIN_FROM_PROMETHEUS: &str = r#"
metadata: {name: p, namespace: mon}
spec:
  podSelector: {matchLabels: {app: proxy}}
  policyTypes: [Ingress]
  ingress:
    - from: [{namespaceSelector: {matchExpressions: [{key: tenant, operator: Exists}]}}]
      ports: [{port: http}]
    - from: [{podSelector: {matchLabels: {app: prometheus}}}]
      ports: [{port: 9000, endPort: 9100, protocol: TCP}]
"#;

    #[test]
    fn no_policy_allows_everything() {
        let c = cluster(&[]);
        let v = c.verdict(&pod("other", &[]), &pod("mon", &[("app", "proxy")]), 9091);
        assert!(v.allowed, "{v:?}");
    }

    #[test]
    fn ingress_rules_decide_by_peer_and_port() {
        let c = cluster(&[ADMIN_FROM_PROMETHEUS]);
        let proxy = pod("mon", &[("app", "proxy")]);
        let cases = [
            (pod("team-a", &[]), 8080, true),
            (pod("team-a", &[]), 9091, false),
            (pod("other", &[]), 8080, false),
            (pod("mon", &[("app", "prometheus")]), 9091, true),
            // The podSelector alone means the policy's own namespace.
            (pod("team-a", &[("app", "prometheus")]), 9091, false),
            (pod("mon", &[("app", "grafana")]), 9091, false),
            (pod("mon", &[("app", "prometheus")]), 8080, false),
        ];
        for (src, port, want) in cases {
            let v = c.verdict(&src, &proxy, port);
            assert_eq!(v.allowed, want, "{src:?} → {port}: {v:?}");
        }
        // A pod the policy does not select stays open.
        assert!(
            c.verdict(&pod("other", &[]), &pod("mon", &[]), 9091)
                .allowed
        );
    }

    #[test]
    fn namespace_and_pod_selector_together_need_both() {
        let c = cluster(&[r#"
metadata: {name: p, namespace: mon}
spec:
  podSelector: {}
  ingress:
    - from: [{namespaceSelector: {matchLabels: {tenant: a}}, podSelector: {matchLabels: {role: agent}}}]
"#]);
        let dst = pod("mon", &[]);
        assert!(
            c.verdict(&pod("team-a", &[("role", "agent")]), &dst, 1)
                .allowed
        );
        assert!(!c.verdict(&pod("team-a", &[]), &dst, 1).allowed);
        assert!(
            !c.verdict(&pod("other", &[("role", "agent")]), &dst, 1)
                .allowed
        );
    }

    #[test]
    fn egress_of_the_source_counts_too() {
        let c = cluster(&[r#"
metadata: {name: out, namespace: team-a}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
    - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: mon}}, podSelector: {matchLabels: {app: proxy}}}]
      ports: [{port: 8080, protocol: TCP}]
"#]);
        let proxy = pod("mon", &[("app", "proxy")]);
        assert!(c.verdict(&pod("team-a", &[]), &proxy, 8080).allowed);
        let v = c.verdict(&pod("team-a", &[]), &proxy, 9091);
        assert!(!v.allowed && v.why.starts_with("egress"), "{v:?}");
        assert!(
            !c.verdict(&pod("team-a", &[]), &pod("mon", &[]), 8080)
                .allowed
        );
    }

    #[test]
    fn defaults_and_odd_entries() {
        // No policyTypes and no ingress rules: selected pods refuse all ingress.
        let deny = cluster(&["metadata: {name: d, namespace: mon}\nspec: {podSelector: {}}\n"]);
        assert!(!deny.verdict(&pod("mon", &[]), &pod("mon", &[]), 1).allowed);
        // An empty `from` list and an empty rule allow every peer.
        let open = cluster(&[
            "metadata: {name: o, namespace: mon}\nspec: {podSelector: {}, ingress: [{}]}\n",
        ]);
        assert!(
            open.verdict(&pod("other", &[]), &pod("mon", &[]), 1)
                .allowed
        );
        // ipBlock peers are taken to match any pod; UDP entries never match a TCP port.
        let block = cluster(&[r#"
metadata: {name: b, namespace: mon}
spec:
  podSelector: {}
  ingress:
    - from: [{ipBlock: {cidr: 10.0.0.0/8}}]
      ports: [{port: 53, protocol: UDP}]
    - from: [{ipBlock: {cidr: 10.0.0.0/8}}]
      ports: [{port: 9091}]
"#]);
        let dst = pod("mon", &[]);
        assert!(!block.verdict(&pod("other", &[]), &dst, 53).allowed);
        assert!(block.verdict(&pod("other", &[]), &dst, 9091).allowed);
    }

    #[test]
    fn selector_operators() {
        let l = labels(&[("a", "1"), ("b", "2")]);
        let sel = |yaml: &str| -> LabelSelector {
            let v: serde_json::Value = serde_saphyr::from_str(yaml).unwrap();
            serde_json::from_value(v).unwrap()
        };
        for (yaml, want) in [
            ("{}", true),
            ("{matchLabels: {a: '1'}}", true),
            ("{matchLabels: {a: '2'}}", false),
            (
                "{matchExpressions: [{key: a, operator: In, values: ['1', '3']}]}",
                true,
            ),
            (
                "{matchExpressions: [{key: a, operator: NotIn, values: ['1']}]}",
                false,
            ),
            (
                "{matchExpressions: [{key: c, operator: NotIn, values: ['1']}]}",
                true,
            ),
            ("{matchExpressions: [{key: b, operator: Exists}]}", true),
            (
                "{matchExpressions: [{key: b, operator: DoesNotExist}]}",
                false,
            ),
            ("{matchExpressions: [{key: b, operator: Bogus}]}", false),
        ] {
            assert_eq!(selector_matches(&sel(yaml), &l), want, "{yaml}");
        }
    }
}
