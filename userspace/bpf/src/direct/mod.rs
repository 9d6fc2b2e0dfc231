//! Loading, attaching and pinning programs of a hook aya 0.14 does not know (its
//! `CgroupSockAddrAttachType` stops before the unix attach types of Linux 6.7). aya's own
//! object crate still does the work that needs care — ELF parsing, global patching, CO-RE
//! relocation against the kernel's BTF, map and call relocation — and the three system
//! calls that remain are made here: `BPF_PROG_LOAD` with the expected attach type,
//! `BPF_LINK_CREATE` on the cgroup, `BPF_OBJ_PIN` (include/uapi/linux/bpf.h,
//! `union bpf_attr`). The pinned link is then handed to aya as a [`PinnedLink`], so teardown
//! is the same as for every other program.

pub(crate) mod sys;

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use aya::maps::MapData;
use aya::programs::links::PinnedLink;
use aya_obj::{EbpfSectionKind, Object};

use crate::query::AttachType;
use crate::{Attachment, BpfError};

/// One program of a [`DirectObject`]: its name in the object and how it attaches.
pub(crate) struct DirectProgram {
    pub name: &'static str,
    pub attach: AttachType,
    /// The section name aya-obj should see instead of the real one (same length or shorter
    /// strings are swapped in place; see [`present_sections`]).
    pub section: (&'static str, &'static str),
}

/// An object of `BPF_PROG_TYPE_CGROUP_SOCK_ADDR` programs loaded without aya's program
/// types.
pub(crate) struct DirectObject {
    pub name: &'static str,
    pub bytes: &'static [u8],
    pub programs: &'static [DirectProgram],
}

/// A loaded object: each program's instructions, relocated, ready for `BPF_PROG_LOAD`,
/// and the fds of the maps they refer to (kept open until the programs are loaded).
pub(crate) struct Prepared {
    object: &'static str,
    programs: HashMap<String, (CString, Vec<aya_obj::generated::bpf_insn>)>,
    _maps: Vec<MapData>,
}

fn prepare_err(
    object: &'static str,
    operation: &'static str,
) -> impl Fn(Box<dyn std::error::Error + Send + Sync>) -> BpfError {
    move |source| BpfError::Prepare {
        object,
        operation,
        source,
    }
}

/// The object's bytes with each program's section renamed to one aya-obj parses: the
/// new name is written over the old one, NUL-padded, wherever the ELF string tables and
/// the BTF string section hold it (a `.rel` section's name ends with it, and is renamed
/// alike). Nothing the kernel sees carries the section name.
fn present_sections(spec: &DirectObject) -> Vec<u8> {
    let mut bytes = spec.bytes.to_vec();
    for p in spec.programs {
        let (from, to) = p.section;
        debug_assert!(to.len() <= from.len(), "{to} must fit over {from}");
        let mut old = from.as_bytes().to_vec();
        old.push(0);
        let mut new = to.as_bytes().to_vec();
        new.resize(old.len(), 0);
        let mut i = 0;
        while let Some(at) = bytes[i..]
            .windows(old.len())
            .position(|w| w == old.as_slice())
        {
            bytes[i + at..i + at + old.len()].copy_from_slice(&new);
            i += at + old.len();
        }
    }
    bytes
}

/// Parses and relocates `spec`: globals patched, CO-RE resolved against `btf`, map
/// references bound to the pinned maps in `pin_dir` (the other objects created them) and
/// to fresh maps for the object's own read-only data.
pub(crate) fn prepare(
    spec: &DirectObject,
    globals: HashMap<&str, (&[u8], bool)>,
    btf: &aya::Btf,
    pin_dir: &Path,
) -> Result<Prepared, BpfError> {
    let object = spec.name;
    let err = |op| prepare_err(object, op);
    let bytes = present_sections(spec);
    let mut obj = Object::parse(&bytes).map_err(|e| err("parse")(Box::new(e)))?;
    obj.patch_map_data(globals)
        .map_err(|e| err("patch globals")(Box::new(e)))?;
    obj.relocate_btf(btf)
        .map_err(|e| err("CO-RE relocation")(Box::new(e)))?;

    // (name, the object's definition, for relocation; the kernel map)
    let mut maps: Vec<(String, aya_obj::Map, MapData)> = Vec::new();
    for (name, map) in obj.maps.drain() {
        let data = match map.section_kind() {
            EbpfSectionKind::Rodata | EbpfSectionKind::Data | EbpfSectionKind::Bss => {
                data_map(object, &name, map.clone())?
            }
            _ => pinned_map(object, &name, pin_dir)?,
        };
        maps.push((name, map, data));
    }
    let text_sections: HashSet<usize> = obj.functions.keys().map(|(sec, _)| *sec).collect();
    obj.relocate_maps(
        maps.iter()
            .map(|(n, m, data)| (n.as_str(), data.fd().as_fd().as_raw_fd(), m)),
        &text_sections,
    )
    .map_err(|e| err("map relocation")(Box::new(e)))?;
    obj.relocate_calls(&text_sections)
        .map_err(|e| err("call relocation")(Box::new(e)))?;

    let mut programs = HashMap::new();
    for p in spec.programs {
        let prog = obj.programs.get(p.name).ok_or(BpfError::MissingProgram {
            object,
            program: p.name,
        })?;
        let function = obj
            .functions
            .get(&prog.function_key())
            .ok_or(BpfError::MissingProgram {
                object,
                program: p.name,
            })?;
        programs.insert(
            p.name.to_owned(),
            (prog.license.clone(), function.instructions.clone()),
        );
    }
    Ok(Prepared {
        object,
        programs,
        _maps: maps.into_iter().map(|(_, _, d)| d).collect(),
    })
}

/// A map the other objects of the bottle created and pinned under its name.
fn pinned_map(object: &'static str, name: &str, pin_dir: &Path) -> Result<MapData, BpfError> {
    MapData::from_pin(pin_dir.join(name)).map_err(|source| BpfError::PinnedMap {
        object,
        map: name.to_owned(),
        source: Box::new(source),
    })
}

/// A map for the object's own global data (`.rodata`: the load-time constants): created,
/// filled with the patched bytes, and frozen when read-only, as aya does for its objects.
fn data_map(object: &'static str, name: &str, map: aya_obj::Map) -> Result<MapData, BpfError> {
    let readonly = map.section_kind() == EbpfSectionKind::Rodata;
    let bytes = map.data().to_vec();
    let data = MapData::create(map, name, None).map_err(|source| BpfError::PinnedMap {
        object,
        map: name.to_owned(),
        source: Box::new(source),
    })?;
    let syscall = |operation| {
        move |source| BpfError::Syscall {
            program: object,
            operation,
            source,
        }
    };
    // aya-obj sized the map's value from these same bytes.
    if !bytes.is_empty() {
        sys::write_first(data.fd().as_fd(), &bytes).map_err(syscall("writing global data"))?;
    }
    if readonly {
        sys::freeze(data.fd().as_fd()).map_err(syscall("freezing global data"))?;
    }
    Ok(data)
}

/// A program the kernel verified and loaded, attached nowhere: dropping it unloads it.
pub(crate) struct LoadedProgram {
    program: &'static str,
    attach: AttachType,
    fd: OwnedFd,
    prog_id: u32,
}

/// Loads `program` of `prepared` for its attach type (the verifier runs here, in the
/// calling thread). Nothing is attached yet.
pub(crate) fn load(
    prepared: &Prepared,
    program: &'static str,
    attach: AttachType,
) -> Result<LoadedProgram, BpfError> {
    let (license, insns) = prepared
        .programs
        .get(program)
        .ok_or(BpfError::MissingProgram {
            object: prepared.object,
            program,
        })?;
    let fd = sys::load_sock_addr(program, insns, license, attach as u32).map_err(|r| {
        BpfError::Verifier {
            program,
            log: r.log,
            source: r.error,
        }
    })?;
    let prog_id = sys::prog_id(fd.as_fd()).map_err(|source| BpfError::Syscall {
        program,
        operation: "reading its id",
        source,
    })?;
    Ok(LoadedProgram {
        program,
        attach,
        fd,
        prog_id,
    })
}

/// Links a loaded program to `cgroup` for its attach type and pins the link at
/// `pin_dir/link_<program>`: attached until that pin is removed.
pub(crate) fn attach(
    loaded: LoadedProgram,
    cgroup: &File,
    pin_dir: &Path,
) -> Result<Attachment, BpfError> {
    let LoadedProgram {
        program,
        attach,
        fd: prog,
        prog_id,
    } = loaded;
    let syscall = |operation| {
        move |source| BpfError::Syscall {
            program,
            operation,
            source,
        }
    };
    let link = sys::link_cgroup(prog.as_fd(), cgroup.as_fd(), attach as u32)
        .map_err(syscall("linking it to the cgroup"))?;
    let path = pin_dir.join(format!("link_{program}"));
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
        .map_err(syscall("naming its link pin"))?;
    sys::pin(link.as_fd(), &c_path).map_err(syscall("pinning its link"))?;
    // The pin holds the attachment now; aya's handle on the pin unpins it at teardown,
    // as for every other program.
    drop(link);
    let link = PinnedLink::from_pin(&path).map_err(|source| BpfError::Link { program, source })?;
    Ok(Attachment {
        program,
        attach,
        prog_id,
        link: Some(link),
    })
}

impl LoadedProgram {
    /// The program's name in its object.
    pub(crate) fn name(&self) -> &'static str {
        self.program
    }

    /// The kernel's id of the program.
    pub(crate) fn id(&self) -> u32 {
        self.prog_id
    }

    /// Pins the program at `path` (it stays loaded while the pin exists).
    pub(crate) fn pin(&self, path: &Path) -> Result<(), BpfError> {
        let program = self.program;
        CString::new(path.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
            .and_then(|c| sys::pin(self.fd.as_fd(), &c))
            .map_err(|source| BpfError::Syscall {
                program,
                operation: "pinning the program",
                source,
            })
    }

    /// Opens the program pinned at `path`, to be attached as `attach`.
    pub(crate) fn from_pin(
        program: &'static str,
        attach: AttachType,
        path: &Path,
    ) -> Result<Self, BpfError> {
        let syscall = |operation| {
            move |source| BpfError::Syscall {
                program,
                operation,
                source,
            }
        };
        let fd = CString::new(path.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
            .and_then(|c| sys::obj_get(&c))
            .map_err(syscall("opening its pin"))?;
        let prog_id = sys::prog_id(fd.as_fd()).map_err(syscall("reading its id"))?;
        Ok(LoadedProgram {
            program,
            attach,
            fd,
            prog_id,
        })
    }

    /// The program's fd (for BPF_PROG_TEST_RUN).
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
