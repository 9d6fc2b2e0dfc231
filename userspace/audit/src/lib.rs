//! Audit events: one JSON object per line per decision, from any layer. This crate owns
//! the event model and the sink; the agent turns kernel records into [`VerdictEvent`]s,
//! the DNS and inspecting proxies write their own events through the same sink. A sink
//! may also feed an in-memory [`AuditHistory`] (the daemon's `cork audit`).

pub mod chain;
mod history;
mod sink;

pub use history::{AuditHistory, FOLLOW_BACKLOG, HISTORY_BYTES, HISTORY_LINES, LineFilter};
pub use sink::{AuditSink, LineMirror, SinkError, encode, open_log};

use serde::Serialize;

/// The fields every audit event starts with, defined once: each event type flattens it
/// into its own JSON object, so a reader finds `ts`, `bottle`, `layer` and `event` on
/// every line, whatever layer wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventHead {
    /// Wall-clock RFC 3339 time of the decision.
    pub ts: String,
    /// The bottle's name (from its manifest).
    pub bottle: String,
    /// Who decided: `kernel`, `dns`, `proxy`, `audit` (loss reports) or `cork` (lifecycle).
    pub layer: &'static str,
    /// What kind of event: `verdict`, `query`, `request`, `connection`, `loss`, or a
    /// lifecycle word (`enforced`, `finished`...).
    pub event: &'static str,
}

impl EventHead {
    /// A head stamped now.
    pub fn now(bottle: &str, layer: &'static str, event: &'static str) -> Self {
        EventHead {
            ts: now_rfc3339(),
            bottle: bottle.to_owned(),
            layer,
            event,
        }
    }
}

/// A verdict on one connection attempt, datagram, socket or packet.
#[derive(Debug, Clone, Serialize)]
pub struct VerdictEvent {
    /// `ts`, `bottle`, `layer`, `event`: the fields every audit event starts with.
    #[serde(flatten)]
    pub head: EventHead,
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
    /// On a summary line only: how many allows of this same flow (everything above but
    /// `ts` and `cookie`, which are the last one's, or for connects the kernel counted,
    /// those of the record they followed) this line stands for, none of them written on
    /// its own. The flow's first allow was written before it, as any line is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

/// Kernel events that could not be delivered (ring buffer full): reported, never silent.
#[derive(Debug, Clone, Serialize)]
pub struct LossEvent {
    /// `ts`, `bottle`, `layer`, `event`: the fields every audit event starts with.
    #[serde(flatten)]
    pub head: EventHead,
    /// Events lost since the previous loss report.
    pub lost: u64,
    /// Events lost since the bottle started.
    pub lost_total: u64,
}

/// Bottle lifecycle: what cork did, so a log reader sees enforcement begin and end.
#[derive(Debug, Clone, Serialize)]
pub struct LifecycleEvent {
    /// `ts`, `bottle`, `layer`, `event`: the fields every audit event starts with.
    #[serde(flatten)]
    pub head: EventHead,
    pub detail: String,
}

/// The `enforced` lifecycle event: what [`LifecycleEvent`] says, plus every path masked
/// in the bottle's mount namespace, each listed once.
#[derive(Debug, Clone, Serialize)]
pub struct EnforcedEvent {
    /// `ts`, `bottle`, `layer`, `event`: the fields every audit event starts with.
    #[serde(flatten)]
    pub head: EventHead,
    pub detail: String,
    pub masked: Vec<MaskedPath>,
}

/// One path the bottle's commands see read-only and empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MaskedPath {
    /// The path as masked: absolute, symlinks resolved.
    pub path: String,
    /// `file` or `dir`.
    pub kind: &'static str,
    /// Which list put it there (`default ~/.aws`, `files.hide[0]`, …) and any caveat.
    pub why: String,
}

/// One variable removed from the command's environment (`event`: `env_scrubbed`): its
/// name and why, never its value.
#[derive(Debug, Clone, Serialize)]
pub struct EnvScrubEvent {
    /// `ts`, `bottle`, `layer`, `event`: the fields every audit event starts with.
    #[serde(flatten)]
    pub head: EventHead,
    pub variable: String,
    pub why: String,
    /// When cork holds the value as a provider key: the host the proxy swaps it in on
    /// (the command gets a placeholder in the same variable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swapped_on: Option<String>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_is_flattened_into_every_event() {
        let ev = LifecycleEvent {
            head: EventHead::now("b1", "cork", "enforced"),
            detail: "d".into(),
        };
        let v: serde_json::Value = serde_json::to_value(&ev).expect("serializes");
        assert_eq!(v["bottle"], "b1");
        assert_eq!(v["layer"], "cork");
        assert_eq!(v["event"], "enforced");
        assert!(v["ts"].as_str().is_some_and(|t| t.ends_with('Z')), "{v}");
        assert!(v.get("head").is_none(), "{v}");
    }

    #[test]
    fn error_chain_prints_each_source_once() {
        let inner = std::io::Error::other("disk on fire");
        let outer = SinkError::Write {
            target: "audit.jsonl".into(),
            source: inner,
        };
        assert_eq!(
            error_chain(&outer),
            "writing audit log audit.jsonl: disk on fire"
        );
    }
}
