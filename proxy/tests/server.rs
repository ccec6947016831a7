//! The proxy started in-process with `proxy::app::start` from a config file and a tenant
//! folder in a tempdir, against fake upstream Prometheus servers on 127.0.0.1: end-to-end
//! request flow, config reload (good and bad, POST /-/reload), shutdown.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;

/// A fake Prometheus recording the form bodies of API requests.
struct Fake {
    url: String,
    bodies: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn fake(name: &'static str) -> Fake {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let log = bodies.clone();
    let app = Router::new().fallback(move |request: Request<Body>| {
        let log = log.clone();
        async move {
            let path = request.uri().path().to_string();
            let body = axum::body::to_bytes(request.into_body(), 1 << 20)
                .await
                .unwrap();
            if path != "/-/ready" {
                log.lock()
                    .unwrap()
                    .push(String::from_utf8(body.to_vec()).unwrap());
            }
            format!(r#"{{"status":"success","data":{{"resultType":"vector","result":[]}},"server":"{name}"}}"#)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Fake { url, bodies, task }
}

const TENANT: &str = r#"
apiVersion: observability.ethos.io/v1alpha1
kind: MetricAccess
metadata:
  name: reads
  namespace: team-a
spec:
  metricIsolation: true
  metrics: [up, http_requests_total]
"#;

fn config_text(member: &str, auth: &str) -> String {
    format!(
        r#"
server:
  # Placeholders: the test binds port 0 for both (see `start`); reloads never rebind.
  listen: "127.0.0.1:1"
  admin_listen: "127.0.0.1:2"
tenants:
  source: file
  directory: ./tenants
proxy:
  backend_timeout: 5s
backends:
  probe_interval: 50ms
  probe_timeout: 1s
  groups:
    - name: infra
      members: ["{member}"]
auth:
{auth}
"#
    )
}

const HEADER_AUTH: &str = "  mode: header";

fn bearer_auth(dir: &Path) -> String {
    let token_file = dir.join("team-a.token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    format!(
        "  mode: bearer\n  bearer:\n    tokens:\n      - tenant: team-a\n        token_file: {}",
        token_file.display()
    )
}

fn write_setup(dir: &Path, member: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("tenants")).unwrap();
    std::fs::write(dir.join("tenants/team-a.yaml"), TENANT).unwrap();
    let path = dir.join("config.yaml");
    std::fs::write(&path, config_text(member, HEADER_AUTH)).unwrap();
    path
}

async fn start(path: &Path) -> proxy::app::RunningProxy {
    let mut config = proxy::config::Config::load(path).unwrap();
    // Config validation refuses listen == admin_listen, which "port 0" for both would be.
    config.server.listen.set_port(0);
    config.server.admin_listen.set_port(0);
    let running = proxy::app::start(config, Some(path.to_path_buf()))
        .await
        .unwrap();
    running.wait_ready(Duration::from_secs(10)).await.unwrap();
    running
}

fn client() -> reqwest::Client {
    proxy::client::install_crypto_provider();
    reqwest::Client::new()
}

async fn query(running: &proxy::app::RunningProxy, header: Option<(&str, &str)>) -> (u16, String) {
    let mut request = client().get(format!("{}/api/v1/query?query=up", running.api_url()));
    if let Some((name, value)) = header {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn reload(running: &proxy::app::RunningProxy) -> (u16, String) {
    let response = client()
        .post(format!("{}/-/reload", running.admin_url()))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn serves_enforced_queries_from_a_config_file() {
    let upstream = fake("one").await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_setup(dir.path(), &upstream.url);
    let running = start(&path).await;
    assert_ne!(running.api_addr.port(), 0);
    assert!(running.tenants.get("team-a").is_some());

    let (status, body) = query(&running, Some(("X-Tenant-Namespace", "team-a"))).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"server\":\"one\""));
    let sent = upstream.bodies.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].contains("team-a"), "{sent:?}");

    // The admin endpoints are on the admin listener only.
    let admin = client()
        .get(format!("{}/debug/tenants", running.admin_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status().as_u16(), 200);
    let api = client()
        .get(format!("{}/debug/tenants", running.api_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status().as_u16(), 403);

    let api_addr = running.api_addr;
    running.shutdown().await.unwrap();
    assert!(tokio::net::TcpStream::connect(api_addr).await.is_err());
}

#[tokio::test]
async fn reload_refuses_a_bad_config_and_applies_a_good_one() {
    let first = fake("first").await;
    let second = fake("second").await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_setup(dir.path(), &first.url);
    let running = start(&path).await;
    let as_team_a = Some(("X-Tenant-Namespace", "team-a"));

    // A config that doesn't parse is refused; the running one keeps serving.
    std::fs::write(&path, "server: [not a map\n").unwrap();
    let (status, body) = reload(&running).await;
    assert_eq!(status, 400, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["status"], "error");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("previous one keeps serving")
    );
    assert_eq!(query(&running, as_team_a).await.0, 200);

    // A config with an unreadable token file is refused too.
    let broken = config_text(
        &second.url,
        "  mode: bearer\n  bearer:\n    tokens:\n      - tenant: team-a\n        token_file: /nonexistent/pmtp.token",
    );
    std::fs::write(&path, broken).unwrap();
    let (status, body) = reload(&running).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("/nonexistent/pmtp.token"), "{body}");
    let (status, body) = query(&running, as_team_a).await;
    assert_eq!((status, body.contains("first")), (200, true));

    // A good config: new backend, bearer auth.
    std::fs::write(&path, config_text(&second.url, &bearer_auth(dir.path()))).unwrap();
    let (status, body) = reload(&running).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(query(&running, as_team_a).await.0, 401);
    let (status, body) = query(&running, Some(("Authorization", "Bearer s3cret"))).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"server\":\"second\""), "{body}");

    let metrics = client()
        .get(format!("{}/metrics", running.admin_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("pmtp_config_reloads_total{result=\"failure\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("pmtp_config_reloads_total{result=\"success\"} 1"));
    running.shutdown().await.unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn sighup_reloads_the_config() {
    let first = fake("first").await;
    let second = fake("second").await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_setup(dir.path(), &first.url);
    let mut config = proxy::config::Config::load(&path).unwrap();
    config.server.listen.set_port(0);
    config.server.admin_listen.set_port(0);
    let options = proxy::app::StartOptions {
        reload_on_sighup: true,
        ..Default::default()
    };
    let running = proxy::app::start_with(config, Some(path.clone()), options)
        .await
        .unwrap();
    running.wait_ready(Duration::from_secs(10)).await.unwrap();
    let as_team_a = Some(("X-Tenant-Namespace", "team-a"));
    assert!(query(&running, as_team_a).await.1.contains("first"));

    std::fs::write(&path, config_text(&second.url, HEADER_AUTH)).unwrap();
    // The handler is installed by start_with, so SIGHUP can't kill the test process.
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = query(&running, as_team_a).await;
        if status == 200 && body.contains("second") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no reload: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn dropping_the_proxy_stops_serving_even_kept_alive_connections() {
    let upstream = fake("one").await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_setup(dir.path(), &upstream.url);
    let running = start(&path).await;
    let url = format!("{}/api/v1/query?query=up", running.api_url());
    // One client: its pooled keep-alive connection outlives the accept loop.
    let client = client();
    let first = client
        .get(&url)
        .header("X-Tenant-Namespace", "team-a")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status().as_u16(), 200);
    first.text().await.unwrap();
    drop(running);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let again = client
            .get(&url)
            .header("X-Tenant-Namespace", "team-a")
            .send()
            .await;
        if again.is_err() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still served after drop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
