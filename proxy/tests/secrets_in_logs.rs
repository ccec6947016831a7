//! No secret reaches the logs. Every log line of this test process (every crate, debug level,
//! the proxy at trace) is captured in memory while flows run with known secrets: bearer
//! tokens (right and wrong), JWTs (valid, expired, forged), and the basic-auth password of a
//! collector target (accepted and refused). Then the capture is searched for each secret.
//! The flows are checked to have happened (answers, the receiver saw the password), so a
//! flow that silently did nothing can't pass.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
use base64::Engine;

/// Everything logged by this process so far.
static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() -> Arc<Mutex<Vec<u8>>> {
    LOG.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = Capture(buffer.clone());
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug,proxy=trace"))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .json()
            .init();
        buffer
    })
    .clone()
}

/// Fails naming every secret found in the captured log, and that the log is not empty.
fn assert_not_logged(secrets: &[&str], must_appear: &str) {
    let buffer = capture_logs();
    let log = String::from_utf8_lossy(&buffer.lock().unwrap()).to_string();
    assert!(
        log.contains(must_appear),
        "the capture misses {must_appear:?}: is logging captured at all?"
    );
    let found: Vec<&&str> = secrets.iter().filter(|s| log.contains(**s)).collect();
    assert!(found.is_empty(), "secrets in the log: {found:?}");
}

const TENANT: &str = r#"
apiVersion: observability.ethos.io/v1alpha1
kind: MetricAccess
metadata: {name: reads, namespace: team-a}
spec:
  metricIsolation: true
  metrics: [up]
"#;

/// A Prometheus stand-in: ready, and a one-sample matrix for any query.
async fn backend() -> (String, tokio::task::JoinHandle<()>) {
    let app = Router::new()
        .route("/-/ready", get(|| async { "ready" }))
        .fallback(|| async {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            let values: Vec<String> = (1..40)
                .map(|i| format!("[{:.3},\"1\"]", now - f64::from(i)))
                .collect();
            format!(
                r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{"__name__":"up","namespace":"team-a"}},"values":[{}]}}]}}}}"#,
                values.join(",")
            )
        });
    serve(app).await
}

async fn serve(app: Router) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, task)
}

async fn start(dir: &Path, backend: &str, extra: &str) -> proxy::app::RunningProxy {
    std::fs::create_dir_all(dir.join("tenants")).unwrap();
    if !dir.join("tenants/a.yaml").exists() {
        std::fs::write(dir.join("tenants/a.yaml"), TENANT).unwrap();
    }
    let yaml = format!(
        "server: {{listen: 127.0.0.1:0, admin_listen: 127.0.0.1:0}}\n\
         tenants: {{directory: tenants}}\n\
         backends: {{probe_interval: 100ms, groups: [{{name: infra, members: [\"{backend}\"]}}]}}\n{extra}"
    );
    let path = dir.join("proxy.yaml");
    std::fs::write(&path, yaml).unwrap();
    let config = proxy::config::Config::load(&path).unwrap();
    let running = proxy::app::start(config, Some(path)).await.unwrap();
    running.wait_ready(Duration::from_secs(5)).await.unwrap();
    running
}

async fn query(running: &proxy::app::RunningProxy, authorization: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{}/api/v1/query?query=up", running.api_url()))
        .header("Authorization", authorization)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn bearer_tokens_are_not_logged() {
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let (backend, _task) = backend().await;
    let token = "bearer-secret-of-team-a-5f2c9d";
    let wrong = "bearer-wrong-guess-91ab7e";
    std::fs::write(dir.path().join("a.token"), format!("{token}\n")).unwrap();
    let running = start(
        dir.path(),
        &backend,
        "auth: {mode: bearer, bearer: {tokens: [{tenant: team-a, token_file: a.token}]}}\n",
    )
    .await;
    assert_eq!(query(&running, &format!("Bearer {token}")).await, 200);
    assert_eq!(query(&running, &format!("Bearer {wrong}")).await, 401);
    assert_eq!(query(&running, &format!("Basic {wrong}")).await, 401);
    // A reload re-reads the token file.
    let reload = reqwest::Client::new()
        .post(format!("{}/-/reload", running.admin_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status().as_u16(), 200);
    assert_eq!(query(&running, &format!("Bearer {token}")).await, 200);
    running.shutdown().await.unwrap();
    assert_not_logged(&[token, wrong], "/api/v1/query");
}

#[tokio::test]
async fn jwts_are_not_logged() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let (backend, _task) = backend().await;
    // An Ed25519 key made here: PKCS#8 v1 prefix + a random seed.
    let key = |seed: u8| {
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend((0..32u8).map(|i| i.wrapping_mul(7).wrapping_add(seed)));
        EncodingKey::from_ed_der(&der)
    };
    let (good, forged) = (key(1), key(2));
    let mut jwk = serde_json::to_value(
        jsonwebtoken::jwk::Jwk::from_encoding_key(&good, Algorithm::EdDSA).unwrap(),
    )
    .unwrap();
    jwk["kid"] = "k1".into();
    std::fs::write(
        dir.path().join("jwks.json"),
        serde_json::json!({"keys": [jwk]}).to_string(),
    )
    .unwrap();
    let now = jsonwebtoken::get_current_timestamp();
    let sign = |key: &EncodingKey, exp: u64| {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("k1".into());
        let claims = serde_json::json!({"iss": "https://issuer.test", "aud": "proxy", "exp": exp, "namespace": "team-a"});
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    };
    let valid = sign(&good, now + 300);
    let expired = sign(&good, now - 3600);
    let bad_signature = sign(&forged, now + 300);
    let running = start(
        dir.path(),
        &backend,
        "auth: {mode: jwt, jwt: {issuer: \"https://issuer.test\", audiences: [proxy], jwks_file: jwks.json}}\n",
    )
    .await;
    assert_eq!(query(&running, &format!("Bearer {valid}")).await, 200);
    assert_eq!(query(&running, &format!("Bearer {expired}")).await, 401);
    assert_eq!(
        query(&running, &format!("Bearer {bad_signature}")).await,
        401
    );
    running.shutdown().await.unwrap();
    // Whole tokens and their signatures (the part that is secret on its own).
    let signature = |t: &str| t.rsplit('.').next().unwrap_or_default().to_string();
    let (s1, s2, s3) = (
        signature(&valid),
        signature(&expired),
        signature(&bad_signature),
    );
    assert_not_logged(
        &[&valid, &expired, &bad_signature, &s1, &s2, &s3],
        "/api/v1/query",
    );
}

#[tokio::test]
async fn a_collector_target_password_is_not_logged() {
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let (backend, _task) = backend().await;
    let password = "collector-basic-password-7d41";
    // The receiver refuses the first push (an error the collector logs), accepts the rest.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    let receiver = Router::new().route(
        "/api/v1/write",
        post(move |headers: axum::http::HeaderMap| {
            let log = log.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let mut seen = log.lock().unwrap();
                seen.push(auth);
                if seen.len() == 1 {
                    axum::http::StatusCode::UNAUTHORIZED
                } else {
                    axum::http::StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let (receiver_url, _receiver) = serve(receiver).await;
    std::fs::create_dir_all(dir.path().join("tenants")).unwrap();
    std::fs::write(
        dir.path().join("tenants/a.yaml"),
        format!(
            "{TENANT}  remoteWrite:\n    enabled: true\n    interval: 5s\n    target: {{type: remote_write}}\n    remoteWrite:\n      url: \"{receiver_url}/api/v1/write\"\n      basicAuth: {{username: collector, passwordSecret: {{name: rw-auth, key: password}}}}\n"
        ),
    )
    .unwrap();
    let secret = dir.path().join("secrets/team-a/rw-auth");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("password"), password).unwrap();
    let running = start(
        dir.path(),
        &backend,
        "auth: {mode: header}\nremote_write:\n  enabled: true\n  collection_method: query\n  collection_interval: 5s\n  collection_lag: 1s\n  min_backoff: 100ms\n  max_backoff: 200ms\n  secrets_directory: secrets\n  allowed_urls: ['http://127\\.0\\.0\\.1:[0-9]+/api/v1/write']\n",
    )
    .await;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("collector:{password}"))
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.lock().unwrap().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the collector did not push twice: {:?}",
            seen.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen.lock().unwrap()[0], expected, "the password was used");
    running.shutdown().await.unwrap();
    let encoded = expected.trim_start_matches("Basic ").to_string();
    assert_not_logged(&[password, &encoded], "remote_write");
}
