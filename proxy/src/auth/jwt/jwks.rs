//! The JWKS behind `auth.mode: jwt`: parsing keys (each key's algorithm fixed from the key
//! itself, never from a token) and keeping them current, from a file (re-read when its mtime or
//! size changes) or a URL (fetched at start, every `jwks_refresh`, and at most once per
//! [`UNKNOWN_KID_REFETCH`] when a token names a key id the set does not hold).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::auth::AuthError;

/// A token naming an unknown `kid` triggers a fetch at most this often (a flood of made-up
/// key ids must not become a flood of requests to the issuer).
pub const UNKNOWN_KID_REFETCH: Duration = Duration::from_secs(30);
/// How long a JWKS fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// A JWKS is a few kilobytes; anything much larger is not one.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// One verification key and the only algorithm it verifies.
pub struct Key {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub key: DecodingKey,
}

pub type Keys = Arc<Vec<Key>>;

/// Parse a JWKS document. Keys that can't verify signatures (encryption keys, symmetric keys,
/// unsupported curves) are skipped; a set without one usable key is an error.
pub fn parse(bytes: &[u8]) -> Result<Vec<Key>, String> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(bytes)
        .map_err(|e| format!("not a JWKS ({{\"keys\": [...]}}): {e}"))?;
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for (i, value) in set.keys.into_iter().enumerate() {
        let parsed = serde_json::from_value::<Jwk>(value)
            .map_err(|e| e.to_string())
            .and_then(|jwk| key(&jwk));
        match parsed {
            Ok(key) => keys.push(key),
            Err(reason) => skipped.push(format!("keys[{i}]: {reason}")),
        }
    }
    if keys.is_empty() {
        return Err(format!(
            "no usable signing key{}",
            if skipped.is_empty() {
                String::new()
            } else {
                format!(" ({})", skipped.join("; "))
            }
        ));
    }
    if !skipped.is_empty() {
        tracing::debug!(skipped = %skipped.join("; "), "JWKS keys skipped");
    }
    Ok(keys)
}

/// A JWK → a key bound to one algorithm: the JWK's `alg` when given (it must fit the key
/// type), else the key type's usual one. Symmetric keys are refused: anyone who can verify
/// with them could also sign.
fn key(jwk: &Jwk) -> Result<Key, String> {
    if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
        return Err("an encryption key (use: enc)".into());
    }
    let declared = match jwk.common.key_algorithm {
        Some(a) => Some(
            a.to_string()
                .parse::<Algorithm>()
                .map_err(|_| format!("alg {a} is not a signature algorithm"))?,
        ),
        None => None,
    };
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => {
            let alg = declared.unwrap_or(Algorithm::RS256);
            let rsa = [
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ];
            rsa.contains(&alg).then_some(alg)
        }
        AlgorithmParameters::EllipticCurve(p) => {
            let by_curve = match p.curve {
                EllipticCurve::P256 => Algorithm::ES256,
                EllipticCurve::P384 => Algorithm::ES384,
                _ => return Err(format!("curve {:?} is not supported", p.curve)),
            };
            (declared.unwrap_or(by_curve) == by_curve).then_some(by_curve)
        }
        AlgorithmParameters::OctetKeyPair(p) => {
            if p.curve != EllipticCurve::Ed25519 {
                return Err(format!("curve {:?} is not supported", p.curve));
            }
            // The verifier slices 32 bytes out of the key; a shorter one must not reach it.
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p.x.trim_end_matches('='))
                .map_err(|_| "x is not base64url".to_string())?;
            if raw.len() != 32 {
                return Err("an Ed25519 key must be 32 bytes".into());
            }
            (declared.unwrap_or(Algorithm::EdDSA) == Algorithm::EdDSA).then_some(Algorithm::EdDSA)
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err("symmetric keys (kty oct, HS*) are never accepted".into());
        }
        _ => return Err("unsupported key type".into()),
    };
    let alg = alg.ok_or_else(|| format!("alg {declared:?} does not fit the key type"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("bad key material: {e}"))?;
    Ok(Key {
        kid: jwk.common.key_id.clone(),
        alg,
        key,
    })
}

/// Where the keys come from, and the keys last read from there.
pub enum Source {
    File(FileSource),
    Url(Arc<UrlSource>),
}

impl Source {
    /// The keys to verify with now.
    pub async fn keys(&self) -> Result<Keys, AuthError> {
        match self {
            Source::File(f) => Ok(f.keys()),
            Source::Url(u) => u.keys().await,
        }
    }

    /// The keys after a token named a `kid` missing from `seen` (a rotation the proxy has not
    /// picked up yet). A file is re-read on every request anyway.
    pub async fn keys_for_unknown_kid(&self, seen: &Keys) -> Result<Keys, AuthError> {
        match self {
            Source::File(_) => Ok(seen.clone()),
            Source::Url(u) => u.refetch_for_unknown_kid(seen).await,
        }
    }
}

/// (modification time, size): a rewritten file changes one or the other.
type Stamp = (Option<SystemTime>, u64);

pub struct FileSource {
    path: PathBuf,
    state: Mutex<(Stamp, Keys)>,
}

impl FileSource {
    /// Read the file now: a missing or broken file is a config error.
    pub fn open(path: PathBuf) -> Result<FileSource, String> {
        let stamp = stamp(&path).map_err(|e| format!("jwks_file {}: {e}", path.display()))?;
        let bytes =
            std::fs::read(&path).map_err(|e| format!("jwks_file {}: {e}", path.display()))?;
        let keys = parse(&bytes).map_err(|e| format!("jwks_file {}: {e}", path.display()))?;
        Ok(FileSource {
            path,
            state: Mutex::new((stamp, Arc::new(keys))),
        })
    }

    /// The keys, re-read first when the file changed. A file that can't be read or parsed
    /// (half-written) keeps the previous keys until it changes again.
    fn keys(&self) -> Keys {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let Ok(now) = stamp(&self.path) else {
            return state.1.clone();
        };
        if now != state.0 {
            state.0 = now;
            match std::fs::read(&self.path)
                .map_err(|e| e.to_string())
                .and_then(|b| parse(&b))
            {
                Ok(keys) => {
                    tracing::info!(path = %self.path.display(), keys = keys.len(), "JWKS file reloaded");
                    state.1 = Arc::new(keys);
                }
                Err(error) => {
                    tracing::warn!(path = %self.path.display(), %error, "JWKS file unreadable; keeping the previous keys");
                }
            }
        }
        state.1.clone()
    }
}

fn stamp(path: &std::path::Path) -> std::io::Result<Stamp> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.modified().ok(), meta.len()))
}

pub struct UrlSource {
    url: String,
    client: reqwest::Client,
    refresh: Duration,
    state: Mutex<UrlState>,
    /// One fetch at a time; requests that find a fetch running use the keys they have.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct UrlState {
    keys: Option<Keys>,
    /// Last fetch attempt (successful or not) and how many there were.
    attempted_at: Option<Instant>,
    attempts: u64,
    unknown_kid_fetch_at: Option<Instant>,
}

impl UrlSource {
    pub fn new(url: String, refresh: Duration) -> Result<UrlSource, String> {
        crate::client::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| format!("jwks_url: cannot build an HTTP client: {e}"))?;
        Ok(UrlSource {
            url,
            client,
            refresh,
            state: Mutex::new(UrlState::default()),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, UrlState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn keys(&self) -> Result<Keys, AuthError> {
        let (keys, due, attempts) = {
            let s = self.state();
            let due = s.attempted_at.is_none_or(|t| t.elapsed() >= self.refresh);
            (s.keys.clone(), due, s.attempts)
        };
        match keys {
            // Stale keys still verify while one request refreshes them.
            Some(keys) => {
                if due && let Ok(_guard) = self.fetching.try_lock() {
                    self.fetch().await;
                    return Ok(self.state().keys.clone().unwrap_or(keys));
                }
                Ok(keys)
            }
            None => {
                let _guard = self.fetching.lock().await;
                // Whoever held the lock may have just fetched: don't fetch twice.
                if self.state().attempts == attempts {
                    self.fetch().await;
                }
                self.state()
                    .keys
                    .clone()
                    .ok_or_else(|| AuthError::Unavailable("the JWKS could not be fetched".into()))
            }
        }
    }

    /// The first fetch, started with the authenticator so the first request finds keys.
    pub async fn keys_at_start(&self) {
        // A failure is logged by `fetch`; the first request tries again.
        let _ = self.keys().await;
    }

    async fn refetch_for_unknown_kid(&self, seen: &Keys) -> Result<Keys, AuthError> {
        let _guard = self.fetching.lock().await;
        {
            let mut s = self.state();
            if let Some(keys) = &s.keys
                && !Arc::ptr_eq(keys, seen)
            {
                return Ok(keys.clone());
            }
            if s.unknown_kid_fetch_at
                .is_some_and(|t| t.elapsed() < UNKNOWN_KID_REFETCH)
            {
                return Ok(seen.clone());
            }
            s.unknown_kid_fetch_at = Some(Instant::now());
        }
        self.fetch().await;
        Ok(self.state().keys.clone().unwrap_or_else(|| seen.clone()))
    }

    /// Fetch once; on failure keep the keys there are (and warn).
    pub async fn fetch(&self) {
        let result = self.download().await;
        let mut s = self.state();
        s.attempted_at = Some(Instant::now());
        s.attempts += 1;
        match result {
            Ok(keys) => s.keys = Some(Arc::new(keys)),
            Err(error) => {
                tracing::warn!(url = %self.url, %error, "JWKS fetch failed; keeping the previous keys")
            }
        }
    }

    async fn download(&self) -> Result<Vec<Key>, String> {
        let response = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
        {
            return Err("larger than 1 MiB".into());
        }
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        if body.len() > MAX_JWKS_BYTES {
            return Err("larger than 1 MiB".into());
        }
        parse(&body)
    }
}
