//! `POST /v1/bottles/{name}/exec`: the daemon's half of `cork exec`. The caller sends the
//! environment its command would inherit; the daemon judges it with what it already holds
//! for the bottle — the compiled policy, and a value scanner built once per bottle — and
//! answers which variables go, with everything else the caller needs to start the command
//! ([`ExecPlan`]). Compiling the manifest and building a scanner in every `cork exec`
//! (a new process each time) was nearly all of its cost.
//!
//! The caller's environment stays the caller's: the daemon keeps none of it after the
//! answer, never logs it, and sends back names and reasons only. A caller holding the
//! real value of one of the bottle's credentials gets a scanner of its own that knows
//! that value (as `cork run` would build), dropped with the request.

use std::sync::{Arc, OnceLock};

use http::Response;

use cork_agent::mounts::for_others;
use cork_agent::secrets;
use cork_dlp::Scanner;

use crate::api::{ApiError, ErrorKind, ExecPlan, ExecRequest};
use crate::bottle_routes::{fenced_or_not_found, not_found};
use crate::server::{Body, State, error, json};

/// What a bottle's `exec` answers reuse; dropped (and built again on demand) when the
/// bottle's manifest is replaced.
#[derive(Default)]
pub(crate) struct ExecCache {
    /// SHA-256 of the manifest text in force, hex.
    digest: OnceLock<String>,
    /// The value scanner for callers that hold none of the bottle's credential values
    /// (nearly all): built-in detectors and the manifest's.
    scanner: OnceLock<Arc<Scanner>>,
    /// Whether the origin file still holds that text (see origin.rs).
    origin: crate::origin::OriginCheck,
}

impl ExecCache {
    /// A cache that already knows the manifest's digest (create and update compute it off
    /// the exec path).
    pub(crate) fn with_digest(digest: String) -> Self {
        let cache = ExecCache::default();
        let _ = cache.digest.set(digest);
        cache
    }
}

/// What the bottle table gives an exec, taken under its lock.
struct Found {
    plan: ExecPlan,
    policy: Arc<cork_policy::Policy>,
    cache: Arc<ExecCache>,
}

pub(crate) async fn exec(state: Arc<State>, name: String, bytes: &[u8]) -> Response<Body> {
    let req: ExecRequest = match serde_json::from_slice(bytes) {
        Ok(r) => r,
        Err(e) => {
            return error(ApiError::new(
                ErrorKind::BadRequest,
                format!("POST /v1/bottles/{name}/exec body: {e}"),
            ));
        }
    };
    let found = match find(&state, &name) {
        Ok(f) => f,
        Err(e) => return error(e),
    };
    // Judging values runs the DLP scanner (and may build one): off the reactor.
    let judged = tokio::task::spawn_blocking(move || judge(found, req)).await;
    match judged {
        Ok(Ok(plan)) => json(200, &plan),
        Ok(Err(e)) => error(e),
        Err(e) => error(ApiError::new(ErrorKind::Enforcement, e.to_string())),
    }
}

fn find(state: &State, name: &str) -> Result<Found, ApiError> {
    let bottles = state.bottles.lock().unwrap_or_else(|p| p.into_inner());
    let Some(b) = bottles.get(name) else {
        return Err(fenced_or_not_found(state, name));
    };
    let procs = b.runtime.cgroup_procs().ok_or_else(|| not_found(name))?;
    let policy = b.runtime.policy();
    let digest = b
        .exec
        .digest
        .get_or_init(|| cork_agent::manifest_digest(&b.manifest))
        .clone();
    Ok(Found {
        plan: ExecPlan {
            name: name.to_owned(),
            cgroup_procs: for_others(&procs).display().to_string(),
            origin: b.info.origin.clone(),
            manifest_sha256: digest,
            files_hide: policy.files.hide.iter().map(|p| p.text.clone()).collect(),
            files_allow: policy.files.allow.iter().map(|p| p.text.clone()).collect(),
            env: b.runtime.command_env_vars().clone(),
            removals: Vec::new(),
            origin_current: None,
        },
        policy,
        cache: b.exec.clone(),
    })
}

fn judge(found: Found, req: ExecRequest) -> Result<ExecPlan, ApiError> {
    let Found {
        mut plan,
        policy,
        cache,
    } = found;
    let scanner_error = |e: cork_dlp::DlpError| {
        ApiError::new(
            ErrorKind::Enforcement,
            format!(
                "building the DLP scanner that judges the command's environment: {}",
                cork_audit::error_chain(&e)
            ),
        )
    };
    let known = secrets::known_secrets(&policy, &req.env);
    let scanner = if known.is_empty() {
        match cache.scanner.get() {
            Some(s) => s.clone(),
            None => {
                let built = secrets::scanner_knowing(&policy, Vec::new()).map_err(scanner_error)?;
                cache.scanner.get_or_init(|| Arc::new(built)).clone()
            }
        }
    } else {
        Arc::new(secrets::scanner_knowing(&policy, known).map_err(scanner_error)?)
    };
    plan.removals = secrets::scrub(&policy, &req.env, &scanner);
    plan.origin_current = Some(cache.origin.holds(&plan.origin, &plan.manifest_sha256));
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    fn found(cache: &Arc<ExecCache>) -> Found {
        let src = "version = 1\n[bottle]\nname = \"t\"\n[[egress.allow]]\n\
                   domain = \"api.example.test\"\nports = [443]\n[[credentials]]\n\
                   domain = \"api.example.test\"\nheader = \"x-api-key\"\n\
                   placeholder = \"cork-placeholder-acme\"\nenv = \"ACME_API_KEY\"\n\
                   value_env = \"ACME_REAL\"\n";
        Found {
            plan: ExecPlan {
                name: "t".into(),
                cgroup_procs: "/sys/fs/cgroup/t/cgroup.procs".into(),
                origin: "t.toml".into(),
                manifest_sha256: String::new(),
                files_hide: Vec::new(),
                files_allow: Vec::new(),
                env: Default::default(),
                removals: Vec::new(),
                origin_current: None,
            },
            policy: Arc::new(cork_policy::compile(src, "t.toml").expect("compiles")),
            cache: cache.clone(),
        }
    }

    fn env(v: &[(&str, &str)]) -> ExecRequest {
        ExecRequest {
            env: v
                .iter()
                .map(|(n, v)| (OsString::from(n), OsString::from(v)))
                .collect(),
        }
    }

    fn removed(plan: &ExecPlan) -> Vec<(String, String)> {
        plan.removals
            .iter()
            .map(|r| (r.name.to_string_lossy().into_owned(), r.why.to_string()))
            .collect()
    }

    #[test]
    fn the_callers_environment_is_judged_as_cork_run_judges_it() {
        let cache = Arc::new(ExecCache::default());
        let plan = judge(
            found(&cache),
            env(&[
                ("PATH", "/bin"),
                ("GITHUB_TOKEN", "x"),
                ("ACME_API_KEY", "p"),
            ]),
        )
        .expect("judged");
        assert_eq!(
            removed(&plan),
            [("GITHUB_TOKEN".to_owned(), "name matches *_TOKEN".to_owned())]
        );
        let first = cache.scanner.get().expect("scanner kept").clone();
        judge(found(&cache), env(&[("PATH", "/bin")])).expect("judged");
        let second = cache.scanner.get().expect("scanner kept");
        assert!(Arc::ptr_eq(&first, second), "one scanner per bottle");
    }

    #[test]
    fn a_caller_holding_a_credential_value_gets_a_scanner_that_knows_it() {
        let cache = Arc::new(ExecCache::default());
        let real = "real-acme-value-0123456789";
        let plan = judge(
            found(&cache),
            env(&[("ACME_REAL", real), ("COPY_OF_IT", real)]),
        )
        .expect("judged");
        assert_eq!(
            removed(&plan),
            [
                (
                    "ACME_REAL".to_owned(),
                    "credentials[0].value_env: the proxy sends the real value, the bottle \
                     holds the placeholder"
                        .to_owned()
                ),
                (
                    "COPY_OF_IT".to_owned(),
                    "value recognised by DLP detector known-secret:ACME_API_KEY".to_owned()
                ),
            ]
        );
        assert!(
            cache.scanner.get().is_none(),
            "a scanner knowing a caller's value is not kept"
        );
    }
}
