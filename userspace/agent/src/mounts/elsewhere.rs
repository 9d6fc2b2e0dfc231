//! cgroup2 and bpffs when cork's own mount namespace hides them. `ip netns exec` gives its
//! command a mount namespace of its own with a fresh /sys (the target network namespace's
//! sysfs), so neither /sys/fs/cgroup* nor /sys/fs/bpf is mounted there. Mounting cgroup2
//! again would show the same hierarchy, but a bpffs mounted there is a new, empty instance:
//! pins made in it die with that namespace and are never seen by `cork clean` or a
//! restarted daemon on the host.
//!
//! So the nearest ancestor in another mount namespace that has both (under `ip netns exec`
//! the shell that ran `ip`) lends its root: cork opens `/proc/<pid>/root` as an `O_PATH`
//! directory, keeps it (and that mount namespace) open for the life of the process, and
//! reaches the mounts as `/proc/self/fd/<root>/<mount point>`. Every path cork derives
//! from those roots (cgroups, pin dirs) then lands where the host sees it.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nix::fcntl::{OFlag, openat, readlinkat};
use nix::sys::stat::Mode;
use nix::sys::statfs::{BPF_FS_MAGIC, CGROUP2_SUPER_MAGIC, FsType, statfs};

use super::mountinfo::{find_in, parse_mountinfo};

/// A process's root, held open: paths under it resolve in that process's mount namespace.
#[derive(Debug)]
pub struct Anchor {
    pub pid: i32,
    pub comm: String,
    root: OwnedFd,
    /// Keeps that mount namespace, and so its mounts, alive should the process exit.
    _ns: OwnedFd,
    cgroup2: PathBuf,
    bpffs: PathBuf,
}

impl Anchor {
    /// `mount_point` (absolute in the anchor's namespace) as a path cork can use.
    fn reach(&self, mount_point: &Path) -> PathBuf {
        let rel = mount_point.strip_prefix("/").unwrap_or(mount_point);
        PathBuf::from(format!("/proc/self/fd/{}", self.root.as_raw_fd())).join(rel)
    }

    pub fn cgroup2(&self) -> PathBuf {
        self.reach(&self.cgroup2)
    }

    pub fn bpffs(&self) -> PathBuf {
        self.reach(&self.bpffs)
    }
}

/// What the walk up the process tree found.
#[derive(Debug)]
pub struct Search {
    pub anchor: Option<Anchor>,
    /// Did any ancestor provably live in another mount namespace? If none did, ours is
    /// the one the host (or container) keeps, and mounting bpffs in it is safe.
    pub foreign_seen: bool,
    /// One line per ancestor looked at, for the error when no anchor was found.
    pub tried: Vec<String>,
}

impl fmt::Display for Search {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tried.is_empty() {
            return f.write_str("no ancestor process to look at");
        }
        f.write_str(&self.tried.join("; "))
    }
}

/// The search for this process, done once (the answer is the same for its whole life,
/// and the anchor's descriptor must stay the same for the paths handed out to hold).
pub fn search() -> &'static Search {
    static SEARCH: OnceLock<Search> = OnceLock::new();
    SEARCH.get_or_init(|| {
        let own = std::fs::read_link("/proc/self/ns/mnt")
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let search = search_from(&own, nix::unistd::getppid().as_raw());
        match &search.anchor {
            Some(a) => tracing::info!(
                "cgroup2 and bpffs are not both mounted in this mount namespace; using those \
                 of pid {} ({}) through its root: cgroup2 {}, bpffs {}",
                a.pid,
                a.comm,
                a.cgroup2().display(),
                a.bpffs().display()
            ),
            None => tracing::debug!("no ancestor lends cgroup2 and bpffs: {search}"),
        }
        search
    })
}

/// How far up the tree to look (a loop guard; real trees are shallow).
const MAX_DEPTH: usize = 64;

/// Walks from `start` up through its ancestors, skipping those in the mount namespace
/// `own_ns` (`mnt:[inode]`), to the first one whose namespace has cgroup2 and bpffs.
pub fn search_from(own_ns: &str, start: i32) -> Search {
    let mut search = Search {
        anchor: None,
        foreign_seen: false,
        tried: Vec::new(),
    };
    let mut pid = start;
    for _ in 0..MAX_DEPTH {
        if pid <= 0 {
            break;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| c.trim_end().to_owned())
            .unwrap_or_else(|_| "?".to_owned());
        match try_anchor(pid, &comm, own_ns) {
            Ok(Attempt::Anchor(a)) => {
                search.foreign_seen = true;
                search.anchor = Some(*a);
                return search;
            }
            Ok(Attempt::SameNamespace) => {
                search
                    .tried
                    .push(format!("pid {pid} ({comm}): cork's own mount namespace"));
            }
            Ok(Attempt::Lacks { ns, what }) => {
                search.foreign_seen = true;
                search
                    .tried
                    .push(format!("pid {pid} ({comm}) in {ns}: {what}"));
            }
            Err(why) => search.tried.push(format!("pid {pid} ({comm}): {why}")),
        }
        match parent_of(pid) {
            Some(ppid) if ppid != pid => pid = ppid,
            _ => break,
        }
    }
    search
}

enum Attempt {
    Anchor(Box<Anchor>),
    SameNamespace,
    Lacks { ns: String, what: String },
}

/// One ancestor: its namespace, its mount table, and its root opened and checked. The
/// `/proc/<pid>` directory is opened first and everything else read relative to it, so
/// a pid reused mid-way fails (ESRCH) rather than mixing two processes.
fn try_anchor(pid: i32, comm: &str, own_ns: &str) -> Result<Attempt, String> {
    let dir = File::open(format!("/proc/{pid}")).map_err(|e| format!("open /proc/{pid}: {e}"))?;
    let ns = readlinkat(&dir, "ns/mnt")
        .map_err(|e| format!("readlink /proc/{pid}/ns/mnt: {e}"))?
        .to_string_lossy()
        .into_owned();
    if ns == own_ns {
        return Ok(Attempt::SameNamespace);
    }
    let mut text = String::new();
    openat(
        &dir,
        "mountinfo",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map(File::from)
    .and_then(|mut f| f.read_to_string(&mut text).map_err(io_errno))
    .map_err(|e| format!("read /proc/{pid}/mountinfo: {e}"))?;
    let found = find_in(&parse_mountinfo(&text));
    let (cgroup2, bpffs) = match (found.cgroup2, found.bpffs) {
        (Some(c), Some(b)) => (c, b),
        (c, _) => {
            let what = match c {
                None => "no cgroup2 is mounted",
                Some(_) => "no bpffs is mounted at /sys/fs/bpf",
            };
            return Ok(Attempt::Lacks {
                ns,
                what: what.to_owned(),
            });
        }
    };
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let root = openat(&dir, "root", flags, Mode::empty())
        .map_err(|e| format!("open /proc/{pid}/root: {e}"))?;
    let ns_fd = openat(
        &dir,
        "ns/mnt",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("open /proc/{pid}/ns/mnt: {e}"))?;
    let anchor = Anchor {
        pid,
        comm: comm.to_owned(),
        root,
        _ns: ns_fd,
        cgroup2,
        bpffs,
    };
    // The table said so; the filesystems themselves, reached through the root we hold,
    // must agree (a mount hidden by a later one on the same point would not).
    for (path, want, name) in [
        (anchor.cgroup2(), CGROUP2_SUPER_MAGIC, "cgroup2"),
        (anchor.bpffs(), BPF_FS_MAGIC, "bpffs"),
    ] {
        let got: Result<FsType, _> = statfs(&path).map(|s| s.filesystem_type());
        match got {
            Ok(t) if t == want => {}
            Ok(_) => {
                return Ok(Attempt::Lacks {
                    ns,
                    what: format!("{} is not {name} seen through its root", path.display()),
                });
            }
            Err(e) => return Err(format!("statfs {}: {e}", path.display())),
        }
    }
    Ok(Attempt::Anchor(Box::new(anchor)))
}

fn io_errno(e: std::io::Error) -> nix::Error {
    e.raw_os_error()
        .map(nix::Error::from_raw)
        .unwrap_or(nix::Error::EIO)
}

/// The parent pid from `/proc/<pid>/stat` (the field after the `)` that ends the name).
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_ppid(&stat)
}

fn parse_ppid(stat: &str) -> Option<i32> {
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppid_after_a_name_with_spaces_and_parens() {
        assert_eq!(parse_ppid("4242 (a) b) (c) S 17 4242 4242 0"), Some(17));
        assert_eq!(parse_ppid("1 (init) S 0 1 1"), Some(0));
        assert_eq!(parse_ppid("garbage"), None);
    }

    /// Against the real /proc: starting at this very process, with a namespace name no
    /// process has, the first process looked at is this one. It lends its root when its
    /// namespace has both filesystems, and the paths handed out reach them.
    #[test]
    fn search_reaches_the_mounts_through_a_process_root() {
        let own = find_in(&parse_mountinfo(
            &std::fs::read_to_string("/proc/self/mountinfo").expect("read own mountinfo"),
        ));
        let me = std::process::id() as i32;
        let search = search_from("mnt:[0]", me);
        match (own.cgroup2, own.bpffs, &search.anchor) {
            (Some(_), Some(_), Some(a)) => {
                assert_eq!(a.pid, me);
                let t = statfs(&a.cgroup2())
                    .expect("statfs cgroup2")
                    .filesystem_type();
                assert_eq!(t, CGROUP2_SUPER_MAGIC);
                assert!(a.bpffs().starts_with("/proc/self/fd/"), "{:?}", a.bpffs());
            }
            (Some(_), Some(_), None) => panic!("own mounts not lent: {search}"),
            // A host without them: the refusal names this process.
            (_, _, anchor) => {
                assert!(anchor.is_none());
                assert!(
                    search.to_string().contains(&format!("pid {me} ")),
                    "{search}"
                );
            }
        }
    }

    #[test]
    fn own_namespace_is_skipped_and_said() {
        let own = std::fs::read_link("/proc/self/ns/mnt").expect("own mnt ns");
        let me = std::process::id() as i32;
        let search = search_from(&own.to_string_lossy(), me);
        assert!(
            search.tried[0].contains("cork's own mount namespace"),
            "{search}"
        );
    }
}
