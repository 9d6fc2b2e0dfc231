//! The bottle routes of the control API: create (`POST /v1/bottles`), remove (`DELETE
//! /v1/bottles/{name}`) and update (`PUT /v1/bottles/{name}`), and what they share with
//! the router in [`crate::server`]: the request body, the not-found answers, saving a
//! bottle's state.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use cork_agent::BottleRuntime;
use cork_agent::mounts::for_others;

use crate::api::{ApiError, BottleInfo, CreateBottle, ErrorKind, PolicyUpdated, Removed};
use crate::exec_route::ExecCache;
use crate::restore;
use crate::server::{Body, MAX_BODY, Standing, State, error, humantime_now, json};

pub(crate) fn not_found(name: &str) -> ApiError {
    ApiError::new(ErrorKind::NotFound, format!("no bottle named {name:?}"))
}

/// A fenced bottle takes nothing but removal; anything else is not found.
pub(crate) fn fenced_or_not_found(state: &State, name: &str) -> ApiError {
    let fenced = state.fenced.lock().unwrap_or_else(|p| p.into_inner());
    match fenced.get(name) {
        Some(f) => ApiError::new(
            ErrorKind::Enforcement,
            format!(
                "bottle {name:?} is {}; only `cork bottle rm` applies to it",
                f.info.state
            ),
        ),
        None => not_found(name),
    }
}

/// Saves a standing bottle's state for a restart; a failure is logged and audited (the
/// bottle runs on, but a restarted daemon would leave it fenced).
pub(crate) fn save_state(state: &State, standing: &Standing) {
    let saved = restore::record(&standing.runtime, &standing.info, &standing.manifest);
    if let Err(e) = state.state_dir.save(&saved) {
        let why = cork_audit::error_chain(&e);
        tracing::error!("bottle {}: saving its state: {why}", standing.info.name);
        let _ = standing.runtime.lifecycle(
            "state_not_saved",
            format!("a restarted daemon will leave this bottle fenced: {why}"),
        );
    }
}

pub(crate) async fn body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| ApiError::new(ErrorKind::BadRequest, format!("reading the body: {e}")))
}

pub(crate) async fn create(state: Arc<State>, bytes: &[u8]) -> Response<Body> {
    let req: CreateBottle = match serde_json::from_slice(bytes) {
        Ok(r) => r,
        Err(e) => {
            return error(ApiError::new(
                ErrorKind::BadRequest,
                format!("POST /v1/bottles body: {e}"),
            ));
        }
    };
    let manifest = req.manifest.clone();
    let policy = match cork_policy::compile(&req.manifest, &req.origin) {
        Ok(p) => p,
        Err(e) => return error(ApiError::new(ErrorKind::Manifest, e.to_string())),
    };
    let name = policy.name.clone();
    // Locks in the order every route takes them: bottles, then fenced.
    let taken = |bottles: &BTreeMap<String, Standing>| {
        bottles.contains_key(&name)
            || state
                .fenced
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(&name)
    };
    if taken(&state.bottles.lock().unwrap_or_else(|p| p.into_inner())) {
        return error(ApiError::new(
            ErrorKind::Exists,
            format!("a bottle named {name:?} exists already"),
        ));
    }
    let sink = state.sink.clone();
    let handle = state.handle.clone();
    let approvals = state.approvals.clone();
    let text = manifest.clone();
    // Loading and verifying programs blocks (the verifier): off the reactor. The
    // manifest's digest too (every exec names it; 40 ms for a 100 000-rule manifest, which
    // the bottle's first exec paid).
    let made = tokio::task::spawn_blocking(move || {
        let mut runtime = BottleRuntime::enforce(Arc::new(policy), sink)?;
        runtime.supervise_through(approvals);
        runtime.start(&handle)?;
        runtime.verify()?;
        let digest = cork_agent::manifest_digest(&text);
        Ok::<_, cork_agent::RuntimeError>((runtime, digest))
    })
    .await;
    let (runtime, digest) = match made {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return error(ApiError::new(
                ErrorKind::Enforcement,
                cork_audit::error_chain(&e),
            ));
        }
        Err(e) => return error(ApiError::new(ErrorKind::Enforcement, e.to_string())),
    };
    let info = BottleInfo {
        name: name.clone(),
        key: runtime.key().to_string(),
        cgroup_procs: runtime
            .cgroup_procs()
            .map(|p| for_others(&p).display().to_string()),
        created: humantime_now(),
        origin: req.origin,
        generation: 0,
        state: crate::api::SERVING.to_owned(),
    };
    // Lost a race with another create of the same name: this one goes again.
    let lost = {
        let mut bottles = state.bottles.lock().unwrap_or_else(|p| p.into_inner());
        if taken(&bottles) {
            Some(runtime)
        } else {
            let standing = Standing {
                runtime,
                info: info.clone(),
                manifest,
                exec: Arc::new(ExecCache::with_digest(digest)),
            };
            save_state(&state, &standing);
            bottles.insert(name.clone(), standing);
            None
        }
    };
    if let Some(runtime) = lost {
        let _ = tokio::task::spawn_blocking(move || runtime.stop()).await;
        return error(ApiError::new(
            ErrorKind::Exists,
            format!("a bottle named {name:?} exists already"),
        ));
    }
    json(201, &info)
}

pub(crate) async fn remove(state: Arc<State>, name: String) -> Response<Body> {
    let standing = state
        .bottles
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&name);
    let fenced = state
        .fenced
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&name);
    let problems = match (standing, fenced) {
        (Some(standing), _) => tokio::task::spawn_blocking(move || standing.runtime.stop())
            .await
            .map(|ps| ps.iter().map(|p| cork_audit::error_chain(p)).collect())
            .unwrap_or_else(|e| vec![e.to_string()]),
        (None, Some(fenced)) => tokio::task::spawn_blocking(move || fenced.teardown())
            .await
            .unwrap_or_else(|e| vec![e.to_string()]),
        (None, None) => return error(not_found(&name)),
    };
    if let Err(e) = state.state_dir.remove(&name) {
        tracing::error!("{}", cork_audit::error_chain(&e));
    }
    json(200, &Removed { name, problems })
}

/// `PUT /v1/bottles/{name}`: the bottle's policy replaced as one generation
/// ([`BottleRuntime::update`]). The bottle table stays locked for the update (about a
/// tenth of a second plus the map writes): other control requests wait, the bottles'
/// traffic does not.
pub(crate) async fn update(state: Arc<State>, name: String, bytes: &[u8]) -> Response<Body> {
    let req: CreateBottle = match serde_json::from_slice(bytes) {
        Ok(r) => r,
        Err(e) => {
            return error(ApiError::new(
                ErrorKind::BadRequest,
                format!("PUT /v1/bottles/{name} body: {e}"),
            ));
        }
    };
    let policy = match cork_policy::compile(&req.manifest, &req.origin) {
        Ok(p) => Arc::new(p),
        Err(e) => return error(ApiError::new(ErrorKind::Manifest, e.to_string())),
    };
    let digest = cork_agent::manifest_digest(&req.manifest);
    let done = tokio::task::spawn_blocking(move || {
        let mut bottles = state.bottles.lock().unwrap_or_else(|p| p.into_inner());
        let Some(standing) = bottles.get_mut(&name) else {
            return Err(fenced_or_not_found(&state, &name));
        };
        let updated = standing
            .runtime
            .update(policy, &digest)
            .map_err(|e| match e {
                cork_agent::UpdateError::Refused(r) => {
                    ApiError::new(ErrorKind::UpdateRefused, format!("{}: {r}", req.origin))
                }
                cork_agent::UpdateError::VmBottle(_) | cork_agent::UpdateError::NoUpstream => {
                    ApiError::new(
                        ErrorKind::UpdateRefused,
                        format!("{}: {}", req.origin, cork_audit::error_chain(&e)),
                    )
                }
                other => ApiError::new(ErrorKind::Enforcement, cork_audit::error_chain(&other)),
            })?;
        standing.manifest = req.manifest;
        standing.exec = Arc::new(ExecCache::with_digest(updated.manifest_sha256.clone()));
        standing.info.origin = req.origin;
        standing.info.generation = updated.new_generation;
        save_state(&state, standing);
        Ok(PolicyUpdated {
            name: name.clone(),
            old_generation: updated.old_generation,
            new_generation: updated.new_generation,
            learned_carried: updated.learned_carried,
            manifest_sha256: updated.manifest_sha256,
        })
    })
    .await;
    match done {
        Ok(Ok(u)) => json(200, &u),
        Ok(Err(e)) => error(e),
        Err(e) => error(ApiError::new(ErrorKind::Enforcement, e.to_string())),
    }
}
