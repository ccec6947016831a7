//! A **simulated** Kubernetes API server for tests (wiremock): not a cluster. It keeps objects
//! per resource in memory and answers the way a real API server does for what the proxy
//! calls: list (with `labelSelector` equality), watch (events after a `resourceVersion`,
//! bookmarks, a watch that ends after each batch, `410 Expired` for a compacted version),
//! get, create, replace (409 on a stale `resourceVersion`), JSON merge patch (objects and the
//! `status` subresource) and delete. Every request is recorded so tests can assert what was
//! (and was not) asked for.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::path_regex;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// How long a watch with nothing to report stays open before it ends with a bookmark.
const IDLE_WATCH: Duration = Duration::from_millis(200);

/// One resource type the simulated server serves.
#[derive(Debug, Clone, Copy)]
pub struct Resource {
    /// `/api/v1` or `/apis/<group>/<version>`.
    pub prefix: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub api_version: &'static str,
    pub namespaced: bool,
}

pub const METRIC_ACCESS: Resource = Resource {
    prefix: "/apis/observability.ethos.io/v1alpha1",
    plural: "metricaccesses",
    kind: "MetricAccess",
    api_version: "observability.ethos.io/v1alpha1",
    namespaced: true,
};
pub const SECRET: Resource = Resource {
    prefix: "/api/v1",
    plural: "secrets",
    kind: "Secret",
    api_version: "v1",
    namespaced: true,
};
pub const SERVICE: Resource = Resource {
    prefix: "/api/v1",
    plural: "services",
    kind: "Service",
    api_version: "v1",
    namespaced: true,
};
pub const POD: Resource = Resource {
    prefix: "/api/v1",
    plural: "pods",
    kind: "Pod",
    api_version: "v1",
    namespaced: true,
};
pub const ENDPOINTS: Resource = Resource {
    prefix: "/api/v1",
    plural: "endpoints",
    kind: "Endpoints",
    api_version: "v1",
    namespaced: true,
};
pub const ENDPOINT_SLICE: Resource = Resource {
    prefix: "/apis/discovery.k8s.io/v1",
    plural: "endpointslices",
    kind: "EndpointSlice",
    api_version: "discovery.k8s.io/v1",
    namespaced: true,
};
pub const LEASE: Resource = Resource {
    prefix: "/apis/coordination.k8s.io/v1",
    plural: "leases",
    kind: "Lease",
    api_version: "coordination.k8s.io/v1",
    namespaced: true,
};

/// A request the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: String,
}

/// One change in the event log of a resource.
#[derive(Debug, Clone)]
struct Change {
    rv: u64,
    kind: &'static str,
    object: Value,
}

#[derive(Debug, Default)]
struct Store {
    /// (resource plural, namespace, name) → object.
    objects: BTreeMap<(String, String, String), Value>,
    log: Vec<(String, Change)>,
    rv: u64,
    /// Watches from a version older than this get 410.
    compacted_before: u64,
    /// Watch requests answered with a plain HTTP error instead of events, counted down.
    watch_failures: u32,
}

/// The simulated API server. Cheap to share (`Arc`).
pub struct SimulatedApiServer {
    server: MockServer,
    store: Arc<Mutex<Store>>,
}

impl SimulatedApiServer {
    /// Start serving `resources`.
    pub async fn start(resources: &[Resource]) -> SimulatedApiServer {
        let server = MockServer::start().await;
        let store = Arc::new(Mutex::new(Store::default()));
        for r in resources {
            let pattern = format!(
                r"^{}(/namespaces/[^/]+)?/{}(/[^/]+)?(/status)?$",
                regex::escape(r.prefix),
                r.plural
            );
            Mock::given(path_regex(pattern))
                .respond_with(Responder {
                    resource: *r,
                    store: store.clone(),
                })
                .mount(&server)
                .await;
        }
        SimulatedApiServer { server, store }
    }

    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// A kube client talking to this server.
    pub fn client(&self) -> kube::Client {
        super::client_for(&self.server.uri()).expect("client for the simulated API server")
    }

    /// Mount an extra mock (e.g. TokenReview) ahead of nothing else.
    pub fn server(&self) -> &MockServer {
        &self.server
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Create or replace an object (as another client would); watchers see ADDED/MODIFIED.
    pub fn apply(&self, resource: Resource, object: Value) -> Value {
        let mut store = self.lock();
        upsert(&mut store, resource, object)
    }

    /// Delete an object; watchers see DELETED.
    pub fn delete(&self, resource: Resource, namespace: &str, name: &str) {
        let mut store = self.lock();
        remove(&mut store, resource, namespace, name);
    }

    /// The stored object, if any.
    pub fn get(&self, resource: Resource, namespace: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&(resource.plural.into(), namespace.into(), name.into()))
            .cloned()
    }

    /// Forget the event log: a watch from any version seen so far gets `410 Expired` and the
    /// client must list again (what etcd compaction does).
    pub fn compact(&self) {
        let mut store = self.lock();
        store.compacted_before = store.rv + 1;
        store.log.clear();
    }

    /// The next `n` watch requests get HTTP 500 (an API server restarting).
    pub fn fail_watches(&self, n: u32) {
        self.lock().watch_failures = n;
    }

    /// Every request so far.
    pub async fn requests(&self) -> Vec<Recorded> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|r| Recorded {
                method: r.method.to_string(),
                path: r.url.path().to_string(),
                query: r.url.query().unwrap_or_default().to_string(),
                body: String::from_utf8_lossy(&r.body).into_owned(),
            })
            .collect()
    }
}

fn key_of(resource: Resource, object: &Value) -> (String, String, String) {
    let meta = &object["metadata"];
    (
        resource.plural.to_string(),
        meta["namespace"].as_str().unwrap_or_default().to_string(),
        meta["name"].as_str().unwrap_or_default().to_string(),
    )
}

fn upsert(store: &mut Store, resource: Resource, mut object: Value) -> Value {
    store.rv += 1;
    let rv = store.rv;
    let key = key_of(resource, &object);
    let previous = store.objects.get(&key).cloned();
    object["apiVersion"] = json!(resource.api_version);
    object["kind"] = json!(resource.kind);
    let meta = &mut object["metadata"];
    meta["resourceVersion"] = json!(rv.to_string());
    if meta["uid"].is_null() {
        meta["uid"] = json!(format!("uid-{}-{}", key.1, key.2));
    }
    // Generation moves with the spec only, like the API server's for CRDs with a status
    // subresource.
    let generation = match &previous {
        Some(p) if p["spec"] == object["spec"] => p["metadata"]["generation"].as_i64().unwrap_or(1),
        Some(p) => p["metadata"]["generation"].as_i64().unwrap_or(1) + 1,
        None => 1,
    };
    object["metadata"]["generation"] = json!(generation);
    if let Some(p) = &previous
        && object.get("status").is_none()
        && let Some(status) = p.get("status")
    {
        object["status"] = status.clone();
    }
    let kind = if previous.is_some() {
        "MODIFIED"
    } else {
        "ADDED"
    };
    store.objects.insert(key.clone(), object.clone());
    store.log.push((
        key.0,
        Change {
            rv,
            kind,
            object: object.clone(),
        },
    ));
    object
}

fn remove(store: &mut Store, resource: Resource, namespace: &str, name: &str) -> Option<Value> {
    let key = (
        resource.plural.to_string(),
        namespace.to_string(),
        name.to_string(),
    );
    let mut object = store.objects.remove(&key)?;
    store.rv += 1;
    object["metadata"]["resourceVersion"] = json!(store.rv.to_string());
    store.log.push((
        key.0,
        Change {
            rv: store.rv,
            kind: "DELETED",
            object: object.clone(),
        },
    ));
    Some(object)
}

/// JSON merge patch (RFC 7386).
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            for (k, v) in p {
                if v.is_null() {
                    if let Some(t) = target.as_object_mut() {
                        t.remove(k);
                    }
                } else {
                    merge_patch(&mut target[k], v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn status(code: u16, reason: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(code).set_body_json(json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    }))
}

struct Responder {
    resource: Resource,
    store: Arc<Mutex<Store>>,
}

/// What a path names.
struct Target {
    namespace: Option<String>,
    name: Option<String>,
    subresource_status: bool,
}

impl Responder {
    fn target(&self, path: &str) -> Target {
        let rest = path.strip_prefix(self.resource.prefix).unwrap_or(path);
        let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
        let (namespace, rest) = match parts.as_slice() {
            ["namespaces", ns, rest @ ..] => (Some(ns.to_string()), rest.to_vec()),
            rest => (None, rest.to_vec()),
        };
        Target {
            namespace,
            name: rest.get(1).map(|s| s.to_string()),
            subresource_status: rest.get(2) == Some(&"status"),
        }
    }

    fn matches_selector(object: &Value, selector: Option<&str>) -> bool {
        let Some(selector) = selector.filter(|s| !s.is_empty()) else {
            return true;
        };
        selector.split(',').all(|term| {
            let (k, v) = term.split_once('=').unwrap_or((term, ""));
            let v = v.trim_start_matches('=');
            object["metadata"]["labels"][k].as_str() == Some(v)
        })
    }

    fn list(&self, store: &Store, t: &Target, selector: Option<&str>) -> ResponseTemplate {
        let items: Vec<Value> = store
            .objects
            .iter()
            .filter(|((plural, ns, _), _)| {
                plural == self.resource.plural && t.namespace.as_ref().is_none_or(|n| n == ns)
            })
            .map(|(_, o)| o.clone())
            .filter(|o| Self::matches_selector(o, selector))
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({
            "apiVersion": self.resource.api_version,
            "kind": format!("{}List", self.resource.kind),
            "metadata": { "resourceVersion": store.rv.to_string() },
            "items": items,
        }))
    }

    fn watch(
        &self,
        store: &mut Store,
        t: &Target,
        query: &BTreeMap<String, String>,
    ) -> ResponseTemplate {
        if store.watch_failures > 0 {
            store.watch_failures -= 1;
            return status(500, "InternalError", "simulated API server restarting");
        }
        let from: u64 = query
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if from < store.compacted_before && from != 0 {
            let line = json!({"type": "ERROR", "object": {
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("too old resource version: {from} ({})", store.compacted_before),
                "reason": "Expired", "code": 410,
            }});
            return ResponseTemplate::new(200).set_body_string(format!("{line}\n"));
        }
        let selector = query.get("labelSelector").map(String::as_str);
        let mut body = String::new();
        for (plural, change) in &store.log {
            if plural != self.resource.plural || change.rv <= from {
                continue;
            }
            let ns = change.object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("");
            if t.namespace.as_deref().is_some_and(|n| n != ns)
                || !Self::matches_selector(&change.object, selector)
            {
                continue;
            }
            body.push_str(&json!({"type": change.kind, "object": change.object}).to_string());
            body.push('\n');
        }
        let mut response = ResponseTemplate::new(200);
        if body.is_empty() {
            response = response.set_delay(IDLE_WATCH);
        }
        if query.get("allowWatchBookmarks").map(String::as_str) == Some("true") {
            let bookmark = json!({"type": "BOOKMARK", "object": {
                "apiVersion": self.resource.api_version, "kind": self.resource.kind,
                "metadata": {"resourceVersion": store.rv.to_string()},
            }});
            body.push_str(&bookmark.to_string());
            body.push('\n');
        }
        response.set_body_raw(body.into_bytes(), "application/json")
    }
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let t = self.target(request.url.path());
        let query: BTreeMap<String, String> = request.url.query_pairs().into_owned().collect();
        let mut store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        let method = request.method.as_str();
        let key = |name: &str| {
            (
                self.resource.plural.to_string(),
                t.namespace.clone().unwrap_or_default(),
                name.to_string(),
            )
        };
        match (method, &t.name) {
            ("GET", None) => {
                if matches!(query.get("watch").map(String::as_str), Some("true" | "1")) {
                    self.watch(&mut store, &t, &query)
                } else {
                    self.list(&store, &t, query.get("labelSelector").map(String::as_str))
                }
            }
            ("GET", Some(name)) => match store.objects.get(&key(name)) {
                Some(o) => ResponseTemplate::new(200).set_body_json(o),
                None => status(
                    404,
                    "NotFound",
                    &format!("{} {name:?} not found", self.resource.plural),
                ),
            },
            ("POST", None) => {
                let Ok(mut object) = serde_json::from_slice::<Value>(&request.body) else {
                    return status(400, "BadRequest", "body is not JSON");
                };
                if let Some(ns) = &t.namespace {
                    object["metadata"]["namespace"] = json!(ns);
                }
                if store.objects.contains_key(&key_of(self.resource, &object)) {
                    return status(409, "AlreadyExists", "already exists");
                }
                let created = upsert(&mut store, self.resource, object);
                ResponseTemplate::new(201).set_body_json(created)
            }
            ("PUT", Some(name)) => {
                let Ok(mut object) = serde_json::from_slice::<Value>(&request.body) else {
                    return status(400, "BadRequest", "body is not JSON");
                };
                let Some(current) = store.objects.get(&key(name)).cloned() else {
                    return status(404, "NotFound", "not found");
                };
                let sent = object["metadata"]["resourceVersion"].as_str().unwrap_or("");
                if !sent.is_empty() && Some(sent) != current["metadata"]["resourceVersion"].as_str()
                {
                    return status(
                        409,
                        "Conflict",
                        "the object has been modified; please apply your changes to the latest version and try again",
                    );
                }
                if let Some(ns) = &t.namespace {
                    object["metadata"]["namespace"] = json!(ns);
                }
                if t.subresource_status {
                    let mut updated = current;
                    updated["status"] = object["status"].clone();
                    object = updated;
                } else if object.get("status").is_none() {
                    object["status"] = current["status"].clone();
                }
                let replaced = upsert(&mut store, self.resource, object);
                ResponseTemplate::new(200).set_body_json(replaced)
            }
            ("PATCH", Some(name)) => {
                let Ok(patch) = serde_json::from_slice::<Value>(&request.body) else {
                    return status(400, "BadRequest", "body is not JSON");
                };
                let Some(mut object) = store.objects.get(&key(name)).cloned() else {
                    return status(404, "NotFound", "not found");
                };
                if t.subresource_status {
                    // The status subresource ignores everything but `status`.
                    merge_patch(&mut object["status"], &patch["status"]);
                } else {
                    merge_patch(&mut object, &patch);
                }
                let patched = upsert(&mut store, self.resource, object);
                ResponseTemplate::new(200).set_body_json(patched)
            }
            ("DELETE", Some(name)) => {
                let ns = t.namespace.clone().unwrap_or_default();
                match remove(&mut store, self.resource, &ns, name) {
                    Some(o) => ResponseTemplate::new(200).set_body_json(o),
                    None => status(404, "NotFound", "not found"),
                }
            }
            _ => status(
                405,
                "MethodNotAllowed",
                "not supported by the simulated API server",
            ),
        }
    }
}
