//! Tenant identification: request → tenant namespace. Modes: `header` (a header set by a
//! trusted gateway, or the `namespace` parameter, as the Go proxy did), `bearer` (static
//! tokens, stored as SHA-256 hashes, compared in constant time), `kubernetes` (a
//! service-account token checked with a TokenReview, [`kubernetes`]) and `jwt` (a JWT checked
//! against a JWKS, [`jwt`]). Whether the tenant exists is the HTTP layer's business (it looks
//! the name up in the tenant store), and so is the answer to a refused request: this module
//! reads headers and a parameter value and says why it found no tenant ([`AuthError`]); the
//! HTTP layer turns that into a status and Prometheus' error envelope. Tokens are never logged
//! or kept in clear.

pub mod jwt;
pub mod kubernetes;

use std::path::PathBuf;
use std::sync::Arc;

use http::header::{self, AsHeaderName};
use http::{HeaderMap, HeaderName};
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

/// What the authenticator is built from (taken from `config.auth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSettings {
    Header {
        /// Header carrying the tenant, e.g. `X-Tenant-Namespace`.
        header: String,
        /// Query/form parameter carrying the tenant (`namespace`); `None` disables it.
        query_param: Option<String>,
    },
    Bearer {
        tokens: Vec<TokenSetting>,
    },
    Kubernetes(kubernetes::KubernetesSettings),
    Jwt(jwt::JwtSettings),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSetting {
    pub tenant: String,
    pub source: TokenSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// Hex SHA-256 of the token.
    Sha256(String),
    /// A file holding the raw token (surrounding whitespace ignored); hashed at load.
    File(PathBuf),
}

/// A configuration the authenticator can't be built from.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("auth.header.name {0:?} is not a valid HTTP header name")]
    HeaderName(String),
    #[error(
        "auth.bearer.tokens: tenant {tenant:?}: sha256 must be 64 hex digits (the SHA-256 of the token, e.g. from `printf %s TOKEN | sha256sum`)"
    )]
    BadHash { tenant: String },
    #[error("auth.bearer.tokens: tenant {tenant:?}: can't read token_file {path}: {reason}")]
    TokenFile {
        tenant: String,
        path: String,
        reason: String,
    },
    #[error("auth.bearer.tokens: tenant {tenant:?}: token_file {path} is empty")]
    EmptyTokenFile { tenant: String, path: String },
    #[error("auth.bearer.tokens is empty: no tenant could ever authenticate")]
    NoTokens,
    #[error(
        "auth.mode kubernetes needs the Kubernetes API (in-cluster service account or KUBECONFIG)"
    )]
    NeedsKubernetes,
    #[error("auth.jwt: {0}")]
    Jwt(String),
}

/// Why a request has no tenant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing tenant: set the {header} header{}", param.as_ref().map(|p| format!(" or the {p:?} parameter")).unwrap_or_default())]
    MissingTenant {
        header: String,
        param: Option<String>,
    },
    #[error("missing bearer token: send Authorization: Bearer <token>")]
    MissingToken,
    #[error("invalid bearer token")]
    InvalidToken,
    /// A token that was checked and refused; the reason never quotes the token.
    #[error("invalid bearer token: {0}")]
    Rejected(String),
    /// The token is valid but its user may not do what the config requires.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The token could not be checked (the API server or the key source is unreachable).
    #[error("authentication unavailable: {0}")]
    Unavailable(String),
    #[error("the {0} header is given more than once")]
    DuplicateHeader(String),
    #[error(
        "the tenant is given twice with different values ({header} header and {param:?} parameter)"
    )]
    Conflict { header: String, param: String },
    #[error("the {0} header is not valid visible ASCII")]
    Malformed(String),
}

impl AuthError {
    /// Bounded metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingTenant { .. } | AuthError::MissingToken => "missing",
            AuthError::InvalidToken | AuthError::Rejected(_) => "invalid_token",
            AuthError::Forbidden(_) => "forbidden",
            AuthError::Unavailable(_) => "unavailable",
            AuthError::DuplicateHeader(_) => "duplicate",
            AuthError::Conflict { .. } => "conflict",
            AuthError::Malformed(_) => "malformed",
        }
    }
}

#[derive(Clone)]
struct TokenEntry {
    hash: [u8; 32],
    tenant: String,
}

#[derive(Clone)]
enum Mode {
    Header {
        name: HeaderName,
        query_param: Option<String>,
    },
    Bearer {
        tokens: Vec<TokenEntry>,
    },
    Kubernetes(Arc<kubernetes::TokenReviewer>),
    Jwt(Arc<jwt::JwtVerifier>),
}

/// Request → tenant name.
#[derive(Clone)]
pub struct Authenticator {
    mode: Mode,
}

impl std::fmt::Debug for Authenticator {
    // Hashes stay out of Debug output too.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.mode {
            Mode::Header { name, query_param } => f
                .debug_struct("Authenticator::Header")
                .field("header", name)
                .field("query_param", query_param)
                .finish(),
            Mode::Bearer { tokens } => f
                .debug_struct("Authenticator::Bearer")
                .field("tokens", &tokens.len())
                .finish(),
            Mode::Kubernetes(reviewer) => reviewer.fmt(f),
            Mode::Jwt(verifier) => verifier.fmt(f),
        }
    }
}

impl Authenticator {
    /// `kube` is the API server client; `auth.mode: kubernetes` needs it. A JWKS file is read
    /// here (a broken one is a config error); a JWKS URL is fetched on first use.
    pub fn new(
        settings: &AuthSettings,
        kube: Option<&kube::Client>,
    ) -> Result<Self, AuthConfigError> {
        let mode = match settings {
            AuthSettings::Header {
                header,
                query_param,
            } => Mode::Header {
                name: HeaderName::try_from(header.as_str())
                    .map_err(|_| AuthConfigError::HeaderName(header.clone()))?,
                query_param: query_param.clone().filter(|p| !p.is_empty()),
            },
            AuthSettings::Bearer { tokens } => {
                if tokens.is_empty() {
                    return Err(AuthConfigError::NoTokens);
                }
                let tokens = tokens
                    .iter()
                    .map(token_entry)
                    .collect::<Result<Vec<_>, _>>()?;
                Mode::Bearer { tokens }
            }
            AuthSettings::Kubernetes(settings) => {
                let client = kube.ok_or(AuthConfigError::NeedsKubernetes)?;
                Mode::Kubernetes(Arc::new(kubernetes::TokenReviewer::new(
                    client.clone(),
                    settings.clone(),
                )))
            }
            AuthSettings::Jwt(settings) => Mode::Jwt(Arc::new(
                jwt::JwtVerifier::new(settings.clone()).map_err(AuthConfigError::Jwt)?,
            )),
        };
        Ok(Self { mode })
    }

    /// Whether the tenant comes from a bearer token (every mode but `header`).
    pub fn is_bearer(&self) -> bool {
        !matches!(self.mode, Mode::Header { .. })
    }

    /// The parameter (query or form) that may name the tenant in header mode, if any: the
    /// caller reads its value and hands it to [`Authenticator::identify`].
    pub fn tenant_param(&self) -> Option<&str> {
        match &self.mode {
            Mode::Header { query_param, .. } => query_param.as_deref(),
            _ => None,
        }
    }

    /// The tenant a request claims (header mode) or proves (token modes). `param` is the value
    /// of the [`Authenticator::tenant_param`] parameter (ignored by the token modes).
    pub async fn identify(
        &self,
        headers: &HeaderMap,
        param: Option<&str>,
    ) -> Result<String, AuthError> {
        match &self.mode {
            Mode::Header { name, query_param } => {
                let from_header = single_header(headers, name)?;
                let from_param = param.filter(|v| !v.is_empty() && query_param.is_some());
                match (from_header, from_param) {
                    (Some(h), Some(p)) if h != p => Err(AuthError::Conflict {
                        header: name.to_string(),
                        param: query_param.clone().unwrap_or_default(),
                    }),
                    (Some(h), _) => Ok(h),
                    (None, Some(p)) => Ok(p.to_string()),
                    (None, None) => Err(AuthError::MissingTenant {
                        header: name.to_string(),
                        param: query_param.clone(),
                    }),
                }
            }
            Mode::Bearer { tokens } => {
                let token = bearer_token(headers)?;
                lookup(tokens, &sha256(token.as_bytes())).ok_or(AuthError::InvalidToken)
            }
            Mode::Kubernetes(reviewer) => reviewer.identify(&bearer_token(headers)?).await,
            Mode::Jwt(verifier) => verifier.identify(&bearer_token(headers)?).await,
        }
    }
}

/// The token of `Authorization: Bearer <token>`.
fn bearer_token(headers: &HeaderMap) -> Result<String, AuthError> {
    let Some(value) = single_header(headers, &header::AUTHORIZATION)? else {
        return Err(AuthError::MissingToken);
    };
    let (scheme, token) = value.split_once(' ').unwrap_or((value.as_str(), ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::InvalidToken);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::MissingToken);
    }
    Ok(token.to_string())
}

/// Compare against every entry without an early exit, so timing does not tell how many
/// hashes (or which) were compared.
fn lookup(tokens: &[TokenEntry], hash: &[u8; 32]) -> Option<String> {
    let mut found = subtle::Choice::from(0);
    let mut index = 0u32;
    for (i, entry) in tokens.iter().enumerate() {
        let equal = entry.hash.ct_eq(hash);
        let first = equal & !found;
        index = u32::conditional_select(&index, &(i as u32), first);
        found |= equal;
    }
    if bool::from(found) {
        tokens.get(index as usize).map(|e| e.tenant.clone())
    } else {
        None
    }
}

/// The non-empty value of a header given at most once.
fn single_header(headers: &HeaderMap, name: &HeaderName) -> Result<Option<String>, AuthError> {
    match header_value(headers, name) {
        Ok(text) => Ok(text.filter(|t| !t.is_empty()).map(str::to_string)),
        Err(HeaderError::Duplicate) => Err(AuthError::DuplicateHeader(name.to_string())),
        Err(HeaderError::Malformed) => Err(AuthError::Malformed(name.to_string())),
    }
}

/// Why a header naming the tenant can't be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// Given more than once: which copy would a backend read?
    Duplicate,
    /// Not visible ASCII.
    Malformed,
}

/// The value of header `name`, trimmed, when it is given once; `None` when it is absent. The
/// one way a header naming the tenant is read (here and by the ingest gateway).
pub fn header_value<K: AsHeaderName>(
    headers: &HeaderMap,
    name: K,
) -> Result<Option<&str>, HeaderError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(HeaderError::Duplicate);
    }
    let text = value.to_str().map_err(|_| HeaderError::Malformed)?;
    Ok(Some(text.trim()))
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn token_entry(setting: &TokenSetting) -> Result<TokenEntry, AuthConfigError> {
    let tenant = setting.tenant.clone();
    let hash = match &setting.source {
        TokenSource::Sha256(hex) => {
            decode_hex(hex.trim()).ok_or_else(|| AuthConfigError::BadHash {
                tenant: tenant.clone(),
            })?
        }
        TokenSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| AuthConfigError::TokenFile {
                tenant: tenant.clone(),
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            let token = text.trim();
            if token.is_empty() {
                return Err(AuthConfigError::EmptyTokenFile {
                    tenant,
                    path: path.display().to_string(),
                });
            }
            sha256(token.as_bytes())
        }
    };
    Ok(TokenEntry { hash, tenant })
}

fn decode_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests;
