//! Application Lifecycle (6002) for cork's own lifecycle lines (`layer: cork`), and the
//! Base Event (0) for what no class fits: loss reports (`layer: audit`) and any layer this
//! version of cork does not know.
//!
//! Lifecycle activities: `enforced` and `vm_started` are Start (3), `finished` and
//! `vm_exited` Stop (4), `adopted` (a restarted daemon took the bottle back) Restart (5),
//! `policy_updated` Update (8), `fenced` (services gone, programs holding: nothing gets
//! out) Disable (7, severity High); every other word (`exec_finished`, `env_scrubbed`,
//! `test_seams`, `control_refused`...) is Other (99) named by the word. `app` is cork,
//! `message` the line's `detail`; the rest (`masked`, `variable`, generations...) stays
//! in `unmapped`.
//!
//! A Base Event has activity Other (99) named by cork's event word; a loss report is
//! severity Medium (the audit trail has a gap) and its counts stay in `unmapped`.

use super::envelope::{
    APPLICATION_LIFECYCLE, BASE_EVENT, Envelope, OTHER, Verdict, decide, product, severity,
};
use super::fields::{Fields, Head};

/// A lifecycle line.
pub(crate) fn lifecycle(head: &Head, f: &mut Fields) -> Envelope {
    let word = head.event.as_deref().unwrap_or("");
    let (id, name) = match word {
        "enforced" | "vm_started" => (3, "Start"),
        "finished" | "vm_exited" => (4, "Stop"),
        "adopted" => (5, "Restart"),
        "policy_updated" => (8, "Update"),
        "fenced" => (7, "Disable"),
        "" => (OTHER, "Other"),
        other => (OTHER, other),
    };
    let mut env = Envelope::new(&APPLICATION_LIFECYCLE, id, name);
    env.set("app", product());
    env.severity_id = match word {
        "fenced" => severity::HIGH,
        "control_refused" | "state_not_saved" => severity::MEDIUM,
        _ => severity::INFORMATIONAL,
    };
    let status = match word {
        "fenced" | "state_not_saved" => Some((2, "Failure")),
        _ if id != OTHER => Some((1, "Success")),
        _ => None,
    };
    if let Some((sid, s)) = status {
        env.set("status_id", sid);
        env.set("status", s);
    }
    if word == "control_refused" {
        // A caller the control socket turned away.
        decide(&mut env, Some(Verdict::Deny));
    }
    if let Some(detail) = f.str("detail") {
        env.set("message", detail);
    }
    env
}

/// A line no class fits.
pub(crate) fn base(head: &Head, f: &mut Fields) -> Envelope {
    let word = head.event.as_deref().unwrap_or("Other");
    let mut env = Envelope::new(&BASE_EVENT, OTHER, word);
    let lost = f.peek("lost").and_then(serde_json::Value::as_u64);
    if let Some(lost) = lost {
        env.severity_id = severity::MEDIUM;
        let total = f.peek("lost_total").and_then(serde_json::Value::as_u64);
        env.set(
            "message",
            match total {
                Some(total) => format!("{lost} audit events lost ({total} in all)"),
                None => format!("{lost} audit events lost"),
            },
        );
    } else if let Some(detail) = f.str("detail") {
        env.set("message", detail);
    }
    env
}
