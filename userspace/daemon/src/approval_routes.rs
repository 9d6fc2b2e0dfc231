//! `GET /v1/approvals` and `POST /v1/approvals/{id}`: the operator's side of `supervise`.
//! Held requests of every bottle wait in the daemon's one registry; a decision names the
//! control connection's peer uid (from the kernel, `SO_PEERCRED`), which the proxy writes
//! into the `approved` or `denied` audit event.

use std::time::{Duration, Instant};

use cork_agent::approvals::{Approvals, Verdict};
use http::Response;

use crate::api::{ApiError, Decide, Decided, Decision, ErrorKind};
use crate::server::{Body, error, json};

/// The longest an approval is remembered: a day keeps a forgotten `--for` from becoming
/// a standing exception.
const MAX_REMEMBER: Duration = Duration::from_secs(24 * 60 * 60);

pub(crate) fn list(approvals: &Approvals) -> Response<Body> {
    json(200, &approvals.pending())
}

pub(crate) fn decide(approvals: &Approvals, id: &str, by: u32, bytes: &[u8]) -> Response<Body> {
    match decide_inner(approvals, id, by, bytes) {
        Ok(d) => json(200, &d),
        Err(e) => error(e),
    }
}

fn decide_inner(
    approvals: &Approvals,
    id: &str,
    by: u32,
    bytes: &[u8],
) -> Result<Decided, ApiError> {
    let bad = |m: String| ApiError::new(ErrorKind::BadRequest, m);
    let req: Decide = serde_json::from_slice(bytes)
        .map_err(|e| bad(format!("POST /v1/approvals/{id} body: {e}")))?;
    let remember = match (&req.remember, req.decision) {
        (None, _) => None,
        (Some(_), Decision::Deny) => {
            return Err(bad(
                "`for` goes with approve only: denials are not remembered".into(),
            ));
        }
        (Some(text), Decision::Approve) => {
            let d = cork_policy::parse_duration(text)
                .filter(|d| !d.is_zero() && *d <= MAX_REMEMBER)
                .ok_or_else(|| {
                    bad(format!(
                        "for: {text:?} is not a duration from 1s to 24h (\"90s\", \"10m\", \"2h\")"
                    ))
                })?;
            Some(d)
        }
    };
    let verdict = match req.decision {
        Decision::Approve => Verdict::Approve,
        Decision::Deny => Verdict::Deny,
    };
    let held = approvals
        .decide(id, verdict, by, remember, Instant::now())
        .map_err(|e| ApiError::new(ErrorKind::NotFound, e.to_string()))?;
    Ok(Decided {
        id: held.id.clone(),
        decision: req.decision,
        by,
        remembered_s: remember.map_or(0, |d| d.as_secs()),
        request: held,
    })
}
