//! Secrets for the collector's credentials (`basicAuth.passwordSecret`,
//! `bearerTokenSecret`), read with `get` from the CR's own namespace: a `SecretKeyRef` has no
//! namespace field, and the API handle is built for the CR's namespace, so another
//! namespace's Secret can't be named. Answers are cached for `ttl`, so a rotated password is
//! used within `ttl` without a restart; errors are cached briefly so a missing Secret is not
//! asked for on every cycle of every CR.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use crate::collector::target::SecretSource;
use crate::tenant::crd::SecretKeyRef;

/// Failed lookups are retried after at most this long.
const ERROR_TTL: Duration = Duration::from_secs(5);

type Entry = (Instant, Result<Secret, String>);

pub struct KubeSecrets {
    client: kube::Client,
    ttl: Duration,
    cache: Mutex<HashMap<(String, String), Entry>>,
}

impl std::fmt::Debug for KubeSecrets {
    // The cache holds secret values: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSecrets")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl KubeSecrets {
    pub fn new(client: kube::Client, ttl: Duration) -> KubeSecrets {
        KubeSecrets {
            client,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The value of `reference.key` in Secret `reference.name` of `namespace`.
    pub async fn get(&self, namespace: &str, reference: &SecretKeyRef) -> Result<String, String> {
        let secret = self.secret(namespace, &reference.name).await?;
        let value = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&reference.key))
            .map(|b| b.0.clone())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(&reference.key))
                    .map(|s| s.clone().into_bytes())
            })
            .ok_or_else(|| {
                format!(
                    "Secret {namespace}/{} has no key {:?}",
                    reference.name, reference.key
                )
            })?;
        String::from_utf8(value).map_err(|_| {
            format!(
                "Secret {namespace}/{} key {:?} is not UTF-8 text",
                reference.name, reference.key
            )
        })
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Secret, String> {
        let key = (namespace.to_string(), name.to_string());
        if let Some((at, answer)) = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
        {
            let ttl = if answer.is_ok() {
                self.ttl
            } else {
                self.ttl.min(ERROR_TTL)
            };
            if at.elapsed() < ttl {
                return answer.clone();
            }
        }
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let answer = api
            .get(name)
            .await
            .map_err(|e| describe(namespace, name, &e));
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, (Instant::now(), answer.clone()));
        answer
    }
}

impl SecretSource for KubeSecrets {
    fn read<'a>(
        &'a self,
        namespace: &'a str,
        reference: &'a SecretKeyRef,
    ) -> futures::future::BoxFuture<'a, Result<String, String>> {
        Box::pin(self.get(namespace, reference))
    }
}

fn describe(namespace: &str, name: &str, error: &kube::Error) -> String {
    match error {
        kube::Error::Api(s) if s.code == 404 => format!("Secret {namespace}/{name} not found"),
        kube::Error::Api(s) if s.code == 403 => format!(
            "Secret {namespace}/{name}: the proxy's ServiceAccount may not get Secrets in {namespace} (RBAC)"
        ),
        other => format!("Secret {namespace}/{name}: API server: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::simulated::{SECRET, SimulatedApiServer};
    use serde_json::json;

    fn reference(name: &str, key: &str) -> SecretKeyRef {
        SecretKeyRef {
            name: name.into(),
            key: key.into(),
        }
    }

    #[tokio::test]
    async fn simulated_reads_own_namespace_and_follows_rotation() {
        let api = SimulatedApiServer::start(&[SECRET]).await;
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        api.apply(SECRET, json!({"metadata": {"namespace": "team-a", "name": "rw"}, "data": {"password": b64("one")}}));
        api.apply(SECRET, json!({"metadata": {"namespace": "team-b", "name": "rw"}, "data": {"password": b64("other-tenant")}}));
        let secrets = KubeSecrets::new(api.client(), Duration::from_millis(300));

        assert_eq!(
            secrets.get("team-a", &reference("rw", "password")).await,
            Ok("one".into())
        );
        let missing_key = secrets
            .get("team-a", &reference("rw", "nope"))
            .await
            .unwrap_err();
        assert!(missing_key.contains("has no key \"nope\""), "{missing_key}");
        let missing = secrets
            .get("team-a", &reference("gone", "password"))
            .await
            .unwrap_err();
        assert!(missing.contains("team-a/gone not found"), "{missing}");

        // Rotation: the cached value is used until the TTL passes, then the new one.
        api.apply(SECRET, json!({"metadata": {"namespace": "team-a", "name": "rw"}, "data": {"password": b64("two")}}));
        assert_eq!(
            secrets.get("team-a", &reference("rw", "password")).await,
            Ok("one".into())
        );
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(
            secrets.get("team-a", &reference("rw", "password")).await,
            Ok("two".into())
        );

        let paths: Vec<String> = api.requests().await.into_iter().map(|r| r.path).collect();
        assert!(
            paths
                .iter()
                .all(|p| p.starts_with("/api/v1/namespaces/team-a/secrets/")),
            "{paths:?}"
        );
        assert_eq!(
            paths.iter().filter(|p| p.ends_with("/rw")).count(),
            2,
            "cached between reads: {paths:?}"
        );
    }
}
