//! Sealing the cgroup of a bottle that has ended. Its sockets can outlive its processes:
//! a socket closed with data still queued (an orphan) keeps sending, retransmitting and
//! closing from the kernel for seconds to minutes after the last process died. Were the
//! bottle's programs simply detached, those packets would leave unjudged — including data
//! `cork_skb_egress` refused while the bottle lived, which is exactly what is still queued.
//!
//! So teardown, once the processes are dead and before the bottle's own programs go,
//! attaches the set's `cork_skb_ended` (ebpf/skb.bpf.c) to the cgroup's egress with a
//! plain BPF_PROG_ATTACH: no link and no pin hold it, the cgroup does, and the kernel
//! releases it with the cgroup once the last of its sockets is freed. Attached beside the
//! live programs, it never lets through what they refuse.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use crate::direct::{LoadedProgram, sys};
use crate::query::AttachType;
use crate::shared;

/// The program an ended bottle's cgroup keeps (ebpf/skb.bpf.c).
pub(crate) const ENDED: &str = "cork_skb_ended";

/// Why a cgroup could not be sealed. Teardown then keeps the bottle's own programs
/// attached (fail closed) and says so.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("opening the cgroup {path}")]
    OpenCgroup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the program set {set} has no {ENDED} (it was loaded by an older cork): the ended \
         bottle's leftover sockets cannot be fenced"
    )]
    NoProgram { set: PathBuf },
    #[error("opening {ENDED} in {set}")]
    OpenProgram {
        set: PathBuf,
        #[source]
        source: Box<crate::BpfError>,
    },
    #[error("attaching {ENDED} to {path}")]
    Attach {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading back the egress programs of {path}")]
    Query {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{ENDED} (id {expected}) is not among the egress programs of {path}: {found:?}")]
    NotAttached {
        path: PathBuf,
        expected: u32,
        found: Vec<u32>,
    },
    #[error("finding the program set of the cgroup {path}")]
    Lookup {
        path: PathBuf,
        #[source]
        source: Box<crate::MapError>,
    },
    #[error(transparent)]
    CgroupId(#[from] crate::CgroupIdError),
}

impl SealError {
    /// Whether teardown may go on without the seal: only when the set, loaded by an older
    /// cork, has no program to seal with. Keeping that bottle fenced would keep it forever
    /// (`cork clean` could not seal it either); it ends as that cork's would have, and the
    /// caller says so. Any other failure keeps the bottle's programs attached.
    pub fn goes_on(&self) -> bool {
        matches!(self, SealError::NoProgram { .. })
    }
}

/// Attaches the ended program of the set in `set` to the cgroup `cgroup` and reads it
/// back. Sealing twice is harmless (the kernel refuses a second attachment of the same
/// program, which is then found attached).
pub fn seal(set: &Path, cgroup: &Path) -> Result<(), SealError> {
    let pin = set.join(format!("prog_{ENDED}"));
    if !pin.exists() {
        return Err(SealError::NoProgram {
            set: set.to_path_buf(),
        });
    }
    let prog = LoadedProgram::from_pin(ENDED, AttachType::SkbEgress, &pin).map_err(|e| {
        SealError::OpenProgram {
            set: set.to_path_buf(),
            source: Box::new(e),
        }
    })?;
    let dir = File::open(cgroup).map_err(|source| SealError::OpenCgroup {
        path: cgroup.to_path_buf(),
        source,
    })?;
    match sys::attach_for_cgroup_life(prog.fd(), dir.as_fd(), AttachType::SkbEgress as u32) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(source) => {
            return Err(SealError::Attach {
                path: cgroup.to_path_buf(),
                source,
            });
        }
    }
    let found = crate::query::attached_programs(&dir, AttachType::SkbEgress).map_err(|source| {
        SealError::Query {
            path: cgroup.to_path_buf(),
            source,
        }
    })?;
    if !found.contains(&prog.id()) {
        return Err(SealError::NotAttached {
            path: cgroup.to_path_buf(),
            expected: prog.id(),
            found,
        });
    }
    Ok(())
}

/// Seals `cgroup` with the set (under `<bpffs>/cork_programs`) it is registered in, for
/// teardowns that do not hold the bottle's enforcement (adoption, `cork clean`).
/// `Ok(false)`: no set knows the cgroup, so no cork program of a set enforces it, or the
/// cgroup is gone already (removed with whatever held its sockets).
pub fn seal_registered(bpffs: &Path, cgroup: &Path) -> Result<bool, SealError> {
    if !cgroup.exists() {
        return Ok(false);
    }
    let id = crate::cfg::cgroup_id(cgroup)?;
    // A set that cannot be read (another build's, half removed) does not stop the search.
    let mut unreadable = None;
    for set in shared::sets(bpffs) {
        match crate::cfg::read(&set, id) {
            Ok(Some(_)) => {
                seal(&set, cgroup)?;
                return Ok(true);
            }
            Ok(None) => {}
            Err(source) => {
                unreadable.get_or_insert(SealError::Lookup {
                    path: cgroup.to_path_buf(),
                    source: Box::new(source),
                });
            }
        }
    }
    match unreadable {
        Some(e) => Err(e),
        None => Ok(false),
    }
}
