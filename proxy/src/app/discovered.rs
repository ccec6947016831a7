//! Backends from Kubernetes discovery ([`crate::k8s::discovery`]): every published group
//! list becomes a new backend pool in the running [`Runtime`] (settings and auth kept), and
//! is remembered so a config reload keeps it. Discovered groups replace `backends.groups`
//! once the first discovery result arrives.

use std::sync::{Arc, PoisonError};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{App, Runtime};
use crate::backend::{BackendError, BackendPool, GroupSettings};

impl App {
    /// Follow `rx` (from [`crate::k8s::discovery::spawn`]): on every change, swap the
    /// backends. Ends when the sender is gone or the state is dropped (the task holds no
    /// strong reference to it).
    pub fn follow_discovered_backends(
        &self,
        mut rx: watch::Receiver<Vec<GroupSettings>>,
    ) -> JoinHandle<()> {
        let state = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let groups = rx.borrow_and_update().clone();
                let Some(inner) = state.upgrade() else {
                    return;
                };
                let state = App { inner };
                if let Err(error) = state.use_discovered_backends(groups).await {
                    tracing::warn!(%error, "discovered backends not used, the previous ones keep serving");
                }
            }
        })
    }

    /// Serve reads from `groups` from now on: a new pool that inherits the health of members
    /// it shares with the old one, probes started, the old pool's probes stopped.
    pub async fn use_discovered_backends(
        &self,
        groups: Vec<GroupSettings>,
    ) -> Result<(), BackendError> {
        // Serialised with reloads, which also swap the runtime.
        let _guard = self.inner.reload_lock.lock().await;
        let old = self.runtime();
        let mut settings = old.settings.clone();
        settings.backends.groups = groups.clone();
        let pool = BackendPool::new(settings.backends.clone(), self.metrics().clone())?;
        *self
            .inner
            .discovered
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(groups);
        pool.inherit_health(&old.backends);
        pool.start_probes();
        let new = Runtime::from_parts(
            settings,
            old.auth.clone(),
            Arc::new(pool),
            old.rewrites.clone(),
        );
        self.inner.runtime.store(Arc::new(new));
        old.backends.stop_probes();
        Ok(())
    }

    /// The last discovered groups, if discovery has published any.
    pub fn discovered_backends(&self) -> Option<Vec<GroupSettings>> {
        self.inner
            .discovered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::tenant::TenantStore;

    fn group(name: &str, members: &[&str]) -> GroupSettings {
        GroupSettings {
            name: name.into(),
            members: members.iter().map(|m| m.to_string()).collect(),
        }
    }

    async fn wait_for_groups(state: &App, expected: &[GroupSettings]) {
        for _ in 0..200 {
            if state.runtime().backends.settings().groups == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "backends are {:?}, expected {expected:?}",
            state.runtime().backends.settings().groups
        );
    }

    #[tokio::test]
    async fn discovered_groups_replace_the_backends_and_keep_settings() {
        let settings = crate::http::tests::settings(
            vec!["http://127.0.0.1:1".into()],
            crate::http::tests::header_auth(),
        );
        let state = App::from_settings(settings, Arc::new(TenantStore::new()), None).unwrap();
        let max_body = state.runtime().settings.max_body_bytes;
        let (tx, rx) = watch::channel(Vec::new());
        let task = state.follow_discovered_backends(rx);

        let first = vec![
            group("infra", &["http://10.0.0.1:9090"]),
            group("apps", &["http://10.0.0.2:9090", "http://10.0.0.3:9090"]),
        ];
        tx.send(first.clone()).unwrap();
        wait_for_groups(&state, &first).await;
        assert_eq!(state.discovered_backends(), Some(first));
        assert_eq!(state.runtime().settings.backends.groups[0].name, "infra");
        assert_eq!(state.runtime().settings.max_body_bytes, max_body);

        let second = vec![group("infra", &["http://10.0.0.4:9090"])];
        tx.send(second.clone()).unwrap();
        wait_for_groups(&state, &second).await;

        drop(tx);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn a_reload_keeps_the_discovered_groups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.yaml");
        let tenants = dir.path().join("tenants");
        std::fs::create_dir(&tenants).unwrap();
        let yaml = format!(
            "tenants: {{ directory: {} }}\nbackends: {{ groups: [{{ name: static, members: [\"http://127.0.0.1:1\"] }}] }}\ndiscovery:\n  kubernetes: {{ port: web }}\nauth: {{ mode: header }}\n",
            tenants.display()
        );
        std::fs::write(&path, yaml).unwrap();
        let config = crate::config::Config::load(&path).unwrap();
        let settings = super::super::RuntimeSettings::from_config(&config).unwrap();
        let state = App::from_settings(settings, Arc::new(TenantStore::new()), Some(path)).unwrap();
        assert_eq!(state.runtime().backends.settings().groups[0].name, "static");

        let discovered = vec![group("infra", &["http://10.0.0.1:9090"])];
        state
            .use_discovered_backends(discovered.clone())
            .await
            .unwrap();
        state.reload().await.unwrap();
        assert_eq!(state.runtime().backends.settings().groups, discovered);
    }
}
