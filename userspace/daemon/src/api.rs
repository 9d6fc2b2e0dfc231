//! The control protocol's bodies. Every route answers JSON; errors are
//! `{"error": {"kind": "...", "message": "..."}}` with a matching HTTP status, so that a
//! client can branch on `kind` and show `message` (which names where and why).
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `GET /v1/bottles` | — | `[BottleInfo]` |
//! | `POST /v1/bottles` | [`CreateBottle`] | `201` [`BottleInfo`] |
//! | `GET /v1/bottles/{name}` | — | [`BottleInfo`] |
//! | `POST /v1/bottles/{name}/exec` | [`ExecRequest`] | [`ExecPlan`] (for `cork exec`) |
//! | `PUT /v1/bottles/{name}` | [`CreateBottle`] | [`PolicyUpdated`] (atomic policy change) |
//! | `DELETE /v1/bottles/{name}` | — | `200` [`Removed`] |
//! | `GET /v1/approvals` | — | `[HeldRequest]`: every bottle's requests held under `supervise`, oldest first |
//! | `POST /v1/approvals/{id}` | [`Decide`] | [`Decided`]; `not_found` for an id not held (decided, timed out, never held) |
//! | `GET /v1/audit?bottle=NAME&verdict=deny&since=10m&follow=1` | — | `application/x-ndjson`: audit events, oldest first (all parameters optional; see [`crate::audit_query`]) |
//!
//! `GET /v1/audit` is the one answer that is not JSON: one audit event per line, from
//! the daemon's in-memory history (the last 50 000 lines); `since` is a duration back
//! from now (`10m`, `2h`) or an RFC 3339 time; `verdict` is `allow` or `deny` (events
//! without a verdict — lifecycle, loss — then do not match); with `follow=1` the body
//! goes on with each new matching event until the client hangs up. A bad parameter is
//! a `bad_request` naming it.

use serde::{Deserialize, Serialize};

/// `POST /v1/bottles`: a standing bottle from manifest text (`origin` names it in
/// errors, usually the client's path of the file).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBottle {
    pub manifest: String,
    pub origin: String,
}

/// One standing bottle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BottleInfo {
    /// `bottle.name` of its manifest: unique among the daemon's bottles.
    pub name: String,
    /// Its key (`cork-<name>-<agent pid>_<id>`): cgroup, pins, run directory.
    pub key: String,
    /// `<cgroup2 mount>/<key>/cgroup.procs`: a process that writes its pid there is in it.
    pub cgroup_procs: Option<String>,
    /// When it was created (RFC 3339).
    pub created: String,
    /// The manifest's origin as given at creation (or at the last update).
    pub origin: String,
    /// The policy generation in force: 0 at creation, one more per update.
    #[serde(default)]
    pub generation: u64,
    /// `serving`, or `fenced: <why>` for a bottle a restarted daemon could not verify:
    /// its programs hold (default deny), its DNS and inspecting proxies are down, and the
    /// only thing left to do with it is `DELETE` (`cork bottle rm`).
    #[serde(default = "serving")]
    pub state: String,
}

/// The state of a bottle that serves.
pub const SERVING: &str = "serving";

fn serving() -> String {
    SERVING.to_owned()
}

/// `PUT /v1/bottles/{name}`: what an update did (the `policy_updated` audit event says
/// the same).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyUpdated {
    pub name: String,
    pub old_generation: u64,
    pub new_generation: u64,
    /// Learned DNS addresses still valid and still allowed, carried into the new policy.
    pub learned_carried: usize,
    /// SHA-256 of the new manifest text, hex.
    pub manifest_sha256: String,
}

/// `POST /v1/bottles/{name}/exec`: the environment `cork exec`'s command would inherit
/// (the caller's own, names and values), for the daemon to judge with the bottle's
/// compiled policy and scanner. The daemon keeps none of it beyond the request, and
/// answers only which names go ([`ExecPlan::removals`]): what the command gets is still
/// built by the caller. No `Debug`: the values may be credentials.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    #[serde(with = "cork_agent::secrets::wire::vars")]
    pub env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
}

/// What `cork exec` needs to start a command in the bottle the way `cork run` starts
/// one: its cgroup, the host-secrets removals for the caller's environment (decided as
/// `cork run` decides them; provider keys without a placeholder: a standing bottle's
/// policy is fixed), the manifest's `[files]` (the caller resolves the masks in its own
/// mount namespace, for its command's user), the environment the bottle gives every
/// command (CA bundle, placeholders), and which manifest is in force (its origin, and the
/// SHA-256 of its text: `$CORK_MANIFEST` names the origin only while it holds that text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecPlan {
    pub name: String,
    pub cgroup_procs: String,
    pub origin: String,
    pub manifest_sha256: String,
    /// `files.hide` and `files.allow`, as written (validated at create).
    pub files_hide: Vec<String>,
    pub files_allow: Vec<String>,
    pub env: cork_agent::web::CommandEnv,
    pub removals: Vec<cork_agent::secrets::Removal>,
    /// Whether `origin` holds that text now, as the daemon found it (it reads the file once
    /// and then checks its identity with a stat). Absent (a daemon before this field): the
    /// caller reads and compares the file itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_current: Option<bool>,
}

/// `DELETE /v1/bottles/{name}`: what teardown met (empty when everything went).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    pub name: String,
    pub problems: Vec<String>,
}

pub use cork_agent::approvals::HeldRequest;

/// `POST /v1/approvals/{id}`: an operator's decision on a held request. `for` (approve
/// only): remember the approval that long (`"10m"`, at most 24h) for the same bottle,
/// host, method and route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decide {
    pub decision: Decision,
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub remember: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Deny,
}

/// What `POST /v1/approvals/{id}` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decided {
    pub id: String,
    pub decision: Decision,
    /// The deciding peer's uid (kernel peer credentials of the control connection).
    pub by: u32,
    /// Seconds the approval is remembered for; 0 when not remembered.
    pub remembered_s: u64,
    pub request: HeldRequest,
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request itself: bad JSON, unknown fields, unknown route.
    BadRequest,
    /// The manifest does not validate (the message is FILE:LINE:COL: ...).
    Manifest,
    /// No bottle of that name.
    NotFound,
    /// A bottle of that name exists already.
    Exists,
    /// The caller may not use this socket (not root on the host, or inside a bottle).
    Forbidden,
    /// Enforcement could not be set up or verified; nothing was left behind (for an
    /// update: the policy in force is unchanged).
    Enforcement,
    /// The update changes what a running bottle cannot change (its name, `[dns]`,
    /// `[tls]`, credentials, `[dlp]`, `[env]`, `[files]`, whether it inspects at all);
    /// the policy in force is unchanged.
    UpdateRefused,
}

impl ErrorKind {
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::BadRequest | ErrorKind::Manifest => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::Exists | ErrorKind::UpdateRefused => 409,
            ErrorKind::Forbidden => 403,
            ErrorKind::Enforcement => 500,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ApiError,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_serialise_with_a_kind_a_client_can_branch_on() {
        let body = ErrorBody {
            error: ApiError::new(ErrorKind::NotFound, "no bottle \"x\""),
        };
        let json = serde_json::to_string(&body).expect("json");
        assert_eq!(
            json,
            r#"{"error":{"kind":"not_found","message":"no bottle \"x\""}}"#
        );
        assert_eq!(ErrorKind::Exists.status(), 409);
    }

    #[test]
    fn decisions_parse_with_an_optional_for() {
        let d: Decide = serde_json::from_str(r#"{"decision":"approve","for":"10m"}"#)
            .expect("approve with for");
        assert_eq!(d.decision, Decision::Approve);
        assert_eq!(d.remember.as_deref(), Some("10m"));
        let d: Decide = serde_json::from_str(r#"{"decision":"deny"}"#).expect("deny");
        assert_eq!((d.decision, d.remember), (Decision::Deny, None));
        assert_eq!(
            serde_json::to_string(&Decide {
                decision: Decision::Approve,
                remember: None
            })
            .expect("json"),
            r#"{"decision":"approve"}"#
        );
        for bad in [
            r#"{"decision":"maybe"}"#,
            r#"{"decision":"approve","until":"10m"}"#,
            r#"{}"#,
        ] {
            assert!(serde_json::from_str::<Decide>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn create_refuses_unknown_fields() {
        let e = serde_json::from_str::<CreateBottle>(r#"{"manifest":"","origin":"m","extra":1}"#);
        assert!(e.is_err());
    }
}
