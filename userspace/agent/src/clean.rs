//! `cork clean`: removes what a `cork run` that was killed (SIGKILL, OOM, power cut of the
//! agent alone) left behind — its cgroup with any processes still in it, its pins, and
//! its CA bundle directory — and what a killed `cork vm` left: its nftables chains in
//! this network namespace (its tap went with its process; its pins are swept like any).
//! Only names that parse as a [`BottleKey`] are touched, and only when the agent process
//! that owns the key is gone and no live agent took the bottle over since
//! ([`IdLease::held_for`]: a restarted daemon).

use std::fs;
use std::path::{Path, PathBuf};

use crate::cgroup;
use crate::key::{BottleKey, IdLease, RUN_DIR};
use crate::mounts::{self, MountError};

/// What one sweep did.
#[derive(Debug, Default)]
pub struct CleanReport {
    pub removed: Vec<PathBuf>,
    pub kept_live: Vec<PathBuf>,
    pub problems: Vec<String>,
}

/// The agent pid encoded in a bottle key, if the name is one of ours.
pub fn owner_pid(name: &str) -> Option<u32> {
    BottleKey::parse(name).map(|k| k.agent_pid())
}

/// Is `pid` a live cork agent? (A reused pid running something else does not count.)
fn agent_alive(pid: u32) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    Path::new(std::str::from_utf8(argv0).unwrap_or_default())
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("cork"))
}

fn stale_entries(dir: &Path) -> Vec<(PathBuf, bool)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let key = BottleKey::parse(&name)?;
            // A bottle a restarted daemon took back names the dead daemon's pid: the
            // mark on its held id says it is alive.
            let live = agent_alive(key.agent_pid()) || IdLease::held_for(&key);
            Some((e.path(), live))
        })
        .collect()
}

/// Sweeps the cgroup2 hierarchy and bpffs. Cgroups first: processes die while the pins
/// still enforce; a bottle whose processes cannot be killed keeps its pins.
pub fn clean() -> Result<CleanReport, MountError> {
    let mut report = CleanReport::default();
    let cg_root = mounts::cgroup2_root()?;
    // Under `ip netns exec` this is the host's bpffs, reached through an ancestor's root:
    // where the agents that made the pins put them (see mounts::elsewhere).
    let bpffs = mounts::find_bpffs()?.unwrap_or_else(|| PathBuf::from(mounts::BPFFS));
    let mut failed_keys = Vec::new();
    for (path, live) in stale_entries(&cg_root) {
        if live {
            report.kept_live.push(path);
            continue;
        }
        match kill_seal_and_remove(&bpffs, &path, &mut report.problems) {
            Ok(()) => report.removed.push(path),
            Err(e) => {
                failed_keys.push(path.file_name().map(|n| n.to_os_string()));
                report.problems.push(e);
            }
        }
    }
    for (path, live) in stale_entries(&bpffs) {
        if live {
            report.kept_live.push(path);
            continue;
        }
        if failed_keys.contains(&path.file_name().map(|n| n.to_os_string())) {
            continue;
        }
        // Out of the shared program set first, while its pins still reserve its id (no
        // new bottle can hold it yet); its processes are gone with its cgroup.
        let id = path
            .file_name()
            .and_then(|n| BottleKey::parse(&n.to_string_lossy()))
            .and_then(|k| k.id());
        if let Some(id) = id {
            report
                .problems
                .extend(cork_bpf::shared::forget_bottle(&bpffs, id.get()));
        }
        let problems = cork_bpf::remove_pin_dir(&path);
        if problems.is_empty() {
            report.removed.push(path);
        }
        report
            .problems
            .extend(problems.iter().map(|p| cork_audit::error_chain(p)));
    }
    // Program sets no bottle is registered in (left pinned by design while bottles come
    // and go; see cork_bpf::shared).
    match cork_bpf::shared::remove_unused(&bpffs) {
        Ok(_) => {}
        Err(e) => report.problems.push(cork_audit::error_chain(&e)),
    }
    clean_nft(&mut report);
    // IP forwarding a killed `cork vm` turned on in this namespace.
    match crate::vm::forwarding::restore_after_dead_agents() {
        Ok(restored) => report.removed.extend(
            restored
                .into_iter()
                .map(|k| PathBuf::from(format!("/proc/sys/{k} (restored)"))),
        ),
        Err(e) => report.problems.push(cork_audit::error_chain(&e)),
    }
    // CA bundles (public certificates only; the CA key died with the agent).
    for (path, live) in stale_entries(Path::new(RUN_DIR)) {
        if live {
            report.kept_live.push(path);
            continue;
        }
        match fs::remove_dir_all(&path) {
            Ok(()) => report.removed.push(path),
            Err(e) => report
                .problems
                .push(format!("removing {}: {e}", path.display())),
        }
    }
    Ok(report)
}

/// A stale bottle's cgroup: its processes killed, its cgroup sealed (the sockets they
/// leave stay fenced once the pins go: `cork_bpf::seal`), then removed. `Err` keeps its
/// pins.
fn kill_seal_and_remove(
    bpffs: &Path,
    path: &Path,
    problems: &mut Vec<String>,
) -> Result<(), String> {
    cgroup::kill_all(path).map_err(|e| cork_audit::error_chain(&e))?;
    match cork_bpf::seal::seal_registered(bpffs, path) {
        Ok(_) => {}
        Err(e) if e.goes_on() => problems.push(cork_audit::error_chain(&e)),
        Err(e) => return Err(cork_audit::error_chain(&e)),
    }
    cgroup::remove_emptied(path).map_err(|e| cork_audit::error_chain(&e))
}

/// The nftables chains of VM bottles whose id no live agent holds (this network
/// namespace's `inet cork` table). Each id is held while its chains go.
fn clean_nft(report: &mut CleanReport) {
    let ids = match cork_nft::table_exists() {
        Ok(false) => return,
        Ok(true) => cork_nft::bottles(),
        Err(e) => Err(e),
    };
    let ids = match ids {
        Ok(ids) => ids,
        Err(e) => {
            report.problems.push(cork_audit::error_chain(&e));
            return;
        }
    };
    for id in ids {
        let what = PathBuf::from(format!(
            "nftables table inet {} chains b{id}_*",
            cork_nft::TABLE
        ));
        match IdLease::claim(id) {
            Ok(Some(_held)) => match cork_nft::remove(id) {
                Ok(()) => report.removed.push(what),
                Err(e) => report.problems.push(cork_audit::error_chain(&e)),
            },
            Ok(None) => report.kept_live.push(what),
            Err(e) => report.problems.push(cork_audit::error_chain(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_only_for_cork_names() {
        assert_eq!(owner_pid("cork-agent-1-4242"), Some(4242));
        assert_eq!(owner_pid("cork-a-1"), Some(1));
        assert_eq!(owner_pid("cork-agent-1-4242_3"), Some(4242));
        assert_eq!(owner_pid("corkscrew-1"), None);
        assert_eq!(owner_pid("cork-agent-x"), None);
        assert_eq!(owner_pid("system.slice"), None);
    }
}
