//! A cgroup bottle's entry in `cork_cfg` (ebpf/include/cork_maps.h): which bottle the hooks
//! on its cgroup judge for and where its proxies listen, keyed by the cgroup's id. The
//! programs look it up on every hook instead of carrying these as load-time constants, so
//! their bytes (and what the verifier checked) no longer depend on the bottle. The map is
//! shared by every bottle of a program set (see shared.rs); an entry is written once,
//! before anything is attached, read back by every verification, and deleted at teardown.
//! A hook that finds none fails closed.
//!
//! Once the programs are attached, the entry is also copied into `cork_cfg_attached`, the
//! cgroup local storage of the bottle's cgroup, where the hooks find it without a hash
//! lookup (cork_maps.h). That copy lives exactly as long as the attachments; verification
//! reads it back too.

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use aya::maps::{HashMap, Map, MapData};

use crate::abi::cork_bottle_cfg;
use crate::abi::map_names::{CORK_CFG, CORK_CFG_ATTACHED};
use crate::maps::aya_err as aya_err_of;
use crate::{LoadConstants, MapError};

/// Failures finding a cgroup's id.
#[derive(Debug, thiserror::Error)]
pub enum CgroupIdError {
    #[error("reading the cgroup v2 id of {path}")]
    Stat {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("finding this process's cgroup v2 directory: {detail}")]
    Own { detail: String },
}

/// The entry a bottle with these constants gets.
pub(crate) fn entry(consts: &LoadConstants) -> cork_bottle_cfg {
    cork_bottle_cfg {
        bottle_id: consts.bottle_id,
        dns_port: consts.dns_port,
        proxy_port: consts.proxy_port,
    }
}

/// The id `bpf_get_current_cgroup_id` reports for processes in the cgroup v2 directory
/// `path`: on 64-bit kernels the cgroup's kernfs id is its directory's inode number.
pub fn cgroup_id(path: &Path) -> Result<u64, CgroupIdError> {
    fs::metadata(path)
        .map(|m| m.ino())
        .map_err(|source| CgroupIdError::Stat {
            path: path.to_path_buf(),
            source,
        })
}

/// The cgroup v2 id of this process (for programs run with BPF_PROG_TEST_RUN, which see
/// the caller's cgroup: the test socket is created in it).
pub fn own_cgroup_id() -> Result<u64, CgroupIdError> {
    let own = |detail: &str| CgroupIdError::Own {
        detail: detail.to_owned(),
    };
    let cgroups = fs::read_to_string("/proc/self/cgroup").map_err(|e| own(&e.to_string()))?;
    let rel = cgroups
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| own("no cgroup v2 line in /proc/self/cgroup"))?;
    let mounts = fs::read_to_string("/proc/self/mountinfo").map_err(|e| own(&e.to_string()))?;
    // mountinfo: "... mount-point options - fstype source super-options".
    let root = mounts
        .lines()
        .find_map(|l| {
            let (head, tail) = l.split_once(" - ")?;
            (tail.split(' ').next()? == "cgroup2").then(|| head.split(' ').nth(4))?
        })
        .ok_or_else(|| own("no cgroup2 mount in /proc/self/mountinfo"))?;
    cgroup_id(&Path::new(root).join(rel.trim_start_matches('/')))
}

fn aya_err(operation: &'static str) -> impl Fn(aya::maps::MapError) -> MapError {
    aya_err_of(CORK_CFG, operation)
}

/// The `cork_cfg` of the program set in `dir`.
fn open(dir: &Path) -> Result<HashMap<MapData, u64, cork_bottle_cfg>, MapError> {
    let data = MapData::from_pin(dir.join(CORK_CFG)).map_err(aya_err("open"))?;
    HashMap::try_from(Map::HashMap(data)).map_err(aya_err("open"))
}

/// Writes the entry of the cgroup `key`.
pub(crate) fn write(dir: &Path, key: u64, cfg: cork_bottle_cfg) -> Result<(), MapError> {
    open(dir)?.insert(key, cfg, 0).map_err(aya_err("write"))
}

/// The entry of the cgroup `key`, if there is one.
pub(crate) fn read(dir: &Path, key: u64) -> Result<Option<cork_bottle_cfg>, MapError> {
    match open(dir)?.get(&key, 0) {
        Ok(cfg) => Ok(Some(cfg)),
        Err(aya::maps::MapError::KeyNotFound) => Ok(None),
        Err(e) => Err(aya_err("read")(e)),
    }
}

/// Deletes the entry of the cgroup `key` (teardown; none is fine).
pub(crate) fn delete(dir: &Path, key: u64) -> io::Result<()> {
    let data = MapData::from_pin(dir.join(CORK_CFG)).map_err(io::Error::other)?;
    match crate::direct::sys::delete(data.fd().as_fd(), &key.to_ne_bytes()) {
        Err(e) if e.raw_os_error() != Some(libc::ENOENT) => Err(e),
        _ => Ok(()),
    }
}

/// Does any bottle have an entry in the set in `dir`? An unreadable map counts as in use.
pub(crate) fn any_entry(dir: &Path) -> bool {
    match open(dir) {
        Ok(map) => map.keys().next().is_some(),
        Err(_) => dir.join(CORK_CFG).exists(),
    }
}

/// Reads the entry of `key` back and compares it with `want`.
pub(crate) fn verify(dir: &Path, key: u64, want: &cork_bottle_cfg) -> Result<(), MapError> {
    let found = read(dir, key)?;
    let same = found.as_ref().is_some_and(|f| {
        (f.bottle_id, f.dns_port, f.proxy_port) == (want.bottle_id, want.dns_port, want.proxy_port)
    });
    if same {
        return Ok(());
    }
    Err(MapError::Mismatch {
        map: CORK_CFG,
        detail: format!("cgroup {key} has {found:?}, {want:?} was expected"),
    })
}

/// The bytes of an entry, as the kernel holds it.
fn entry_bytes(cfg: &cork_bottle_cfg) -> [u8; std::mem::size_of::<cork_bottle_cfg>()] {
    let mut out = [0u8; std::mem::size_of::<cork_bottle_cfg>()];
    out[0..4].copy_from_slice(&cfg.bottle_id.to_ne_bytes());
    out[4..6].copy_from_slice(&cfg.dns_port.to_ne_bytes());
    out[6..8].copy_from_slice(&cfg.proxy_port.to_ne_bytes());
    out
}

fn attached_err(operation: &'static str) -> impl Fn(io::Error) -> MapError {
    move |source| MapError::Io {
        map: CORK_CFG_ATTACHED,
        operation,
        source,
    }
}

/// Copies the entry of the cgroup `key` into the cgroup's local storage (only possible
/// while programs of the set are attached to it).
pub(crate) fn write_attached(dir: &Path, key: u64, cfg: &cork_bottle_cfg) -> Result<(), MapError> {
    let data = MapData::from_pin(dir.join(CORK_CFG_ATTACHED))
        .map_err(aya_err_of(CORK_CFG_ATTACHED, "open"))?;
    crate::direct::sys::update(data.fd().as_fd(), &key.to_ne_bytes(), &entry_bytes(cfg))
        .map_err(attached_err("write"))
}

/// Reads the cgroup `key`'s local storage back and compares it with `want`.
pub(crate) fn verify_attached(
    dir: &Path,
    key: u64,
    want: &cork_bottle_cfg,
) -> Result<(), MapError> {
    let data = MapData::from_pin(dir.join(CORK_CFG_ATTACHED))
        .map_err(aya_err_of(CORK_CFG_ATTACHED, "open"))?;
    let mut found = [0u8; std::mem::size_of::<cork_bottle_cfg>()];
    crate::direct::sys::lookup(data.fd().as_fd(), &key.to_ne_bytes(), &mut found)
        .map_err(attached_err("read"))?;
    if found == entry_bytes(want) {
        return Ok(());
    }
    Err(MapError::Mismatch {
        map: CORK_CFG_ATTACHED,
        detail: format!("cgroup {key} has {found:?}, {want:?} was expected"),
    })
}

/// Every entry of the set in `dir`.
pub(crate) fn entries(dir: &Path) -> Result<Vec<(u64, cork_bottle_cfg)>, MapError> {
    open(dir)?
        .iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(aya_err("read"))
}

/// The cgroups whose entry names bottle `bottle_id`.
pub(crate) fn keys_of(dir: &Path, bottle_id: u32) -> Result<Vec<u64>, MapError> {
    Ok(entries(dir)?
        .into_iter()
        .filter(|(_, cfg)| cfg.bottle_id == bottle_id)
        .map(|(key, _)| key)
        .collect())
}
