//! Kubernetes mode (DESIGN §8): the proxy's conversations with the API server.
//!
//! - [`tenants`]: a watcher over `MetricAccess` that fills the tenant store;
//! - [`status`]: the `status` subresource of each `MetricAccess`;
//! - [`secrets`]: Secrets of a CR's own namespace, for the collector's credentials (its
//!   [`SecretSource`](crate::collector::target::SecretSource));
//! - [`discovery`]: infrastructure Prometheus backends from Services, Pods, Endpoints or
//!   EndpointSlices;
//! - [`shard`]: which replica collects which CR (Leases + rendezvous hashing).
//!
//! Every call goes through a [`kube::Client`]; the tests point it at a simulated API server
//! ([`simulated`], wiremock), not a cluster.

pub mod discovery;
pub mod run;
pub mod secrets;
pub mod shard;
pub mod status;
pub mod tenants;

#[cfg(test)]
mod rbac_tests;
#[cfg(test)]
pub mod simulated;
#[cfg(test)]
mod tests;

/// The API server of the environment: in-cluster service account, else `KUBECONFIG` or
/// `~/.kube/config`.
pub async fn client() -> anyhow::Result<kube::Client> {
    crate::client::install_crypto_provider();
    kube::Client::try_default().await.map_err(|e| {
        anyhow::anyhow!(
            "cannot reach the Kubernetes API: {e}; in a pod, mount the service-account token; elsewhere set KUBECONFIG"
        )
    })
}

/// A client for an API server at `url` without credentials (tests, `kubectl proxy`).
pub fn client_for(url: &str) -> anyhow::Result<kube::Client> {
    crate::client::install_crypto_provider();
    let uri: http::Uri = url.parse()?;
    let config = kube::Config::new(uri);
    Ok(kube::Client::try_from(config)?)
}
