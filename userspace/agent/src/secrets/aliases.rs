//! Other names of a masked file that bind mounts the host already has give it: a mask
//! covers one place in the mount tree, so `/home` bind-mounted again at `/mnt/home` would
//! show `/mnt/home/u/.aws` unmasked. From `/proc/self/mountinfo` (proc(5)): every mount
//! of the same device whose root contains the masked file shows it at another path, and
//! that path is masked too. Hard links are other names no mount table lists; masks of
//! files with more than one link say so instead.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::files::Mask;
use crate::mounts::unescape;

/// One line of mountinfo: which device, which directory of it, mounted where.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MountEntry {
    dev: String,
    root: PathBuf,
    point: PathBuf,
}

fn parse(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split(' ');
            let _id = f.next()?;
            let _parent = f.next()?;
            let dev = f.next()?.to_owned();
            let root = PathBuf::from(unescape(f.next()?));
            let point = PathBuf::from(unescape(f.next()?));
            Some(MountEntry { dev, root, point })
        })
        .collect()
}

/// The mount `path` is on: the last-mounted entry with the longest mount point above it
/// (mountinfo lists mounts in mount order, so a later one on the same point hides earlier).
fn mount_of<'a>(mounts: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    mounts
        .iter()
        .enumerate()
        .filter(|(_, m)| path.starts_with(&m.point))
        .max_by_key(|(i, m)| (m.point.components().count(), *i))
        .map(|(_, m)| m)
}

/// Other paths at which each of `found` can be reached through another mount, with the
/// mask each one needs.
pub(super) fn of(found: &BTreeMap<PathBuf, Mask>) -> Vec<(PathBuf, Mask)> {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    aliases(&parse(&text), found, |p| fs::symlink_metadata(p).is_ok())
}

fn aliases(
    mounts: &[MountEntry],
    found: &BTreeMap<PathBuf, Mask>,
    exists: impl Fn(&Path) -> bool,
) -> Vec<(PathBuf, Mask)> {
    let mut out = Vec::new();
    for (path, mask) in found {
        let Some(home_mount) = mount_of(mounts, path) else {
            continue;
        };
        let Ok(rel) = path.strip_prefix(&home_mount.point) else {
            continue;
        };
        // Where the file is inside its file system.
        let in_fs = home_mount.root.join(rel);
        for other in mounts.iter().filter(|m| m.dev == home_mount.dev) {
            let Ok(below) = in_fs.strip_prefix(&other.root) else {
                continue;
            };
            let alias = other.point.join(below);
            // Only where this mount is what a lookup of the alias actually reaches.
            if alias == *path || mount_of(mounts, &alias) != Some(other) || !exists(&alias) {
                continue;
            }
            out.push((
                alias,
                Mask {
                    path: other.point.join(below),
                    kind: mask.kind,
                    why: format!("{} (another mount of {})", mask.why, path.display()),
                },
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::files::MaskKind;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw - ext4 /dev/sda1 rw
30 22 8:2 / /home rw - ext4 /dev/sda2 rw
31 22 8:2 /u /mnt/u\\040home rw - ext4 /dev/sda2 rw
32 22 8:2 /v /srv/v rw - ext4 /dev/sda2 rw
33 22 0:40 / /tmp rw - tmpfs tmpfs rw
";

    #[test]
    fn bind_mounts_of_the_same_directory_are_found() {
        let mounts = parse(MOUNTINFO);
        assert_eq!(mounts[2].point, Path::new("/mnt/u home"));
        let mut found = BTreeMap::new();
        let p = PathBuf::from("/home/u/.aws");
        found.insert(
            p.clone(),
            Mask {
                path: p,
                kind: MaskKind::Dir,
                why: "default ~/.aws of root".into(),
            },
        );
        let got = aliases(&mounts, &found, |_| true);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, Path::new("/mnt/u home/.aws"));
        assert_eq!(
            got[0].1.why,
            "default ~/.aws of root (another mount of /home/u/.aws)"
        );
        assert!(aliases(&mounts, &found, |_| false).is_empty());
    }
}
