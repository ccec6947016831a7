//! Collector shard ownership across proxy replicas (docs/sharding.md).
//!
//! This module owns this replica's Lease `<lease_prefix>-<identity>` (labelled
//! `app.kubernetes.io/name=<lease_prefix>`): a background task creates it, renews it every
//! `lease_duration / 3` and lists the other replicas' Leases on the same tick. The live members
//! are the Leases whose `renewTime + leaseDurationSeconds` is still ahead; each CR belongs to
//! the member that wins rendezvous (highest-random-weight) hashing over them, see [`owner`].
//!
//! It fails closed: a replica that could not renew its Lease, or list the others, for a whole
//! `lease_duration` counts itself out and owns nothing, so a partitioned replica stops
//! collecting rather than collecting alongside the replica that took its CRs over.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use tokio::task::JoinHandle;

use crate::config::ShardingConfig;

/// The label every replica's Lease carries, valued with the lease prefix.
pub const MEMBER_LABEL: &str = "app.kubernetes.io/name";

const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Which CR goes to which member: the member with the highest xxh3 of
/// `(member, namespace/name)`. Removing a member only moves that member's CRs; adding one only
/// takes CRs from the others. `None` when there are no members.
pub fn owner<'a>(members: &'a [String], namespace: &str, name: &str) -> Option<&'a str> {
    members
        .iter()
        .map(|m| (weight(m, namespace, name), m.as_str()))
        // Ties (astronomically unlikely) go to the greater identity, the same on every replica.
        .max()
        .map(|(_, m)| m)
}

fn weight(member: &str, namespace: &str, name: &str) -> u64 {
    // The separators keep ("a", "b/c") and ("ab", "/c") apart; neither can occur in a name.
    let key = format!("{member}\0{namespace}/{name}");
    xxhash_rust::xxh3::xxh3_64(key.as_bytes())
}

/// The resolved settings of one replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSettings {
    pub identity: String,
    pub namespace: String,
    pub lease_prefix: String,
    pub lease_duration: Duration,
}

impl ShardSettings {
    /// From the config, filling identity and namespace from the pod's environment.
    pub fn resolve(config: &ShardingConfig) -> anyhow::Result<ShardSettings> {
        Self::resolve_with(
            config,
            |k| std::env::var(k).ok(),
            |p| std::fs::read_to_string(p).ok(),
        )
    }

    /// [`ShardSettings::resolve`] with the environment and the file system passed in (tests).
    pub fn resolve_with(
        config: &ShardingConfig,
        env: impl Fn(&str) -> Option<String>,
        read: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<ShardSettings> {
        let clean = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        let identity = clean(config.identity.clone())
            .or_else(|| clean(env("POD_NAME")))
            // The host name: a pod's is its name. Read, not `gethostname`: the crate has no
            // unsafe code.
            .or_else(|| clean(env("HOSTNAME")))
            .or_else(|| clean(read("/etc/hostname")))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "kubernetes.sharding: no identity for this replica; set kubernetes.sharding.identity or POD_NAME (fieldRef metadata.name)"
                )
            })?;
        let namespace = clean(config.namespace.clone())
            .or_else(|| clean(env("POD_NAMESPACE")))
            .or_else(|| clean(read(SERVICE_ACCOUNT_NAMESPACE)))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "kubernetes.sharding: no namespace for the Leases; set kubernetes.sharding.namespace or POD_NAMESPACE (fieldRef metadata.namespace), or mount the service account"
                )
            })?;
        anyhow::ensure!(
            config.lease_duration >= Duration::from_secs(1),
            "kubernetes.sharding.lease_duration must be at least 1s"
        );
        Ok(ShardSettings {
            identity,
            namespace,
            lease_prefix: config.lease_prefix.clone(),
            lease_duration: config.lease_duration,
        })
    }

    /// This replica's Lease.
    pub fn lease_name(&self) -> String {
        format!("{}-{}", self.lease_prefix, self.identity)
    }

    /// How often the Lease is renewed and the others' are listed.
    fn tick(&self) -> Duration {
        self.lease_duration / 3
    }
}

#[derive(Debug, Default)]
struct State {
    /// Our Lease as last written (its `resourceVersion` makes the next replace safe).
    lease: Option<Lease>,
    /// When the current run of uninterrupted renewals started, and when the last one was sent.
    joined_at: Option<Instant>,
    renewed_at: Option<Instant>,
    listed_at: Option<Instant>,
    /// The other replicas' Leases: identity → when they expire.
    others: BTreeMap<String, Timestamp>,
    /// The live members, sorted; contains us only while we are live.
    members: Vec<String>,
    stopped: bool,
}

struct Inner {
    api: Api<Lease>,
    settings: ShardSettings,
    state: Mutex<State>,
    version: AtomicU64,
}

/// This replica's membership: see the module docs.
pub struct Shard {
    inner: Arc<Inner>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("identity", &self.inner.settings.identity)
            .field("members", &self.members())
            .finish_non_exhaustive()
    }
}

impl Shard {
    /// Start holding our Lease and following the others' in the background. Owns nothing until
    /// the Lease has been renewed for one tick (so the others have seen it).
    pub fn spawn(client: kube::Client, settings: ShardSettings) -> Arc<Shard> {
        let inner = Arc::new(Inner {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            state: Mutex::new(State::default()),
            version: AtomicU64::new(0),
        });
        let task = tokio::spawn(inner.clone().run());
        Arc::new(Shard {
            inner,
            task: Mutex::new(Some(task)),
        })
    }

    /// Whether this replica collects the CR `namespace/name`.
    pub fn owns(&self, namespace: &str, name: &str) -> bool {
        let identity = self.inner.settings.identity.as_str();
        let state = self.inner.lock();
        self.inner.self_live(&state, Instant::now())
            && owner(&state.members, namespace, name) == Some(identity)
    }

    /// Moves whenever the live member set (and so ownership) changes.
    pub fn version(&self) -> u64 {
        self.inner.version.load(Ordering::Acquire)
    }

    /// The live members, sorted (us included while we are live).
    pub fn members(&self) -> Vec<String> {
        self.inner.lock().members.clone()
    }

    pub fn identity(&self) -> &str {
        &self.inner.settings.identity
    }

    /// Stop renewing, give up every CR and delete our Lease so the others take over on their
    /// next tick instead of after `lease_duration` (best effort: failures are logged).
    pub async fn stop(&self) {
        if let Some(task) = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
        self.inner.lock().stopped = true;
        self.inner.refresh();
        let name = self.inner.settings.lease_name();
        let dp = DeleteParams::default();
        let call = self.inner.api.delete(&name, &dp);
        match tokio::time::timeout(self.inner.settings.tick(), call).await {
            Ok(Ok(_)) => tracing::info!(lease = %name, "shard lease released"),
            Ok(Err(kube::Error::Api(s))) if s.code == 404 => {}
            Ok(Err(e)) => {
                tracing::warn!(lease = %name, error = %e, "cannot delete the shard lease; the others take over when it expires")
            }
            Err(_) => {
                tracing::warn!(lease = %name, "deleting the shard lease timed out; the others take over when it expires")
            }
        }
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        if let Some(task) = self
            .task
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Live: renewed and listed within `lease_duration`, and renewing for at least one tick
    /// (by then every other replica has listed our Lease, so a joining replica doesn't collect
    /// alongside the one its CRs come from).
    fn self_live(&self, state: &State, now: Instant) -> bool {
        let within = |t: Option<Instant>| {
            t.is_some_and(|t| now.saturating_duration_since(t) < self.settings.lease_duration)
        };
        !state.stopped
            && within(state.renewed_at)
            && within(state.listed_at)
            && state
                .joined_at
                .is_some_and(|t| now.saturating_duration_since(t) >= self.settings.tick())
    }

    /// When we stop being live unless a renewal succeeds first.
    fn self_expiry(&self) -> Option<Instant> {
        let state = self.lock();
        let renewed = state.renewed_at?;
        let listed = state.listed_at?;
        Some(renewed.min(listed) + self.settings.lease_duration)
    }

    async fn run(self: Arc<Self>) {
        let tick = self.settings.tick();
        loop {
            let started = Instant::now();
            self.watching(self.sync()).await;
            self.refresh();
            let next = started + tick;
            self.watching(tokio::time::sleep_until(next.into())).await;
        }
    }

    /// Run `fut`, refreshing the members if our own Lease expires meanwhile: a slow API server
    /// must not keep us owning CRs past the time the others see us as dead.
    async fn watching<F: Future<Output = ()>>(&self, fut: F) {
        tokio::pin!(fut);
        if let Some(expiry) = self.self_expiry()
            && expiry > Instant::now()
        {
            tokio::select! {
                () = &mut fut => return,
                () = tokio::time::sleep_until(expiry.into()) => self.refresh(),
            }
        }
        fut.await;
    }

    async fn sync(&self) {
        let limit = self.settings.tick();
        match tokio::time::timeout(limit, self.renew()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(lease = %self.settings.lease_name(), error = %e, "cannot renew the shard lease")
            }
            Err(_) => {
                tracing::warn!(lease = %self.settings.lease_name(), "renewing the shard lease timed out")
            }
        }
        match tokio::time::timeout(limit, self.list()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot list the shard leases"),
            Err(_) => tracing::warn!("listing the shard leases timed out"),
        }
    }

    fn lease_duration_seconds(&self) -> i32 {
        // Rounded up: the others must not expire us before we expire ourselves.
        let ms = self.settings.lease_duration.as_millis();
        i32::try_from(ms.div_ceil(1000)).unwrap_or(i32::MAX)
    }

    /// Create or replace our Lease with `renewTime` now; a 409 (someone else wrote it, or it was
    /// created meanwhile) or a 404 (deleted) re-reads and tries again.
    async fn renew(&self) -> Result<(), kube::Error> {
        let name = self.settings.lease_name();
        let pp = PostParams::default();
        let mut cached = self.lock().lease.clone();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let current = match cached.take() {
                Some(lease) => Some(lease),
                None => self.api.get_opt(&name).await?,
            };
            let sent = Instant::now();
            let now = MicroTime(Timestamp::now());
            let result = match current {
                None => {
                    let lease = Lease {
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            namespace: Some(self.settings.namespace.clone()),
                            labels: Some(BTreeMap::from([(
                                MEMBER_LABEL.to_string(),
                                self.settings.lease_prefix.clone(),
                            )])),
                            ..ObjectMeta::default()
                        },
                        spec: Some(LeaseSpec {
                            holder_identity: Some(self.settings.identity.clone()),
                            lease_duration_seconds: Some(self.lease_duration_seconds()),
                            acquire_time: Some(now.clone()),
                            renew_time: Some(now),
                            ..LeaseSpec::default()
                        }),
                    };
                    self.api.create(&pp, &lease).await
                }
                Some(mut lease) => {
                    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                    if spec.holder_identity.as_deref() != Some(&self.settings.identity)
                        || spec.acquire_time.is_none()
                    {
                        spec.acquire_time = Some(now.clone());
                    }
                    spec.holder_identity = Some(self.settings.identity.clone());
                    spec.lease_duration_seconds = Some(self.lease_duration_seconds());
                    spec.renew_time = Some(now);
                    lease
                        .metadata
                        .labels
                        .get_or_insert_with(BTreeMap::new)
                        .insert(MEMBER_LABEL.to_string(), self.settings.lease_prefix.clone());
                    self.api.replace(&name, &pp, &lease).await
                }
            };
            match result {
                Ok(lease) => {
                    let mut state = self.lock();
                    let continuous = state.renewed_at.is_some_and(|t| {
                        sent.saturating_duration_since(t) < self.settings.lease_duration
                    });
                    if !continuous {
                        state.joined_at = Some(sent);
                    }
                    state.renewed_at = Some(sent);
                    state.lease = Some(lease);
                    return Ok(());
                }
                // Stale or gone: the next attempt reads it afresh.
                Err(kube::Error::Api(s)) if (s.code == 409 || s.code == 404) && attempt < 3 => {}
                Err(e) => {
                    self.lock().lease = None;
                    return Err(e);
                }
            }
        }
    }

    /// The other replicas' Leases and when each expires.
    async fn list(&self) -> Result<(), kube::Error> {
        let selector = format!("{MEMBER_LABEL}={}", self.settings.lease_prefix);
        let leases = self
            .api
            .list(&ListParams::default().labels(&selector))
            .await?;
        let mut others = BTreeMap::new();
        for lease in leases.items {
            let Some(spec) = lease.spec else { continue };
            let Some(holder) = spec.holder_identity.filter(|h| !h.is_empty()) else {
                continue;
            };
            if holder == self.settings.identity {
                continue;
            }
            let Some(renewed) = spec.renew_time.or(spec.acquire_time) else {
                continue;
            };
            let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(0).max(0));
            let Ok(expiry) = renewed.0.checked_add(SignedDuration::from_secs(seconds)) else {
                continue;
            };
            // Two Leases with the same holder: the later expiry counts.
            let slot = others.entry(holder).or_insert(expiry);
            *slot = (*slot).max(expiry);
        }
        let mut state = self.lock();
        state.others = others;
        state.listed_at = Some(Instant::now());
        Ok(())
    }

    /// Recompute the live members; bump the version when they changed.
    fn refresh(&self) {
        let now = Timestamp::now();
        let mut state = self.lock();
        let mut members: Vec<String> = state
            .others
            .iter()
            .filter(|(_, expiry)| **expiry > now)
            .map(|(identity, _)| identity.clone())
            .collect();
        if self.self_live(&state, Instant::now()) {
            members.push(self.settings.identity.clone());
        }
        members.sort();
        if members != state.members {
            tracing::info!(
                identity = %self.settings.identity,
                members = ?members,
                self_live = members.contains(&self.settings.identity),
                "collector shard members changed"
            );
            state.members = members;
            self.version.fetch_add(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests;
