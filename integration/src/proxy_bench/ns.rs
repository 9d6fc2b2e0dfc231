//! [`BenchNs`]: the one network namespace a proxy benchmark runs in: only `lo` up
//! (127.0.0.1, ::1), no link to anything else, and a temp dir for the peers' files.
//!
//! Its name is a world id (`ck` + 6 hex digits, then `b`) held by a world lock, so a
//! benchmark killed midway leaves nothing that `cargo xtask clean` or the test suite's
//! sweeper would not remove, and nothing either removes while the benchmark runs.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::netns::{self, Netns};
use crate::sweep::{self, TMP_DIR, WorldLock};

/// The benchmark's namespace and temp dir; dropping it kills what runs inside and
/// removes both.
#[derive(Debug)]
pub struct BenchNs {
    ns: Option<Netns>,
    dir: PathBuf,
    id: String,
    lock: Option<WorldLock>,
}

impl BenchNs {
    /// Creates the namespace (loopback up) and the temp dir; a partial setup is undone.
    pub fn new() -> Result<Self> {
        let (id, lock) = claim()?;
        let mut me = Self {
            ns: None,
            dir: Path::new(TMP_DIR).join(&id),
            id,
            lock: Some(lock),
        };
        std::fs::create_dir_all(&me.dir).with_context(|| format!("create {}", me.dir.display()))?;
        let ns = Netns::create(&format!("{}b", me.id))?;
        ns.ip(&["link", "set", "lo", "up"])?;
        me.ns = Some(ns);
        Ok(me)
    }

    /// The namespace.
    pub fn ns(&self) -> &Netns {
        self.ns.as_ref().expect("namespace exists after new()")
    }

    /// The temp dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for BenchNs {
    fn drop(&mut self) {
        let mut errors = Vec::new();
        if let Some(ns) = self.ns.take() {
            ns.kill_all();
            let name = ns.name().to_owned();
            if let Err(e) = ns.delete() {
                errors.push(format!("delete netns {name}: {e:#}"));
            }
        }
        if self.dir.exists()
            && let Err(e) = std::fs::remove_dir_all(&self.dir)
        {
            errors.push(format!("remove {}: {e}", self.dir.display()));
        }
        if errors.is_empty() {
            let _ = std::fs::remove_file(sweep::lock_path(&self.id));
        }
        drop(self.lock.take());
        for e in errors {
            eprintln!("cork-proxy-bench: teardown: {e}");
        }
    }
}

fn claim() -> Result<(String, WorldLock)> {
    let existing = netns::list();
    for n in 0u32..64 {
        let mut h = DefaultHasher::new();
        ("cork-proxy-bench", std::process::id(), n).hash(&mut h);
        let id = format!("ck{:06x}", h.finish() & 0xff_ffff);
        if existing.iter().any(|e| e.starts_with(&id)) || sweep::lock_path(&id).exists() {
            continue;
        }
        if let Ok(lock) = sweep::lock(&id) {
            return Ok((id, lock));
        }
    }
    bail!("no free namespace id for the benchmark")
}
