//! The plain-http connections through the pool, against a raw HTTP/1.1 server on 127.0.0.1
//! that counts the connections it accepts and can misbehave on purpose.

use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::super::tests::{pool, query};
use super::super::*;

#[derive(Clone, Copy)]
enum Behaviour {
    /// Answer every request, keep the connection open.
    KeepAlive,
    /// Answer one request, then close the connection a little later without saying so (the
    /// client has put it back in its pool by then).
    CloseAfterOne,
    /// Promise 100 bytes, send 10, then hold the connection.
    StallBody,
    /// Send a chunked answer's first chunk, then hold the connection.
    FirstChunkOnly,
}

struct Raw {
    url: String,
    accepted: Arc<AtomicU32>,
    /// Request lines seen.
    requests: Arc<StdMutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for Raw {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const ANSWER: &str = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;

async fn raw(behaviour: Behaviour) -> Raw {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicU32::new(0));
    let requests = Arc::new(StdMutex::new(Vec::new()));
    let (count, seen) = (accepted.clone(), requests.clone());
    let task = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let seen = seen.clone();
            connections.push(tokio::spawn(async move {
                let mut buffer = Vec::new();
                loop {
                    let Some(line) = read_request(&mut stream, &mut buffer).await else {
                        return;
                    };
                    seen.lock().unwrap().push(line);
                    let head = |extra: &str| {
                        format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{extra}\r\n")
                    };
                    match behaviour {
                        Behaviour::KeepAlive | Behaviour::CloseAfterOne => {
                            let answer = head(&format!("content-length: {}\r\n", ANSWER.len()));
                            stream.write_all(answer.as_bytes()).await.unwrap();
                            stream.write_all(ANSWER.as_bytes()).await.unwrap();
                            if matches!(behaviour, Behaviour::CloseAfterOne) {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                return;
                            }
                        }
                        Behaviour::StallBody => {
                            let answer = head("content-length: 100\r\n");
                            stream.write_all(answer.as_bytes()).await.unwrap();
                            stream.write_all(b"0123456789").await.unwrap();
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        }
                        Behaviour::FirstChunkOnly => {
                            let answer = head("transfer-encoding: chunked\r\n");
                            stream.write_all(answer.as_bytes()).await.unwrap();
                            stream.write_all(b"a\r\n0123456789\r\n").await.unwrap();
                            // Held until the client closes.
                            let mut rest = [0u8; 64];
                            while stream.read(&mut rest).await.is_ok_and(|n| n > 0) {}
                            return;
                        }
                    }
                }
            }));
        }
    });
    Raw {
        url,
        accepted,
        requests,
        task,
    }
}

/// Read one request (head and Content-Length body); its request line, or `None` at EOF.
async fn read_request(stream: &mut tokio::net::TcpStream, buffer: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_string();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while buffer.len() < end + 4 + length {
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
                buffer.extend_from_slice(&chunk[..n]);
            }
            buffer.drain(..end + 4 + length);
            return head.lines().next().map(str::to_string);
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn sequential_requests_share_one_connection() {
    let server = raw(Behaviour::KeepAlive).await;
    let pool = pool(vec![server.url.clone()], 4, Duration::from_secs(5));
    for _ in 0..3 {
        let response = pool.send(&query()).await.unwrap();
        assert_eq!(response.status, StatusCode::OK);
        let body = read_body(response.body, 1 << 20).await.unwrap();
        assert_eq!(&body[..], ANSWER.as_bytes());
    }
    assert_eq!(server.requests.lock().unwrap().len(), 3);
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_connection_the_backend_closed_while_idle_is_replaced() {
    let server = raw(Behaviour::CloseAfterOne).await;
    let pool = pool(vec![server.url.clone()], 4, Duration::from_secs(5));
    for _ in 0..3 {
        let response = pool.send(&query()).await.unwrap();
        let body = read_body(response.body, 1 << 20).await.unwrap();
        assert_eq!(&body[..], ANSWER.as_bytes());
        // Let the close reach the idle connection.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.requests.lock().unwrap().len(), 3);
    assert_eq!(server.accepted.load(Ordering::SeqCst), 3);
    assert_eq!(
        pool.groups[0].connections[0].as_ref().unwrap().idle_count(),
        1
    );
    // The member stays in rotation: a closed keep-alive connection is not a failure.
    assert_ne!(pool.members().next().unwrap().1.health(), Health::Down);
}

#[tokio::test]
async fn a_stalled_body_ends_in_an_error_at_the_deadline() {
    let server = raw(Behaviour::StallBody).await;
    let pool = pool(vec![server.url.clone()], 4, Duration::from_millis(300));
    let response = pool.send(&query()).await.unwrap();
    assert_eq!(response.status, StatusCode::OK);
    // Bounded so that a missing deadline fails the test instead of hanging it.
    let read = tokio::time::timeout(Duration::from_secs(20), read_body(response.body, 1 << 20))
        .await
        .expect("the body must end at the request deadline");
    let error = read.unwrap_err();
    assert!(format!("{error}").contains("in time"), "{error}");
}

#[tokio::test]
async fn a_body_dropped_half_read_does_not_go_back_to_the_pool() {
    use futures::StreamExt;
    let server = raw(Behaviour::FirstChunkOnly).await;
    let pool = pool(vec![server.url.clone()], 4, Duration::from_secs(5));
    let response = pool.send(&query()).await.unwrap();
    let mut stream = response.body.into_data_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(&first[..], b"0123456789");
    drop(stream);
    let response = pool.send(&query()).await.unwrap();
    let mut stream = response.body.into_data_stream();
    assert_eq!(&stream.next().await.unwrap().unwrap()[..], b"0123456789");
    assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_member_path_prefixes_the_request_path_and_get_carries_the_form() {
    let server = raw(Behaviour::KeepAlive).await;
    let pool = pool(
        vec![format!("{}/prom/", server.url)],
        4,
        Duration::from_secs(5),
    );
    let response = pool.send(&query()).await.unwrap();
    read_body(response.body, 1 << 20).await.unwrap();
    let get = UpstreamRequest {
        method: Method::GET,
        path: "/api/v1/labels".into(),
        form: "match%5B%5D=up".into(),
    };
    let response = pool.send(&get).await.unwrap();
    read_body(response.body, 1 << 20).await.unwrap();
    assert_eq!(
        *server.requests.lock().unwrap(),
        [
            "POST /prom/api/v1/query HTTP/1.1",
            "GET /prom/api/v1/labels?match%5B%5D=up HTTP/1.1"
        ]
    );
}
