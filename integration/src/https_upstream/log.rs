//! What the test upstream saw: one [`Request`] per request (updated while its body
//! streams in) and one [`Conn`] per accepted connection, shared with the test.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

pub use super::ws::WsMessage;

/// The most body bytes kept per request; `body_len` counts all of them.
pub const BODY_KEEP: usize = 1 << 20;

/// How a request body ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyEnd {
    /// Still arriving.
    Pending,
    /// Ended as the framing said (content-length reached, last chunk, END_STREAM).
    Complete,
    /// Cut short: the client reset the stream or closed the connection mid-body.
    Cut {
        /// What hyper reported.
        error: String,
    },
}

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Request {
    /// Position in the log.
    pub id: usize,
    /// The [`Conn::id`] it arrived on.
    pub conn: usize,
    /// Method.
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// `HTTP/1.1`, `HTTP/2.0`, ...
    pub version: String,
    /// `:authority` (HTTP/2) or the `Host` header.
    pub host: Option<String>,
    /// The TLS server name the client sent on this connection (`None`: plain or no SNI).
    pub sni: Option<String>,
    /// Every header, lowercase name → values in order (lossy UTF-8).
    pub headers: BTreeMap<String, Vec<String>>,
    /// The first [`BODY_KEEP`] bytes of the body.
    pub body: Vec<u8>,
    /// The body length received so far (all of it, kept or not).
    pub body_len: u64,
    /// How the body ended.
    pub body_end: BodyEnd,
    /// WebSocket messages received after an upgrade on `/ws`, in order.
    pub ws_messages: Vec<WsMessage>,
}

impl Request {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    /// Whether `needle` occurs in the target, a header, the kept body or a WebSocket
    /// message: what a test asserts absent for a secret cork should have stopped.
    pub fn contains(&self, needle: &[u8]) -> bool {
        let has = |hay: &[u8]| !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle);
        has(self.target.as_bytes())
            || self.headers.values().flatten().any(|v| has(v.as_bytes()))
            || has(&self.body)
            || self.ws_messages.iter().any(|m| has(&m.payload))
    }
}

/// One accepted connection.
#[derive(Debug, Clone)]
pub struct Conn {
    /// Position in the connection log.
    pub id: usize,
    /// The client's address.
    pub peer: SocketAddr,
    /// The listening address it arrived on.
    pub local: SocketAddr,
    /// Whether the listener was a TLS one.
    pub tls: bool,
    /// SNI, when TLS and sent.
    pub sni: Option<String>,
    /// The negotiated ALPN protocol.
    pub alpn: Option<String>,
    /// Why the TLS handshake failed, if it did.
    pub handshake_error: Option<String>,
}

/// The shared record; the server appends and updates, the test reads and waits.
#[derive(Debug, Default)]
pub struct RequestLog {
    inner: Mutex<Inner>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct Inner {
    requests: Vec<Request>,
    conns: Vec<Conn>,
}

impl RequestLog {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    /// Every connection so far.
    pub fn conns(&self) -> Vec<Conn> {
        self.lock().conns.clone()
    }

    /// Waits until `pred` holds for the requests and returns them. When `timeout` passes
    /// first it is an error naming `what` was awaited and listing the requests so far: a
    /// caller cannot mistake a timeout for the state it waited for.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Request]) -> bool,
    ) -> Result<Vec<Request>> {
        let deadline = Instant::now() + timeout;
        let mut inner = self.lock();
        while !pred(&inner.requests) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "timed out after {timeout:?} waiting for {what}; the upstream saw:\n{}",
                    summary(&inner.requests)
                );
            }
            inner = self
                .changed
                .wait_timeout(inner, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(inner.requests.clone())
    }

    /// Waits until at least `n` requests arrived and none is [`BodyEnd::Pending`].
    pub fn wait_settled(&self, n: usize, timeout: Duration) -> Result<Vec<Request>> {
        self.wait_until(&format!("{n} settled request(s)"), timeout, |r| {
            r.len() >= n && r.iter().all(|q| q.body_end != BodyEnd::Pending)
        })
    }

    /// Waits until a request for `path` arrived with its whole body, and every request
    /// so far has settled. A test sends such a clean request *after* the one under test;
    /// once it is here, what the earlier one delivered is here too, so asserting that a
    /// secret did not arrive means something.
    pub fn wait_sentinel(&self, path: &str, timeout: Duration) -> Result<Vec<Request>> {
        let what = format!("a complete request for {path} and every request settled");
        self.wait_until(&what, timeout, |r| {
            r.iter()
                .any(|q| q.path() == path && q.body_end == BodyEnd::Complete)
                && r.iter().all(|q| q.body_end != BodyEnd::Pending)
        })
    }

    /// Whether any request so far contains `needle` (see [`Request::contains`]).
    pub fn saw(&self, needle: &[u8]) -> bool {
        self.lock().requests.iter().any(|r| r.contains(needle))
    }

    pub(super) fn add_conn(&self, mut conn: Conn) -> usize {
        let mut inner = self.lock();
        conn.id = inner.conns.len();
        let id = conn.id;
        inner.conns.push(conn);
        self.changed.notify_all();
        id
    }

    pub(super) fn add_request(&self, mut req: Request) -> usize {
        let mut inner = self.lock();
        req.id = inner.requests.len();
        let id = req.id;
        inner.requests.push(req);
        self.changed.notify_all();
        id
    }

    /// Applies `f` to request `id` and wakes waiters.
    pub(super) fn update(&self, id: usize, f: impl FnOnce(&mut Request)) {
        let mut inner = self.lock();
        if let Some(r) = inner.requests.get_mut(id) {
            f(r);
        }
        self.changed.notify_all();
    }
}

/// One line per request (method, target, body length and end): enough to see what
/// arrived without dumping bodies.
fn summary(requests: &[Request]) -> String {
    if requests.is_empty() {
        return "  (no request)".to_owned();
    }
    requests
        .iter()
        .map(|r| {
            format!(
                "  #{} {} {} body {} bytes, {:?}",
                r.id, r.method, r.target, r.body_len, r.body_end
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
