//! Finding the filesystems cork works in: the cgroup2 hierarchy (`/sys/fs/cgroup` on most
//! hosts, `/sys/fs/cgroup/unified` on hybrid ones) and bpffs at /sys/fs/bpf. First in this
//! process's own mount namespace (/proc/self/mounts); when that hides them (`ip netns
//! exec`), through the root of an ancestor whose namespace has them ([`elsewhere`], reading
//! its [`mountinfo`]).

pub mod elsewhere;
pub mod mountinfo;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("reading /proc/self/mounts or taking the bpffs mount lock")]
    Read(#[source] io::Error),
    #[error(
        "no cgroup2 filesystem is mounted in cork's mount namespace (see /proc/self/mounts), \
         nor in that of an ancestor process cork could reach ({tried}); cork needs cgroup v2"
    )]
    NoCgroup2 { tried: String },
    #[error(
        "bpffs is not mounted at /sys/fs/bpf in cork's mount namespace, and no ancestor in \
         another mount namespace lends one ({tried}); a bpffs mounted here would die with \
         this namespace, out of reach of `cork clean`: mount it in the host's mount \
         namespace (`mount -t bpf bpf /sys/fs/bpf`) and run cork again"
    )]
    NoBpffs { tried: String },
    #[error("mounting bpffs at {path}")]
    MountBpf {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
}

/// One line of /proc/self/mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub target: PathBuf,
    pub fstype: String,
}

/// Octal escapes (`\040` for space) as the kernel writes them in mount paths.
pub fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split(' ');
            let _src = f.next()?;
            let target = f.next()?;
            let fstype = f.next()?;
            Some(Mount {
                target: PathBuf::from(unescape(target)),
                fstype: fstype.to_string(),
            })
        })
        .collect()
}

pub fn mounts() -> Result<Vec<Mount>, MountError> {
    let text = fs::read_to_string("/proc/self/mounts").map_err(MountError::Read)?;
    Ok(parse_mounts(&text))
}

/// The first cgroup2 mount of this mount namespace, else that of an ancestor's (see
/// [`elsewhere`]), reached through its root.
pub fn cgroup2_root() -> Result<PathBuf, MountError> {
    if let Some(m) = mounts()?.into_iter().find(|m| m.fstype == "cgroup2") {
        return Ok(m.target);
    }
    let search = elsewhere::search();
    search
        .anchor
        .as_ref()
        .map(elsewhere::Anchor::cgroup2)
        .ok_or_else(|| MountError::NoCgroup2 {
            tried: search.to_string(),
        })
}

pub const BPFFS: &str = "/sys/fs/bpf";

fn bpffs_here() -> Result<bool, MountError> {
    Ok(mounts()?
        .iter()
        .any(|m| m.fstype == "bpf" && m.target == Path::new(BPFFS)))
}

/// Where bpffs is, without mounting it: /sys/fs/bpf here, else an ancestor's; `None` when
/// neither has one (there are no pins to find then).
pub fn find_bpffs() -> Result<Option<PathBuf>, MountError> {
    if bpffs_here()? {
        return Ok(Some(PathBuf::from(BPFFS)));
    }
    Ok(elsewhere::search()
        .anchor
        .as_ref()
        .map(elsewhere::Anchor::bpffs))
}

/// Makes sure there is a bpffs cork's pins outlive this process in: /sys/fs/bpf in this
/// mount namespace, else an ancestor's (see [`elsewhere`]). With neither, and no ancestor
/// in another mount namespace (systemd mounts bpffs on most hosts; some minimal hosts and
/// containers do not), this namespace is the lasting one and bpffs is mounted in it. With
/// ancestors elsewhere that have none, mounting here would hide pins from every later
/// `cork clean`: refused.
pub fn ensure_bpffs() -> Result<PathBuf, MountError> {
    let path = Path::new(BPFFS);
    // Two agents starting at once must not both mount: the second mount would hide the
    // first one's pins beneath it. The lock is released when `_lock` closes.
    let _lock = lock_file(Path::new("/run/cork-bpffs.lock")).map_err(MountError::Read)?;
    if bpffs_here()? {
        return Ok(path.to_path_buf());
    }
    let search = elsewhere::search();
    if let Some(anchor) = &search.anchor {
        return Ok(anchor.bpffs());
    }
    if search.foreign_seen {
        return Err(MountError::NoBpffs {
            tried: search.to_string(),
        });
    }
    tracing::info!("bpffs is not mounted at {BPFFS}; mounting it");
    nix::mount::mount(
        Some("bpf"),
        path,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|source| MountError::MountBpf {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(path.to_path_buf())
}

/// `path` as another process can open it: cork's own paths into an ancestor's namespace
/// begin `/proc/self/fd/<N>/`, which means this process's descriptor only in this process;
/// `/proc/<our pid>/fd/<N>/` means it for any root process of this PID namespace (while
/// this one lives). Any other path is returned as it is.
pub fn for_others(path: &Path) -> PathBuf {
    match path.strip_prefix("/proc/self") {
        Ok(rest) => Path::new("/proc")
            .join(std::process::id().to_string())
            .join(rest),
        Err(_) => path.to_path_buf(),
    }
}

/// Settles now where cgroup2 and bpffs are, while the process that started this one
/// (whose mount namespace may be the one that has them) is surely alive: a daemon's first
/// bottle may come long after its parent exited. Mounts nothing.
pub fn settle() -> Result<(), MountError> {
    cgroup2_root()?;
    find_bpffs()?;
    Ok(())
}

/// An exclusive flock on `path` (created if needed), held while the file stays open.
fn lock_file(path: &Path) -> io::Result<fs::File> {
    use std::os::fd::AsRawFd;
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_among_v1_and_unescapes() {
        let text = "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n\
                    cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n\
                    none /mnt/with\\040space bpf rw 0 0\n";
        let m = parse_mounts(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].target, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(m[1].fstype, "cgroup2");
        assert_eq!(m[2].target, PathBuf::from("/mnt/with space"));
    }

    #[test]
    fn paths_through_our_descriptors_are_named_by_pid_for_others() {
        let me = std::process::id();
        assert_eq!(
            for_others(Path::new(
                "/proc/self/fd/7/sys/fs/cgroup/cork-a-1_2/cgroup.procs"
            )),
            PathBuf::from(format!(
                "/proc/{me}/fd/7/sys/fs/cgroup/cork-a-1_2/cgroup.procs"
            ))
        );
        assert_eq!(
            for_others(Path::new("/sys/fs/cgroup/x")),
            PathBuf::from("/sys/fs/cgroup/x")
        );
        // Only the whole component counts.
        assert_eq!(
            for_others(Path::new("/proc/selfish")),
            PathBuf::from("/proc/selfish")
        );
    }
}
