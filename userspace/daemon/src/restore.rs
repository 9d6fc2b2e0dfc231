//! Crash safety on the daemon's side: each standing bottle's state saved in the state
//! directory ([`crate::state_dir`]) when it is created and after each update, and, when
//! the daemon starts, every saved bottle taken back ([`cork_agent::BottleRuntime::adopt`])
//! before the socket serves — or kept as a [`Fenced`] entry that says why, which
//! `cork bottle ls` shows and `cork bottle rm` tears down.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use cork_agent::BottleRuntime;
use cork_agent::adopt::{Adoption, FencedBottle, Saved};
use cork_audit::{AuditSink, EventHead, LifecycleEvent};

use crate::api::{BottleInfo, SERVING};
use crate::state_dir::{FORMAT, SavedBottle, StateDir};

/// A bottle the daemon could not take back: fenced, listed, removable.
pub(crate) struct Fenced {
    pub info: BottleInfo,
    /// `None` when not even its key is known (a corrupt state file): then only the file
    /// goes on removal, and `cork clean` removes the kernel state.
    pub bottle: Option<FencedBottle>,
}

impl Fenced {
    /// Tears the bottle down (see [`FencedBottle::teardown`]); the problems met.
    pub fn teardown(self) -> Vec<String> {
        match self.bottle {
            Some(b) => b
                .teardown()
                .iter()
                .map(|p| cork_audit::error_chain(p))
                .collect(),
            None => Vec::new(),
        }
    }
}

/// A bottle taken back.
pub(crate) struct Serving {
    pub runtime: BottleRuntime,
    pub info: BottleInfo,
    pub manifest: String,
}

/// What adopting the state directory found.
#[derive(Default)]
pub(crate) struct Restored {
    pub serving: Vec<Serving>,
    pub fenced: Vec<Fenced>,
}

/// The state to save for a bottle `runtime` runs, described by `info`, at `manifest`.
pub(crate) fn record(runtime: &BottleRuntime, info: &BottleInfo, manifest: &str) -> SavedBottle {
    let r = runtime.restart_record();
    SavedBottle {
        format: FORMAT,
        name: info.name.clone(),
        key: r.key,
        created: info.created.clone(),
        origin: info.origin.clone(),
        generation: info.generation,
        manifest: manifest.to_owned(),
        dns_port: r.dns_port,
        proxy_port: r.proxy_port,
        ca: r.ca,
    }
}

/// `approval_lost`: a request held when the last daemon stopped. Its client's connection
/// went with that daemon's proxy, so it never went upstream; this closes its `held`.
#[derive(serde::Serialize)]
struct LostHold<'a> {
    #[serde(flatten)]
    head: EventHead,
    verdict: &'static str,
    reason: &'static str,
    approval: &'a str,
    host: &'a str,
    method: &'a str,
    path: &'a str,
    detectors: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
}

/// One `approval_lost` event per hold the last daemon left pending.
pub(crate) fn report_lost_holds(
    sink: &Mutex<AuditSink>,
    lost: &[cork_agent::approvals::HeldRequest],
) {
    let mut sink = sink.lock().unwrap_or_else(|p| p.into_inner());
    for held in lost {
        let written = sink.write(&LostHold {
            head: EventHead::now(&held.bottle, "proxy", "approval_lost"),
            verdict: "deny",
            reason: "daemon_restarted",
            approval: &held.id,
            host: &held.host,
            method: &held.method,
            path: &held.path,
            detectors: &held.detectors,
            rule: held.rule.as_deref(),
        });
        if let Err(e) = written {
            tracing::error!("writing an approval_lost event: {e}");
        }
    }
    if let Err(e) = sink.flush() {
        tracing::error!("writing approval_lost events: {e}");
    }
}

fn lifecycle(sink: &Mutex<AuditSink>, bottle: &str, event: &'static str, detail: String) {
    let mut sink = sink.lock().unwrap_or_else(|p| p.into_inner());
    let written = sink
        .write(&LifecycleEvent {
            head: EventHead::now(bottle, "cork", event),
            detail,
        })
        .and_then(|()| sink.flush());
    if let Err(e) = written {
        tracing::error!("writing a {event} event: {e}");
    }
}

/// Takes back every bottle saved in `dir`, one after the other, services on `runtime`.
/// Blocks (maps are read back): run it before serving.
pub(crate) fn adopt_all(
    dir: &StateDir,
    sink: &Arc<Mutex<AuditSink>>,
    approvals: &Arc<cork_agent::approvals::Approvals>,
    runtime: &tokio::runtime::Handle,
) -> Restored {
    let started = Instant::now();
    let mut restored = Restored::default();
    let loaded = match dir.load_all() {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(
                "reading the state directory: {}",
                cork_audit::error_chain(&e)
            );
            return restored;
        }
    };
    for l in loaded {
        let saved = match l.saved {
            Ok(s) => s,
            Err(e) => {
                let why = format!(
                    "{}; its kernel state, if any, stays fenced until `cork clean`",
                    cork_audit::error_chain(&e)
                );
                lifecycle(sink, &l.name, "fenced", why.clone());
                restored.fenced.push(Fenced {
                    info: BottleInfo {
                        name: l.name,
                        key: "-".to_owned(),
                        cgroup_procs: None,
                        created: "-".to_owned(),
                        origin: "-".to_owned(),
                        generation: 0,
                        state: format!("fenced: {why}"),
                    },
                    bottle: None,
                });
                continue;
            }
        };
        let adoption = BottleRuntime::adopt(
            &Saved {
                key: &saved.key,
                manifest: &saved.manifest,
                origin: &saved.origin,
                generation: saved.generation,
                dns_port: saved.dns_port,
                proxy_port: saved.proxy_port,
                ca: saved.ca.as_ref(),
                approvals: Some(approvals),
            },
            sink.clone(),
            runtime,
        );
        let mut info = BottleInfo {
            name: saved.name.clone(),
            key: saved.key.clone(),
            cgroup_procs: None,
            created: saved.created.clone(),
            origin: saved.origin.clone(),
            generation: saved.generation,
            state: SERVING.to_owned(),
        };
        match adoption {
            Adoption::Serving(runtime) => {
                info.cgroup_procs = runtime.cgroup_procs().map(|p| p.display().to_string());
                restored.serving.push(Serving {
                    runtime: *runtime,
                    info,
                    manifest: saved.manifest,
                });
            }
            Adoption::Fenced(bottle) => {
                let why = cork_audit::error_chain(bottle.why());
                tracing::error!("bottle {}: left fenced: {why}", saved.name);
                lifecycle(
                    sink,
                    &saved.name,
                    "fenced",
                    format!(
                        "bottle {}: a restarted daemon could not take it back and left it \
                         fenced (programs attached, services down): {why}",
                        saved.key
                    ),
                );
                info.state = format!("fenced: {why}");
                restored.fenced.push(Fenced {
                    info,
                    bottle: Some(bottle),
                });
            }
            Adoption::Gone => {
                // `cork clean` (or someone) removed it while no daemon ran.
                lifecycle(
                    sink,
                    &saved.name,
                    "forgotten",
                    format!(
                        "bottle {}: neither its cgroup nor its pins exist any more; its \
                         saved state is dropped",
                        saved.key
                    ),
                );
                if let Err(e) = dir.remove(&saved.name) {
                    tracing::warn!("{}", cork_audit::error_chain(&e));
                }
            }
            Adoption::HeldElsewhere => {
                tracing::info!(
                    "bottle {}: another live agent holds it; not taken",
                    saved.name
                );
            }
        }
    }
    tracing::info!(
        "took back {} bottles, {} left fenced, in {:?}",
        restored.serving.len(),
        restored.fenced.len(),
        started.elapsed()
    );
    restored
}
