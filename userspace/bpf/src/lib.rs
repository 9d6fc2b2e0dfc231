//! Kernel state for one bottle: load the embedded eBPF objects, fill their maps from the
//! policy, attach them to the bottle's cgroup, pin everything so enforcement outlives this
//! process, read it back to verify, and take it all down again.
//!
//! Pins live in `<bpffs>/cork-<bottle key>/`: the maps (pinned by name, which is also how
//! the three objects share one set of maps) and one `link_<program>` per attachment.
//! While a link pin exists the program stays attached, even if the agent is SIGKILLed.

pub mod abi;
pub mod events;
pub mod learned;
mod maps;
mod objects;
mod query;
pub mod redirects;
pub mod test_run;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::{
    CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr, ProgramError,
    SockOps,
};
use aya::{Btf, Ebpf, EbpfError, EbpfLoader};
use cork_policy::KernelPlan;

pub use maps::MapError;
pub use query::AttachType;

/// Failures while putting a bottle's enforcement in place; each names what was being done.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("reading kernel BTF from /sys/kernel/btf/vmlinux")]
    Btf(#[source] aya::BtfError),
    #[error("loading eBPF object {object}")]
    LoadObject {
        object: &'static str,
        #[source]
        source: EbpfError,
    },
    #[error("program {program} is missing from object {object}")]
    MissingProgram {
        object: &'static str,
        program: &'static str,
    },
    #[error("program {program}: {operation}")]
    Program {
        program: &'static str,
        operation: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("program {program}: converting its link to a pinnable fd link")]
    Link {
        program: &'static str,
        #[source]
        source: aya::programs::links::LinkError,
    },
    #[error("pinning link of {program} at {path}")]
    PinLink {
        program: &'static str,
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
    #[error("creating pin directory {path}")]
    PinDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("opening cgroup {path}")]
    Cgroup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Map(#[from] MapError),
    #[error("querying programs attached to {path} ({attach:?})")]
    Query {
        path: PathBuf,
        attach: AttachType,
        #[source]
        source: io::Error,
    },
    #[error(
        "verification failed: {attach:?} on {path} has programs {found:?}, expected exactly \
         [{expected}]"
    )]
    NotAttached {
        path: PathBuf,
        attach: AttachType,
        found: Vec<u32>,
        expected: u32,
    },
}

/// Load-time constants of a bottle's programs (`const volatile` globals in cork_bpf.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadConstants {
    /// Which bottle these program instances enforce.
    pub bottle_id: u32,
    /// The bottle's DNS proxy port on 127.0.0.1 and ::1; 0 = no DNS redirect.
    pub dns_port: u16,
    /// The bottle's inspecting proxy port on 127.0.0.1/::1; 0 = none (redirected flows
    /// are refused).
    pub proxy_port: u16,
}

/// One attached program: its name, kernel attach type, id and the pin keeping it attached.
struct Attachment {
    program: &'static str,
    attach: AttachType,
    prog_id: u32,
    link: Option<PinnedLink>,
}

/// A bottle's enforcement: alive while this value lives, torn down by [`Enforcement::remove`]
/// (or Drop). Dropping the loaded objects does not detach anything: the link pins hold the
/// attachments until they are removed.
pub struct Enforcement {
    pin_dir: PathBuf,
    objects: Vec<Ebpf>,
    attachments: Vec<Attachment>,
    removed: bool,
}

/// The programs of one object and how each attaches.
struct ObjectSpec {
    name: &'static str,
    bytes: &'static [u8],
    programs: &'static [(&'static str, AttachType)],
}

/// sock_create first: it creates (and pins) the shared maps the other objects reuse.
const OBJECTS: &[ObjectSpec] = &[
    ObjectSpec {
        name: "sock_create",
        bytes: objects::SOCK_CREATE,
        programs: &[("cork_sock_create", AttachType::SockCreate)],
    },
    ObjectSpec {
        name: "sock_addr",
        bytes: objects::SOCK_ADDR,
        programs: &[
            ("cork_connect4", AttachType::Connect4),
            ("cork_connect6", AttachType::Connect6),
            ("cork_sendmsg4", AttachType::Sendmsg4),
            ("cork_sendmsg6", AttachType::Sendmsg6),
            ("cork_recvmsg4", AttachType::Recvmsg4),
            ("cork_recvmsg6", AttachType::Recvmsg6),
            ("cork_getpeername4", AttachType::GetPeerName4),
            ("cork_getpeername6", AttachType::GetPeerName6),
        ],
    },
    ObjectSpec {
        name: "skb",
        bytes: objects::SKB,
        programs: &[("cork_skb_egress", AttachType::SkbEgress)],
    },
    ObjectSpec {
        name: "sock_ops",
        bytes: objects::SOCK_OPS,
        programs: &[("cork_sock_ops", AttachType::SockOps)],
    },
];

impl Enforcement {
    /// Loads, fills, attaches, pins and verifies. On any error everything done so far is
    /// undone before returning: a bottle is either fully enforced or not started.
    pub fn install(
        consts: LoadConstants,
        cgroup_dir: &Path,
        pin_dir: &Path,
        plan: &KernelPlan,
    ) -> Result<Self, BpfError> {
        let mut this = Enforcement {
            pin_dir: pin_dir.to_path_buf(),
            objects: Vec::new(),
            attachments: Vec::new(),
            removed: false,
        };
        // On error `this` drops here and removes whatever was created.
        this.install_inner(consts, cgroup_dir, plan)?;
        Ok(this)
    }

    fn install_inner(
        &mut self,
        consts: LoadConstants,
        cgroup_dir: &Path,
        plan: &KernelPlan,
    ) -> Result<(), BpfError> {
        self.load_objects(consts, plan)?;
        let cgroup = File::open(cgroup_dir).map_err(|source| BpfError::Cgroup {
            path: cgroup_dir.to_path_buf(),
            source,
        })?;
        for (spec, ebpf) in OBJECTS.iter().zip(self.objects.iter_mut()) {
            for &(program, attach) in spec.programs {
                let att = attach_one(ebpf, spec.name, program, attach, &cgroup, &self.pin_dir)?;
                self.attachments.push(att);
            }
        }
        self.verify_against(cgroup_dir, &cgroup, plan, false)
    }

    /// Creates the pin directory, loads every object into it (sharing one set of maps) and
    /// fills the maps from the plan. Nothing is attached yet.
    fn load_objects(&mut self, consts: LoadConstants, plan: &KernelPlan) -> Result<(), BpfError> {
        fs::create_dir(&self.pin_dir).map_err(|source| BpfError::PinDir {
            path: self.pin_dir.clone(),
            source,
        })?;
        let btf = Btf::from_sys_fs().map_err(BpfError::Btf)?;
        for spec in OBJECTS {
            let ebpf = EbpfLoader::new()
                .btf(Some(&btf))
                .default_map_pin_directory(&self.pin_dir)
                .override_global("CORK_BOTTLE_ID", &consts.bottle_id, true)
                // Only the sock_addr object reads it.
                .override_global("CORK_DNS_PORT", &consts.dns_port, false)
                .override_global("CORK_PROXY_PORT", &consts.proxy_port, false)
                .load(spec.bytes)
                .map_err(|source| BpfError::LoadObject {
                    object: spec.name,
                    source,
                })?;
            self.objects.push(ebpf);
            if spec.name == "sock_create" {
                // The maps exist now; fill them before any program can run.
                maps::write_plan(&mut self.objects[0], plan)?;
            }
        }
        Ok(())
    }

    /// Reads back what the kernel has now, as at install: exactly our program on each hook
    /// of the cgroup, and the plan's entries in the maps (with what the DNS proxy learned
    /// since set aside).
    pub fn verify(&self, cgroup_dir: &Path, plan: &KernelPlan) -> Result<(), BpfError> {
        let cgroup = File::open(cgroup_dir).map_err(|source| BpfError::Cgroup {
            path: cgroup_dir.to_path_buf(),
            source,
        })?;
        self.verify_against(cgroup_dir, &cgroup, plan, true)
    }

    /// Reads back what the kernel has: exactly our program on each hook of the cgroup, and
    /// map contents equal to the plan.
    fn verify_against(
        &self,
        cgroup_dir: &Path,
        cgroup: &File,
        plan: &KernelPlan,
        learned: bool,
    ) -> Result<(), BpfError> {
        for att in &self.attachments {
            let found =
                query::attached_programs(cgroup, att.attach).map_err(|source| BpfError::Query {
                    path: cgroup_dir.to_path_buf(),
                    attach: att.attach,
                    source,
                })?;
            if found != [att.prog_id] {
                return Err(BpfError::NotAttached {
                    path: cgroup_dir.to_path_buf(),
                    attach: att.attach,
                    found,
                    expected: att.prog_id,
                });
            }
        }
        maps::verify_plan(&self.objects[0], plan, learned)?;
        Ok(())
    }

    /// The shared maps live in the first object (the others reuse them by pin).
    pub fn maps_object(&mut self) -> &mut Ebpf {
        &mut self.objects[0]
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// Detaches every program and removes every pin. Errors are collected, not fatal:
    /// teardown goes as far as it can.
    pub fn remove(mut self) -> Vec<String> {
        self.remove_inner()
    }

    /// Leaves every pin in place (programs stay attached) and lets go of this process's
    /// handles: used when the bottle's processes could not be killed.
    pub fn abandon(mut self) {
        self.removed = true;
    }

    fn remove_inner(&mut self) -> Vec<String> {
        if self.removed {
            return Vec::new();
        }
        self.removed = true;
        let mut problems = Vec::new();
        for att in self.attachments.drain(..) {
            if let Some(link) = att.link {
                match link.unpin() {
                    Ok(fd_link) => drop(fd_link), // closing the last fd detaches it
                    Err(e) => problems.push(format!("unpinning link of {}: {e}", att.program)),
                }
            }
        }
        self.objects.clear();
        problems.extend(remove_pin_dir(&self.pin_dir));
        problems
    }
}

impl Drop for Enforcement {
    fn drop(&mut self) {
        for p in self.remove_inner() {
            tracing::warn!("bottle teardown: {p}");
        }
    }
}

/// CLOCK_BOOTTIME now, in nanoseconds: the clock of `bpf_ktime_get_boot_ns`.
pub fn boot_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Removes a bottle pin directory and everything pinned in it (used by `cork clean` too).
/// Unlinking a link pin whose fd nobody holds detaches the program.
pub fn remove_pin_dir(dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    match fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries.flatten() {
                if let Err(e) = fs::remove_file(entry.path()) {
                    problems.push(format!("removing pin {}: {e}", entry.path().display()));
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return problems,
        Err(e) => problems.push(format!("listing {}: {e}", dir.display())),
    }
    if let Err(e) = fs::remove_dir(dir) {
        problems.push(format!("removing {}: {e}", dir.display()));
    }
    problems
}

fn attach_one(
    ebpf: &mut Ebpf,
    object: &'static str,
    program: &'static str,
    attach: AttachType,
    cgroup: &File,
    pin_dir: &Path,
) -> Result<Attachment, BpfError> {
    let err = |operation: &'static str| {
        move |source: ProgramError| BpfError::Program {
            program,
            operation,
            source,
        }
    };
    let prog = ebpf
        .program_mut(program)
        .ok_or(BpfError::MissingProgram { object, program })?;
    // Load, attach as a (single) bpf link, and take the link out of aya's table so that
    // dropping the program does not detach it: the same steps for each program type.
    macro_rules! attach_link {
        ($ty:ty, $($attach_arg:expr),+) => {{
            let p: &mut $ty = prog.try_into().map_err(err("type check"))?;
            p.load().map_err(err("load"))?;
            let id = p.attach($($attach_arg),+).map_err(err("attach"))?;
            let link = p.take_link(id).map_err(err("take link"))?;
            FdLink::try_from(link).map_err(|source| BpfError::Link { program, source })?
        }};
    }
    let fd_link: FdLink = match attach {
        AttachType::SockCreate => attach_link!(CgroupSock, cgroup, CgroupAttachMode::Single),
        AttachType::SockOps => attach_link!(SockOps, cgroup, CgroupAttachMode::Single),
        AttachType::SkbEgress => attach_link!(
            CgroupSkb,
            cgroup,
            CgroupSkbAttachType::Egress,
            CgroupAttachMode::Single
        ),
        AttachType::Connect4
        | AttachType::Connect6
        | AttachType::Sendmsg4
        | AttachType::Sendmsg6
        | AttachType::Recvmsg4
        | AttachType::Recvmsg6
        | AttachType::GetPeerName4
        | AttachType::GetPeerName6 => {
            attach_link!(CgroupSockAddr, cgroup, CgroupAttachMode::Single)
        }
    };
    let prog = ebpf
        .program(program)
        .ok_or(BpfError::MissingProgram { object, program })?;
    let prog_id = prog.info().map_err(err("info"))?.id();
    let path = pin_dir.join(format!("link_{program}"));
    let link = fd_link.pin(&path).map_err(|source| BpfError::PinLink {
        program,
        path: path.clone(),
        source,
    })?;
    Ok(Attachment {
        program,
        attach,
        prog_id,
        link: Some(link),
    })
}
