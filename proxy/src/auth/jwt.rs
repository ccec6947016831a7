//! `auth.mode: jwt`: `Authorization: Bearer <JWT>` verified against the keys of a JWKS
//! ([`jwks`]); `iss`, `aud`, `exp` (required) and `nbf` are checked, and a claim names the
//! tenant. The algorithm is the key's: a token whose header asks for another one, `none`, or
//! an HMAC algorithm is refused. Refusals say why without quoting the token.

mod jwks;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;

use super::AuthError;
pub use jwks::UNKNOWN_KID_REFETCH;

/// `auth.jwt`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSettings {
    pub issuer: String,
    pub audiences: Vec<String>,
    /// Dotted path to the tenant claim; the whole string is tried as one key first.
    pub tenant_claim: String,
    pub jwks: JwksSource,
    pub jwks_refresh: Duration,
    pub leeway: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    File(PathBuf),
    Url(String),
}

/// Token → tenant through signature and claim checks.
pub(crate) struct JwtVerifier {
    settings: JwtSettings,
    source: jwks::Source,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn rejected(reason: impl Into<String>) -> AuthError {
    AuthError::Rejected(reason.into())
}

impl JwtVerifier {
    /// A JWKS file is read now; a JWKS URL is fetched in the background when a Tokio runtime
    /// is running (else on first use).
    pub(crate) fn new(settings: JwtSettings) -> Result<Self, String> {
        let source = match &settings.jwks {
            JwksSource::File(path) => jwks::Source::File(jwks::FileSource::open(path.clone())?),
            JwksSource::Url(url) => {
                let source = Arc::new(jwks::UrlSource::new(url.clone(), settings.jwks_refresh)?);
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    let prefetch = source.clone();
                    runtime.spawn(async move { prefetch.keys_at_start().await });
                }
                jwks::Source::Url(source)
            }
        };
        Ok(Self { settings, source })
    }

    pub(crate) async fn identify(&self, token: &str) -> Result<String, AuthError> {
        // `decode_header` knows no `none` algorithm: such tokens fail here.
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| rejected("not a signed JWT (malformed, or an unknown or `none` alg)"))?;
        if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(rejected("HMAC-signed (HS*) tokens are not accepted"));
        }
        let mut keys = self.source.keys().await?;
        if let Some(kid) = &header.kid
            && !keys.iter().any(|k| k.kid.as_deref() == Some(kid))
        {
            keys = self.source.keys_for_unknown_kid(&keys).await?;
        }
        let candidates: Vec<&jwks::Key> = match &header.kid {
            Some(kid) => {
                let named: Vec<_> = keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .collect();
                if named.is_empty() {
                    return Err(rejected("the token's kid names no key of the JWKS"));
                }
                let fitting: Vec<_> = named.into_iter().filter(|k| k.alg == header.alg).collect();
                if fitting.is_empty() {
                    return Err(rejected(format!(
                        "the token's alg {:?} is not its key's algorithm",
                        header.alg
                    )));
                }
                fitting
            }
            None => keys.iter().filter(|k| k.alg == header.alg).collect(),
        };
        if candidates.is_empty() {
            return Err(rejected(format!(
                "no key of the JWKS verifies alg {:?}",
                header.alg
            )));
        }
        let mut last = rejected("bad signature");
        for key in candidates {
            match jsonwebtoken::decode::<Value>(token, &key.key, &self.validation(key.alg)) {
                Ok(data) => return self.tenant(&data.claims),
                // Another key (same alg, no kid) may still verify it.
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => {}
                Err(e) => {
                    last = rejected(describe(e.kind()));
                    break;
                }
            }
        }
        Err(last)
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.algorithms = vec![alg];
        v.leeway = self.settings.leeway.as_secs();
        v.validate_exp = true;
        v.validate_nbf = true;
        v.validate_aud = true;
        v.set_issuer(&[&self.settings.issuer]);
        v.set_audience(&self.settings.audiences);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v
    }

    fn tenant(&self, claims: &Value) -> Result<String, AuthError> {
        let name = &self.settings.tenant_claim;
        let value = claim(claims, name)
            .ok_or_else(|| rejected(format!("the token has no {name:?} claim")))?;
        let tenant = value
            .as_str()
            .ok_or_else(|| rejected(format!("the {name:?} claim is not a string")))?;
        crate::names::validate_tenant_id(tenant)
            .map_err(|e| rejected(format!("the {name:?} claim: {e}")))?;
        Ok(tenant.to_string())
    }
}

/// A claim by dotted path: `a.b.c` is the key `a.b.c`, else `a` then `b.c`, else `a.b` then
/// `c` (keys such as `kubernetes.io` hold dots).
pub(crate) fn claim<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    path.match_indices('.').find_map(|(i, _)| {
        let inner = claims.get(&path[..i])?;
        claim(inner, &path[i + 1..])
    })
}

fn describe(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
        ErrorKind::InvalidAudience => "the token is not meant for this audience".into(),
        ErrorKind::InvalidIssuer => "the token comes from another issuer".into(),
        ErrorKind::InvalidSignature => "bad signature".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("the token has no {c:?} claim"),
        ErrorKind::InvalidClaimFormat(c) => format!("the {c:?} claim is malformed"),
        ErrorKind::InvalidAlgorithm => "the token's alg is not its key's algorithm".into(),
        _ => "malformed token".into(),
    }
}

#[cfg(test)]
mod tests;
