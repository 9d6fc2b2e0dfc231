//! The bottle's cgroup: created fresh for each bottle, killed and removed at the end.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("creating cgroup {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("killing the processes of cgroup {path}")]
    Kill {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cgroup {path} still has processes {waited:?} after cgroup.kill")]
    StillPopulated { path: PathBuf, waited: Duration },
    #[error("removing cgroup {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A cgroup directory this process created. Drop kills what is in it and removes it.
#[derive(Debug)]
pub struct BottleCgroup {
    path: PathBuf,
    removed: bool,
}

impl BottleCgroup {
    /// Creates `<root>/<name>`; an existing directory is an error (never adopt one).
    pub fn create(root: &Path, name: &str) -> Result<Self, CgroupError> {
        let path = root.join(name);
        fs::create_dir(&path).map_err(|source| CgroupError::Create {
            path: path.clone(),
            source,
        })?;
        Ok(BottleCgroup {
            path,
            removed: false,
        })
    }

    /// The existing cgroup `path` of a bottle a restarted daemon takes back (its
    /// processes are in it). From here on Drop kills them, as for a created one.
    pub fn adopt(path: &Path) -> Self {
        BottleCgroup {
            path: path.to_path_buf(),
            removed: false,
        }
    }

    /// Lets go of the cgroup without touching it: processes stay, fenced by the pinned
    /// programs (a takeover that could not finish).
    pub fn forget(mut self) {
        self.removed = true;
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn procs_path(&self) -> PathBuf {
        self.path.join("cgroup.procs")
    }

    /// Kills every process in the cgroup and waits until it is empty; the cgroup stays.
    pub fn kill(&self) -> Result<(), CgroupError> {
        kill_all(&self.path)
    }

    /// Kills every process in the cgroup and removes it.
    pub fn remove(mut self) -> Result<(), CgroupError> {
        self.removed = true;
        kill_and_remove(&self.path)
    }
}

impl Drop for BottleCgroup {
    fn drop(&mut self) {
        if !self.removed
            && let Err(e) = kill_and_remove(&self.path)
        {
            tracing::warn!("bottle teardown: {e}");
        }
    }
}

fn populated(path: &Path) -> io::Result<bool> {
    let events = fs::read_to_string(path.join("cgroup.events"))?;
    Ok(events.lines().any(|l| l == "populated 1"))
}

/// cgroup.kill (Linux 5.14+) SIGKILLs every process in the subtree at once, so nothing can
/// fork its way out while we kill; then wait until the kernel reports it empty and rmdir.
pub fn kill_and_remove(path: &Path) -> Result<(), CgroupError> {
    kill_all(path)?;
    remove_emptied(path)
}

/// Kills every process in the cgroup's subtree and waits until the kernel reports it
/// empty. The cgroup stays (its sockets may outlive the processes: see
/// `cork_bpf::seal`).
pub fn kill_all(path: &Path) -> Result<(), CgroupError> {
    if !path.exists() {
        return Ok(());
    }
    let kill_err = |source| CgroupError::Kill {
        path: path.to_path_buf(),
        source,
    };
    if populated(path).map_err(kill_err)? {
        fs::write(path.join("cgroup.kill"), "1").map_err(kill_err)?;
        let start = Instant::now();
        let limit = Duration::from_secs(10);
        while populated(path).map_err(kill_err)? {
            if start.elapsed() > limit {
                return Err(CgroupError::StillPopulated {
                    path: path.to_path_buf(),
                    waited: limit,
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(())
}

/// Removes a cgroup [`kill_all`] emptied (any child first).
pub fn remove_emptied(path: &Path) -> Result<(), CgroupError> {
    if !path.exists() {
        return Ok(());
    }
    // Child cgroups cannot exist (the bottle cannot write cgroupfs) but remove any anyway.
    if let Ok(entries) = fs::read_dir(path) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                kill_and_remove(&e.path())?;
            }
        }
    }
    // rmdir can briefly fail with EBUSY while the last task is being reaped.
    let start = Instant::now();
    loop {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY)
                    && start.elapsed() < Duration::from_secs(5) =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    }
}
