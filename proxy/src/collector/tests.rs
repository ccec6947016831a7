//! Reconciling jobs with shard ownership: only owned CRs run, and a new ownership version
//! moves jobs even when neither the tenants nor the settings changed.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use crate::backend::{BackendSettings, GroupSettings};
use crate::tenant::{MetricAccessSpec, Policy};

type Key = (String, String);

/// Inputs whose ownership the test sets; `None` owns everything.
struct Sharded {
    config: Arc<RemoteWriteConfig>,
    backends: Arc<BackendPool>,
    owned: Mutex<Option<BTreeSet<Key>>>,
    version: AtomicU64,
}

impl Inputs for Sharded {
    fn config(&self) -> Arc<RemoteWriteConfig> {
        self.config.clone()
    }
    fn backends(&self) -> Arc<BackendPool> {
        self.backends.clone()
    }
    fn owns(&self, namespace: &str, name: &str) -> bool {
        self.owned
            .lock()
            .unwrap()
            .as_ref()
            .is_none_or(|o| o.contains(&(namespace.to_string(), name.to_string())))
    }
    fn ownership_version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }
}

/// The default `Inputs` methods: sharding off.
struct Unsharded(Arc<Sharded>);

impl Inputs for Unsharded {
    fn config(&self) -> Arc<RemoteWriteConfig> {
        self.0.config()
    }
    fn backends(&self) -> Arc<BackendPool> {
        self.0.backends()
    }
}

fn resource(namespace: &str, name: &str, enabled: bool) -> Arc<AccessResource> {
    let spec: MetricAccessSpec = serde_json::from_value(serde_json::json!({
        "metrics": ["up"],
        "remoteWrite": {
            "enabled": enabled,
            "target": {"type": "remote_write"},
            "remoteWrite": {"url": "http://127.0.0.1:9/api/v1/write"},
        },
    }))
    .unwrap();
    let policy = Policy::from_spec(namespace, &spec).unwrap();
    Arc::new(AccessResource {
        namespace: namespace.into(),
        name: name.into(),
        file: None,
        spec,
        policy: Arc::new(policy),
    })
}

fn key(namespace: &str, name: &str) -> Key {
    (namespace.into(), name.into())
}

fn inputs() -> Arc<Sharded> {
    let backends = BackendPool::new(
        BackendSettings {
            groups: vec![GroupSettings {
                name: "infra".into(),
                members: vec!["http://127.0.0.1:9".into()],
            }],
            probe_interval: Duration::from_secs(60),
            probe_timeout: Duration::from_millis(100),
            request_timeout: Duration::from_millis(100),
            max_concurrent_requests: 4,
        },
        Arc::new(Metrics::new()),
    )
    .unwrap();
    Arc::new(Sharded {
        config: Arc::new(RemoteWriteConfig {
            enabled: true,
            shutdown_grace: Duration::from_millis(10),
            ..RemoteWriteConfig::default()
        }),
        backends: Arc::new(backends),
        owned: Mutex::new(None),
        version: AtomicU64::new(0),
    })
}

fn store() -> Arc<TenantStore> {
    let store = Arc::new(TenantStore::new());
    store.replace(TenantSnapshot {
        resources: vec![
            resource("team-a", "one", true),
            resource("team-a", "two", true),
            resource("team-b", "three", true),
            resource("team-b", "off", false),
        ],
        ..TenantSnapshot::default()
    });
    store
}

fn running(collector: &Collector) -> BTreeSet<Key> {
    collector.jobs.lock().unwrap().keys().cloned().collect()
}

#[tokio::test]
async fn only_owned_crs_run_and_a_new_ownership_version_moves_them() {
    let inputs = inputs();
    *inputs.owned.lock().unwrap() = Some([key("team-a", "one"), key("team-b", "off")].into());
    let collector = Collector::spawn(store(), inputs.clone(), Arc::new(Metrics::new()));
    collector.reconcile();
    assert_eq!(running(&collector), [key("team-a", "one")].into());

    // Ownership answers differently but the version didn't move: nothing is compared.
    *inputs.owned.lock().unwrap() = Some([key("team-a", "two"), key("team-b", "three")].into());
    collector.reconcile();
    assert_eq!(running(&collector), [key("team-a", "one")].into());

    // The version moves: "one" went to another replica, "two" and "three" came here.
    inputs.version.fetch_add(1, Ordering::SeqCst);
    collector.reconcile();
    assert_eq!(
        running(&collector),
        [key("team-a", "two"), key("team-b", "three")].into()
    );

    // Owning nothing (a partitioned replica) stops every job.
    *inputs.owned.lock().unwrap() = Some(BTreeSet::new());
    inputs.version.fetch_add(1, Ordering::SeqCst);
    collector.reconcile();
    assert!(running(&collector).is_empty());
    collector.shutdown().await;
}

#[tokio::test]
async fn without_sharding_every_enabled_cr_runs() {
    let inputs = inputs();
    *inputs.owned.lock().unwrap() = Some(BTreeSet::new());
    let collector = Collector::spawn(
        store(),
        Arc::new(Unsharded(inputs)),
        Arc::new(Metrics::new()),
    );
    collector.reconcile();
    assert_eq!(
        running(&collector),
        [
            key("team-a", "one"),
            key("team-a", "two"),
            key("team-b", "three")
        ]
        .into()
    );
    collector.shutdown().await;
}
