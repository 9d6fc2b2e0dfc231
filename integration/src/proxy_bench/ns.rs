//! [`BenchNs`]: the one network namespace a proxy benchmark runs in: only `lo` up
//! (127.0.0.1, ::1), no link to anything else, and a temp dir for the peers' files.
//!
//! Its name is a world id (`ck` + 6 hex digits, then `b`) held by a world lock, so a
//! benchmark killed midway leaves nothing that `cargo xtask clean` or the test suite's
//! sweeper would not remove, and nothing either removes while the benchmark runs.
//! [`cleanup_on_signal`] covers Ctrl-C and SIGTERM, which skip `Drop`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};

use crate::netns::Netns;
use crate::sweep::{self, TMP_DIR, WorldLock};
use crate::world;

/// The benchmark's namespace and temp dir; dropping it kills what runs inside and
/// removes both.
#[derive(Debug)]
pub struct BenchNs {
    ns: Option<Netns>,
    dir: PathBuf,
    id: String,
    lock: Option<WorldLock>,
}

/// The live bench's id, for the signal thread.
static LIVE: Mutex<Option<String>> = Mutex::new(None);

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread (call it first in `main`, before any
/// thread exists, so every thread inherits the mask) and starts a thread that waits for
/// them: it kills what runs in the live bench namespace, removes the namespace and the
/// temp dir, and exits 130. Children get an empty mask from `Command` as usual.
pub fn cleanup_on_signal() -> Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block().context("block termination signals")?;
    std::thread::Builder::new()
        .name("signal-cleanup".into())
        .spawn(move || {
            let sig = set
                .wait()
                .map_or("signal".to_owned(), |s| s.as_str().to_owned());
            let id = LIVE.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(id) = id {
                eprintln!("cork-proxy-bench: {sig}: removing {id}");
                for what in sweep::remove_world_leftovers(&id) {
                    eprintln!("cork-proxy-bench: removed {what}");
                }
                let _ = std::fs::remove_file(sweep::lock_path(&id));
            }
            std::process::exit(130);
        })
        .context("spawn the signal thread")?;
    Ok(())
}

impl BenchNs {
    /// Creates the namespace (loopback up) and the temp dir; a partial setup is undone.
    pub fn new() -> Result<Self> {
        let (id, lock) = world::claim_id("cork-proxy-bench")?;
        *LIVE.lock().unwrap_or_else(|e| e.into_inner()) = Some(id.clone());
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
        // Holding LIVE's lock for the whole teardown keeps the signal thread from
        // racing it; afterwards it finds nothing to do.
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        live.take();
        let mut errors = Vec::new();
        if let Some(ns) = self.ns.as_ref() {
            ns.kill_all();
        }
        world::release(
            &self.id,
            self.ns.take(),
            &self.dir,
            self.lock.take(),
            &mut errors,
        );
        for e in errors {
            eprintln!("cork-proxy-bench: teardown: {e}");
        }
    }
}
