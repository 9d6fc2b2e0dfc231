//! One connection the kernel redirected to the proxy: who is it (kernel record), what is
//! it (peeked ClientHello or plain HTTP), and what policy says — refuse, pass through by
//! SNI, or terminate TLS and inspect every request.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cork_policy::{Policy, RuleId, WebDecision};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_rustls::TlsAcceptor;

use super::client_hello::{HelloError, MAX_PEEK_LEN, peek_client_hello};
use super::events::ProxyEvent;
use super::http::{self, Conn};
use super::server::{Shared, rule_name};
use crate::redirects::Original;

/// How long a client may take to send its ClientHello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS alert codes (RFC 8446 §6) sent when a flow is refused before the handshake.
const ALERT_HANDSHAKE_FAILURE: u8 = 40;
const ALERT_ACCESS_DENIED: u8 = 49;
const ALERT_INTERNAL_ERROR: u8 = 80;
const ALERT_UNRECOGNIZED_NAME: u8 = 112;

/// Serves one accepted connection; `_permit` is its place among the bottle's
/// [`MAX_CONNECTIONS`](super::server::MAX_CONNECTIONS), given back when the flow ends.
pub async fn handle(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    _permit: OwnedSemaphorePermit,
) {
    let started = Instant::now();
    let mut ev = ProxyEvent::new(&shared.cfg.bottle, "connection", peer);
    // Identity from the kernel only: a connection this bottle's programs did not redirect
    // (the host, another bottle, an evicted record) gets nothing.
    let Some(orig) = shared.cfg.redirects.take(peer, stream.as_fd()) else {
        ev.reason = "not_redirected";
        ev.finish(started);
        shared.audit(&ev);
        return;
    };
    ev.dst = Some(orig.dst.to_string());
    ev.pid = orig.pid;
    ev.cookie = (orig.sock_cookie != 0).then_some(orig.sock_cookie);
    ev.rule = shared.kernel_rule_name(orig.rule_id);
    let _ = stream.set_nodelay(true);

    match peek_hello(&stream).await {
        Ok(hello) => {
            let Some(sni) = hello.sni else {
                return refuse_tls(
                    &shared,
                    stream,
                    ev,
                    started,
                    "no_sni",
                    ALERT_UNRECOGNIZED_NAME,
                )
                .await;
            };
            ev.sni = Some(sni.clone());
            tls_flow(shared, stream, ev, started, orig, sni, peer).await;
        }
        Err(HelloError::LooksLikeHttp) => {
            ev.mode = "plain";
            plain_flow(shared, stream, orig, peer).await;
        }
        Err(e) => {
            let alert = match e {
                HelloError::Incomplete { .. } => None, // timed out or closed: nothing to say
                _ => Some(ALERT_HANDSHAKE_FAILURE),
            };
            ev.reason = e.reason();
            ev.finish(started);
            shared.audit(&ev);
            if let Some(a) = alert {
                send_alert(stream, a).await;
            }
        }
    }
}

/// A connection over the bottle's [`MAX_CONNECTIONS`](super::server::MAX_CONNECTIONS):
/// audited `connection_limit` with what the kernel recorded of it (taking the record also
/// frees its map entry), and closed at once — nothing is read, nothing goes upstream. The
/// bottle sees the connection close before any TLS or HTTP answer.
pub fn refuse_over_limit(shared: &Shared, stream: TcpStream, peer: SocketAddr) {
    let mut ev = ProxyEvent::new(&shared.cfg.bottle, "connection", peer);
    ev.reason = "connection_limit";
    if let Some(orig) = shared.cfg.redirects.take(peer, stream.as_fd()) {
        ev.dst = Some(orig.dst.to_string());
        ev.pid = orig.pid;
        ev.rule = shared.kernel_rule_name(orig.rule_id);
    }
    // Audited first, so the event is written by the time the bottle sees the close.
    shared.audit(&ev);
    drop(stream);
}

/// Peeks until the ClientHello is complete (nothing is consumed: rustls reads it again).
async fn peek_hello(stream: &TcpStream) -> Result<super::ClientHelloInfo, HelloError> {
    let mut buf = vec![0u8; MAX_PEEK_LEN];
    let deadline = tokio::time::Instant::now() + HELLO_TIMEOUT;
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return Err(HelloError::Incomplete { needed: None }),
        };
        match peek_client_hello(&buf[..n]) {
            Err(HelloError::Incomplete { .. }) => {
                // peek() returns at once while bytes are queued: wait a little for the rest
                // of a ClientHello split over several segments.
                if tokio::time::Instant::now() >= deadline {
                    return Err(HelloError::Incomplete { needed: None });
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            other => return other,
        }
    }
}

async fn refuse_tls(
    shared: &Shared,
    stream: TcpStream,
    mut ev: ProxyEvent,
    started: Instant,
    reason: &'static str,
    alert: u8,
) {
    ev.reason = reason;
    ev.finish(started);
    shared.audit(&ev);
    send_alert(stream, alert).await;
}

/// A fatal TLS alert record, so the client reports a TLS failure rather than a reset.
async fn send_alert(mut stream: TcpStream, description: u8) {
    let record = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, description];
    let _ = stream.write_all(&record).await;
    let _ = stream.shutdown().await;
}

/// What policy lets a flow to a name do.
pub enum Allowed {
    Inspect { rule_id: RuleId },
    PassThrough { rule_id: RuleId },
}

/// Does policy let this bottle reach `name` at `orig` (the SNI of a TLS flow, or the Host
/// of a plain-HTTP request)? The name must be allowed for the port, and the address must
/// be one the bottle was told for that very name. `Err` is the audit reason.
pub fn decide(
    shared: &Shared,
    policy: &Policy,
    name: &str,
    orig: &Original,
) -> Result<Allowed, &'static str> {
    let allowed = match policy.web_decision(name, orig.dst.port()) {
        WebDecision::Deny { reason, .. } => return Err(reason),
        WebDecision::Inspect { rule_id } => Allowed::Inspect { rule_id },
        WebDecision::PassThrough { rule_id } => Allowed::PassThrough { rule_id },
    };
    if !shared.cfg.resolved.resolved(name, orig.dst.ip()) {
        return Err("not_resolved_for_name");
    }
    Ok(allowed)
}

async fn tls_flow(
    shared: Arc<Shared>,
    stream: TcpStream,
    mut ev: ProxyEvent,
    started: Instant,
    orig: Original,
    sni: String,
    peer: SocketAddr,
) {
    // The flow goes by the generation in force now, whatever an update does meanwhile.
    let policy = shared.policy();
    let decision = match decide(&shared, &policy, &sni, &orig) {
        Ok(d) => d,
        Err(reason) => {
            return refuse_tls(&shared, stream, ev, started, reason, ALERT_ACCESS_DENIED).await;
        }
    };
    match decision {
        Allowed::PassThrough { rule_id } => {
            ev.mode = "passthrough";
            ev.rule = rule_name(&policy, rule_id);
            pass_through(shared, stream, ev, started, orig).await;
        }
        Allowed::Inspect { rule_id } => {
            let server_tls = match shared.server_tls(&sni) {
                Ok(c) => c,
                Err(e) => {
                    ev.error = Some(e);
                    return refuse_tls(
                        &shared,
                        stream,
                        ev,
                        started,
                        "leaf_failed",
                        ALERT_INTERNAL_ERROR,
                    )
                    .await;
                }
            };
            let acceptor = TlsAcceptor::from(server_tls);
            let tls = match acceptor.accept(stream).await {
                Ok(tls) => tls,
                Err(e) => {
                    ev.reason = "client_tls_failed";
                    ev.error = Some(e.to_string());
                    ev.finish(started);
                    shared.audit(&ev);
                    return;
                }
            };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let conn = Arc::new(
                Conn::new(shared.clone(), orig, sni, rule_id, h2, true, peer).with_policy(policy),
            );
            serve(conn, TokioIo::new(tls), h2).await;
        }
    }
}

/// Plain HTTP: the name comes from each request's Host header, checked per request.
async fn plain_flow(shared: Arc<Shared>, stream: TcpStream, orig: Original, peer: SocketAddr) {
    let conn = Arc::new(Conn::new(
        shared,
        orig,
        String::new(),
        0,
        false,
        false,
        peer,
    ));
    serve(conn, TokioIo::new(stream), false).await;
}

async fn serve<I>(conn: Arc<Conn>, io: I, h2: bool)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let conn = conn.clone();
        async move { Ok::<_, std::convert::Infallible>(http::handle(conn, req).await) }
    });
    let result = if h2 {
        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, svc)
            .await
    } else {
        hyper::server::conn::http1::Builder::new()
            .serve_connection(io, svc)
            .with_upgrades()
            .await
    };
    if let Err(e) = result {
        tracing::debug!("proxy connection ended: {e}");
    }
}

async fn pass_through(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    mut ev: ProxyEvent,
    started: Instant,
    orig: Original,
) {
    // The SNI the flow was passed through for names the other candidates.
    let name = ev.sni.clone().unwrap_or_default();
    let fallbacks = || crate::fallback::fallbacks(orig.dst, &name, &shared.cfg.resolved);
    let mut up = match crate::fallback::connect(orig.dst, fallbacks).await {
        Ok((up, served)) => {
            if served != orig.dst {
                ev.served_by = Some(served.to_string());
            }
            up
        }
        Err(f) => {
            ev.reason = "upstream_connect";
            ev.error = Some(match f.error {
                Some(e) => format!("connecting to {}: {e}", f.dst),
                None => format!("connecting to {}: timed out", f.dst),
            });
            ev.finish(started);
            shared.audit(&ev);
            return;
        }
    };
    let _ = up.set_nodelay(true);
    ev.verdict = "allow";
    ev.reason = "passthrough";
    // Written however the relay ends — even when the task is dropped because the bottle
    // stops while the upstream still holds its side open.
    let mut audit = RelayAudit {
        shared,
        ev: Some(ev),
        started,
    };
    let copied = tokio::io::copy_bidirectional(&mut stream, &mut up).await;
    if let Some(ev) = audit.ev.as_mut() {
        match copied {
            Ok((a, b)) => {
                ev.bytes_up = a;
                ev.bytes_down = b;
            }
            Err(e) => ev.error = Some(e.to_string()),
        }
    }
    audit.write();
}

/// A pass-through flow's event, written once: when the relay ends, or when its task is
/// dropped first (then with an error saying the relay was cut).
struct RelayAudit {
    shared: Arc<Shared>,
    ev: Option<ProxyEvent>,
    started: Instant,
}

impl RelayAudit {
    fn write(&mut self) {
        if let Some(mut ev) = self.ev.take() {
            ev.finish(self.started);
            self.shared.audit(&ev);
        }
    }
}

impl Drop for RelayAudit {
    fn drop(&mut self) {
        if let Some(ev) = self.ev.as_mut() {
            ev.error
                .get_or_insert_with(|| "the relay was cut: the bottle stopped".to_owned());
        }
        self.write();
    }
}
