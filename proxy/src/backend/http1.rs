//! Pooled plain-HTTP/1.1 connections to one backend member, driven by the task that reads the
//! answer.
//!
//! Why not the pool's reqwest client for these: it runs every connection in a task of its own,
//! so each answer crosses from that task to the request's (often to the other worker thread)
//! for the head and again for every body chunk. At dashboard rates, with the proxy mostly idle
//! between answers, those wake-ups were the larger part of the proxy's CPU per small query.
//! Here the request's task polls the connection itself: while it waits for the head, and inside
//! the streamed body, so one wake-up moves the bytes from the backend's socket to the client's.
//!
//! Idle connections wait unpolled in a small stack. One the backend closed meanwhile is found
//! out when it is next used, and the request is then sent once more on a fresh connection:
//! everything the proxy sends upstream is a read, safe to repeat. `https` members keep the
//! reqwest client (its TLS setup), see [`super::BackendPool`].

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::client::chain;

type Connection = http1::Connection<TokioIo<TcpStream>, Full<Bytes>>;

/// Idle connections kept per member; more are closed after their answer.
const MAX_IDLE: usize = 32;
/// An idle connection older than this is closed instead of used (backends close idle
/// connections too; Prometheus after its read timeout, 5 minutes by default).
const MAX_IDLE_AGE: Duration = Duration::from_secs(60);

/// Why no answer head arrived.
#[derive(Debug)]
pub enum SendError {
    /// No TCP connection could be opened.
    Connect(String),
    /// The deadline passed.
    Timeout,
    /// The connection failed or closed before the answer's head.
    Request(String),
}

/// One open connection: the handle requests go on, and the future that moves its bytes.
struct Open {
    sender: http1::SendRequest<Full<Bytes>>,
    connection: Connection,
    idle_since: Instant,
}

impl Open {
    /// Let the connection do its I/O; an error once it ended (closed or failed).
    fn poll_connection(&mut self, cx: &mut Context<'_>) -> Result<(), String> {
        match Pin::new(&mut self.connection).poll(cx) {
            Poll::Pending => Ok(()),
            Poll::Ready(Ok(())) => Err("the backend closed the connection".to_string()),
            Poll::Ready(Err(error)) => Err(chain(&error)),
        }
    }
}

/// The connections to one plain-http member.
pub struct Http1Pool {
    /// `host:port` to connect to.
    address: String,
    /// The `Host` header.
    host: http::HeaderValue,
    /// Path prefix of the member URL (`""` or e.g. `/prom`).
    base_path: String,
    idle: Mutex<Vec<Open>>,
}

impl std::fmt::Debug for Http1Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http1Pool")
            .field("address", &self.address)
            .field("base_path", &self.base_path)
            .finish_non_exhaustive()
    }
}

impl Http1Pool {
    /// The pool of a member URL; `None` unless it is `http://` (TLS goes through reqwest).
    pub fn for_url(url: &reqwest::Url) -> Option<Http1Pool> {
        if url.scheme() != "http" {
            return None;
        }
        let host = url.host_str()?;
        let port = url.port_or_known_default()?;
        // `host_str` brackets an IPv6 address, as both need it.
        let address = format!("{host}:{port}");
        let host_header = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        Some(Http1Pool {
            address,
            host: http::HeaderValue::from_str(&host_header).ok()?,
            base_path: url.path().trim_end_matches('/').to_string(),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Send a request (`path_and_query` below the member URL; a form body makes it a POST) and
    /// wait for the answer's head until `deadline`. The body streams as it is read; the
    /// connection goes back to the pool once it is read to the end.
    pub async fn send(
        self: &Arc<Self>,
        path_and_query: &str,
        form: Option<Bytes>,
        deadline: Instant,
    ) -> Result<Response<Streamed>, SendError> {
        let uri = format!("{}{}", self.base_path, path_and_query);
        let request = || {
            let builder = Request::builder()
                .uri(uri.as_str())
                .header(http::header::HOST, self.host.clone())
                .header(http::header::USER_AGENT, super::USER_AGENT);
            match &form {
                None => builder.method(http::Method::GET).body(Full::default()),
                Some(form) => builder
                    .method(http::Method::POST)
                    .header(
                        http::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(Full::new(form.clone())),
            }
            .map_err(|e| SendError::Request(format!("invalid request: {e}")))
        };
        // One timer for the head and the body.
        let mut timer = Box::pin(tokio::time::sleep_until(deadline));
        // A reused connection may have been closed by the backend while idle: then once more
        // on a fresh one.
        loop {
            let (open, reused) = match self.checkout() {
                Some(open) => (open, true),
                None => (self.connect(&mut timer).await?, false),
            };
            match before(&mut timer, exchange(open, request()?)).await? {
                Ok((head, body, open)) => {
                    let body = Streamed {
                        body,
                        open: Some(open),
                        pool: self.clone(),
                        deadline: timer,
                    };
                    return Ok(Response::from_parts(head, body));
                }
                Err(_) if reused => continue,
                Err(error) => return Err(SendError::Request(error)),
            }
        }
    }

    async fn connect(&self, timer: &mut Pin<Box<Sleep>>) -> Result<Open, SendError> {
        let stream = before(timer, TcpStream::connect(&self.address))
            .await?
            .map_err(|error| SendError::Connect(error.to_string()))?;
        // Requests and answer heads are small: don't let Nagle hold them back.
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| SendError::Connect(chain(&e)))?;
        Ok(Open {
            sender,
            connection,
            idle_since: Instant::now(),
        })
    }

    fn checkout(&self) -> Option<Open> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(open) = idle.pop() {
            if open.idle_since.elapsed() < MAX_IDLE_AGE && !open.sender.is_closed() {
                return Some(open);
            }
        }
        None
    }

    fn checkin(&self, mut open: Open) {
        if open.sender.is_closed() {
            return;
        }
        open.idle_since = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push(open);
        }
    }

    /// Idle connections now (tests).
    #[cfg(test)]
    pub fn idle_count(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// `future`'s output, unless `timer` fires first.
async fn before<F: Future>(timer: &mut Pin<Box<Sleep>>, future: F) -> Result<F::Output, SendError> {
    tokio::select! {
        biased;
        output = future => Ok(output),
        () = timer.as_mut() => Err(SendError::Timeout),
    }
}

/// Wait until `open` takes a request (a reused connection first finishes its last exchange),
/// send `request`, and drive the connection until the answer's head is in.
async fn exchange(
    mut open: Open,
    request: Request<Full<Bytes>>,
) -> Result<(http::response::Parts, Incoming, Open), String> {
    std::future::poll_fn(|cx| {
        open.poll_connection(cx)?;
        open.sender.poll_ready(cx).map_err(|e| chain(&e))
    })
    .await?;
    let mut pending = std::pin::pin!(open.sender.send_request(request));
    let response = std::future::poll_fn(|cx| {
        // The connection first: it writes the request and reads the head that completes
        // `pending` in this same poll.
        let alive = open.poll_connection(cx);
        match pending.as_mut().poll(cx) {
            Poll::Ready(result) => Poll::Ready(result.map_err(|e| chain(&e))),
            Poll::Pending => match alive {
                Ok(()) => Poll::Pending,
                Err(error) => Poll::Ready(Err(error)),
            },
        }
    })
    .await?;
    let (head, body) = response.into_parts();
    Ok((head, body, open))
}

/// An answer's body, read by polling its connection in the reader's task. Returns the
/// connection to the pool when read to the end; closes it when dropped before.
pub struct Streamed {
    body: Incoming,
    /// `None` once the connection ended (what it read is still in `body`).
    open: Option<Open>,
    pool: Arc<Http1Pool>,
    deadline: Pin<Box<Sleep>>,
}

impl Body for Streamed {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        // Twice: the body asks for more only when polled, and the connection reads it on its
        // next poll (often from bytes it already holds, such as the closing chunk).
        for _ in 0..2 {
            if let Some(open) = &mut this.open
                && open.poll_connection(cx).is_err()
            {
                // Whatever it read before ending is in the body, or the body says it is cut.
                this.open = None;
            }
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => return Poll::Ready(Some(Ok(frame))),
                Poll::Ready(Some(Err(error))) => {
                    this.open = None;
                    return Poll::Ready(Some(Err(std::io::Error::other(chain(&error)))));
                }
                Poll::Ready(None) => {
                    if let Some(open) = this.open.take() {
                        this.pool.checkin(open);
                    }
                    return Poll::Ready(None);
                }
                Poll::Pending => {}
            }
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.open = None;
            return Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the backend did not finish its answer in time",
            ))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Streamed {
    fn drop(&mut self) {
        // A reader that stops at the last data frame (the length was known) never polls for
        // the end: the connection is still reusable.
        if let Some(open) = self.open.take()
            && self.body.is_end_stream()
        {
            self.pool.checkin(open);
        }
    }
}

#[cfg(test)]
mod tests;
