//! The proxy's audit event (`layer: "proxy"`): one per request on an inspected connection,
//! one per refused or passed-through connection. Never a secret: paths lose their query,
//! findings are detector names, credentials appear nowhere.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct ProxyEvent {
    /// `ts`, `bottle`, `layer`, `event`: the fields every audit event starts with.
    #[serde(flatten)]
    pub head: cork_audit::EventHead,
    /// `allow` or `deny`.
    pub verdict: &'static str,
    /// Why, as a stable word: `allowed`, `passthrough`, `dlp_blocked`, `host_mismatch`...
    pub reason: &'static str,
    /// `inspect`, `passthrough` or `plain` (HTTP without TLS).
    pub mode: &'static str,
    /// The manifest rule that decided, when one did.
    pub rule: Option<String>,
    pub sni: Option<String>,
    /// Host / :authority of the request.
    pub host: Option<String>,
    pub method: Option<String>,
    /// The request path without its query (queries carry tokens).
    pub path: Option<String>,
    /// Status sent to the bottle.
    pub status: Option<u16>,
    /// DLP detectors that matched (names only).
    pub detectors: Vec<String>,
    /// Each of `detectors` with its severity (`critical`, `high`, `medium`, `low`); known
    /// secrets are `critical`.
    pub severities: BTreeMap<String, &'static str>,
    /// The DLP action taken on them: `block`, `supervise`, `redact` or `log`.
    pub dlp_action: Option<&'static str>,
    /// Credentials swapped into the request, by env var name.
    pub credentials: Vec<String>,
    /// Body bytes from the bottle forwarded upstream.
    pub bytes_up: u64,
    /// Body bytes from upstream forwarded to the bottle.
    pub bytes_down: u64,
    pub duration_ms: f64,
    /// The destination the bottle dialled (kernel record).
    pub dst: Option<String>,
    /// The address that served, when the proxy fell back from `dst` to another address
    /// answered for the same name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub served_by: Option<String>,
    /// The bottle's socket as the proxy saw it.
    pub client: String,
    /// The process that connected (kernel record).
    pub pid: Option<u32>,
    /// The bottle's socket as the kernel knows it (its kernel events carry the same
    /// `cookie`): joins this event to the connect that made the flow.
    pub cookie: Option<u64>,
    /// Why the upstream failed, for 502s (a TLS or connect error, never a secret).
    pub error: Option<String>,
    /// The id a `supervise` hold got (`cork approvals ls`, `cork approve ID`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    /// The uid of the operator who approved or denied the hold (the control socket
    /// peer's, from the kernel).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<u32>,
}

impl ProxyEvent {
    pub fn new(bottle: &str, event: &'static str, client: SocketAddr) -> Self {
        ProxyEvent {
            head: cork_audit::EventHead::now(bottle, "proxy", event),
            verdict: "deny",
            reason: "",
            mode: "inspect",
            rule: None,
            sni: None,
            host: None,
            method: None,
            path: None,
            status: None,
            detectors: Vec::new(),
            severities: BTreeMap::new(),
            dlp_action: None,
            credentials: Vec::new(),
            bytes_up: 0,
            bytes_down: 0,
            duration_ms: 0.0,
            dst: None,
            served_by: None,
            client: client.to_string(),
            pid: None,
            cookie: None,
            error: None,
            approval: None,
            decided_by: None,
        }
    }

    /// Fills `severities` from the scanner that made the findings.
    pub fn rate(&mut self, scanner: &cork_dlp::Scanner) {
        for d in &self.detectors {
            self.severities
                .insert(d.clone(), scanner.severity(d).as_str());
        }
    }

    pub fn finish(&mut self, started: Instant) {
        self.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    }
}

/// `path_and_query` without the query, for audit.
pub fn audit_path(path_and_query: &str) -> String {
    match path_and_query.split_once('?') {
        Some((p, _)) => format!("{p}?…"),
        None => path_and_query.to_owned(),
    }
}
