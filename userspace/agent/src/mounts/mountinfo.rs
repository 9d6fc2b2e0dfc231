//! `/proc/<pid>/mountinfo` (proc(5)) read for the two filesystems cork works in. Unlike
//! /proc/self/mounts, mountinfo is also what cork reads of another process: its mount
//! points are relative to that process's root, which is how cork reaches them.

use std::path::{Path, PathBuf};

use super::{BPFFS, unescape};

/// One line of `/proc/<pid>/mountinfo` (proc(5)), the parts cork needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// Relative to that process's root directory.
    pub mount_point: PathBuf,
    pub fstype: String,
}

/// `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS`.
/// The optional fields vary in number, so the type is found after the lone `-`; paths are
/// octal-escaped, so no field holds a raw space. Lines that do not parse are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (head, tail) = line.split_once(" - ")?;
            let mount_point = head.split(' ').nth(4)?;
            let fstype = tail.split(' ').next().filter(|t| !t.is_empty())?;
            Some(MountInfo {
                mount_point: PathBuf::from(unescape(mount_point)),
                fstype: fstype.to_owned(),
            })
        })
        .collect()
}

/// Where, in one mount table, cork's two filesystems are (mount points as written there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub cgroup2: Option<PathBuf>,
    /// Only bpffs at /sys/fs/bpf counts: that is where `cork clean` and every agent look.
    pub bpffs: Option<PathBuf>,
}

pub fn find_in(table: &[MountInfo]) -> Found {
    Found {
        cgroup2: table
            .iter()
            .find(|m| m.fstype == "cgroup2")
            .map(|m| m.mount_point.clone()),
        bpffs: table
            .iter()
            .find(|m| m.fstype == "bpf" && m.mount_point == Path::new(BPFFS))
            .map(|m| m.mount_point.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host's table as `ip netns exec`'s parent shell sees it on a hybrid host.
    const HYBRID: &str = "\
23 27 0:22 / /sys rw,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime shared:8 - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:18 - cgroup2 cgroup2 rw
47 23 0:39 / /sys/fs/bpf rw,relatime shared:23 - bpf bpf rw,mode=700
";

    /// What `ip netns exec` leaves its command: a fresh sysfs, nothing under it.
    const NETNS_EXEC: &str = "\
27 1 254:0 / / rw,relatime master:1 - ext4 /dev/vda rw
49 45 0:40 / /sys rw,relatime - sysfs hnx-probe rw
";

    #[test]
    fn mountinfo_fields_past_the_optional_ones() {
        let m = parse_mountinfo(HYBRID);
        assert_eq!(m.len(), 5);
        assert_eq!(m[3].mount_point, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(m[3].fstype, "cgroup2");
        // No optional field at all, and several: the type is after the `-` either way.
        let odd = "40 1 0:5 / /mnt/a\\040b rw - bpf bpf rw\n\
                   41 1 0:6 / /x rw shared:3 master:2 propagate_from:1 - cgroup2 none rw\n\
                   garbage\n\
                   42 1 0:7 / /y rw -\n";
        let m = parse_mountinfo(odd);
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(m[0].mount_point, PathBuf::from("/mnt/a b"));
        assert_eq!(m[0].fstype, "bpf");
        assert_eq!(m[1].fstype, "cgroup2");
    }

    #[test]
    fn hybrid_pure_and_hidden_tables() {
        assert_eq!(
            find_in(&parse_mountinfo(HYBRID)),
            Found {
                cgroup2: Some(PathBuf::from("/sys/fs/cgroup/unified")),
                bpffs: Some(PathBuf::from("/sys/fs/bpf")),
            }
        );
        let pure = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n\
                    31 23 0:27 / /sys/fs/bpf rw - bpf bpf rw\n";
        assert_eq!(
            find_in(&parse_mountinfo(pure)).cgroup2,
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(
            find_in(&parse_mountinfo(NETNS_EXEC)),
            Found {
                cgroup2: None,
                bpffs: None,
            }
        );
        // A bpffs elsewhere is not where cork clean looks.
        let elsewhere = "31 23 0:27 / /mnt/bpf rw - bpf bpf rw\n";
        assert_eq!(find_in(&parse_mountinfo(elsewhere)).bpffs, None);
    }
}
