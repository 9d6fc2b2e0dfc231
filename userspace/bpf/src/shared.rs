//! The cgroup hooks' programs, loaded (verified) once per host and shared by every cgroup
//! bottle. Verifying them was most of a bottle's start; their bytes no longer depend on the
//! bottle (each finds its bottle in `cork_cfg` and its maps through the outer arrays of
//! cork_maps.h), so one verified copy serves all.
//!
//! They live pinned in `<bpffs>/cork_programs/<digest>/`: `prog_<name>` per program, and
//! the maps the programs share (`cork_cfg`, `cork_sock`, the `co_*` outer arrays). The
//! digest is of the programs' object bytes, so a different cork build loads its own set
//! beside, never mixes. The first bottle loads the set; later ones open the pins. A
//! `flock` on `<bpffs>/cork_programs` serialises loading, and is held while a bottle puts
//! its entries in (see [`Shared::lock`]), so `cork clean` ([`remove_unused`]) never
//! removes a set between a bottle opening it and registering in it.
//!
//! The set is left pinned when the last bottle goes, by design: the next bottle then
//! starts without the verifier. `cork clean` removes every set that no bottle is
//! registered in (an empty `cork_cfg`).

use std::collections::hash_map::DefaultHasher;
use std::fs::{self, File};
use std::hash::{Hash, Hasher};
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use aya::maps::{ArrayOfMaps, Map, MapData};
use nix::fcntl::{Flock, FlockArg};

use crate::abi::CORK_MAX_BOTTLES;
use crate::abi::map_names as names;
use crate::direct::{LoadedProgram, sys};
use crate::{BpfError, CGROUP_OBJECTS, MapError, kfunc, load, seal, unix};

/// The directory under bpffs that holds every set.
pub const DIR: &str = "cork_programs";

/// Each per-bottle map of a cgroup bottle and the outer array the programs reach it by.
pub(crate) const INNER: &[(&str, &str)] = &[
    (names::CORK_GEN, names::CO_GEN),
    (names::CORK_RULES_V4, names::CO_RULES_V4),
    (names::CORK_RULES_V4_1, names::CO_RULES_V4_1),
    (names::CORK_RULES_V6, names::CO_RULES_V6),
    (names::CORK_RULES_V6_1, names::CO_RULES_V6_1),
    (names::CORK_HOST_PORTS, names::CO_HOST_PORTS),
    (names::CORK_HOSTPORT_1, names::CO_HOSTPORT_1),
    (names::CORK_UNIX_NAMES, names::CO_UNIX_NAMES),
    (names::CORK_UNIXNAME_1, names::CO_UNIXNAME_1),
    (names::CORK_EVENTS, names::CO_EVENTS),
    (names::CORK_LOST, names::CO_LOST),
    (names::CORK_FLOWS, names::CO_FLOWS),
    (names::CORK_ALLOWS, names::CO_ALLOWS),
    (names::CORK_REDIRECTS, names::CO_REDIRECTS),
];

/// The per-bottle maps of a cgroup bottle, no programs (ebpf/bottle_maps.bpf.c).
pub(crate) const BOTTLE_MAPS: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bottle_maps.bpf.o"));

/// Every program of a set, with its hook: the aya objects' and the unix object's.
pub(crate) fn programs() -> Vec<(&'static str, crate::AttachType)> {
    let mut all: Vec<_> = CGROUP_OBJECTS
        .iter()
        .flat_map(|spec| spec.programs.iter().copied())
        .collect();
    all.extend(unix::OBJECT.programs.iter().map(|p| (p.name, p.attach)));
    all
}

/// The digest naming this build's set: of every shared object's bytes.
fn digest() -> String {
    let mut h = DefaultHasher::new();
    for spec in CGROUP_OBJECTS {
        spec.bytes.hash(&mut h);
    }
    unix::OBJECT.bytes.hash(&mut h);
    format!("{:016x}", h.finish())
}

fn pin_err(path: &Path) -> impl Fn(io::Error) -> BpfError + '_ {
    move |source| BpfError::PinDir {
        path: path.to_path_buf(),
        source,
    }
}

/// This build's set, opened (loaded first when it was not there).
pub(crate) struct Shared {
    dir: PathBuf,
    /// Held until the bottle has registered (dropped by [`Shared::unlock`]).
    lock: Option<Flock<File>>,
}

impl Shared {
    /// Opens (loading when needed) the set under `root` (`<bpffs>/cork_programs`, or a
    /// private directory for tests), holding the lock until [`Shared::unlock`].
    pub(crate) fn ensure(root: &Path) -> Result<Self, BpfError> {
        let lock = lock(root)?;
        let dir = root.join(digest());
        let complete = programs()
            .iter()
            .map(|(p, _)| *p)
            .chain([seal::ENDED])
            .all(|p| dir.join(format!("prog_{p}")).exists());
        if !complete {
            // Absent, or left half-loaded by a killed loader: no bottle can use it.
            crate::remove_pin_dir(&dir);
            load_set(&dir)?;
        }
        Ok(Shared {
            dir,
            lock: Some(lock),
        })
    }

    /// Opens this build's set if it is there; loads nothing (adoption).
    pub(crate) fn existing(root: &Path) -> Result<Self, BpfError> {
        let lock = lock(root)?;
        Ok(Shared {
            dir: root.join(digest()),
            lock: Some(lock),
        })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Lets other bottles and `cork clean` at the set again.
    pub(crate) fn unlock(&mut self) {
        self.lock = None;
    }

    /// Each program of the set, opened from its pin.
    pub(crate) fn open_programs(&self) -> Result<Vec<LoadedProgram>, BpfError> {
        programs()
            .into_iter()
            .map(|(p, attach)| {
                LoadedProgram::from_pin(p, attach, &self.dir.join(format!("prog_{p}")))
            })
            .collect()
    }
}

/// Takes the lock of `root`, creating the directory first.
fn lock(root: &Path) -> Result<Flock<File>, BpfError> {
    match fs::create_dir(root) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(pin_err(root)(e)),
    }
    let dir = File::open(root).map_err(pin_err(root))?;
    Flock::lock(dir, FlockArg::LockExclusive).map_err(|(_, e)| pin_err(root)(e.into()))
}

/// Loads every shared program into `dir` (with the maps they share) and pins each.
fn load_set(dir: &Path) -> Result<(), BpfError> {
    fs::create_dir(dir).map_err(pin_err(dir))?;
    let result = (|| {
        let (btf, mut loader) = load::btf_and_loader()?;
        loader.btf(Some(&btf)).default_map_pin_directory(dir);
        let mut objects = Vec::new();
        for spec in CGROUP_OBJECTS {
            let resolved = kfunc::resolve(spec.bytes, &btf).map_err(|source| BpfError::Kfunc {
                object: spec.name,
                source,
            })?;
            objects.push(
                loader
                    .load(resolved.bytes())
                    .map_err(|source| BpfError::LoadObject {
                        object: spec.name,
                        source,
                    })?,
            );
        }
        let unix = load::load_all(
            &mut objects,
            CGROUP_OBJECTS,
            Some(load::UnixLoad {
                btf: &btf,
                pin_dir: dir,
            }),
        )?;
        for (spec, ebpf) in CGROUP_OBJECTS.iter().zip(objects.iter_mut()) {
            for &(program, _) in spec.programs {
                let prog = ebpf.program_mut(program).ok_or(BpfError::MissingProgram {
                    object: spec.name,
                    program,
                })?;
                let path = dir.join(format!("prog_{program}"));
                prog.pin(&path).map_err(|source| BpfError::PinLink {
                    program,
                    path: path.clone(),
                    source,
                })?;
            }
        }
        if let Some(unix) = unix {
            for p in unix.programs() {
                p.pin(&dir.join(format!("prog_{}", p.name())))?;
            }
        }
        // Attached to no live bottle: what an ended bottle's cgroup keeps (seal.rs).
        let skb = CGROUP_OBJECTS
            .iter()
            .zip(objects.iter_mut())
            .find(|(spec, _)| spec.name == crate::skb::OBJECT.name)
            .map(|(_, ebpf)| ebpf)
            .ok_or(BpfError::MissingProgram {
                object: crate::skb::OBJECT.name,
                program: seal::ENDED,
            })?;
        let prog = skb
            .program_mut(seal::ENDED)
            .ok_or(BpfError::MissingProgram {
                object: crate::skb::OBJECT.name,
                program: seal::ENDED,
            })?;
        load::load_program(prog, seal::ENDED)?;
        let path = dir.join(format!("prog_{}", seal::ENDED));
        prog.pin(&path).map_err(|source| BpfError::PinLink {
            program: seal::ENDED,
            path: path.clone(),
            source,
        })?;
        Ok(())
    })();
    if result.is_err() {
        crate::remove_pin_dir(dir);
    }
    result
}

fn map_err(map: &'static str, operation: &'static str) -> impl Fn(aya::maps::MapError) -> MapError {
    move |source| MapError::Aya {
        map,
        operation,
        source,
    }
}

/// The outer array `outer` of the set in `dir`.
fn outer(dir: &Path, outer: &'static str) -> Result<ArrayOfMaps<MapData, MapData>, MapError> {
    let data = MapData::from_pin(dir.join(outer)).map_err(map_err(outer, "open"))?;
    ArrayOfMaps::try_from(Map::ArrayOfMaps(data)).map_err(map_err(outer, "open"))
}

/// Puts each per-bottle map pinned in `pin_dir` into its outer array at `bottle_id`.
///
/// Every write to an outer array waits for an RCU grace period in the kernel (so that no
/// program still runs with the slot's previous map when the call returns:
/// kernel/bpf/syscall.c, `maybe_wait_bpf_programs`): ~10 ms each on this VM. The writes go
/// out on one thread per outer array, so the waits overlap (one grace period serves
/// them all) instead of adding up.
pub(crate) fn register_maps(dir: &Path, pin_dir: &Path, bottle_id: u32) -> Result<(), MapError> {
    if bottle_id >= CORK_MAX_BOTTLES {
        return Err(MapError::Mismatch {
            map: names::CO_GEN,
            detail: format!(
                "bottle id {bottle_id} is past the {CORK_MAX_BOTTLES} the programs index"
            ),
        });
    }
    let one = |inner: &'static str, name: &'static str| -> Result<(), MapError> {
        let map = MapData::from_pin(pin_dir.join(inner)).map_err(map_err(inner, "open"))?;
        outer(dir, name)?
            .set(bottle_id, &map, 0)
            .map_err(map_err(name, "write"))
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = INNER
            .iter()
            .map(|&(inner, name)| s.spawn(move || one(inner, name)))
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    })
}

/// Checks that every outer array holds, at `bottle_id`, the map pinned in `pin_dir`.
pub(crate) fn verify_maps(dir: &Path, pin_dir: &Path, bottle_id: u32) -> Result<(), MapError> {
    for &(inner, name) in INNER {
        let ours = MapData::from_pin(pin_dir.join(inner))
            .and_then(|m| m.info())
            .map_err(map_err(inner, "open"))?
            .id();
        let held = outer(dir, name)?
            .get(&bottle_id, 0)
            .and_then(|m: MapData| m.info())
            .map(|i| i.id())
            .ok();
        if held != Some(ours) {
            return Err(MapError::Mismatch {
                map: name,
                detail: format!("slot {bottle_id} holds map {held:?}, the bottle's is {ours}"),
            });
        }
    }
    Ok(())
}

/// Empties `bottle_id`'s slot of every outer array (teardown; an empty slot is fine). In
/// parallel, as [`register_maps`] writes them.
pub(crate) fn forget_maps(dir: &Path, bottle_id: u32) -> Vec<io::Error> {
    let one = |name: &'static str| -> io::Result<()> {
        // A set of another cork build may not have this outer array: nothing to forget.
        if !dir.join(name).exists() {
            return Ok(());
        }
        let data = MapData::from_pin(dir.join(name)).map_err(io::Error::other)?;
        match sys::delete(data.fd().as_fd(), &bottle_id.to_ne_bytes()) {
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => Err(e),
            _ => Ok(()),
        }
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = INNER
            .iter()
            .map(|&(_, name)| s.spawn(move || one(name)))
            .collect();
        handles
            .into_iter()
            .filter_map(|h| {
                h.join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
                    .err()
            })
            .collect()
    })
}

/// Removes every set under `<bpffs>/cork_programs` that no bottle is registered in (its
/// `cork_cfg` is empty), and the directory when nothing is left (`cork clean`). Returns
/// the sets kept, as in use.
pub fn remove_unused(bpffs: &Path) -> Result<Vec<PathBuf>, BpfError> {
    remove_unused_in(&bpffs.join(DIR))
}

/// [`remove_unused`] for the sets under `root`.
pub(crate) fn remove_unused_in(root: &Path) -> Result<Vec<PathBuf>, BpfError> {
    let root = root.to_path_buf();
    if !root.exists() {
        return Ok(Vec::new());
    }
    let _lock = lock(&root)?;
    let mut kept = Vec::new();
    for entry in fs::read_dir(&root).map_err(pin_err(&root))?.flatten() {
        let set = entry.path();
        if crate::cfg::any_entry(&set) {
            kept.push(set);
        } else {
            crate::remove_pin_dir(&set);
        }
    }
    if kept.is_empty() {
        drop(_lock);
        let _ = fs::remove_dir(&root);
    }
    Ok(kept)
}

/// The sets under `<bpffs>/cork_programs`.
pub(crate) fn sets(bpffs: &Path) -> Vec<PathBuf> {
    fs::read_dir(bpffs.join(DIR))
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Takes the bottle `bottle_id` out of every set: its slot of each outer array and every
/// `cork_cfg` entry naming it (`cork clean`, once the bottle's own pins are gone; a dead
/// bottle's slots would otherwise keep its maps alive). Returns what could not be done.
pub fn forget_bottle(bpffs: &Path, bottle_id: u32) -> Vec<String> {
    let mut problems = Vec::new();
    for set in sets(bpffs) {
        problems.extend(
            forget_maps(&set, bottle_id)
                .into_iter()
                .map(|e| format!("{}: slot {bottle_id}: {e}", set.display())),
        );
        match crate::cfg::keys_of(&set, bottle_id) {
            Ok(keys) => {
                for key in keys {
                    if let Err(e) = crate::cfg::delete(&set, key) {
                        problems.push(format!("{}: cork_cfg entry {key}: {e}", set.display()));
                    }
                }
            }
            Err(e) => problems.push(format!("{}: {e}", set.display())),
        }
    }
    problems
}

/// Every bottle still registered in a set under `<bpffs>/cork_programs`: its `cork_cfg`
/// entries and the non-empty slots of its outer arrays, one line each (for the no-leak
/// test: a set may stay pinned, a bottle in it may not).
pub fn registrations(bpffs: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for set in sets(bpffs) {
        match crate::cfg::entries(&set) {
            Ok(entries) => found.extend(entries.into_iter().map(|(key, cfg)| {
                format!(
                    "{}: cork_cfg: cgroup {key} → bottle {}",
                    set.display(),
                    cfg.bottle_id
                )
            })),
            Err(e) => found.push(format!("{}: {e}", set.display())),
        }
        for &(_, name) in INNER {
            let Ok(map) = outer(&set, name) else {
                found.push(format!("{}: {name} cannot be opened", set.display()));
                continue;
            };
            for slot in 0..CORK_MAX_BOTTLES {
                if map.get(&slot, 0).is_ok() {
                    found.push(format!("{}: {name}[{slot}] holds a map", set.display()));
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::{BOTTLE_MAPS, INNER};
    use crate::CGROUP_OBJECTS;

    fn maps_of(bytes: &[u8]) -> BTreeSet<String> {
        let obj = aya_obj::Object::parse(bytes).expect("the object parses");
        obj.maps
            .keys()
            .filter(|n| !n.starts_with('.'))
            .cloned()
            .collect()
    }

    /// A per-bottle map the programs could not reach (or an outer array with nothing to
    /// hold) would be a map missing from INNER: the bottle object and the programs' outer
    /// arrays must be exactly INNER's two columns.
    #[test]
    fn every_bottle_map_has_its_outer_array() {
        let inner: BTreeSet<String> = INNER.iter().map(|(i, _)| i.to_string()).collect();
        assert_eq!(maps_of(BOTTLE_MAPS), inner);
        let outer: BTreeSet<String> = INNER.iter().map(|(_, o)| o.to_string()).collect();
        for spec in CGROUP_OBJECTS {
            let declared: BTreeSet<String> = maps_of(spec.bytes)
                .into_iter()
                .filter(|n| n.starts_with("co_"))
                .collect();
            assert_eq!(declared, outer, "{}", spec.name);
        }
    }
}
