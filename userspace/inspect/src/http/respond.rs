//! The response back to the bottle: hop-by-hop headers dropped, echoed credentials swapped
//! back out of the headers, then the body streamed through a `ReturnBody` (which writes
//! the request's audit event when it ends) or, for an accepted WebSocket upgrade, the
//! relay of both directions.

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use super::DownBody;
use super::head::strip_hop_by_hop;
use super::refusal::{RequestAudit, refusal};
use crate::body::SharedReport;
use crate::dlp_rules::DlpRules;
use crate::return_body::{AuditOnEnd, ReturnBody};
use crate::server::Shared;
use crate::swap::HostCredentials;
use crate::websocket_relay;

/// A request forwarded and the upstream's response head.
pub struct Exchanged {
    pub resp: Response<Incoming>,
    /// The bottle's side of a WebSocket upgrade (`Some` for WebSocket requests).
    pub down_upgrade: Option<OnUpgrade>,
    /// The credentials swapped into the request, to swap back out of the response.
    pub creds: Option<Arc<HostCredentials>>,
    pub report: SharedReport,
    /// The request's DLP settings, for a WebSocket's frames.
    pub rules: DlpRules,
}

pub fn respond(shared: &Arc<Shared>, ex: Exchanged, audit: RequestAudit) -> Response<DownBody> {
    let Exchanged {
        mut resp,
        down_upgrade,
        creds,
        report,
        rules,
    } = ex;
    let RequestAudit { mut ev, started } = audit;
    let action = shared.dlp_action;
    let status = resp.status();
    ev.verdict = "allow";
    ev.status = Some(status.as_u16());
    // Header findings set the action they got (per detector and route).
    ev.reason = match (ev.detectors.is_empty(), ev.dlp_action) {
        (true, _) => "allowed",
        (false, Some("redact")) => "dlp_redacted",
        // Held and approved by an operator (or by a remembered approval).
        (false, Some("supervise")) => "approved",
        (false, _) => "dlp_logged",
    };
    let upgraded = down_upgrade.is_some() && status == StatusCode::SWITCHING_PROTOCOLS;
    let mut out_headers = std::mem::take(resp.headers_mut());
    strip_hop_by_hop(&mut out_headers, upgraded);
    if let Some(hc) = &creds {
        hc.headers_back(&mut out_headers);
        out_headers.remove(header::CONTENT_LENGTH);
    }
    let audit = AuditOnEnd {
        event: ev,
        started,
        sink: shared.cfg.sink.clone(),
        scanner: shared.cfg.scanner.clone(),
        report: Some(report),
        dlp_action: action,
    };

    match down_upgrade {
        Some(down) if upgraded => websocket(shared, resp, down, out_headers, audit, rules),
        _ => {
            let body = ReturnBody::new(resp.into_body(), creds.map(|hc| hc.stream_back()), audit);
            let mut out = Response::new(body.boxed_unsync());
            *out.status_mut() = status;
            *out.headers_mut() = out_headers;
            out
        }
    }
}

/// The upstream accepted the upgrade: the bottle gets the 101 and both upgraded
/// connections go to the relay, which writes the audit event when it ends.
fn websocket(
    shared: &Arc<Shared>,
    mut resp: Response<Incoming>,
    down: OnUpgrade,
    headers: HeaderMap,
    audit: AuditOnEnd,
    rules: DlpRules,
) -> Response<DownBody> {
    let up_upgrade = hyper::upgrade::on(&mut resp);
    let mut builder = Response::builder().status(resp.status());
    if let Some(h) = builder.headers_mut() {
        *h = headers;
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
    tokio::spawn(websocket_relay::relay(
        shared.clone(),
        down,
        up_upgrade,
        audit,
        rules,
    ));
    builder
        .body(
            http_body_util::Empty::new()
                .map_err(|n| match n {})
                .boxed_unsync(),
        )
        .unwrap_or_else(|_| refusal(StatusCode::BAD_GATEWAY, "upstream_failed", &[]))
}
