//! The endpoints: every request is recorded (head first, then its body as it arrives),
//! then answered by path.
//!
//! | path | answer |
//! | --- | --- |
//! | `/sse?n=N&interval_ms=M` | N `data: i` events, M ms apart, `text/event-stream` |
//! | `/bytes?n=N` | N bytes of `x`, streamed in 16 KiB chunks |
//! | `/echo-header?name=H` | header H's value in `x-echo` and as the body |
//! | `/ws` | WebSocket upgrade (HTTP/1.1), echoing messages |
//! | `…/git-receive-pack`, `…/info/refs?service=git-receive-pack` | 200 `ok` |
//! | anything else | JSON of the recorded request |

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request as HttpRequest, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;

use super::log::{BODY_KEEP, BodyEnd, Request, RequestLog};
use super::ws;

/// The response body type of every endpoint.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// How much of the body the default endpoint echoes back.
const ECHO_BODY_MAX: usize = 64 << 10;
/// Chunk size of `/bytes`.
const CHUNK: usize = 16 << 10;

/// What the connection knows that a request does not carry.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The connection's id in the log.
    pub conn: usize,
    /// SNI, if TLS and sent.
    pub sni: Option<String>,
}

/// Marks the request's body cut if the handler is dropped before the body settled (hyper
/// drops a connection's in-flight request when the client goes away).
struct Settle<'a> {
    log: &'a RequestLog,
    id: usize,
}

impl Drop for Settle<'_> {
    fn drop(&mut self) {
        self.log.update(self.id, |r| {
            if r.body_end == BodyEnd::Pending {
                r.body_end = BodyEnd::Cut {
                    error: "request dropped before its body ended".into(),
                };
            }
        });
    }
}

/// Records `req` and answers it.
pub async fn handle(
    mut req: HttpRequest<Incoming>,
    log: Arc<RequestLog>,
    info: ConnInfo,
) -> Result<Response<Body>, Infallible> {
    let id = log.add_request(head_record(&req, &info));
    let settle = Settle { log: &log, id };
    let query = req.uri().query().unwrap_or_default().to_owned();
    let path = req.uri().path().to_owned();

    if path == "/ws" {
        return Ok(websocket(&mut req, &log, id));
    }
    let mut body = req.into_body();
    let mut kept = 0;
    loop {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let keep = data.slice(..data.len().min(BODY_KEEP - kept));
                    kept += keep.len();
                    let len = data.len() as u64;
                    log.update(id, |r| {
                        r.body_len += len;
                        r.body.extend_from_slice(&keep);
                    });
                }
            }
            Some(Err(e)) => {
                log.update(id, |r| {
                    r.body_end = BodyEnd::Cut {
                        error: e.to_string(),
                    }
                });
                return Ok(status(StatusCode::BAD_REQUEST, "body cut\n"));
            }
        }
    }
    log.update(id, |r| r.body_end = BodyEnd::Complete);
    drop(settle);

    let params = |key: &str| -> Option<String> {
        query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == key).then(|| v.to_owned())
        })
    };
    let num = |key: &str, default: u64| params(key).and_then(|v| v.parse().ok()).unwrap_or(default);
    let resp = match path.as_str() {
        "/sse" => sse(num("n", 3), Duration::from_millis(num("interval_ms", 100))),
        "/bytes" => bytes(num("n", 1024)),
        "/echo-header" => echo_header(&log, id, &params("name").unwrap_or_default()),
        p if p.ends_with("/git-receive-pack")
            || (p.ends_with("/info/refs")
                && params("service").as_deref() == Some("git-receive-pack")) =>
        {
            status(StatusCode::OK, "ok\n")
        }
        _ => echo_json(&log, id),
    };
    Ok(resp)
}

fn head_record(req: &HttpRequest<Incoming>, info: &ConnInfo) -> Request {
    let mut headers = std::collections::BTreeMap::<String, Vec<String>>::new();
    for (name, value) in req.headers() {
        headers
            .entry(name.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let host = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| headers.get("host").and_then(|v| v.first().cloned()));
    Request {
        id: 0,
        conn: info.conn,
        method: req.method().to_string(),
        target: req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "/".into()),
        version: format!("{:?}", req.version()),
        host,
        sni: info.sni.clone(),
        headers,
        body: Vec::new(),
        body_len: 0,
        body_end: BodyEnd::Pending,
        ws_messages: Vec::new(),
    }
}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed_unsync()
}

fn status(code: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(full(text));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

fn snapshot(log: &RequestLog, id: usize) -> Option<Request> {
    log.requests().into_iter().nth(id)
}

fn echo_json(log: &RequestLog, id: usize) -> Response<Body> {
    let Some(r) = snapshot(log, id) else {
        return status(StatusCode::INTERNAL_SERVER_ERROR, "lost record\n");
    };
    let shown = &r.body[..r.body.len().min(ECHO_BODY_MAX)];
    let json = serde_json::json!({
        "method": r.method,
        "path": r.target,
        "version": r.version,
        "host": r.host,
        "sni": r.sni,
        "headers": r.headers,
        "body_len": r.body_len,
        "body": String::from_utf8_lossy(shown),
    });
    let mut resp = Response::new(full(json.to_string()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn echo_header(log: &RequestLog, id: usize, name: &str) -> Response<Body> {
    let value = snapshot(log, id)
        .and_then(|r| r.header(name).map(str::to_owned))
        .unwrap_or_default();
    let mut resp = Response::new(full(value.clone()));
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().insert("x-echo", v);
    }
    resp
}

fn sse(n: u64, interval: Duration) -> Response<Body> {
    let events = futures_util::stream::unfold(0u64, move |i| async move {
        if i >= n {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(interval).await;
        }
        let frame = Frame::data(Bytes::from(format!("data: {i}\n\n")));
        Some((Ok::<_, Infallible>(frame), i + 1))
    });
    let mut resp = Response::new(StreamBody::new(events).boxed_unsync());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

fn bytes(n: u64) -> Response<Body> {
    static FILL: [u8; CHUNK] = [b'x'; CHUNK];
    let chunks = futures_util::stream::unfold(n, |left| async move {
        if left == 0 {
            return None;
        }
        let take = left.min(CHUNK as u64);
        let frame = Frame::data(Bytes::from_static(&FILL[..take as usize]));
        Some((Ok::<_, Infallible>(frame), left - take))
    });
    let mut resp = Response::new(StreamBody::new(chunks).boxed_unsync());
    let h = resp.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    resp
}

/// Answers a WebSocket handshake with 101 and echoes on the upgraded connection.
fn websocket(req: &mut HttpRequest<Incoming>, log: &Arc<RequestLog>, id: usize) -> Response<Body> {
    let h = req.headers();
    let has = |name: header::HeaderName, token: &str| {
        h.get_all(name).iter().any(|v| {
            v.to_str()
                .unwrap_or_default()
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        })
    };
    let key = h
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let ok = req.version() == http::Version::HTTP_11
        && has(header::UPGRADE, "websocket")
        && has(header::CONNECTION, "upgrade")
        && h.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) == Some(b"13");
    // The handshake carries no body; it is settled now either way.
    log.update(id, |r| r.body_end = BodyEnd::Complete);
    let (Some(key), true) = (key, ok) else {
        return status(StatusCode::BAD_REQUEST, "not a websocket handshake\n");
    };
    let upgrade = hyper::upgrade::on(req);
    let log = log.clone();
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut io = TokioIo::new(upgraded);
        let _ = ws::echo(&mut io, |m| log.update(id, |r| r.ws_messages.push(m))).await;
    });
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let rh = resp.headers_mut();
    rh.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    rh.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&ws::accept_key(&key)) {
        rh.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}
