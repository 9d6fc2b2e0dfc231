//! Finding the filesystems cork works in, from /proc/self/mounts: the cgroup2 hierarchy
//! (`/sys/fs/cgroup` on most hosts, `/sys/fs/cgroup/unified` on hybrid ones) and bpffs.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("reading /proc/self/mounts or taking the bpffs mount lock")]
    Read(#[source] io::Error),
    #[error("no cgroup2 filesystem is mounted (see /proc/self/mounts); cork needs cgroup v2")]
    NoCgroup2,
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

/// The first cgroup2 mount.
pub fn cgroup2_root() -> Result<PathBuf, MountError> {
    mounts()?
        .into_iter()
        .find(|m| m.fstype == "cgroup2")
        .map(|m| m.target)
        .ok_or(MountError::NoCgroup2)
}

pub const BPFFS: &str = "/sys/fs/bpf";

/// Makes sure bpffs is mounted at /sys/fs/bpf (systemd does this on most hosts; some
/// minimal hosts and containers do not), mounting it if not.
pub fn ensure_bpffs() -> Result<PathBuf, MountError> {
    let path = Path::new(BPFFS);
    // Two agents starting at once must not both mount: the second mount would hide the
    // first one's pins beneath it. The lock is released when `_lock` closes.
    let _lock = lock_file(Path::new("/run/cork-bpffs.lock")).map_err(MountError::Read)?;
    if mounts()?
        .iter()
        .any(|m| m.fstype == "bpf" && m.target == path)
    {
        return Ok(path.to_path_buf());
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
}
