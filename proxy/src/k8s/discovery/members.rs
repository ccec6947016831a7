//! What one discovered object contributes to the backend groups: the annotation filter,
//! readiness, the port (by name or number), the member URLs and the HA group. Pure: no API
//! calls, so the rules are tested without a server.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::backend::GroupSettings;
use crate::config::KubernetesDiscovery;

/// The label the EndpointSlice controller puts on slices (and that Endpoints may carry):
/// the group of an Endpoints/EndpointSlice without `group_by_label`.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The group of objects without the grouping label.
pub const DEFAULT_GROUP: &str = "default";

/// One watched object, whatever its type (boxed: a Pod is several times larger than the
/// rest).
#[derive(Debug, Clone)]
pub enum Discovered {
    Pod(Box<Pod>),
    Service(Box<Service>),
    Endpoints(Box<Endpoints>),
    EndpointSlice(Box<EndpointSlice>),
}

/// A `(group, member URL)` pair.
pub type Contribution = (String, String);

/// `port` of the config: a number is used as is, anything else is a port name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortSpec<'a> {
    Number(i32),
    Name(&'a str),
}

impl<'a> PortSpec<'a> {
    fn parse(port: &'a str) -> PortSpec<'a> {
        match port.trim().parse::<u16>() {
            Ok(n) if n > 0 => PortSpec::Number(i32::from(n)),
            _ => PortSpec::Name(port.trim()),
        }
    }

    /// Whether a declared port (its name and number) is the one asked for.
    fn matches(self, name: Option<&str>, number: Option<i32>) -> bool {
        match self {
            PortSpec::Number(n) => number == Some(n),
            PortSpec::Name(wanted) => name == Some(wanted),
        }
    }
}

impl Discovered {
    pub fn kind(&self) -> &'static str {
        match self {
            Discovered::Pod(_) => "Pod",
            Discovered::Service(_) => "Service",
            Discovered::Endpoints(_) => "Endpoints",
            Discovered::EndpointSlice(_) => "EndpointSlice",
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Discovered::Pod(o) => &o.metadata,
            Discovered::Service(o) => &o.metadata,
            Discovered::Endpoints(o) => &o.metadata,
            Discovered::EndpointSlice(o) => &o.metadata,
        }
    }

    pub fn namespace(&self) -> &str {
        self.meta().namespace.as_deref().unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.meta().name.as_deref().unwrap_or_default()
    }

    /// The group this object's members belong to.
    fn group(&self, group_by_label: &str) -> String {
        let labels = self.meta().labels.as_ref();
        let label = |key: &str| labels.and_then(|l| l.get(key)).filter(|v| !v.is_empty());
        // Without the label, an Endpoints object is grouped by its own name (its Service's)
        // and a slice by the Service it belongs to: one Service is one HA set.
        let fallback = match self {
            Discovered::Endpoints(_) => self.meta().name.as_ref().filter(|n| !n.is_empty()),
            Discovered::EndpointSlice(_) => label(SERVICE_NAME_LABEL),
            _ => None,
        };
        label(group_by_label)
            .or(fallback)
            .cloned()
            .unwrap_or_else(|| DEFAULT_GROUP.to_string())
    }

    /// The members this object contributes (none when it is filtered out, not ready, or
    /// lacks the port: the last one is logged, as it is a configuration mistake).
    pub fn contributions(&self, config: &KubernetesDiscovery) -> Vec<Contribution> {
        if !annotations_match(self.meta(), &config.annotation_selectors) {
            return Vec::new();
        }
        let port = PortSpec::parse(&config.port);
        let urls = match self {
            Discovered::Pod(pod) => pod_members(pod, port),
            Discovered::Service(service) => service_members(service, port),
            Discovered::Endpoints(endpoints) => endpoints_members(endpoints, port),
            Discovered::EndpointSlice(slice) => slice_members(slice, port),
        };
        match urls {
            Ok(urls) => {
                let group = self.group(&config.group_by_label);
                urls.into_iter().map(|u| (group.clone(), u)).collect()
            }
            Err(Skip::NoPort) => {
                tracing::warn!(
                    kind = self.kind(),
                    namespace = self.namespace(),
                    name = self.name(),
                    port = %config.port,
                    "discovered object has no such port, skipped"
                );
                Vec::new()
            }
            Err(Skip::Other(reason)) => {
                tracing::debug!(
                    kind = self.kind(),
                    namespace = self.namespace(),
                    name = self.name(),
                    reason,
                    "discovered object skipped"
                );
                Vec::new()
            }
        }
    }
}

/// Why an object contributes no member.
#[derive(Debug, PartialEq, Eq)]
enum Skip {
    NoPort,
    Other(&'static str),
}

/// Every annotation selector must be present with exactly that value.
fn annotations_match(meta: &ObjectMeta, wanted: &BTreeMap<String, String>) -> bool {
    wanted.iter().all(|(k, v)| {
        meta.annotations
            .as_ref()
            .and_then(|a| a.get(k))
            .is_some_and(|actual| actual == v)
    })
}

/// `http://host:port`, with IPv6 addresses in brackets.
fn url(host: &str, port: i32) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("http://[{host}]:{port}")
    } else {
        format!("http://{host}:{port}")
    }
}

fn pod_members(pod: &Pod, port: PortSpec) -> Result<Vec<String>, Skip> {
    if pod.metadata.deletion_timestamp.is_some() {
        return Err(Skip::Other("terminating"));
    }
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    if !ready {
        return Err(Skip::Other("not Ready"));
    }
    let Some(ip) = status
        .and_then(|s| s.pod_ip.as_deref())
        .filter(|ip| !ip.is_empty())
    else {
        return Err(Skip::Other("no pod IP yet"));
    };
    let number = match port {
        // A number needs no declaration: Prometheus containers often declare no ports.
        PortSpec::Number(n) => n,
        PortSpec::Name(_) => pod
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| port.matches(p.name.as_deref(), Some(p.container_port)))
            .map(|p| p.container_port)
            .ok_or(Skip::NoPort)?,
    };
    Ok(vec![url(ip, number)])
}

fn service_members(service: &Service, port: PortSpec) -> Result<Vec<String>, Skip> {
    let spec = service.spec.as_ref();
    if spec.and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
        // A headless Service has no virtual IP to send to: watch its Endpoints or
        // EndpointSlices instead.
        return Err(Skip::Other("headless (clusterIP None)"));
    }
    let number = match port {
        PortSpec::Number(n) => n,
        PortSpec::Name(_) => spec
            .iter()
            .flat_map(|s| s.ports.iter().flatten())
            .find(|p| port.matches(p.name.as_deref(), Some(p.port)))
            .map(|p| p.port)
            .ok_or(Skip::NoPort)?,
    };
    let (Some(name), Some(namespace)) = (&service.metadata.name, &service.metadata.namespace)
    else {
        return Err(Skip::Other("no name or namespace"));
    };
    Ok(vec![url(&format!("{name}.{namespace}.svc"), number)])
}

fn endpoints_members(endpoints: &Endpoints, port: PortSpec) -> Result<Vec<String>, Skip> {
    let mut urls = Vec::new();
    let mut missing_port = false;
    for subset in endpoints.subsets.iter().flatten() {
        let addresses = subset.addresses.as_deref().unwrap_or_default();
        if addresses.is_empty() {
            continue;
        }
        let Some(number) = subset
            .ports
            .iter()
            .flatten()
            .find(|p| port.matches(p.name.as_deref(), Some(p.port)))
            .map(|p| p.port)
        else {
            missing_port = true;
            continue;
        };
        urls.extend(addresses.iter().map(|a| url(&a.ip, number)));
    }
    if urls.is_empty() && missing_port {
        return Err(Skip::NoPort);
    }
    Ok(urls)
}

fn slice_members(slice: &EndpointSlice, port: PortSpec) -> Result<Vec<String>, Skip> {
    let ready: Vec<&String> = slice
        .endpoints
        .iter()
        // Unknown readiness counts as ready, as the API documents.
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
        .flat_map(|e| &e.addresses)
        .collect();
    if ready.is_empty() {
        return Ok(Vec::new());
    }
    let number = slice
        .ports
        .iter()
        .flatten()
        .find(|p| port.matches(p.name.as_deref(), p.port))
        .and_then(|p| p.port)
        .ok_or(Skip::NoPort)?;
    Ok(ready.into_iter().map(|a| url(a, number)).collect())
}

/// Groups from `(group, member)` pairs: sorted by name, `read_group` (when present) first,
/// members sorted and deduplicated.
pub fn assemble<'a>(
    contributions: impl IntoIterator<Item = &'a Contribution>,
    read_group: Option<&str>,
) -> Vec<GroupSettings> {
    let mut groups: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (group, member) in contributions {
        groups.entry(group).or_default().insert(member);
    }
    let mut groups: Vec<GroupSettings> = groups
        .into_iter()
        .map(|(name, members)| GroupSettings {
            name: name.to_string(),
            members: members.into_iter().map(str::to_string).collect(),
        })
        .collect();
    if let Some(read) = read_group
        && let Some(i) = groups.iter().position(|g| g.name == read)
    {
        let first = groups.remove(i);
        groups.insert(0, first);
    }
    groups
}

/// The backend groups `objects` make under `config` (what the watcher publishes).
pub fn groups_from(objects: &[Discovered], config: &KubernetesDiscovery) -> Vec<GroupSettings> {
    let contributions: Vec<Contribution> = objects
        .iter()
        .flat_map(|o| o.contributions(config))
        .collect();
    assemble(&contributions, config.read_group.as_deref())
}
