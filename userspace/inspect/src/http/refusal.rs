//! Refusing a request: its audit event, built up while it is handled, written as a `deny`,
//! and the JSON response that tells the bottle why.

use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use super::{Conn, DownBody};
use crate::events::{ProxyEvent, audit_path};
use crate::server::Shared;

/// Why a step refused the request: the status the bottle gets and the audit reason.
#[derive(Debug, Clone, Copy)]
pub struct Refusal {
    pub status: StatusCode,
    pub reason: &'static str,
}

impl Refusal {
    pub const fn new(status: StatusCode, reason: &'static str) -> Self {
        Refusal { status, reason }
    }
}

/// The request's audit event while the request is handled, and when it started.
pub struct RequestAudit {
    pub ev: ProxyEvent,
    pub started: Instant,
}

impl RequestAudit {
    /// `pq`: the request's path and query (the event keeps the path only).
    pub fn new(conn: &Conn, req: &Request<Incoming>, pq: &str) -> Self {
        let shared = &conn.shared;
        let mut ev = ProxyEvent::new(&shared.cfg.bottle, "request", conn.client);
        ev.mode = if conn.tls { "inspect" } else { "plain" };
        ev.sni = (!conn.sni.is_empty()).then(|| conn.sni.clone());
        ev.dst = Some(conn.orig.dst.to_string());
        ev.pid = conn.orig.pid;
        ev.cookie = (conn.orig.sock_cookie != 0).then_some(conn.orig.sock_cookie);
        ev.rule = crate::server::rule_name(&conn.policy, conn.rule_id);
        ev.method = Some(req.method().to_string());
        ev.path = Some(audit_path(pq));
        RequestAudit {
            ev,
            started: Instant::now(),
        }
    }

    /// Writes the event as a `deny` and builds the refusal the bottle gets.
    pub fn deny(mut self, shared: &Shared, refused: Refusal) -> Response<DownBody> {
        self.ev.verdict = "deny";
        self.ev.reason = refused.reason;
        self.ev.status = Some(refused.status.as_u16());
        self.ev.finish(self.started);
        self.ev.rate(&shared.cfg.scanner);
        shared.audit(&self.ev);
        refusal(refused.status, refused.reason, &self.ev.detectors)
    }
}

/// A refusal sent to the bottle: status, stable reason, and the detectors (names only).
pub fn refusal(status: StatusCode, reason: &str, detectors: &[String]) -> Response<DownBody> {
    let body = serde_json::json!({
        "error": "cork refused this request",
        "reason": reason,
        "detectors": detectors,
    });
    let mut resp = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(reason) {
        h.insert(HeaderName::from_static("x-cork-refused"), v);
    }
    resp
}
