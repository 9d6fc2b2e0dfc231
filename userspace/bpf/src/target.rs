//! What a bottle's programs attach to. Today a cgroup (the bottle's processes); the tap of
//! a VM bottle is the next kind. The loader takes the target as data and each hook family
//! knows which kinds it attaches to.

use std::fs::File;
use std::io;
use std::path::PathBuf;

use crate::BpfError;
use crate::query::{self, AttachType};

/// Where a bottle's programs attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachTarget {
    /// A cgroup v2 directory: every process in it and below it is judged.
    Cgroup(PathBuf),
    /// The ingress of a network device in this process's namespace (a VM bottle's tap:
    /// everything its guest sends), through a tcx link.
    TcIngress { ifname: String },
}

impl AttachTarget {
    /// The path that names the target in errors.
    pub fn path(&self) -> PathBuf {
        match self {
            AttachTarget::Cgroup(p) => p.clone(),
            AttachTarget::TcIngress { ifname } => PathBuf::from(format!("dev:{ifname}")),
        }
    }

    /// Opens the target for attaching and querying.
    pub(crate) fn open(&self) -> Result<OpenTarget, BpfError> {
        match self {
            AttachTarget::Cgroup(path) => {
                let file = File::open(path).map_err(|source| BpfError::Cgroup {
                    path: path.clone(),
                    source,
                })?;
                Ok(OpenTarget::Cgroup(file))
            }
            AttachTarget::TcIngress { ifname } => {
                let ifindex = nix::net::if_::if_nametoindex(ifname.as_str()).map_err(|e| {
                    BpfError::Device {
                        ifname: ifname.clone(),
                        source: e.into(),
                    }
                })?;
                Ok(OpenTarget::Device {
                    ifname: ifname.clone(),
                    ifindex,
                })
            }
        }
    }
}

/// An opened target: the fd the kernel's attach and query calls take.
pub(crate) enum OpenTarget {
    Cgroup(File),
    Device { ifname: String, ifindex: u32 },
}

impl OpenTarget {
    /// The cgroup fd, for hooks that only attach to cgroups.
    pub(crate) fn cgroup(&self) -> Option<&File> {
        match self {
            OpenTarget::Cgroup(f) => Some(f),
            OpenTarget::Device { .. } => None,
        }
    }

    /// The device name, for hooks that attach to network devices.
    pub(crate) fn device(&self) -> Option<&str> {
        match self {
            OpenTarget::Device { ifname, .. } => Some(ifname),
            OpenTarget::Cgroup(_) => None,
        }
    }

    /// Program ids attached directly to the target for `attach`.
    pub(crate) fn attached_programs(&self, attach: AttachType) -> io::Result<Vec<u32>> {
        match self {
            OpenTarget::Cgroup(f) => query::attached_programs(f, attach),
            OpenTarget::Device { ifindex, .. } => query::attached_to_device(*ifindex, attach),
        }
    }
}
