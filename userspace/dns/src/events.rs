//! The audit event the DNS proxy writes for every message a bottle sends it.

use std::net::SocketAddr;

use serde::Serialize;

/// One DNS query from the bottle and what cork did with it, as one JSON line.
///
/// `verdict` is the policy's word on the name: `allow` when a domain rule allows it (even
/// if upstream or the kernel then failed: `reason` and `rcode` say so), `deny` otherwise.
/// `reason` is `allowed`, a [`QueryRefusal::reason`](super::QueryRefusal::reason), or one
/// of the proxy's own: `rate_limited`, `overloaded`, `denied`, `not_allowed`,
/// `upstream_failed`, `learn_failed`, `proxy_stopped`, and `connection_limit` for a TCP
/// connection closed unread at accept (then `name`, `qtype` and `rcode` are null).
#[derive(Debug, Clone, Serialize)]
pub struct DnsQueryEvent {
    /// `ts`, `bottle`, `layer`, `event`: the fields every audit event starts with.
    #[serde(flatten)]
    pub head: cork_audit::EventHead,
    /// The asked name, lowercased without the trailing dot; `None` when the packet had no
    /// readable question.
    pub name: Option<String>,
    /// `A`, `AAAA`... also for refused types (`TXT`).
    pub qtype: Option<String>,
    pub verdict: &'static str,
    pub reason: &'static str,
    /// The manifest rule that decided the name (`egress.allow[0]`), when one did.
    pub rule: Option<String>,
    /// Addresses learned from the answer and sent to the bottle.
    pub answers: Vec<String>,
    /// The CNAME chain followed from the asked name.
    pub cnames: Vec<String>,
    /// The reply's response code; `None` when no reply was sent.
    pub rcode: Option<&'static str>,
    /// `udp` or `tcp`.
    pub transport: &'static str,
    /// The bottle's socket address, as the proxy saw it.
    pub client: String,
}

impl DnsQueryEvent {
    /// An event for a message not decided yet: `deny`, no name, no reply.
    pub(crate) fn new(bottle: &str, transport: &'static str, client: SocketAddr) -> Self {
        DnsQueryEvent {
            head: cork_audit::EventHead::now(bottle, "dns", "query"),
            name: None,
            qtype: None,
            verdict: "deny",
            reason: "malformed",
            rule: None,
            answers: Vec::new(),
            cnames: Vec::new(),
            rcode: None,
            transport,
            client: client.to_string(),
        }
    }
}
