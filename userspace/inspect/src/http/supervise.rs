//! A request whose DLP findings call for `supervise`, or that an `[[egress.ask]]` rule
//! takes: held in the proxy (nothing of it upstream, not even a connection) until an
//! operator approves or denies it through the daemon, or the bottle's
//! `dlp.approval_timeout` passes. Every hold and its end is an audit event: `held`, then
//! `approved`, `denied` or `approval_timeout`, naming the deciding peer's uid. Without a
//! registry (`cork run`) it is refused as `block` would be, with reason
//! `supervise_without_daemon` (or `ask_without_daemon` for an ask rule).

use std::time::Instant;

use http::StatusCode;

use super::Conn;
use super::admit::Admitted;
use super::refusal::{Refusal, RequestAudit};
use crate::approvals::{HeldRequest, Outcome};

/// Holds the request until it is decided; `Ok` when approved (now or by a remembered
/// approval), after which `supervise` findings no longer stop its body.
pub async fn hold(
    conn: &Conn,
    admitted: &mut Admitted,
    audit: &mut RequestAudit,
) -> Result<(), Refusal> {
    let shared = &conn.shared;
    let Some(approvals) = shared.cfg.approvals.clone() else {
        let reason = if admitted.ask {
            "ask_without_daemon"
        } else {
            "supervise_without_daemon"
        };
        return Err(Refusal::new(StatusCode::FORBIDDEN, reason));
    };
    let timeout = conn.policy.dlp.approval_timeout;
    let path = audit
        .ev
        .path
        .as_deref()
        .map(|p| p.split_once('?').map_or(p, |(p, _)| p).to_owned())
        .unwrap_or_default();
    let route = match admitted.rules.route() {
        Some(r) => format!("route@{}:{}", r.line, r.col),
        None => path.clone(),
    };
    let req = HeldRequest {
        id: String::new(),
        bottle: shared.cfg.bottle.clone(),
        host: admitted.host.clone(),
        method: audit.ev.method.clone().unwrap_or_default(),
        path,
        route,
        detectors: audit.ev.detectors.clone(),
        rule: admitted.ask.then(|| audit.ev.rule.clone()).flatten(),
        held_at: cork_audit::EventHead::now("-", "proxy", "-").ts,
        timeout_s: timeout.as_secs(),
    };
    if let Some(by) = approvals.remembered(&req, Instant::now()) {
        audit.ev.decided_by = Some(by);
        emit(conn, audit, "approved", "allow", "approval_remembered");
        admitted.rules.approve();
        return Ok(());
    }
    let (info, held) = approvals.hold(req);
    audit.ev.approval = Some(info.id.clone());
    emit(conn, audit, "held", "hold", "held_for_approval");
    match held.wait(timeout).await {
        Outcome::Approved { by } => {
            audit.ev.decided_by = Some(by);
            emit(conn, audit, "approved", "allow", "approved");
            admitted.rules.approve();
            Ok(())
        }
        Outcome::Denied { by } => {
            audit.ev.decided_by = Some(by);
            audit.ev.head = event_head(conn, "denied");
            Err(Refusal::new(StatusCode::FORBIDDEN, "approval_denied"))
        }
        Outcome::TimedOut => {
            audit.ev.head = event_head(conn, "approval_timeout");
            Err(Refusal::new(StatusCode::FORBIDDEN, "approval_timeout"))
        }
    }
}

fn event_head(conn: &Conn, event: &'static str) -> cork_audit::EventHead {
    cork_audit::EventHead::now(&conn.shared.cfg.bottle, "proxy", event)
}

/// Writes a copy of the request's event as `event`; the request's own event (its
/// outcome) is written when it ends.
fn emit(
    conn: &Conn,
    audit: &RequestAudit,
    event: &'static str,
    verdict: &'static str,
    reason: &'static str,
) {
    let mut ev = audit.ev.clone();
    ev.head = event_head(conn, event);
    ev.verdict = verdict;
    ev.reason = reason;
    ev.status = None;
    ev.finish(audit.started);
    ev.rate(&conn.shared.cfg.scanner);
    conn.shared.audit(&ev);
}
