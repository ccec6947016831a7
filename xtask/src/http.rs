//! A tiny HTTP/1.0 GET client over `std::net::TcpStream`, enough for readiness checks against
//! 127.0.0.1 without pulling an HTTP stack into xtask.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, bail};

/// A response: status code and body (headers are dropped).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// `GET path` on `addr` with extra `headers`; HTTP/1.0 so the server closes the connection and
/// the body is everything after the header block (no chunked decoding needed).
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Response> {
    let timeout = Duration::from_secs(3);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: */*\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    stream
        .take(16 * 1024 * 1024)
        .read_to_end(&mut raw)
        .with_context(|| format!("reading response from {addr}{path}"))?;
    parse_response(&raw)
}

/// Parse a raw HTTP/1.x response (status line + headers + body).
pub fn parse_response(raw: &[u8]) -> anyhow::Result<Response> {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("malformed HTTP response (no header terminator)");
    };
    let status_line = head.lines().next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        bail!("malformed HTTP status line {status_line:?}");
    };
    if !version.starts_with("HTTP/") {
        bail!("malformed HTTP status line {status_line:?}");
    }
    let status = code
        .parse::<u16>()
        .with_context(|| format!("bad status code in {status_line:?}"))?;
    Ok(Response {
        status,
        body: body.to_string(),
    })
}

/// Percent-encode a query-string value (RFC 3986 unreserved characters pass through).
pub fn encode_query_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_body() {
        let r =
            parse_response(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello\r\nworld")
                .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, "hello\r\nworld");
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_response(b"nonsense").is_err());
        assert!(parse_response(b"FOO 200\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 abc\r\n\r\n").is_err());
    }

    #[test]
    fn encodes_promql() {
        assert_eq!(encode_query_value("count(up)"), "count%28up%29");
        assert_eq!(encode_query_value("a b{x=\"y\"}"), "a%20b%7Bx%3D%22y%22%7D");
    }

    #[test]
    fn get_against_local_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).unwrap();
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            s.write_all(b"HTTP/1.0 503 Service Unavailable\r\n\r\nnot ready")
                .unwrap();
            req
        });
        let r = get(addr, "/-/ready", &[("X-Tenant-Namespace", "team-a")]).unwrap();
        let req = server.join().unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.body, "not ready");
        assert!(req.starts_with("GET /-/ready HTTP/1.0\r\n"));
        assert!(req.contains("X-Tenant-Namespace: team-a\r\n"));
    }
}
