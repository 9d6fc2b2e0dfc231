//! [`Enforcement::adopt`]: takes over a cgroup bottle's enforcement that an earlier agent
//! process installed and pinned (a daemon that was SIGKILLed and started again). Nothing
//! is loaded, attached or written: the bottle's pinned maps are opened again, each pinned
//! link is opened to learn which program it holds (it must be one of this build's shared
//! programs, see shared.rs), and the bottle's `cork_cfg` entry is read. The caller then
//! reads everything back with [`Enforcement::verify`] before trusting it.
//!
//! Adoption never weakens the fence: a failure leaves every pin where it was (no link is
//! unpinned, no map created or replaced, no registration in the shared set touched).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use aya::programs::links::{FdLink, PinnedLink};

use crate::{AttachTarget, query::AttachType};
use crate::{Attachment, BpfError, Enforcement, MapError, MapSet, cfg, shared};

/// The names in a pin directory.
fn pins(dir: &Path) -> Result<BTreeSet<String>, BpfError> {
    let entries = fs::read_dir(dir).map_err(|source| BpfError::ListPins {
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect())
}

impl Enforcement {
    /// Takes over the enforcement pinned in `pin_dir` for the cgroup `target`. Errors say
    /// what is missing; the pins stay as they are either way. Verify before use.
    pub fn adopt(target: &AttachTarget, pin_dir: &Path) -> Result<Self, BpfError> {
        let AttachTarget::Cgroup(cgroup) = target else {
            return Err(BpfError::WrongTarget {
                program: "adoption",
                wants: "a cgroup",
            });
        };
        let before = pins(pin_dir)?;
        let programs = shared::programs();
        let missing: Vec<String> = programs
            .iter()
            .map(|(p, _)| format!("link_{p}"))
            .filter(|l| !before.contains(l))
            .collect();
        if !missing.is_empty() {
            return Err(BpfError::PinsMissing {
                path: pin_dir.to_path_buf(),
                missing,
            });
        }
        // Only the maps are opened, each from its pin (nothing is created: a missing pin is
        // an error and the directory stays as the earlier agent left it).
        let inner: Vec<&str> = shared::INNER.iter().map(|(i, _)| *i).collect();
        let maps = MapSet::open_pinned(pin_dir, &inner)?;
        // The links must hold this build's shared programs: the set whose cork_cfg and
        // outer maps they read is then the one this build names (a bottle of another
        // build stays fenced, never detached).
        let root = pin_dir.parent().unwrap_or(Path::new("/")).join(shared::DIR);
        let set = shared::Shared::existing(&root)?;
        let ours: Vec<(&str, u32)> = set
            .open_programs()?
            .iter()
            .map(|p| (p.name(), p.id()))
            .collect();
        let mut attachments = Vec::with_capacity(programs.len());
        for (program, attach) in programs {
            let att = open_link(pin_dir, program, attach)?;
            if !ours.contains(&(program, att.prog_id)) {
                return Err(MapError::Mismatch {
                    map: shared::DIR,
                    detail: format!(
                        "{program} is attached as program {}, not this build's shared one",
                        att.prog_id
                    ),
                }
                .into());
            }
            attachments.push(att);
        }
        // The hooks judge for whichever bottle the cgroup's entry names: it must be there
        // (verify then reads it back as found here, and the outer maps' slots).
        let key = cfg::cgroup_id(cgroup)?;
        let entry = cfg::read(set.dir(), key)?.ok_or_else(|| MapError::Mismatch {
            map: crate::abi::map_names::CORK_CFG,
            detail: format!("no entry for the bottle's cgroup {key}"),
        })?;
        // The hooks' fast copy (written at install; the same again, should it be gone).
        cfg::write_attached(set.dir(), key, &entry)?;
        Ok(Enforcement {
            pin_dir: pin_dir.to_path_buf(),
            objects: Vec::new(),
            maps,
            attachments,
            cfg: Some((key, entry)),
            shared: Some((set.dir().to_path_buf(), entry.bottle_id)),
            removed: false,
        })
    }
}

/// Opens the pinned link of `program` and reads which program it holds.
fn open_link(
    pin_dir: &Path,
    program: &'static str,
    attach: AttachType,
) -> Result<Attachment, BpfError> {
    let path: PathBuf = pin_dir.join(format!("link_{program}"));
    let open = || {
        PinnedLink::from_pin(&path).map_err(|source| BpfError::OpenLink {
            program,
            path: path.clone(),
            source,
        })
    };
    // One handle to ask with (an FdLink, closed right after: the pin keeps the link), one
    // kept for teardown.
    let info = FdLink::from(open()?)
        .info()
        .map_err(|source| BpfError::OpenLink {
            program,
            path: path.clone(),
            source,
        })?;
    Ok(Attachment {
        program,
        attach,
        prog_id: info.program_id(),
        link: Some(open()?),
    })
}
