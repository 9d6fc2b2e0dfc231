//! Host state cork leaves behind: bottle cgroups under the cgroup2 mount, pins under
//! bpffs, QEMU processes. Lists them by prefix and removes them, for World teardown, the
//! sweeper and the leak checks.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Where cork pins its programs and maps.
pub const BPFFS: &str = "/sys/fs/bpf";

/// The cgroup2 mount point, read from /proc/mounts (`/sys/fs/cgroup/unified` on hybrid
/// hosts like this one, `/sys/fs/cgroup` on unified ones).
pub fn cgroup2_mount() -> Result<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").context("read /proc/mounts")?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, dir, fstype) = (f.next()?, f.next()?, f.next()?);
            (fstype == "cgroup2").then(|| PathBuf::from(dir))
        })
        .next()
        .context("no cgroup2 mount in /proc/mounts")
}

/// Entries of `dir` whose names start with `prefix` (an absent dir has none).
pub fn entries_with_prefix(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

/// Bottle cgroups (`cork-<prefix>...`) directly under the cgroup2 mount.
pub fn cork_cgroups(prefix: &str) -> Vec<PathBuf> {
    cgroup2_mount()
        .map(|m| entries_with_prefix(&m, &format!("cork-{prefix}")))
        .unwrap_or_default()
}

/// Pin directories (`cork-<prefix>...`) under bpffs.
pub fn cork_pins(prefix: &str) -> Vec<PathBuf> {
    entries_with_prefix(Path::new(BPFFS), &format!("cork-{prefix}"))
}

/// QEMU processes cork-kvm started (`-name guest=...,process=cork-...`), still alive:
/// pid and command line.
pub fn cork_qemu_processes() -> Vec<(i32, String)> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<(i32, String)> = rd
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<String> = raw
                .split(|&b| b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let qemu = args.first()?.ends_with("qemu-system-x86_64");
            let ours = args.iter().any(|a| a.contains(",process=cork-"));
            (qemu && ours).then(|| (pid, args.join(" ")))
        })
        .collect();
    found.sort();
    found
}

/// Kills every process in a cgroup subtree (`cgroup.kill`), waits until it is empty, and
/// removes it, children first.
pub fn remove_cgroup(path: &Path) -> Result<()> {
    let kill = path.join("cgroup.kill");
    std::fs::write(&kill, "1").with_context(|| format!("write {}", kill.display()))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while populated(path)? {
        if Instant::now() > deadline {
            bail!("{} still populated 10s after cgroup.kill", path.display());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    rmdir_tree(path)
}

fn populated(path: &Path) -> Result<bool> {
    let events = path.join("cgroup.events");
    let text =
        std::fs::read_to_string(&events).with_context(|| format!("read {}", events.display()))?;
    Ok(text.lines().any(|l| l == "populated 1"))
}

fn rmdir_tree(path: &Path) -> Result<()> {
    for entry in std::fs::read_dir(path).with_context(|| format!("read {}", path.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            rmdir_tree(&entry.path())?;
        }
    }
    std::fs::remove_dir(path).with_context(|| format!("rmdir {}", path.display()))
}

/// Removes a pin directory and the pins in it.
pub fn remove_pins(path: &Path) -> Result<()> {
    // A cgroup bottle is registered in the host's shared program set too
    // (cork_bpf::shared): pins removed by hand take that with them, as `cork clean` does.
    // First, while the pins still reserve the bottle's id (a new bottle cannot have it).
    let id = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.rsplit_once('_'))
        .and_then(|(_, id)| id.parse::<u32>().ok());
    if let (Some(id), Some(bpffs)) = (id, path.parent()) {
        let problems = cork_bpf::shared::forget_bottle(bpffs, id);
        if !problems.is_empty() {
            bail!(
                "taking bottle {id} of {} out of the shared programs: {problems:?}",
                path.display()
            );
        }
    }
    std::fs::remove_dir_all(path).with_context(|| format!("remove {}", path.display()))
}
