//! A running bottle's kernel state (cgroup + enforcement) with a teardown that keeps the
//! order safe: processes die first, enforcement goes last, and if the processes cannot be
//! killed the enforcement stays pinned (fail closed; `cork clean` finishes later).

use std::path::{Path, PathBuf};

use cork_policy::KernelPlan;

use crate::bpf::{BpfError, Enforcement, LoadConstants};
use crate::cgroup::{BottleCgroup, CgroupError};

pub struct Bottle {
    key: String,
    cgroup: Option<BottleCgroup>,
    enforcement: Option<Enforcement>,
}

#[derive(Debug, thiserror::Error)]
pub enum BottleError {
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("enforcing the policy on the bottle's cgroup")]
    Bpf(#[from] BpfError),
}

impl Bottle {
    /// Creates the cgroup `<cgroup_root>/<key>` and enforces `plan` on it with pins in
    /// `<bpffs>/<key>`. Nothing runs in the cgroup yet.
    pub fn create(
        key: &str,
        consts: LoadConstants,
        cgroup_root: &Path,
        bpffs: &Path,
        plan: &KernelPlan,
    ) -> Result<Self, BottleError> {
        let cgroup = BottleCgroup::create(cgroup_root, key)?;
        // If install fails, `cgroup` drops here and removes the (empty) directory.
        let enforcement = Enforcement::install(consts, cgroup.path(), &bpffs.join(key), plan)?;
        Ok(Bottle {
            key: key.to_string(),
            cgroup: Some(cgroup),
            enforcement: Some(enforcement),
        })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn cgroup_procs(&self) -> PathBuf {
        self.cgroup.as_ref().expect("bottle is alive").procs_path()
    }

    pub fn enforcement(&mut self) -> &mut Enforcement {
        self.enforcement.as_mut().expect("bottle is alive")
    }

    /// Kills everything left in the bottle, then removes enforcement. Returns the problems
    /// met (empty when clean).
    pub fn teardown(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(cg) = self.cgroup.take()
            && let Err(e) = cg.remove()
        {
            {
                problems.push(format!("{e}"));
                problems.push(format!(
                    "enforcement for {} stays pinned because its processes could not be \
                     removed; run `cork clean` once they are gone",
                    self.key
                ));
                if let Some(enf) = self.enforcement.take() {
                    enf.abandon();
                }
                return problems;
            }
        }
        if let Some(enf) = self.enforcement.take() {
            problems.extend(enf.remove());
        }
        problems
    }
}

impl Drop for Bottle {
    fn drop(&mut self) {
        for p in self.teardown() {
            tracing::warn!("bottle teardown: {p}");
        }
    }
}
