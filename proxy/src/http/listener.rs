//! Serving a router on a TCP listener, optionally over TLS (rustls), with hyper's limits set:
//! a connection that does not send a request's complete headers within
//! `server.header_read_timeout` is closed, a request head over `server.max_header_bytes` gets
//! 431, a TLS handshake has as long as the headers. Graceful: on shutdown, accepting stops and
//! open connections finish their requests.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use crate::config::{ServerConfig, TlsServerConfig};

mod quiet;
use quiet::Quiet;

/// Connection-level settings of one listener.
#[derive(Clone)]
pub struct ListenerOptions {
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    /// Serve TLS with this server config.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl std::fmt::Debug for ListenerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerOptions")
            .field("header_read_timeout", &self.header_read_timeout)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl ListenerOptions {
    /// Plain HTTP with the config's limits (the admin listener).
    pub fn plain(server: &ServerConfig) -> ListenerOptions {
        ListenerOptions {
            header_read_timeout: server.header_read_timeout,
            max_header_bytes: server.max_header_bytes,
            tls: None,
        }
    }

    /// The tenant listener: the config's limits and `server.tls` (its files are read here).
    pub fn tenant(server: &ServerConfig) -> anyhow::Result<ListenerOptions> {
        let tls = match &server.tls {
            Some(tls) => Some(Arc::new(tls_config(tls)?)),
            None => None,
        };
        Ok(ListenerOptions {
            tls,
            ..ListenerOptions::plain(server)
        })
    }
}

/// The rustls server config of `server.tls` (HTTP/2 and HTTP/1.1 offered by ALPN).
pub fn tls_config(tls: &TlsServerConfig) -> anyhow::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(&tls.cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error("server.tls.cert_file", &tls.cert_file, e))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "server.tls.cert_file: no certificate in {}",
        tls.cert_file.display()
    );
    let key = PrivateKeyDer::from_pem_file(&tls.key_file)
        .map_err(|e| pem_error("server.tls.key_file", &tls.key_file, e))?;
    crate::client::install_crypto_provider();
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("server.tls: the key does not fit the certificate, or is not usable")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn pem_error(key: &str, path: &Path, error: rustls::pki_types::pem::Error) -> anyhow::Error {
    anyhow::anyhow!("{key}: can't read {}: {error}", path.display())
}

/// Serve `router` on `listener` until `shutdown` resolves, then let open connections finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ListenerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_buf_size(options.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(options.max_header_bytes).unwrap_or(u32::MAX));
    let builder = Arc::new(builder);
    let acceptor = options.tls.clone().map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors and the like: wait a little, keep serving.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let builder = builder.clone();
        match &acceptor {
            None => {
                let connection = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                let watched = graceful.watch(connection);
                tokio::spawn(Quiet::new(async move {
                    if let Err(error) = watched.await {
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                }));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let handshake_timeout = options.header_read_timeout;
                let watcher = graceful.watcher();
                tokio::spawn(Quiet::new(async move {
                    let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let connection = builder
                        .serve_connection_with_upgrades(TokioIo::new(tls), service)
                        .into_owned();
                    if let Err(error) = watcher.watch(connection).await {
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                }));
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
