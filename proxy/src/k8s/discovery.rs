//! Backend discovery (`discovery.kubernetes`): watches the configured resource types in
//! the configured namespaces and publishes the infrastructure Prometheus groups they make
//! on a [`watch`] channel. This module owns the watching (one watcher per resource type and
//! namespace, re-listed every `refresh`), [`members`] owns what one object contributes.
//!
//! The watchers survive a watch that ends (resumed from the last version), `410 Gone`
//! (listed again) and API errors (retried with backoff, logged); meanwhile the last
//! published groups stay. Nothing is published before every watcher has listed once, so a
//! half-listed cluster never shrinks the backends.

pub mod members;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use futures::stream::{BoxStream, SelectAll};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use members::{Contribution, Discovered, assemble, groups_from};

use crate::backend::GroupSettings;
use crate::config::{KubernetesDiscovery, ResourceType};

/// The shortest resync period: a zero `refresh` would list in a loop.
const MIN_REFRESH: Duration = Duration::from_secs(1);

/// Start discovering: the receiver sees the groups once every watcher has listed, then on
/// every change. The task runs until it is aborted or every receiver is dropped. `refresh`
/// is the resync period: every watcher lists again that often, which repairs any missed
/// event. Needs a Tokio runtime.
pub fn spawn(
    client: kube::Client,
    config: KubernetesDiscovery,
    refresh: Duration,
) -> (watch::Receiver<Vec<GroupSettings>>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(Vec::new());
    let task = tokio::spawn(run(client, config, refresh.max(MIN_REFRESH), tx));
    (rx, task)
}

/// One watched (resource type, namespace); `None` is every namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Source {
    resource: ResourceType,
    namespace: Option<String>,
}

fn sources(config: &KubernetesDiscovery) -> Vec<Source> {
    let mut namespaces: Vec<Option<String>> =
        config.namespaces.iter().map(|n| Some(n.clone())).collect();
    namespaces.sort();
    namespaces.dedup();
    if namespaces.is_empty() {
        namespaces.push(None);
    }
    let mut out = Vec::new();
    for resource in &config.resource_types {
        for namespace in &namespaces {
            let source = Source {
                resource: *resource,
                namespace: namespace.clone(),
            };
            if !out.contains(&source) {
                out.push(source);
            }
        }
    }
    out
}

/// `k=v,k2=v2`: equality only, the server filters.
fn label_selector(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

type Item = (usize, Result<Event<Discovered>, watcher::Error>);

/// A watcher of one source, its events tagged with the source's index.
fn watch_one<K>(
    client: &kube::Client,
    index: usize,
    namespace: Option<&str>,
    config: watcher::Config,
    wrap: fn(K) -> Discovered,
) -> BoxStream<'static, Item>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned
        + Send
        + 'static,
    K::DynamicType: Default,
{
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    watcher::watcher(api, config)
        .default_backoff()
        .map_ok(move |event| map_event(event, wrap))
        .map(move |item| (index, item))
        .boxed()
}

fn map_event<K>(event: Event<K>, wrap: fn(K) -> Discovered) -> Event<Discovered> {
    match event {
        Event::Apply(o) => Event::Apply(wrap(o)),
        Event::Delete(o) => Event::Delete(wrap(o)),
        Event::Init => Event::Init,
        Event::InitApply(o) => Event::InitApply(wrap(o)),
        Event::InitDone => Event::InitDone,
    }
}

fn watch_all(
    client: &kube::Client,
    sources: &[Source],
    selector: &str,
) -> SelectAll<BoxStream<'static, Item>> {
    let mut config = watcher::Config::default();
    if !selector.is_empty() {
        config = config.labels(selector);
    }
    let streams = sources.iter().enumerate().map(|(i, s)| {
        let ns = s.namespace.as_deref();
        let config = config.clone();
        match s.resource {
            ResourceType::Pod => {
                watch_one::<Pod>(client, i, ns, config, |o| Discovered::Pod(Box::new(o)))
            }
            ResourceType::Service => {
                watch_one::<Service>(client, i, ns, config, |o| Discovered::Service(Box::new(o)))
            }
            ResourceType::Endpoints => watch_one::<Endpoints>(client, i, ns, config, |o| {
                Discovered::Endpoints(Box::new(o))
            }),
            ResourceType::EndpointSlice => watch_one::<EndpointSlice>(client, i, ns, config, |o| {
                Discovered::EndpointSlice(Box::new(o))
            }),
        }
    });
    futures::stream::select_all(streams)
}

/// (source index, namespace, name).
type Key = (usize, String, String);

/// What the watchers know: each object's contribution, kept per source so one source's
/// re-list replaces only its own objects.
struct Known {
    config: KubernetesDiscovery,
    objects: BTreeMap<Key, Vec<Contribution>>,
    /// Objects of a list in progress, per source; swapped in at `InitDone`.
    listing: BTreeMap<usize, BTreeMap<Key, Vec<Contribution>>>,
    listed: Vec<bool>,
    published: bool,
}

impl Known {
    fn new(config: KubernetesDiscovery, sources: usize) -> Known {
        Known {
            config,
            objects: BTreeMap::new(),
            listing: BTreeMap::new(),
            listed: vec![false; sources],
            published: false,
        }
    }

    fn key(index: usize, object: &Discovered) -> Key {
        (
            index,
            object.namespace().to_string(),
            object.name().to_string(),
        )
    }

    /// Take one event in; true when the known objects changed.
    fn apply(&mut self, index: usize, event: Event<Discovered>) -> bool {
        match event {
            Event::Init => {
                self.listing.insert(index, BTreeMap::new());
                false
            }
            Event::InitApply(object) => {
                let contribution = object.contributions(&self.config);
                self.listing
                    .entry(index)
                    .or_default()
                    .insert(Self::key(index, &object), contribution);
                false
            }
            Event::InitDone => {
                let listed = self.listing.remove(&index).unwrap_or_default();
                self.objects.retain(|(i, _, _), _| *i != index);
                self.objects.extend(listed);
                if let Some(done) = self.listed.get_mut(index) {
                    *done = true;
                }
                true
            }
            Event::Apply(object) => {
                let contribution = object.contributions(&self.config);
                self.objects.insert(Self::key(index, &object), contribution);
                true
            }
            Event::Delete(object) => self.objects.remove(&Self::key(index, &object)).is_some(),
        }
    }

    /// Send the groups when every source has listed and they differ from the last sent
    /// (the first result is always sent, even if empty: it replaces the static groups).
    fn publish(&mut self, tx: &watch::Sender<Vec<GroupSettings>>) {
        if !self.listed.iter().all(|l| *l) {
            return;
        }
        let groups = assemble(
            self.objects.values().flatten(),
            self.config.read_group.as_deref(),
        );
        let first = !self.published;
        self.published = true;
        let changed = tx.send_if_modified(|current| {
            if first || *current != groups {
                *current = groups;
                true
            } else {
                false
            }
        });
        if changed {
            let groups = tx.borrow();
            let summary: Vec<String> = groups
                .iter()
                .map(|g| format!("{}={}", g.name, g.members.len()))
                .collect();
            if groups.is_empty() {
                tracing::warn!("Kubernetes discovery found no backend");
            } else {
                tracing::info!(groups = %summary.join(","), "discovered backend groups changed");
            }
        }
    }
}

async fn run(
    client: kube::Client,
    config: KubernetesDiscovery,
    refresh: Duration,
    tx: watch::Sender<Vec<GroupSettings>>,
) {
    let sources = sources(&config);
    let selector = label_selector(&config.label_selectors);
    let mut known = Known::new(config, sources.len());
    loop {
        // New watchers list again: the resync. The known objects stay until each source's
        // list is complete, so a resync changes nothing that did not change.
        let mut events = watch_all(&client, &sources, &selector);
        let resync = tokio::time::sleep(refresh);
        tokio::pin!(resync);
        loop {
            tokio::select! {
                _ = &mut resync => break,
                _ = tx.closed() => return,
                item = events.next() => match item {
                    Some((index, Ok(event))) => {
                        if known.apply(index, event) {
                            known.publish(&tx);
                        }
                    }
                    Some((index, Err(error))) => {
                        let source = sources.get(index);
                        tracing::warn!(
                            resource = ?source.map(|s| s.resource),
                            namespace = source.and_then(|s| s.namespace.as_deref()).unwrap_or("*"),
                            %error,
                            "Kubernetes discovery: API error, retrying with backoff; the last known backends stay"
                        );
                    }
                    // Watchers never end; if they did, resync at the next period.
                    None => resync.as_mut().await,
                },
            }
        }
        tracing::debug!("Kubernetes discovery: resync");
    }
}
