//! The tenant listener's own limits and TLS, with the proxy started in-process from a config:
//! the whole-request timeout (503 `timeout` in Prometheus' envelope), the header read timeout
//! and size limit, and `server.tls` (https with a certificate made here; plain http to the TLS
//! port fails).

use std::path::Path;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TENANT: &str = r#"
apiVersion: observability.ethos.io/v1alpha1
kind: MetricAccess
metadata:
  name: reads
  namespace: team-a
spec:
  metricIsolation: true
  metrics: [up]
"#;

/// A backend that is ready at once and answers queries after `delay`.
async fn slow_backend(delay: Duration) -> (String, tokio::task::JoinHandle<()>) {
    let app = Router::new()
        .route("/-/ready", get(|| async { "ready" }))
        .fallback(move || async move {
            tokio::time::sleep(delay).await;
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, task)
}

/// Start the proxy over `backend` with `server_extra` added under `server:`.
async fn start(dir: &Path, backend: &str, server_extra: &str) -> proxy::app::RunningProxy {
    std::fs::create_dir_all(dir.join("tenants")).unwrap();
    std::fs::write(dir.join("tenants/a.yaml"), TENANT).unwrap();
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\n{server_extra}\
         tenants: {{directory: {:?}}}\n\
         proxy: {{backend_timeout: 20s, enable_request_logging: false}}\n\
         backends: {{probe_interval: 100ms, groups: [{{name: infra, members: [\"{backend}\"]}}]}}\n\
         auth: {{mode: header}}\n",
        dir.join("tenants").display().to_string()
    );
    let path = dir.join("proxy.yaml");
    std::fs::write(&path, yaml).unwrap();
    let config = proxy::config::Config::load(&path).unwrap();
    let running = proxy::app::start(config, None).await.unwrap();
    running.wait_ready(Duration::from_secs(5)).await.unwrap();
    running
}

#[tokio::test]
async fn a_request_over_server_request_timeout_gets_503_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, _task) = slow_backend(Duration::from_secs(10)).await;
    let running = start(dir.path(), &backend, "  request_timeout: 300ms\n").await;
    let started = Instant::now();
    let answer = reqwest::Client::new()
        .get(format!("{}/api/v1/query?query=up", running.api_url()))
        .header("X-Tenant-Namespace", "team-a")
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(answer.status().as_u16(), 503);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["status"], "error");
    assert_eq!(body["errorType"], "timeout", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("server.request_timeout (300ms)"),
        "{body}"
    );
    // The backend would have taken 10 s and proxy.backend_timeout is 20 s.
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn slow_headers_are_cut_off_and_huge_headers_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, _task) = slow_backend(Duration::ZERO).await;
    let running = start(
        dir.path(),
        &backend,
        "  header_read_timeout: 300ms\n  max_header_bytes: 8192\n",
    )
    .await;

    // Half a request head, then nothing: the proxy hangs up after header_read_timeout.
    let mut slow = TcpStream::connect(running.api_addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(_)) | Ok(Err(_))),
        "the connection was still open after 5 s"
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    // A complete request with a 20 KiB header: 431, and a normal one still works.
    let client = reqwest::Client::new();
    let huge = client
        .get(format!("{}/health", running.api_url()))
        .header("X-Padding", "a".repeat(20 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status().as_u16(), 431);
    let fine = client
        .get(format!("{}/health", running.api_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(fine.status().as_u16(), 200);
}

#[tokio::test]
async fn the_tenant_listener_serves_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, _task) = slow_backend(Duration::ZERO).await;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = cert.cert.pem();
    std::fs::write(dir.path().join("tls.crt"), &cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), cert.signing_key.serialize_pem()).unwrap();
    // Relative paths: against the config file's folder.
    let running = start(
        dir.path(),
        &backend,
        "  tls: {cert_file: tls.crt, key_file: tls.key}\n",
    )
    .await;
    assert!(running.api_url().starts_with("https://"));
    let port = running.api_addr.port();

    let trusting = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap()])
        .resolve("localhost", running.api_addr)
        .build()
        .unwrap();
    let answer = trusting
        .get(format!("https://localhost:{port}/api/v1/query?query=up"))
        .header("X-Tenant-Namespace", "team-a")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["status"], "success");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/health"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "plain http answered: {plain:?}");
    // A client that does not trust the certificate is refused by the handshake.
    let untrusting = reqwest::Client::builder()
        .resolve("localhost", running.api_addr)
        .build()
        .unwrap();
    let refused = untrusting
        .get(format!("https://localhost:{port}/health"))
        .send()
        .await;
    assert!(refused.is_err(), "{refused:?}");
    // The admin listener stays plain HTTP.
    let admin = reqwest::get(format!("{}/-/healthy", running.admin_url()))
        .await
        .unwrap();
    assert_eq!(admin.status().as_u16(), 200);
}
