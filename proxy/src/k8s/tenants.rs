//! The Kubernetes tenant source: a watcher over `MetricAccess` in every namespace (or the
//! listed ones) that keeps the tenant store in line with the API server.
//!
//! Objects are watched untyped ([`DynamicObject`]) and validated one by one, so one broken CR
//! is reported (log, `/debug/tenants`, its status) while every other CR keeps working; a typed
//! watcher would fail the whole list on it. The store is rebuilt only when a CR's spec, name
//! or existence changes: the proxy's own status patches come back as watch events and must not
//! restart collector jobs (no hot loop).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use kube::Api;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::Value;

use crate::telemetry::{Metrics, ResourceKindLabels};
use crate::tenant::crd::MetricAccessStatus;
use crate::tenant::source::{Loaded, build_snapshot, check_document};
use crate::tenant::{InvalidResource, MetricAccess, TenantStore};

/// Key of a CR: (namespace, name).
pub type Key = (String, String);

/// What the status writer needs to know of each CR the API server holds, valid or not.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub generation: Option<i64>,
    pub status: Option<MetricAccessStatus>,
    /// `spec.remoteWrite.enabled` (false for an invalid CR).
    pub remote_write_enabled: bool,
}

/// The CRs last seen, shared with the status writer.
#[derive(Debug, Default)]
pub struct ObservedCrs {
    inner: Mutex<BTreeMap<Key, Observed>>,
}

impl ObservedCrs {
    pub fn snapshot(&self) -> BTreeMap<Key, Observed> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
    fn replace(&self, map: BTreeMap<Key, Observed>) {
        *self.inner.lock().unwrap_or_else(PoisonError::into_inner) = map;
    }
}

/// One watch stream's objects (all namespaces, or one namespace).
#[derive(Default)]
struct StreamState {
    objects: BTreeMap<Key, Value>,
    /// Objects of a re-list in progress (`Init` … `InitDone`), swapped in at `InitDone`.
    relisting: Option<BTreeMap<Key, Value>>,
    listed: bool,
}

/// Watch `namespaces` (`None`: every namespace) and fill `store`. The store stays "not loaded"
/// (the proxy not ready) until every namespace has been listed once.
pub fn spawn(
    client: kube::Client,
    namespaces: Option<Vec<String>>,
    store: Arc<TenantStore>,
    metrics: Arc<Metrics>,
) -> (Arc<ObservedCrs>, tokio::task::JoinHandle<()>) {
    let observed = Arc::new(ObservedCrs::default());
    let resource = ApiResource::erase::<MetricAccess>(&());
    let apis: Vec<Api<DynamicObject>> = match &namespaces {
        None => vec![Api::all_with(client, &resource)],
        Some(list) => list
            .iter()
            .map(|ns| Api::namespaced_with(client.clone(), ns, &resource))
            .collect(),
    };
    let streams = apis.into_iter().enumerate().map(|(i, api)| {
        watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .map(move |event| (i, event))
            .boxed()
    });
    let mut merged = futures::stream::select_all(streams);
    let count = namespaces.as_ref().map_or(1, Vec::len);
    let out = observed.clone();
    let task = tokio::spawn(async move {
        let mut states: Vec<StreamState> = (0..count).map(|_| StreamState::default()).collect();
        let mut built: Option<BTreeMap<Key, Value>> = None;
        while let Some((i, event)) = merged.next().await {
            let Some(state) = states.get_mut(i) else {
                continue;
            };
            match event {
                Ok(event) => apply_event(state, event),
                Err(error) => {
                    // The watcher backs off and retries; the last known tenants stay in force.
                    tracing::warn!(%error, "MetricAccess watch failed; retrying");
                    metrics
                        .kubernetes
                        .watch_errors
                        .get_or_create(&ResourceKindLabels {
                            resource: "metricaccesses".into(),
                        })
                        .inc();
                    continue;
                }
            }
            if !states.iter().all(|s| s.listed) {
                continue;
            }
            let all: BTreeMap<Key, Value> = states
                .iter()
                .flat_map(|s| s.objects.iter().map(|(k, v)| (k.clone(), v.clone())))
                .collect();
            out.replace(all.iter().map(|(k, v)| (k.clone(), observe(v))).collect());
            let specs: BTreeMap<Key, Value> = all
                .iter()
                .map(|(k, v)| (k.clone(), v.get("spec").cloned().unwrap_or(Value::Null)))
                .collect();
            if built.as_ref() == Some(&specs) {
                continue;
            }
            store.replace(snapshot_of(&all));
            tracing::info!(
                resources = specs.len(),
                "tenants reloaded from the API server"
            );
            built = Some(specs);
        }
    });
    (observed, task)
}

fn key_of(object: &DynamicObject) -> Key {
    (
        object.metadata.namespace.clone().unwrap_or_default(),
        object.metadata.name.clone().unwrap_or_default(),
    )
}

fn value_of(object: &DynamicObject) -> Value {
    let mut v = serde_json::to_value(object).unwrap_or(Value::Null);
    // List items of a real API server may lack apiVersion/kind; they are what was asked for.
    if v.get("apiVersion").is_none_or(Value::is_null) {
        v["apiVersion"] = Value::from("observability.ethos.io/v1alpha1");
        v["kind"] = Value::from("MetricAccess");
    }
    v
}

fn apply_event(state: &mut StreamState, event: Event<DynamicObject>) {
    match event {
        Event::Init => state.relisting = Some(BTreeMap::new()),
        Event::InitApply(o) => {
            if let Some(relist) = state.relisting.as_mut() {
                relist.insert(key_of(&o), value_of(&o));
            }
        }
        Event::InitDone => {
            if let Some(relist) = state.relisting.take() {
                state.objects = relist;
            }
            state.listed = true;
        }
        Event::Apply(o) => {
            state.objects.insert(key_of(&o), value_of(&o));
        }
        Event::Delete(o) => {
            state.objects.remove(&key_of(&o));
        }
    }
}

fn observe(v: &Value) -> Observed {
    Observed {
        generation: v["metadata"]["generation"].as_i64(),
        status: v
            .get("status")
            .and_then(|s| serde_json::from_value(s.clone()).ok()),
        remote_write_enabled: v["spec"]["remoteWrite"]["enabled"].as_bool() == Some(true),
    }
}

/// Validate every object and merge the valid ones.
pub fn snapshot_of(objects: &BTreeMap<Key, Value>) -> crate::tenant::TenantSnapshot {
    let mut loaded = Vec::new();
    let mut invalid = Vec::new();
    for ((ns, name), v) in objects {
        match check_document(v, None, Some(ns), Some(name)) {
            Ok((spec, policy)) => loaded.push(Loaded {
                file: None,
                namespace: ns.clone(),
                name: name.clone(),
                spec,
                policy,
            }),
            Err(error) => {
                tracing::warn!(namespace = %ns, resource = %name, %error, "MetricAccess is invalid; skipped");
                invalid.push(InvalidResource {
                    file: None,
                    namespace: Some(ns.clone()),
                    name: Some(name.clone()),
                    error,
                });
            }
        }
    }
    build_snapshot(loaded, invalid)
}

#[cfg(test)]
mod tests;
