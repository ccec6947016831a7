//! Table tests of the parameter parser.

use axum::http::{HeaderMap, HeaderValue, Method, header};

use super::*;

fn form_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded; charset=UTF-8"),
    );
    headers
}

fn get(query: &str) -> Result<Params, ParamError> {
    parse(&Method::GET, Some(query), &HeaderMap::new(), b"")
}

fn post(query: Option<&str>, body: &str) -> Result<Params, ParamError> {
    parse(&Method::POST, query, &form_headers(), body.as_bytes())
}

#[test]
fn accepted_requests() {
    let p = get("query=up&time=1").unwrap();
    assert_eq!(p.get("query"), Some("up"));
    assert_eq!(p.get("time"), Some("1"));

    // Names are percent-decoded: `match%5B%5D` is `match[]` and `qu%65ry` is `query`.
    let p = get("match%5B%5D=a&match[]=b&qu%65ry=x+y").unwrap();
    assert_eq!(p.all(MATCH), vec!["a", "b"]);
    assert_eq!(p.get("query"), Some("x y"));

    // match[] from URL and body are combined, URL first, like Prometheus' r.Form.
    let p = post(Some("match[]=u"), "match[]=b1&match%5B%5D=b2").unwrap();
    assert_eq!(p.all(MATCH), vec!["u", "b1", "b2"]);

    // A value may contain an encoded ';'.
    let p = post(None, "query=a%3Bb").unwrap();
    assert_eq!(p.get("query"), Some("a;b"));

    // A GET body is never read.
    let p = parse(
        &Method::GET,
        Some("query=up"),
        &HeaderMap::new(),
        b"query=evil",
    )
    .unwrap();
    assert_eq!(p.all("query"), vec!["up"]);

    // POST without a body and without a content type (curl -X POST url?query=...).
    let p = parse(&Method::POST, Some("query=up"), &HeaderMap::new(), b"").unwrap();
    assert_eq!(p.get("query"), Some("up"));

    // Unknown parameters are kept (and later simply not forwarded), repeats included.
    let p = get("foo=1&foo=2").unwrap();
    assert_eq!(p.all("foo"), vec!["1", "2"]);
    assert_eq!(p.get_non_empty("time"), None);
    assert_eq!(get("time=").unwrap().get_non_empty("time"), None);
}

#[test]
fn refused_requests() {
    let dup = |name: &str| ParamError::Duplicate(name.to_string());
    let cases: Vec<(&str, Result<Params, ParamError>, ParamError)> = vec![
        (
            "semicolon in URL",
            get("query=up;x=1"),
            ParamError::Semicolon,
        ),
        (
            "semicolon in body",
            post(None, "query=up;x"),
            ParamError::Semicolon,
        ),
        ("query twice in URL", get("query=a&query=b"), dup("query")),
        (
            "empty first duplicate",
            get("query=&query=up"),
            dup("query"),
        ),
        (
            "query twice in body",
            post(None, "query=a&query=b"),
            dup("query"),
        ),
        (
            "query in URL and body",
            post(Some("query=a"), "query=a"),
            dup("query"),
        ),
        (
            "encoded name duplicate",
            get("query=a&qu%65ry=b"),
            dup("query"),
        ),
        ("time twice", get("time=1&time=2"), dup("time")),
        (
            "start twice",
            post(Some("start=1"), "start=2"),
            dup("start"),
        ),
        (
            "namespace twice",
            get("namespace=a&namespace=b"),
            dup("namespace"),
        ),
        ("limit twice", get("limit=1&limit=1"), dup("limit")),
        (
            "bad escape",
            get("query=up%zz"),
            ParamError::BadEscape("URL query"),
        ),
        (
            "truncated escape",
            post(None, "query=up%2"),
            ParamError::BadEscape("request body"),
        ),
    ];
    for (name, got, want) in cases {
        assert_eq!(got, Err(want), "{name}");
    }
}

#[test]
fn refused_bodies() {
    let mut multipart = HeaderMap::new();
    multipart.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("multipart/form-data; boundary=x"),
    );
    assert_eq!(
        parse(&Method::POST, None, &multipart, b"--x\r\n"),
        Err(ParamError::UnsupportedContentType(
            "multipart/form-data".into()
        ))
    );
    // Even an empty multipart body: Prometheus would look for parameters in it.
    assert!(matches!(
        parse(&Method::POST, None, &multipart, b""),
        Err(ParamError::UnsupportedContentType(_))
    ));
    // A body without a content type.
    assert!(matches!(
        parse(&Method::POST, None, &HeaderMap::new(), b"query=up"),
        Err(ParamError::UnsupportedContentType(_))
    ));
    // Compressed bodies.
    let mut gz = form_headers();
    gz.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    assert_eq!(
        parse(&Method::POST, None, &gz, b"\x1f\x8b"),
        Err(ParamError::UnsupportedContentEncoding("gzip".into()))
    );
}

#[test]
fn errors_map_to_prometheus_codes() {
    assert_eq!(ApiError::from(ParamError::Semicolon).status.as_u16(), 400);
    assert_eq!(
        ApiError::from(ParamError::TooLarge(10)).status.as_u16(),
        413
    );
    assert_eq!(
        ApiError::from(ParamError::UnsupportedContentType("x".into())).error_type,
        "bad_data"
    );
}

#[tokio::test]
async fn read_enforces_the_body_limit() {
    let request = |body: &'static str, declare: bool| {
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri("/api/v1/query?time=1")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if declare {
            builder = builder.header(header::CONTENT_LENGTH, body.len());
        }
        builder.body(Body::from(body)).unwrap()
    };
    let (_, params) = read(request("query=up", true), 8).await.unwrap();
    assert_eq!(params.get("query"), Some("up"));
    assert_eq!(params.get("time"), Some("1"));
    assert_eq!(
        read(request("query=up1", true), 8).await.unwrap_err(),
        ParamError::TooLarge(8)
    );
    assert_eq!(
        read(request("query=up1", false), 8).await.unwrap_err(),
        ParamError::TooLarge(8)
    );
}

#[test]
fn encode_round_trips() {
    let body = encode([("query", "sum(x{a=\"b c\"}) & y;"), (MATCH, "{a=~\".+\"}")]);
    let p = post(None, &body.replace(';', "%3B")).unwrap();
    assert_eq!(p.get("query"), Some("sum(x{a=\"b c\"}) & y;"));
    assert!(!body.contains(';') || body.contains("%3B"));
    assert_eq!(p.all(MATCH), vec!["{a=~\".+\"}"]);
}
