//! Audit events: one JSON object per line per decision, from any layer. This crate owns
//! the event model and the sink; the agent turns kernel records into [`VerdictEvent`]s,
//! the DNS and inspecting proxies write their own events through the same sink.

mod sink;

pub use sink::{AuditSink, SinkError};

use serde::Serialize;

/// A verdict on one connection attempt, datagram, socket or packet.
#[derive(Debug, Clone, Serialize)]
pub struct VerdictEvent {
    pub ts: String,
    pub bottle: String,
    pub layer: &'static str,
    pub event: &'static str,
    pub hook: &'static str,
    pub verdict: &'static str,
    pub reason: &'static str,
    pub rule: Option<String>,
    pub proto: String,
    pub src: Option<String>,
    pub sport: Option<u16>,
    pub dst: Option<String>,
    pub dport: Option<u16>,
    /// The name the DNS proxy learned `dst` for, when it did.
    pub domain: Option<String>,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub cgroup_id: u64,
    pub cookie: u64,
}

/// Kernel events that could not be delivered (ring buffer full): reported, never silent.
#[derive(Debug, Clone, Serialize)]
pub struct LossEvent {
    pub ts: String,
    pub bottle: String,
    pub layer: &'static str,
    pub event: &'static str,
    /// Events lost since the previous loss report.
    pub lost: u64,
    /// Events lost since the bottle started.
    pub lost_total: u64,
}

/// Bottle lifecycle: what cork did, so a log reader sees enforcement begin and end.
#[derive(Debug, Clone, Serialize)]
pub struct LifecycleEvent {
    pub ts: String,
    pub bottle: String,
    pub layer: &'static str,
    pub event: &'static str,
    pub detail: String,
}

/// "outer: inner: innermost" for an error and its sources: how an error is printed once,
/// whole, in an audit field or on stderr (messages never repeat their source).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// Wall-clock RFC 3339 timestamp for now.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}
