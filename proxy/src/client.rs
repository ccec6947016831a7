//! What every outbound HTTP client of the proxy shares: rustls' crypto provider, installed
//! once per process, and one-line descriptions of errors (reqwest's and any other). Backends, collector
//! targets, ingest destinations, JWKS fetches and the Kubernetes API client all use these.

/// Install rustls' ring provider once per process (reqwest is built without one).
pub fn install_crypto_provider() {
    // Err means another provider is already installed: that's fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A reqwest error as one line, with its cause (reqwest's Display hides it).
pub fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    match std::error::Error::source(error) {
        Some(cause) => format!("{kind}: {}", chain(cause)),
        None => kind.to_string(),
    }
}

/// Any error as one line, with its causes.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
