//! Forwarding: the request body wrapped for streaming DLP, the upstream (the connection's
//! own, taken from the bottle's pool or made, or a dedicated one for a WebSocket upgrade), the request rebuilt for the
//! protocol the upstream speaks, and sending it.

use std::sync::Arc;

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::admit::Admitted;
use super::draining::Draining;
use super::head::{Head, strip_hop_by_hop};
use super::refusal::{Refusal, RequestAudit};
use super::respond::Exchanged;
use super::{BoxError, Conn};
use crate::body::{InspectedBody, SharedReport, lock};
use crate::codings;
use crate::pool::{self, Lease};
use crate::swap::HostCredentials;
use crate::upstream::{self, Sender, UpBody};

/// Sends the admitted, scanned request upstream; returns the response head, or why the
/// bottle is refused instead.
pub async fn forward(
    conn: &Conn,
    req: &mut Draining,
    admitted: Admitted,
    mut head: Head,
    creds: Option<Arc<HostCredentials>>,
    audit: &mut RequestAudit,
    buffered: Option<super::held_body::Buffered>,
) -> Result<Exchanged, Refusal> {
    let shared = &conn.shared;
    // The request body: decoded for scanning when compressed, forwarded as it came.
    let decoder = codings::decoder_for(&head.headers)
        .map_err(|reason| Refusal::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, reason))?;
    if admitted.rules.may_redact() && decoder.is_none() {
        head.headers.remove(header::CONTENT_LENGTH);
    }
    let report: SharedReport = Arc::default();
    let mut req = req.take();
    let method = req.method().clone();
    let down_upgrade = admitted.websocket.then(|| hyper::upgrade::on(&mut req));
    let body = InspectedBody::new(
        super::held_body::forwardable(buffered, req.into_body()),
        shared.cfg.scanner.clone(),
        admitted.rules.clone(),
        decoder,
        report.clone(),
    );

    let sender = if admitted.websocket {
        // A dedicated HTTP/1.1 connection: upgrades cannot share one.
        upstream::connect(
            conn.orig.dst,
            conn.fallbacks(&admitted.host),
            &admitted.host,
            conn.tls.then_some(&shared.client_h1),
        )
        .await
        .map(|(sender, served)| {
            note_served(audit, conn, served);
            Some(sender)
        })
    } else {
        Ok(None)
    };
    let mut ws_sender = sender.map_err(|e| upstream_failed(audit, e))?;
    let up_h2 = match ws_sender.as_ref() {
        Some(s) => s.is_h2(),
        None => current_upstream(conn, &admitted.host, audit)
            .await
            .map_err(|e| upstream_failed(audit, e))?,
    };

    let up_req = upstream_request(method, body, head, &admitted, up_h2)?;
    let result = match ws_sender.as_mut() {
        Some(s) => send(s, up_req).await.map_err(BoxError::from),
        None => send_shared(conn, up_req, &admitted.host, audit).await,
    };
    let resp = result.map_err(|e| send_failed(&report, audit, e))?;
    Ok(Exchanged {
        resp,
        down_upgrade,
        creds,
        report,
        rules: admitted.rules.clone(),
    })
}

/// The request as sent upstream: hop-by-hop headers dropped, the name as `:authority` on
/// HTTP/2 or as `Host` on HTTP/1.1.
fn upstream_request(
    method: Method,
    body: InspectedBody,
    head: Head,
    admitted: &Admitted,
    up_h2: bool,
) -> Result<Request<UpBody>, Refusal> {
    let Head {
        mut headers, pq, ..
    } = head;
    strip_hop_by_hop(&mut headers, admitted.websocket);
    if admitted.websocket {
        headers.remove(HeaderName::from_static("sec-websocket-extensions"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
    let bad_path = || Refusal::new(StatusCode::BAD_REQUEST, "bad_path");
    let mut up_req = Request::new(body.boxed_unsync());
    *up_req.method_mut() = method;
    if up_h2 {
        headers.remove(header::HOST);
        *up_req.uri_mut() = Uri::builder()
            .scheme("https")
            .authority(admitted.authority.as_str())
            .path_and_query(pq.as_str())
            .build()
            .map_err(|_| bad_path())?;
        *up_req.version_mut() = Version::HTTP_2;
    } else {
        if let Ok(v) = HeaderValue::from_str(&admitted.authority) {
            headers.insert(header::HOST, v);
        }
        *up_req.uri_mut() = pq.parse().map_err(|_| bad_path())?;
        *up_req.version_mut() = Version::HTTP_11;
    }
    *up_req.headers_mut() = headers;
    Ok(up_req)
}

fn upstream_failed(audit: &mut RequestAudit, e: upstream::UpstreamError) -> Refusal {
    audit.ev.error = Some(cork_audit::error_chain(&e));
    Refusal::new(StatusCode::BAD_GATEWAY, e.reason())
}

/// A failed exchange: the request body's own verdict (it ended the body with an error)
/// comes before the upstream's failure.
fn send_failed(report: &SharedReport, audit: &mut RequestAudit, e: BoxError) -> Refusal {
    let rep = lock(report);
    if rep.blocked {
        audit.ev.detectors.clone_from(&rep.detectors);
        audit.ev.bytes_up = rep.bytes;
        return Refusal::new(StatusCode::FORBIDDEN, "dlp_blocked");
    }
    if rep.undecodable {
        return Refusal::new(StatusCode::BAD_REQUEST, "body_undecodable");
    }
    audit.ev.error = Some(cork_audit::error_chain(e.as_ref()));
    Refusal::new(StatusCode::BAD_GATEWAY, "upstream_failed")
}

/// Makes sure the connection's upstream is up — its own, an idle one of the bottle's
/// pool made for the same name, address and protocol, or a new one; returns whether it
/// speaks HTTP/2.
async fn current_upstream(
    conn: &Conn,
    host: &str,
    audit: &mut RequestAudit,
) -> Result<bool, upstream::UpstreamError> {
    let mut up = conn.upstream.lock().await;
    if let Some(l) = up.as_ref()
        && !l.sender.is_closed()
    {
        return Ok(l.sender.is_h2());
    }
    let key = conn.pool_key(host);
    let lease = match conn.shared.pool.take(&key) {
        Some(lease) => lease,
        None => new_lease(conn, key).await?,
    };
    note_served(audit, conn, lease.served);
    let h2 = lease.sender.is_h2();
    *up = Some(lease);
    Ok(h2)
}

/// A new upstream connection for `key`, verified for its name.
async fn new_lease(conn: &Conn, key: pool::Key) -> Result<Lease, upstream::UpstreamError> {
    let (sender, served) = upstream::connect(
        conn.orig.dst,
        conn.fallbacks(&key.name),
        &key.name,
        conn.tls_config(),
    )
    .await?;
    Ok(Lease {
        sender,
        served,
        key,
    })
}

/// The audit names the address that served when it is not the one the bottle dialled.
fn note_served(audit: &mut RequestAudit, conn: &Conn, served: std::net::SocketAddr) {
    if served != conn.orig.dst {
        audit.ev.served_by = Some(served.to_string());
    }
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
/// (the lock is held only until the request is handed to the connection). A request the
/// connection could not take at all (it closed while idle: the server ended a kept-alive
/// connection) goes once more on a new connection, as nothing of it was sent.
async fn send_shared(
    conn: &Conn,
    req: Request<UpBody>,
    host: &str,
    audit: &mut RequestAudit,
) -> Result<Response<Incoming>, BoxError> {
    let (req, why) = match attempt(conn, req).await? {
        Ok(resp) => return Ok(resp),
        Err(unsent) => unsent,
    };
    let mut up = conn.upstream.lock().await;
    let was_h2 = up.as_ref().map(|l| l.sender.is_h2());
    let key = conn.pool_key(host);
    let lease = new_lease(conn, key).await?;
    // The request was built for the protocol of the closed connection.
    if Some(lease.sender.is_h2()) != was_h2 {
        return Err(why);
    }
    note_served(audit, conn, lease.served);
    *up = Some(lease);
    drop(up);
    match attempt(conn, req).await? {
        Ok(resp) => Ok(resp),
        Err((_, why)) => Err(why),
    }
}

/// A request not taken by the connection, and why.
type Unsent = (Request<UpBody>, BoxError);

/// One try at sending on the connection's upstream: the response, or the request back.
async fn attempt(
    conn: &Conn,
    req: Request<UpBody>,
) -> Result<Result<Response<Incoming>, Unsent>, BoxError> {
    let fut = {
        let mut up = conn.upstream.lock().await;
        let Some(lease) = up.as_mut() else {
            return Err("upstream connection closed".into());
        };
        if let Err(e) = lease.sender.ready().await {
            return Ok(Err((req, e.into())));
        }
        lease.sender.try_send(req)
    };
    match fut.await {
        Ok(resp) => Ok(Ok(resp)),
        Err(mut e) => match e.take_message() {
            Some(req) => Ok(Err((req, e.into_error().into()))),
            None => Err(e.into_error().into()),
        },
    }
}
