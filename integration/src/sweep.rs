//! Ownership of world names, and the sweeper for leftovers of worlds whose test process
//! died.
//!
//! Each World holds an exclusive `flock` on `/run/cork-integration/<id>.lock` for its
//! whole life; the kernel drops the lock when the process dies, however it dies. The
//! sweeper removes only things named after a world id (`ck` + 6 hex digits): netns
//! `<id>b`/`<id>i`/`<id>g` (the guest of VM-bottle tests), cgroups and pins `cork-<id>-*`, temp dir, lock file, and only when
//! nobody holds that id's lock. Other cork state is `cork clean`'s business, but for the
//! host's shared program set when no world is alive ([`remove_unused_program_sets`]).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};

use crate::{host, netns};

/// Lock files of live worlds.
pub const LOCK_DIR: &str = "/run/cork-integration";
/// Per-world temp dirs.
pub const TMP_DIR: &str = "/tmp/cork-integration";
/// Where the implicit sweep (the suite guard) records what it removed, so the leak test
/// can report leftovers that a later test binary swept away.
pub const SWEPT_LOG: &str = "/run/cork-integration/swept.log";

/// A held world lock; dropping it releases the lock (the file is removed by the World).
pub type WorldLock = Flock<File>;

/// Takes the lock of world `id`; fails if someone holds it.
///
/// The usual lock-file dance: a sweeper may unlink the file between our open and our
/// flock, so after locking check that the path still names the file we locked.
pub fn lock(id: &str) -> Result<WorldLock> {
    use std::os::unix::fs::MetadataExt;
    std::fs::create_dir_all(LOCK_DIR).with_context(|| format!("create {LOCK_DIR}"))?;
    let path = lock_path(id);
    for _ in 0..8 {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("open {}", path.display()))?;
        let held = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| anyhow::anyhow!(e).context(format!("lock {}", path.display())))?;
        let ours = held.metadata().map(|m| m.ino()).ok();
        let now = std::fs::metadata(&path).map(|m| m.ino()).ok();
        if ours.is_some() && ours == now {
            return Ok(held);
        }
    }
    anyhow::bail!("lock {}: the file keeps being replaced", path.display())
}

/// The lock file of world `id`.
pub fn lock_path(id: &str) -> PathBuf {
    Path::new(LOCK_DIR).join(format!("{id}.lock"))
}

/// Whether `s` is a world id: `ck` + 6 lowercase hex digits.
pub fn is_world_id(s: &str) -> bool {
    s.len() == 8
        && s.starts_with("ck")
        && s[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The world id a netns name belongs to (`<id>b`, `<id>i` or `<id>g`).
pub fn world_of_netns(name: &str) -> Option<&str> {
    (name.len() == 9 && (name.ends_with('b') || name.ends_with('i') || name.ends_with('g')))
        .then(|| &name[..8])
        .filter(|id| is_world_id(id))
}

/// The world id a cgroup or pin name belongs to (`cork-<id>-<label>-<pid>`).
pub fn world_of_cork_name(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("cork-")?;
    let id = rest.get(..8)?;
    (is_world_id(id) && rest[8..].starts_with('-')).then_some(id)
}

/// Removes leftovers of dead worlds; returns a line per thing removed.
pub fn cleanup_stale() -> Result<Vec<String>> {
    let mut ids: Vec<String> = Vec::new();
    let mut add = |id: &str| {
        if !ids.iter().any(|i| i == id) {
            ids.push(id.to_owned());
        }
    };
    for ns in netns::list() {
        if let Some(id) = world_of_netns(&ns) {
            add(id);
        }
    }
    for p in host::cork_cgroups("ck")
        .into_iter()
        .chain(host::cork_pins("ck"))
    {
        if let Some(id) = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(world_of_cork_name)
        {
            add(id);
        }
    }
    for dir in [TMP_DIR, LOCK_DIR] {
        for p in host::entries_with_prefix(Path::new(dir), "ck") {
            if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
                let id = name.trim_end_matches(".lock");
                if is_world_id(id) {
                    add(id);
                }
            }
        }
    }
    let mut removed = Vec::new();
    for id in ids {
        // Holding the lock while removing keeps a new world from reusing the id meanwhile.
        let Ok(held) = lock(&id) else { continue };
        removed.extend(remove_world_leftovers(&id));
        let _ = std::fs::remove_file(lock_path(&id));
        drop(held);
    }
    if !any_world_alive() {
        removed.extend(remove_unused_program_sets()?);
    }
    Ok(removed)
}

/// Whether a world other than the caller's is alive: some lock file under [`LOCK_DIR`]
/// is held (the caller has let its own go). Files are only opened, never created.
pub fn any_world_alive() -> bool {
    host::entries_with_prefix(Path::new(LOCK_DIR), "ck")
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "lock"))
        .filter_map(|p| File::open(p).ok())
        .any(|f| {
            matches!(
                Flock::lock(f, FlockArg::LockExclusiveNonblock),
                Err((_, nix::errno::Errno::EWOULDBLOCK))
            )
        })
}

/// The host's shared program set (`cork_bpf::shared`, `<bpffs>/cork_programs`) outlives
/// bottles on purpose — each later bottle is spared the verifier — but a test run must
/// not leave it to the next suite or session. So the last world to go removes every set
/// no bottle is registered in (under the sets' own lock: a bottle created meanwhile just
/// loads its set again), and the sweeper does the same for a run that died. Returns
/// what it removed, or why it could not.
pub fn remove_unused_program_sets() -> Result<Vec<String>> {
    let bpffs = Path::new(host::BPFFS);
    let root = bpffs.join(cork_bpf::shared::DIR);
    let before: Vec<PathBuf> = match std::fs::read_dir(&root) {
        Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
        Err(_) => return Ok(Vec::new()),
    };
    let kept = cork_bpf::shared::remove_unused(bpffs)
        .map_err(|e| anyhow::anyhow!("removing unused program sets: {e}"))?;
    Ok(before
        .into_iter()
        .filter(|set| !kept.contains(set))
        .map(|set| format!("program set {}", set.display()))
        .collect())
}

/// Removes everything named after world `id`, logging (not failing on) each error.
pub fn remove_world_leftovers(id: &str) -> Vec<String> {
    let mut removed = Vec::new();
    let mut note = |what: String, r: Result<()>| match r {
        Ok(()) => removed.push(what),
        Err(e) => eprintln!("cork-integration: could not remove {what}: {e:#}"),
    };
    for side in ["b", "i", "g"] {
        let name = format!("{id}{side}");
        if netns::list().contains(&name) {
            let r = netns::Netns::open(&name).and_then(|ns| {
                ns.kill_all();
                ns.delete()
            });
            note(format!("netns {name}"), r);
        }
    }
    for cg in host::cork_cgroups(&format!("{id}-")) {
        let r = host::remove_cgroup(&cg);
        note(format!("cgroup {}", cg.display()), r);
    }
    for pin in host::cork_pins(&format!("{id}-")) {
        let r = host::remove_pins(&pin);
        note(format!("pins {}", pin.display()), r);
    }
    let tmp = Path::new(TMP_DIR).join(id);
    if tmp.exists() {
        let r = std::fs::remove_dir_all(&tmp).with_context(|| format!("remove {}", tmp.display()));
        note(format!("dir {}", tmp.display()), r);
    }
    removed
}

/// Once per test process: requires root and sweeps leftovers of dead worlds, recording
/// what it removed in [`SWEPT_LOG`] (which `zz_no_leaks` reports).
pub fn suite_guard() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        assert!(
            nix::unistd::geteuid().is_root(),
            "cork integration tests need root (run them through `cargo xtask test`)"
        );
        match cleanup_stale() {
            Ok(removed) if removed.is_empty() => {}
            Ok(removed) => {
                eprintln!("cork-integration: swept stale leftovers: {removed:?}");
                let _ = record_swept(&removed);
            }
            Err(e) => eprintln!("cork-integration: sweeping stale leftovers failed: {e:#}"),
        }
    });
}

fn record_swept(removed: &[String]) -> Result<()> {
    std::fs::create_dir_all(LOCK_DIR)?;
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(SWEPT_LOG)?;
    for r in removed {
        writeln!(f, "pid {}: {r}", std::process::id())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_world_names() {
        assert_eq!(world_of_netns("ck0a1b2cb"), Some("ck0a1b2c"));
        assert_eq!(world_of_netns("ck0a1b2ci"), Some("ck0a1b2c"));
        assert_eq!(world_of_netns("ck0a1b2cg"), Some("ck0a1b2c"));
        assert_eq!(world_of_netns("ck0a1b2cx"), None);
        assert_eq!(world_of_netns("ckZZ1b2cb"), None);
        assert_eq!(world_of_netns("cork"), None);
        assert_eq!(world_of_cork_name("cork-ck0a1b2c-a-1234"), Some("ck0a1b2c"));
        assert_eq!(world_of_cork_name("cork-agent-1-1234"), None);
        assert_eq!(world_of_cork_name("cork-ck0a1b2cx-1"), None);
    }
}
