//! Every HTTP request on an inspected connection: the name it asks for must be the SNI
//! (no fronting, no HTTP/2 coalescing), the route must be allowed, DLP looks at the URL,
//! headers and streamed body, credentials are swapped in on their domain only, and the
//! response streams back with real values swapped back out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use cork_policy::{DlpAction, RouteVerdict, WebDecision, route_decision};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use super::BoxError;
use super::body::{AuditOnEnd, InspectedBody, ReturnBody, SharedReport, lock};
use super::client_hello::normalize_host_name;
use super::events::{ProxyEvent, audit_path};
use super::server::Shared;
use super::upstream::{self, Sender, UpBody};
use super::{codings, websocket_relay};
use crate::bpf::redirects::Original;
use crate::dlp::Finding;

pub type DownBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// Hop-by-hop headers (RFC 9110 §7.6.1) and framing the proxy owns on each side.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
];

/// One bottle connection on the proxy and its upstream.
pub struct Conn {
    pub shared: Arc<Shared>,
    pub orig: Original,
    /// The SNI the flow was allowed for; empty for plain HTTP (decided per request).
    pub sni: String,
    pub rule_id: u16,
    pub h2: bool,
    pub tls: bool,
    pub client: SocketAddr,
    upstream: tokio::sync::Mutex<Option<Sender>>,
}

impl Conn {
    pub fn new(
        shared: Arc<Shared>,
        orig: Original,
        sni: String,
        rule_id: u16,
        h2: bool,
        tls: bool,
        client: SocketAddr,
    ) -> Self {
        Conn {
            shared,
            orig,
            sni,
            rule_id,
            h2,
            tls,
            client,
            upstream: tokio::sync::Mutex::new(None),
        }
    }

    fn tls_config(&self) -> Option<&Arc<rustls::ClientConfig>> {
        match (self.tls, self.h2) {
            (false, _) => None,
            (true, true) => Some(&self.shared.client_h2),
            (true, false) => Some(&self.shared.client_h1),
        }
    }
}

/// A refusal sent to the bottle: status, stable reason, and the detectors (names only).
fn refusal(status: StatusCode, reason: &str, detectors: &[String]) -> Response<DownBody> {
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

struct Request0 {
    ev: ProxyEvent,
    started: Instant,
}

impl Request0 {
    fn deny(
        mut self,
        shared: &Shared,
        status: StatusCode,
        reason: &'static str,
    ) -> Response<DownBody> {
        self.ev.verdict = "deny";
        self.ev.reason = reason;
        self.ev.status = Some(status.as_u16());
        self.ev.finish(self.started);
        shared.audit(&self.ev);
        refusal(status, reason, &self.ev.detectors)
    }
}

/// A request whose body, if it was never forwarded (the request was refused), is read
/// and discarded in the background: a refusal then reaches the client as a response, not
/// as a reset stream (HTTP/2) or a closed connection (HTTP/1.1).
struct Draining(Option<Request<Incoming>>);

/// How much of a refused request's body is read before giving up on it.
const DRAIN_LIMIT: u64 = 1 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

impl std::ops::Deref for Draining {
    type Target = Request<Incoming>;
    fn deref(&self) -> &Request<Incoming> {
        self.0.as_ref().expect("request present until taken")
    }
}

impl std::ops::DerefMut for Draining {
    fn deref_mut(&mut self) -> &mut Request<Incoming> {
        self.0.as_mut().expect("request present until taken")
    }
}

impl Draining {
    fn take(mut self) -> Request<Incoming> {
        self.0.take().expect("request present until taken")
    }
}

impl Drop for Draining {
    fn drop(&mut self) {
        let Some(req) = self.0.take() else { return };
        let mut body = req.into_body();
        if hyper::body::Body::is_end_stream(&body) {
            return;
        }
        tokio::spawn(async move {
            let mut read = 0u64;
            let drain = async {
                while let Some(Ok(frame)) = body.frame().await {
                    read += frame.data_ref().map_or(0, |d| d.len() as u64);
                    if read > DRAIN_LIMIT {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
        });
    }
}

pub async fn handle(conn: Arc<Conn>, req: Request<Incoming>) -> Response<DownBody> {
    let mut req = Draining(Some(req));
    let shared = conn.shared.clone();
    let mut ev = ProxyEvent::new(&shared.cfg.bottle, "request", conn.client);
    ev.mode = if conn.tls { "inspect" } else { "plain" };
    ev.sni = (!conn.sni.is_empty()).then(|| conn.sni.clone());
    ev.dst = Some(conn.orig.dst.to_string());
    ev.pid = Some(conn.orig.pid);
    ev.rule = shared.rule_name(conn.rule_id);
    ev.method = Some(req.method().to_string());
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned());
    ev.path = Some(audit_path(&pq));
    let r = Request0 {
        ev,
        started: Instant::now(),
    };

    // The name this request is for, and whether policy lets it through.
    let authority = match request_authority(&req, conn.h2) {
        Some(a) => a,
        None => return r.deny(&shared, StatusCode::BAD_REQUEST, "missing_host"),
    };
    let Some((host, port)) = split_authority(&authority) else {
        return r.deny(&shared, StatusCode::BAD_REQUEST, "bad_host");
    };
    let mut r = r;
    r.ev.host = Some(host.clone());
    if port.is_some_and(|p| p != conn.orig.dst.port()) {
        return r.deny(&shared, StatusCode::MISDIRECTED_REQUEST, "port_mismatch");
    }
    let rule_id = if conn.tls {
        if host != conn.sni {
            // HTTP/2 clients coalesce hosts onto one connection: 421 tells them to open a
            // new one. On HTTP/1.1 a different Host is domain fronting.
            return if conn.h2 {
                r.deny(&shared, StatusCode::MISDIRECTED_REQUEST, "host_mismatch")
            } else {
                r.deny(&shared, StatusCode::FORBIDDEN, "host_mismatch")
            };
        }
        conn.rule_id
    } else {
        match super::flow::decide_plain(&shared, &host, &conn.orig) {
            Ok(WebDecision::Inspect { rule_id } | WebDecision::PassThrough { rule_id }) => rule_id,
            Ok(WebDecision::Deny { reason, .. }) | Err(reason) => {
                return r.deny(&shared, StatusCode::FORBIDDEN, reason);
            }
        }
    };
    r.ev.rule = shared.rule_name(rule_id);

    if req.method() == Method::CONNECT {
        return r.deny(&shared, StatusCode::FORBIDDEN, "connect_refused");
    }
    let websocket = is_websocket(&req);
    if req.headers().contains_key(header::UPGRADE) && !websocket {
        return r.deny(&shared, StatusCode::FORBIDDEN, "upgrade_refused");
    }
    if let Some(rule) = shared.cfg.policy.domain_rule(rule_id) {
        match route_decision(rule, req.method().as_str(), &pq) {
            RouteVerdict::Allowed => {}
            RouteVerdict::NoRoute => return r.deny(&shared, StatusCode::FORBIDDEN, "no_route"),
            RouteVerdict::GitPush => {
                return r.deny(&shared, StatusCode::FORBIDDEN, "git_push_refused");
            }
            RouteVerdict::BadPath => return r.deny(&shared, StatusCode::BAD_REQUEST, "bad_path"),
        }
    }

    // DLP on the URL and every header value, before anything is forwarded.
    let action = shared.dlp_action;
    r.ev.dlp_action = None;
    let mut new_pq = None;
    // One DLP pass over the URL and every header value, each on a line of its own (a
    // stream per value would cost a scanner setup each, at tens of thousands of req/s).
    let mut headers = std::mem::take(req.headers_mut());
    let mut joined = Vec::with_capacity(pq.len() + 64 * headers.len());
    let mut spans = Vec::with_capacity(headers.len() + 1);
    for v in std::iter::once(pq.as_bytes()).chain(headers.values().map(HeaderValue::as_bytes)) {
        spans.push(joined.len()..joined.len() + v.len());
        joined.extend_from_slice(v);
        joined.push(b'\n');
    }
    let findings = scan_all(&shared, &joined);
    if !findings.is_empty() {
        note(&mut r.ev, &findings, action);
        match action {
            DlpAction::Block => return r.deny(&shared, StatusCode::FORBIDDEN, "dlp_blocked"),
            DlpAction::Redact => {
                let redacted = |i: usize| {
                    let span = spans[i].clone();
                    let start = span.start as u64;
                    let hit = findings
                        .iter()
                        .any(|f| f.start < span.end as u64 && f.end() > start);
                    hit.then(|| crate::dlp::redact(&joined[span], start, &findings))
                };
                if let Some(red) = redacted(0) {
                    new_pq = Some(percent_safe(&red));
                }
                let mut out = HeaderMap::with_capacity(headers.len());
                for (i, (name, value)) in headers.iter().enumerate() {
                    let v = redacted(i + 1)
                        .and_then(|red| HeaderValue::from_bytes(&red).ok())
                        .unwrap_or_else(|| value.clone());
                    out.append(name.clone(), v);
                }
                headers = out;
            }
            DlpAction::Log => {}
        }
    }

    // Credentials: the placeholder becomes the real value in the credential's header, on
    // its domain only. Upstream is asked for identity encoding so an echoed value can be
    // swapped back before the bottle sees it.
    let creds = shared.cfg.credentials.for_host(&host);
    if let Some(hc) = creds {
        for inject in &hc.inject {
            if inject.apply(&mut headers) {
                r.ev.credentials
                    .push(inject.credential.credential.env.clone());
            }
        }
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
    }

    // The request body: decoded for scanning when compressed, forwarded as it came.
    let decoder = match codings::decoder_for(&headers) {
        Ok(d) => d,
        Err(reason) => return r.deny(&shared, StatusCode::UNSUPPORTED_MEDIA_TYPE, reason),
    };
    if action == DlpAction::Redact && decoder.is_none() {
        headers.remove(header::CONTENT_LENGTH);
    }
    let report: SharedReport = Arc::default();
    let mut req = req.take();
    let down_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    let body = InspectedBody::new(
        req.into_body(),
        shared.cfg.scanner.stream(),
        action,
        decoder,
        report.clone(),
    );

    let sender = if websocket {
        // A dedicated HTTP/1.1 connection: upgrades cannot share one.
        upstream::connect(conn.orig.dst, &host, conn.tls.then_some(&shared.client_h1))
            .await
            .map(Some)
    } else {
        Ok(None)
    };
    let mut ws_sender = match sender {
        Ok(s) => s,
        Err(e) => return upstream_failed(r, &shared, e),
    };
    let up_h2 = match ws_sender.as_ref() {
        Some(s) => s.is_h2(),
        None => match current_upstream(&conn, &host).await {
            Ok(h2) => h2,
            Err(e) => return upstream_failed(r, &shared, e),
        },
    };

    strip_hop_by_hop(&mut headers, websocket);
    if websocket {
        headers.remove(HeaderName::from_static("sec-websocket-extensions"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
    let pq = new_pq.unwrap_or(pq);
    let mut up_req = Request::new(body.boxed_unsync());
    *up_req.method_mut() = req_method(&r.ev);
    if up_h2 {
        headers.remove(header::HOST);
        *up_req.uri_mut() = match Uri::builder()
            .scheme("https")
            .authority(authority.as_str())
            .path_and_query(pq.as_str())
            .build()
        {
            Ok(u) => u,
            Err(_) => return r.deny(&shared, StatusCode::BAD_REQUEST, "bad_path"),
        };
        *up_req.version_mut() = Version::HTTP_2;
    } else {
        if let Ok(v) = HeaderValue::from_str(&authority) {
            headers.insert(header::HOST, v);
        }
        *up_req.uri_mut() = match pq.parse() {
            Ok(u) => u,
            Err(_) => return r.deny(&shared, StatusCode::BAD_REQUEST, "bad_path"),
        };
        *up_req.version_mut() = Version::HTTP_11;
    }
    *up_req.headers_mut() = headers;

    let result = match ws_sender.as_mut() {
        Some(s) => send(s, up_req).await.map_err(BoxError::from),
        None => send_shared(&conn, up_req).await,
    };
    let mut resp = match result {
        Ok(resp) => resp,
        Err(e) => {
            let rep = lock(&report);
            if rep.blocked {
                r.ev.detectors.clone_from(&rep.detectors);
                r.ev.bytes_up = rep.bytes;
                drop(rep);
                return r.deny(&shared, StatusCode::FORBIDDEN, "dlp_blocked");
            }
            if rep.undecodable {
                drop(rep);
                return r.deny(&shared, StatusCode::BAD_REQUEST, "body_undecodable");
            }
            drop(rep);
            r.ev.error = Some(e.to_string());
            return r.deny(&shared, StatusCode::BAD_GATEWAY, "upstream_failed");
        }
    };

    let status = resp.status();
    r.ev.verdict = "allow";
    r.ev.status = Some(status.as_u16());
    r.ev.reason = match (r.ev.detectors.is_empty(), action) {
        (true, _) => "allowed",
        (false, DlpAction::Redact) => "dlp_redacted",
        (false, _) => "dlp_logged",
    };
    let mut out_headers = std::mem::take(resp.headers_mut());
    strip_hop_by_hop(
        &mut out_headers,
        websocket && status == StatusCode::SWITCHING_PROTOCOLS,
    );
    if let Some(hc) = creds {
        hc.headers_back(&mut out_headers);
        out_headers.remove(header::CONTENT_LENGTH);
    }

    if websocket && status == StatusCode::SWITCHING_PROTOCOLS {
        let up_upgrade = hyper::upgrade::on(&mut resp);
        let mut builder = Response::builder().status(status);
        if let Some(h) = builder.headers_mut() {
            *h = out_headers;
            h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        }
        let audit = AuditOnEnd {
            event: r.ev,
            started: r.started,
            sink: shared.cfg.sink.clone(),
            report: Some(report),
            dlp_action: action,
        };
        if let Some(down) = down_upgrade {
            tokio::spawn(websocket_relay::relay(
                shared.clone(),
                down,
                up_upgrade,
                audit,
            ));
        }
        return builder
            .body(
                http_body_util::Empty::new()
                    .map_err(|n| match n {})
                    .boxed_unsync(),
            )
            .unwrap_or_else(|_| refusal(StatusCode::BAD_GATEWAY, "upstream_failed", &[]));
    }

    let audit = AuditOnEnd {
        event: r.ev,
        started: r.started,
        sink: shared.cfg.sink.clone(),
        report: Some(report),
        dlp_action: action,
    };
    let body = ReturnBody::new(resp.into_body(), creds.map(|hc| hc.stream_back()), audit);
    let mut out = Response::new(body.boxed_unsync());
    *out.status_mut() = status;
    *out.headers_mut() = out_headers;
    out
}

fn req_method(ev: &ProxyEvent) -> Method {
    ev.method
        .as_deref()
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .unwrap_or(Method::GET)
}

fn upstream_failed(
    mut r: Request0,
    shared: &Shared,
    e: upstream::UpstreamError,
) -> Response<DownBody> {
    r.ev.error = Some(e.to_string());
    let reason = e.reason();
    r.deny(shared, StatusCode::BAD_GATEWAY, reason)
}

/// Makes sure the connection's upstream is up; returns whether it speaks HTTP/2.
async fn current_upstream(conn: &Conn, host: &str) -> Result<bool, upstream::UpstreamError> {
    let mut up = conn.upstream.lock().await;
    if let Some(s) = up.as_ref()
        && !s.is_closed()
    {
        return Ok(s.is_h2());
    }
    let s = upstream::connect(conn.orig.dst, host, conn.tls_config()).await?;
    let h2 = s.is_h2();
    *up = Some(s);
    Ok(h2)
}

async fn send(s: &mut Sender, req: Request<UpBody>) -> Result<Response<Incoming>, hyper::Error> {
    match s {
        Sender::H1(s) => {
            s.ready().await?;
            s.send_request(req).await
        }
        Sender::H2(s) => {
            s.ready().await?;
            s.send_request(req).await
        }
    }
}

/// Sends on the connection's shared upstream. HTTP/2 multiplexes; HTTP/1.1 takes turns
/// (the lock is held only until the request is handed to the connection).
async fn send_shared(conn: &Conn, req: Request<UpBody>) -> Result<Response<Incoming>, BoxError> {
    let fut = {
        let mut up = conn.upstream.lock().await;
        let Some(s) = up.as_mut() else {
            return Err("upstream connection closed".into());
        };
        match s {
            Sender::H1(s) => {
                s.ready().await?;
                futures_util::future::Either::Left(s.send_request(req))
            }
            Sender::H2(s) => {
                s.ready().await?;
                futures_util::future::Either::Right(s.send_request(req))
            }
        }
    };
    Ok(fut.await?)
}

fn scan_all(shared: &Shared, bytes: &[u8]) -> Vec<Finding> {
    let mut s = shared.cfg.scanner.stream();
    let mut f = s.feed(bytes);
    f.extend(s.finish());
    f
}

fn note(ev: &mut ProxyEvent, findings: &[Finding], action: DlpAction) {
    for f in findings {
        if !ev.detectors.contains(&f.detector) {
            ev.detectors.push(f.detector.clone());
        }
    }
    ev.dlp_action = Some(match action {
        DlpAction::Block => "block",
        DlpAction::Redact => "redact",
        DlpAction::Log => "log",
    });
}

/// A redacted URL keeps only URL-safe bytes (the marker's brackets are percent-encoded).
fn percent_safe(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_graphic() && b != b'[' && b != b']' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn is_websocket(req: &Request<Incoming>) -> bool {
    req.version() == Version::HTTP_11
        && req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The request's Host (HTTP/1.1) or :authority (HTTP/2, Host if absent). Both present on
/// HTTP/2 and different: refused as ambiguous.
fn request_authority(req: &Request<Incoming>, h2: bool) -> Option<String> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if h2 {
        let auth = req.uri().authority().map(|a| a.as_str().to_owned());
        return match (auth, host) {
            (Some(a), Some(h)) if !a.eq_ignore_ascii_case(&h) => None,
            (Some(a), _) => Some(a),
            (None, h) => h,
        };
    }
    if req.headers().get_all(header::HOST).iter().count() > 1 {
        return None;
    }
    host
}

/// `name[:port]`, name normalised as SNI is. IP literals are refused (no name to check).
fn split_authority(authority: &str) -> Option<(String, Option<u16>)> {
    if authority.contains('@') || authority.starts_with('[') {
        return None;
    }
    let (name, port) = match authority.rsplit_once(':') {
        Some((n, p)) => (n, Some(p.parse::<u16>().ok()?)),
        None => (authority, None),
    };
    let name = normalize_host_name(name.as_bytes()).ok()?;
    Some((name, port))
}

fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Headers named in Connection are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        if !(keep_upgrade && n == header::UPGRADE) {
            headers.remove(n);
        }
    }
    for h in HOP_BY_HOP {
        if keep_upgrade && (*h == "upgrade" || *h == "connection") {
            continue;
        }
        headers.remove(*h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_split_and_normalise() {
        assert_eq!(
            split_authority("API.Example.test:443"),
            Some(("api.example.test".into(), Some(443)))
        );
        assert_eq!(
            split_authority("api.example.test"),
            Some(("api.example.test".into(), None))
        );
        assert_eq!(split_authority("[2001:db8::1]:443"), None);
        assert_eq!(split_authority("198.51.100.1"), None);
        assert_eq!(split_authority("user@api.example.test"), None);
        assert_eq!(split_authority("api.example.test:x"), None);
    }

    #[test]
    fn redacted_urls_stay_valid() {
        let s = percent_safe(b"/a?k=[REDACTED] x");
        assert_eq!(s, "/a?k=%5BREDACTED%5D%20x");
        assert!(s.parse::<Uri>().is_ok());
    }
}
