//! `auth.mode: kubernetes`: a service-account token is checked by the API server (TokenReview);
//! the token's namespace is the tenant. Optionally the token's user must also be allowed a
//! verb on a resource in that namespace (SubjectAccessReview). Answers (accepted and rejected)
//! are cached per SHA-256 of the token; the token itself is never stored or logged. When the
//! API server can't answer, the request fails with 503: an outage never lets a request in.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, UserInfo};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;

use super::AuthError;

/// How long one call to the API server may take before the request gets 503.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Cache bound: a flood of distinct (invalid) tokens must not grow memory without limit.
const MAX_CACHE_ENTRIES: usize = 10_000;
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// `auth.kubernetes`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesSettings {
    /// TokenReview `spec.audiences`; empty: the API server's own audiences.
    pub audiences: Vec<String>,
    pub cache_ttl: Duration,
    pub access_review: Option<AccessReviewSettings>,
}

/// The permission a token's user must hold in the tenant namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessReviewSettings {
    pub verb: String,
    pub group: String,
    pub resource: String,
}

/// Token → tenant through the API server, with a bounded cache.
pub(crate) struct TokenReviewer {
    client: kube::Client,
    settings: KubernetesSettings,
    cache: Mutex<Cache>,
    call_timeout: Duration,
}

impl std::fmt::Debug for TokenReviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewer")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl TokenReviewer {
    pub(crate) fn new(client: kube::Client, settings: KubernetesSettings) -> Self {
        Self {
            client,
            settings,
            cache: Mutex::new(Cache::default()),
            call_timeout: CALL_TIMEOUT,
        }
    }

    #[cfg(test)]
    pub(crate) fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// The tenant (service-account namespace) of `token`.
    pub(crate) async fn identify(&self, token: &str) -> Result<String, AuthError> {
        let key = super::sha256(token.as_bytes());
        let now = Instant::now();
        if let Some(answer) = self.cache().get(&key, now) {
            return answer;
        }
        let answer = self.review(token).await;
        // An outage is not an answer about the token: the next request asks again.
        if !matches!(answer, Err(AuthError::Unavailable(_))) {
            self.cache().insert(
                key,
                answer.clone(),
                Instant::now() + self.settings.cache_ttl,
            );
        }
        answer
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        // The cache holds no invariant a panic could break half-way.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn review(&self, token: &str) -> Result<String, AuthError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: (!self.settings.audiences.is_empty())
                    .then(|| self.settings.audiences.clone()),
            },
            ..Default::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let answer = self
            .call("TokenReview", api.create(&PostParams::default(), &review))
            .await?;
        let status = answer.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            return Err(AuthError::Rejected(
                "the Kubernetes API server did not authenticate the token".into(),
            ));
        }
        let user = status.user.unwrap_or_default();
        let username = user.username.clone().unwrap_or_default();
        let tenant = service_account_namespace(&username).ok_or_else(|| {
            AuthError::Rejected(format!(
                "the token belongs to {username:?}, not to a service account (system:serviceaccount:<namespace>:<name>)"
            ))
        })?;
        crate::names::validate_tenant_id(tenant)
            .map_err(|e| AuthError::Rejected(format!("service-account namespace: {e}")))?;
        if let Some(access) = &self.settings.access_review {
            self.access_review(&user, tenant, access).await?;
        }
        Ok(tenant.to_string())
    }

    async fn access_review(
        &self,
        user: &UserInfo,
        tenant: &str,
        access: &AccessReviewSettings,
    ) -> Result<(), AuthError> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username.clone(),
                groups: user.groups.clone(),
                uid: user.uid.clone(),
                extra: user.extra.clone(),
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(tenant.to_string()),
                    verb: Some(access.verb.clone()),
                    group: Some(access.group.clone()),
                    resource: Some(access.resource.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let answer = self
            .call(
                "SubjectAccessReview",
                api.create(&PostParams::default(), &review),
            )
            .await?;
        if answer.status.is_some_and(|s| s.allowed) {
            return Ok(());
        }
        let group = if access.group.is_empty() {
            String::new()
        } else {
            format!(".{}", access.group)
        };
        Err(AuthError::Forbidden(format!(
            "{} may not {} {}{group} in namespace {tenant}",
            user.username.as_deref().unwrap_or("the token's user"),
            access.verb,
            access.resource,
        )))
    }

    /// One API call with a deadline; every failure is an outage (503), never an answer.
    async fn call<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, AuthError> {
        let error = match tokio::time::timeout(self.call_timeout, call).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(e)) => describe(&e),
            Err(_) => format!("no answer within {:?}", self.call_timeout),
        };
        tracing::warn!(review = what, %error, "Kubernetes API server unavailable for authentication");
        Err(AuthError::Unavailable(format!(
            "{what} failed: the Kubernetes API server is unavailable"
        )))
    }
}

/// An API error described without the server's free-text message (which could quote the
/// request, and the request holds the token).
fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            format!("API server answered {} {}", status.code, status.reason)
        }
        other => other.to_string(),
    }
}

/// `system:serviceaccount:<namespace>:<name>` → `<namespace>`.
pub(crate) fn service_account_namespace(username: &str) -> Option<&str> {
    let rest = username.strip_prefix(SERVICE_ACCOUNT_PREFIX)?;
    let (namespace, name) = rest.split_once(':')?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains(':')).then_some(namespace)
}

/// Answers per token hash, each until its deadline.
#[derive(Default)]
struct Cache {
    entries: HashMap<[u8; 32], (Instant, Result<String, AuthError>)>,
}

impl Cache {
    fn get(&mut self, key: &[u8; 32], now: Instant) -> Option<Result<String, AuthError>> {
        match self.entries.get(key) {
            Some((until, answer)) if *until > now => Some(answer.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn insert(&mut self, key: [u8; 32], answer: Result<String, AuthError>, until: Instant) {
        if self.entries.len() >= MAX_CACHE_ENTRIES && !self.entries.contains_key(&key) {
            let now = Instant::now();
            self.entries.retain(|_, (deadline, _)| *deadline > now);
            // Every entry has the same TTL, so the earliest deadline is the oldest entry.
            if self.entries.len() >= MAX_CACHE_ENTRIES
                && let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (deadline, _))| *deadline)
                    .map(|(k, _)| *k)
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(key, (until, answer));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests;
