//! A running bottle's kernel state (cgroup + enforcement) with a teardown that keeps the
//! order safe: processes die first, enforcement goes last, and if the processes cannot be
//! killed the enforcement stays pinned (fail closed; `cork clean` finishes later).

use std::path::{Path, PathBuf};

use cork_policy::KernelPlan;

use cork_bpf::{AttachTarget, BpfError, Enforcement, LoadConstants, TeardownError};

use crate::cgroup::{BottleCgroup, CgroupError};
use crate::key::BottleKey;

pub struct Bottle {
    key: BottleKey,
    cgroup: Option<BottleCgroup>,
    enforcement: Option<Enforcement>,
}

#[derive(Debug, thiserror::Error)]
pub enum BottleError {
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("enforcing the policy on the bottle's cgroup")]
    Bpf(#[from] BpfError),
    #[error(transparent)]
    Vm(Box<crate::vm::VmError>),
    #[error("the bottle has been torn down")]
    Gone,
}

impl From<crate::vm::VmError> for BottleError {
    fn from(e: crate::vm::VmError) -> Self {
        BottleError::Vm(Box::new(e))
    }
}

/// One thing a bottle's teardown could not do.
#[derive(Debug, thiserror::Error)]
pub enum TeardownProblem {
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(
        "enforcement for {key} stays pinned because its processes could not be removed; run \
         `cork clean` once they are gone"
    )]
    LeftFenced { key: String },
    #[error(transparent)]
    Bpf(#[from] TeardownError),
    #[error(transparent)]
    Vm(#[from] crate::vm::VmTeardownProblem),
    #[error("finding the bottle's cgroup")]
    Mount(#[source] crate::mounts::MountError),
    #[error("sealing the ended bottle's cgroup")]
    Seal(#[source] cork_bpf::seal::SealError),
}

impl Bottle {
    /// Creates the cgroup `<cgroup_root>/<key>` and enforces `plan` on it with pins in
    /// `<bpffs>/<key>`. Nothing runs in the cgroup yet.
    pub fn create(
        key: &BottleKey,
        consts: LoadConstants,
        cgroup_root: &Path,
        bpffs: &Path,
        plan: &KernelPlan,
    ) -> Result<Self, BottleError> {
        let cgroup = BottleCgroup::create(cgroup_root, &key.to_string())?;
        // If install fails, `cgroup` drops here and removes the (empty) directory.
        let target = AttachTarget::Cgroup(cgroup.path().to_path_buf());
        let enforcement = Enforcement::install(consts, &target, &key.pin_dir(bpffs), plan)?;
        Ok(Bottle {
            key: key.clone(),
            cgroup: Some(cgroup),
            enforcement: Some(enforcement),
        })
    }

    /// A bottle whose cgroup and enforcement an earlier agent left (already verified by
    /// the caller): see [`crate::adopt`].
    pub(crate) fn adopt(key: &BottleKey, cgroup: BottleCgroup, enforcement: Enforcement) -> Self {
        Bottle {
            key: key.clone(),
            cgroup: Some(cgroup),
            enforcement: Some(enforcement),
        }
    }

    /// Lets go of cgroup and enforcement without touching either: the programs stay
    /// attached and pinned, the processes stay in the fence.
    pub(crate) fn abandon(&mut self) {
        if let Some(cg) = self.cgroup.take() {
            cg.forget();
        }
        if let Some(enf) = self.enforcement.take() {
            enf.abandon();
        }
    }

    pub fn key(&self) -> &BottleKey {
        &self.key
    }

    /// The cgroup's `cgroup.procs`; `None` once torn down.
    pub fn cgroup_procs(&self) -> Option<PathBuf> {
        self.cgroup.as_ref().map(BottleCgroup::procs_path)
    }

    /// The cgroup's directory; `None` once torn down.
    pub fn cgroup_path(&self) -> Option<&Path> {
        self.cgroup.as_ref().map(BottleCgroup::path)
    }

    /// The enforcement; `None` once torn down.
    pub fn enforcement(&mut self) -> Option<&mut Enforcement> {
        self.enforcement.as_mut()
    }

    /// Reads back programs and maps against `plan`, live in `slot` (see
    /// [`Enforcement::verify`]).
    pub fn verify(
        &self,
        plan: &KernelPlan,
        slot: cork_policy::PolicySlot,
    ) -> Result<(), BottleError> {
        match (&self.cgroup, &self.enforcement) {
            (Some(cg), Some(enf)) => {
                Ok(enf.verify(&AttachTarget::Cgroup(cg.path().to_path_buf()), plan, slot)?)
            }
            _ => Err(BottleError::Gone),
        }
    }

    /// Kills everything left in the bottle, seals its cgroup (sockets that outlive their
    /// processes stay fenced: `cork_bpf::seal`), then removes enforcement. Returns the
    /// problems met (empty when clean).
    pub fn teardown(&mut self) -> Vec<TeardownProblem> {
        let mut problems = Vec::new();
        if let Some(cg) = self.cgroup.take() {
            let sealed = cg.kill().map_err(TeardownProblem::Cgroup).and_then(|()| {
                match self.enforcement.as_ref().map(|e| e.seal(cg.path())) {
                    Some(Err(e)) => seal_problem(e, &mut problems),
                    _ => Ok(()),
                }
            });
            let removed = match sealed {
                Ok(()) => cg.remove().map_err(TeardownProblem::Cgroup),
                Err(p) => {
                    // Kept as it is for `cork clean`: the processes are dead or unkillable.
                    cg.forget();
                    Err(p)
                }
            };
            if let Err(p) = removed {
                problems.push(p);
                problems.push(TeardownProblem::LeftFenced {
                    key: self.key.to_string(),
                });
                if let Some(enf) = self.enforcement.take() {
                    enf.abandon();
                }
                return problems;
            }
        }
        if let Some(enf) = self.enforcement.take() {
            problems.extend(enf.remove().into_iter().map(TeardownProblem::Bpf));
        }
        problems
    }
}

/// A failed seal in a teardown: said and gone past when it may be
/// ([`cork_bpf::seal::SealError::goes_on`]), else the error that keeps the bottle fenced.
pub(crate) fn seal_problem(
    e: cork_bpf::seal::SealError,
    problems: &mut Vec<TeardownProblem>,
) -> Result<(), TeardownProblem> {
    if e.goes_on() {
        problems.push(TeardownProblem::Seal(e));
        Ok(())
    } else {
        Err(TeardownProblem::Seal(e))
    }
}

impl Drop for Bottle {
    fn drop(&mut self) {
        for p in self.teardown() {
            tracing::warn!("bottle teardown: {}", cork_audit::error_chain(&p));
        }
    }
}
