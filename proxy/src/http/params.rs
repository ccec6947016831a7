//! Request parameters of the Prometheus API, read the way Prometheus reads them (URL query and
//! `application/x-www-form-urlencoded` POST body together, names percent-decoded) but strictly:
//! anything Prometheus or another backend could read differently from the proxy is refused
//! (a raw `;`, a single-valued parameter given twice, a body the proxy does not parse).
//! See research/reliability-anchors.md §1.1 rows 1-5.

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, Request, header};

use crate::http::error::ApiError;

/// Parameters that may appear once only (URL and body together). A second copy would let a
/// backend that reads "the other one" see a value the proxy never enforced.
pub const SINGLE_VALUED: &[&str] = &[
    "query",
    "time",
    "start",
    "end",
    "step",
    "timeout",
    "limit",
    "limit_per_metric",
    "metric",
    "namespace",
    "stats",
    "lookback_delta",
];

/// The repeated selector parameter of series, labels, label values and federate.
pub const MATCH: &str = "match[]";

/// Why a request's parameters were refused. `reason()` is the bounded metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("';' is not a valid parameter separator; use '&' (or encode it as %3B)")]
    Semicolon,
    #[error("invalid percent-encoding in the {0}")]
    BadEscape(&'static str),
    #[error("parameter {0:?} given more than once")]
    Duplicate(String),
    #[error(
        "unsupported content type {0:?}: POST parameters must be application/x-www-form-urlencoded"
    )]
    UnsupportedContentType(String),
    #[error("unsupported content encoding {0:?}: send the form body uncompressed")]
    UnsupportedContentEncoding(String),
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("could not read the request body: {0}")]
    Body(String),
}

impl ParamError {
    pub fn reason(&self) -> &'static str {
        match self {
            ParamError::Semicolon => "semicolon",
            ParamError::BadEscape(_) => "bad_escape",
            ParamError::Duplicate(_) => "duplicate_parameter",
            ParamError::UnsupportedContentType(_) => "content_type",
            ParamError::UnsupportedContentEncoding(_) => "content_encoding",
            ParamError::TooLarge(_) => "body_too_large",
            ParamError::Body(_) => "body_read",
        }
    }
}

impl From<ParamError> for ApiError {
    fn from(error: ParamError) -> Self {
        match error {
            ParamError::TooLarge(_) => ApiError::too_large(error.to_string()),
            _ => ApiError::bad_data(error.to_string()),
        }
    }
}

/// Decoded parameters, URL pairs first, then body pairs, each in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// The value of a single-valued parameter (duplicates were refused when parsing).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of a single-valued parameter, `None` when absent or empty (Prometheus
    /// treats an empty value like a missing one).
    pub fn get_non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// Every value of a repeated parameter (URL then body), e.g. `match[]`.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// Parse the raw URL query and, for POST, the raw body. `headers` gives the body's
/// content type and encoding.
pub fn parse(
    method: &Method,
    raw_query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Params, ParamError> {
    let mut pairs = Vec::new();
    if let Some(query) = raw_query {
        decode_into(query.as_bytes(), "URL query", &mut pairs)?;
    }
    // Go's ParseForm reads a body for POST, PUT and PATCH only; the API routes take GET and
    // POST, and a GET body is never read (nor forwarded).
    if method == Method::POST {
        check_body_headers(headers, body)?;
        decode_into(body, "request body", &mut pairs)?;
    }
    for (i, (name, _)) in pairs.iter().enumerate() {
        if SINGLE_VALUED.contains(&name.as_str()) && pairs[..i].iter().any(|(n, _)| n == name) {
            return Err(ParamError::Duplicate(name.clone()));
        }
    }
    Ok(Params { pairs })
}

/// Read the body (up to `max_body_bytes`) of an API request and parse its parameters.
pub async fn read(
    request: Request<Body>,
    max_body_bytes: usize,
) -> Result<(Parts, Params), ParamError> {
    let (parts, body) = request.into_parts();
    let bytes = if parts.method == Method::POST {
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > max_body_bytes as u64) {
            return Err(ParamError::TooLarge(max_body_bytes));
        }
        read_limited(body, max_body_bytes).await?
    } else {
        Vec::new()
    };
    let params = parse(&parts.method, parts.uri.query(), &parts.headers, &bytes)?;
    Ok((parts, params))
}

/// Collect a body, refusing it as soon as it grows past `max` bytes.
async fn read_limited(body: Body, max: usize) -> Result<Vec<u8>, ParamError> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ParamError::Body(e.to_string()))?;
        if out.len() + chunk.len() > max {
            return Err(ParamError::TooLarge(max));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn check_body_headers(headers: &HeaderMap, body: &[u8]) -> Result<(), ParamError> {
    for encoding in headers.get_all(header::CONTENT_ENCODING) {
        let value = String::from_utf8_lossy(encoding.as_bytes())
            .trim()
            .to_string();
        if !value.eq_ignore_ascii_case("identity") {
            return Err(ParamError::UnsupportedContentEncoding(value));
        }
    }
    let mut types = headers.get_all(header::CONTENT_TYPE).iter();
    match (types.next(), types.next()) {
        (None, _) if body.is_empty() => Ok(()),
        (None, _) => Err(ParamError::UnsupportedContentType(String::new())),
        (Some(value), None) => {
            let text = String::from_utf8_lossy(value.as_bytes());
            let essence = text.split(';').next().unwrap_or_default().trim();
            if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
                Ok(())
            } else {
                Err(ParamError::UnsupportedContentType(essence.to_string()))
            }
        }
        (Some(_), Some(_)) => Err(ParamError::UnsupportedContentType(
            "several Content-Type headers".to_string(),
        )),
    }
}

fn decode_into(
    raw: &[u8],
    place: &'static str,
    pairs: &mut Vec<(String, String)>,
) -> Result<(), ParamError> {
    if raw.contains(&b';') {
        return Err(ParamError::Semicolon);
    }
    check_escapes(raw, place)?;
    pairs.extend(
        form_urlencoded::parse(raw)
            .filter(|(name, value)| !(name.is_empty() && value.is_empty()))
            .map(|(name, value)| (name.into_owned(), value.into_owned())),
    );
    Ok(())
}

/// Go's `ParseQuery` refuses `%` not followed by two hex digits (and drops that pair), where
/// `form_urlencoded` keeps it literally; refuse it so both sides can't disagree.
fn check_escapes(raw: &[u8], place: &'static str) -> Result<(), ParamError> {
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let ok = raw.len() > i + 2
                && raw[i + 1].is_ascii_hexdigit()
                && raw[i + 2].is_ascii_hexdigit();
            if !ok {
                return Err(ParamError::BadEscape(place));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// Encode `pairs` as a form body for the upstream request.
pub fn encode<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        serializer.append_pair(name, value);
    }
    serializer.finish()
}

#[cfg(test)]
mod tests;
