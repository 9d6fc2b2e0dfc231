//! Admission: the name a request is for (Host / :authority) checked against the flow's
//! SNI, or against policy on plain HTTP; then CONNECT, upgrades, and the rule that takes
//! the request (an ask rule's hold, or an allow rule's L7 routes). All before anything is
//! scanned or sent upstream.

use crate::dlp_rules::DlpRules;
use cork_policy::{RequestVerdict, route_for};
use http::{Method, Request, StatusCode, header};
use hyper::body::Incoming;

use super::Conn;
use super::head::{is_websocket, request_authority, split_authority};
use super::refusal::{Refusal, RequestAudit};
use crate::flow::{self, Allowed};

/// What admission established about a request.
pub struct Admitted {
    /// The Host / :authority as the request named it, for the upstream request.
    pub authority: String,
    /// Its name, normalised as SNI is: the credentials' domain and the upstream's name.
    pub host: String,
    pub websocket: bool,
    /// An `[[egress.ask]]` rule took it: it waits for an operator before anything of it
    /// goes upstream.
    pub ask: bool,
    /// The request's DLP settings (its route's overrides).
    pub rules: DlpRules,
}

/// Admits the request (`pq`: its path and query) or says why not; names the host and rule
/// in the audit event.
pub fn admit(
    conn: &Conn,
    req: &Request<Incoming>,
    pq: &str,
    audit: &mut RequestAudit,
) -> Result<Admitted, Refusal> {
    // The name this request is for, and whether policy lets it through.
    let Some(authority) = request_authority(req, conn.h2) else {
        return Err(Refusal::new(StatusCode::BAD_REQUEST, "missing_host"));
    };
    let Some((host, port)) = split_authority(&authority) else {
        return Err(Refusal::new(StatusCode::BAD_REQUEST, "bad_host"));
    };
    audit.ev.host = Some(host.clone());
    if port.is_some_and(|p| p != conn.orig.dst.port()) {
        return Err(Refusal::new(
            StatusCode::MISDIRECTED_REQUEST,
            "port_mismatch",
        ));
    }
    let rule_id = rule_for(conn, &host)?;
    audit.ev.rule = crate::server::rule_name(&conn.policy, rule_id);

    if req.method() == Method::CONNECT {
        return Err(Refusal::new(StatusCode::FORBIDDEN, "connect_refused"));
    }
    let websocket = is_websocket(req);
    if req.headers().contains_key(header::UPGRADE) && !websocket {
        return Err(Refusal::new(StatusCode::FORBIDDEN, "upgrade_refused"));
    }
    // Which rule takes the request: an ask rule holds it, an allow rule's routes pass
    // or refuse it.
    let method = req.method().as_str();
    let decided = conn
        .policy
        .request_decision(rule_id, &host, conn.orig.dst.port(), method, pq);
    let (rule_id, ask) = match decided {
        RequestVerdict::Allowed { rule_id } => (rule_id, false),
        RequestVerdict::Ask { rule_id } => (rule_id, true),
        RequestVerdict::NoRoute { rule_id } => {
            audit.ev.rule = crate::server::rule_name(&conn.policy, rule_id);
            return Err(Refusal::new(StatusCode::FORBIDDEN, "no_route"));
        }
        RequestVerdict::GitPush { rule_id } => {
            audit.ev.rule = crate::server::rule_name(&conn.policy, rule_id);
            return Err(Refusal::new(StatusCode::FORBIDDEN, "git_push_refused"));
        }
        RequestVerdict::BadPath => return Err(Refusal::new(StatusCode::BAD_REQUEST, "bad_path")),
        RequestVerdict::NoRule => {
            return Err(Refusal::new(StatusCode::FORBIDDEN, "port_not_allowed"));
        }
    };
    audit.ev.rule = crate::server::rule_name(&conn.policy, rule_id);
    let route = conn
        .policy
        .domain_rule(rule_id)
        .and_then(|rule| route_for(rule, method, pq))
        .cloned();
    Ok(Admitted {
        authority,
        host,
        websocket,
        ask,
        rules: DlpRules::new(conn.policy.clone(), route),
    })
}

/// The rule the request goes by: on TLS the flow's, once the name is the SNI; on plain
/// HTTP policy's for the name.
fn rule_for(conn: &Conn, host: &str) -> Result<cork_policy::RuleId, Refusal> {
    if !conn.tls {
        // Plain HTTP has nothing to pass through untouched: both are inspected.
        return match flow::decide(&conn.shared, &conn.policy, host, &conn.orig) {
            Ok(Allowed::Inspect { rule_id } | Allowed::PassThrough { rule_id }) => Ok(rule_id),
            Err(reason) => Err(Refusal::new(StatusCode::FORBIDDEN, reason)),
        };
    }
    if host != conn.sni {
        // HTTP/2 clients coalesce hosts onto one connection: 421 tells them to open a
        // new one. On HTTP/1.1 a different Host is domain fronting.
        let status = if conn.h2 {
            StatusCode::MISDIRECTED_REQUEST
        } else {
            StatusCode::FORBIDDEN
        };
        return Err(Refusal::new(status, "host_mismatch"));
    }
    Ok(conn.rule_id)
}
