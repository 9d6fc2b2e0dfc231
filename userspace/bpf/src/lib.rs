//! Kernel state for one bottle: load the embedded eBPF objects, fill their maps from the
//! policy, attach them to the bottle's cgroup, pin everything so enforcement outlives this
//! process, read it back to verify, and take it all down again.
//!
//! Pins live in `<bpffs>/cork-<bottle key>/`: the bottle's maps (pinned by name) and one
//! `link_<program>` per attachment. While a link pin exists the program stays attached,
//! even if the agent is SIGKILLed. A cgroup bottle's programs are not its own: one set,
//! verified once, serves every cgroup bottle of the host (see [`shared`]); the bottle
//! registers its maps and its `cork_cfg` entry in the set and links the set's programs
//! to its cgroup. A VM bottle's tap program is its own (loaded with its guest as
//! constants).

pub mod abi;
mod adopt;
pub mod allow_slots;
mod attach;
mod batch;
mod cfg;
pub mod counted;
mod direct;
pub mod events;
mod kfunc;
pub mod learned;
mod load;
mod maps;
mod mapset;
pub mod noop;
mod query;
pub mod redirects;
pub mod seal;
pub mod shared;
mod target;
pub mod test_run;
mod trie;
// One loader module per eBPF object, named after its ebpf/*.bpf.c.
mod skb;
mod sock_addr;
mod sock_create;
mod sock_ops;
mod tap;
mod unix;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use aya::programs::ProgramError;
use aya::programs::links::PinnedLink;
use aya::{Btf, Ebpf, EbpfError};
use cork_policy::KernelPlan;

use attach::ObjectSpec;
pub use cfg::{CgroupIdError, cgroup_id, own_cgroup_id};
pub use kfunc::KfuncError;
pub use maps::MapError;
pub use mapset::MapSet;
pub use query::{AttachType, attached_programs};
pub use target::AttachTarget;

/// Failures while putting a bottle's enforcement in place; each names what was being done.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("reading kernel BTF from /sys/kernel/btf/vmlinux")]
    Btf(#[source] aya::BtfError),
    #[error("eBPF object {object}: giving its kernel-function calls the running kernel's ids")]
    Kfunc {
        object: &'static str,
        #[source]
        source: KfuncError,
    },
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
    #[error("program {program} attaches only to {wants}")]
    WrongTarget {
        program: &'static str,
        wants: &'static str,
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
    #[error("the pins of {path} are incomplete: {} missing", missing.join(", "))]
    PinsMissing { path: PathBuf, missing: Vec<String> },
    #[error("listing pin directory {path}")]
    ListPins {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("program {program}: opening its pinned link {path}")]
    OpenLink {
        program: &'static str,
        path: PathBuf,
        #[source]
        source: aya::programs::links::LinkError,
    },
    #[error("creating pin directory {path}")]
    PinDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("network device {ifname}")]
    Device {
        ifname: String,
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
    #[error(transparent)]
    CgroupId(#[from] CgroupIdError),
    #[error("eBPF object {object}: {operation}")]
    Prepare {
        object: &'static str,
        operation: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("eBPF object {object}: map {map}")]
    PinnedMap {
        object: &'static str,
        map: String,
        #[source]
        source: Box<aya::maps::MapError>,
    },
    #[error("program {program}: {operation}")]
    Syscall {
        program: &'static str,
        operation: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("program {program}: the kernel refused to load it; verifier log:\n{log}")]
    Verifier {
        program: &'static str,
        log: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "this kernel ({release}) has no cgroup/connect_unix and cgroup/sendmsg_unix hooks \
         (Linux 6.7 or later): the bottle's unix-domain sockets could not be judged, and cork \
         does not start a bottle it cannot fence (a host socket such as a container \
         runtime's would be in its reach)"
    )]
    UnixHooksUnsupported { release: String },
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

/// One thing teardown could not undo. Teardown goes on past each (it removes as much as
/// it can), so these are collected, not returned early.
#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    #[error("unpinning the link of {program}")]
    Unpin {
        program: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("removing pin {path}")]
    RemovePin {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("listing pin directory {path}")]
    ListPins {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("removing pin directory {path}")]
    RemoveDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the shared program set: {what}")]
    Shared {
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// What differs from bottle to bottle: a cgroup bottle's programs find these in its
/// `cork_cfg` entry (see cfg.rs), a VM bottle's tap program has them as load-time
/// constants (`const volatile` globals in tap.bpf.c).
#[derive(Debug, Clone, Copy)]
pub struct LoadConstants {
    /// Which bottle these program instances enforce.
    pub bottle_id: u32,
    /// The bottle's DNS proxy port on 127.0.0.1 and ::1; 0 = no DNS redirect.
    pub dns_port: u16,
    /// The bottle's inspecting proxy port on 127.0.0.1/::1; 0 = none (redirected flows
    /// are refused).
    pub proxy_port: u16,
    /// A VM bottle's guest (its MAC, addresses and gateway), for the tap program;
    /// `None` for a cgroup bottle.
    pub guest: Option<abi::cork_guest>,
}

/// One attached program: its name, kernel attach type, id and the pin keeping it attached.
pub(crate) struct Attachment {
    pub(crate) program: &'static str,
    pub(crate) attach: AttachType,
    pub(crate) prog_id: u32,
    pub(crate) link: Option<PinnedLink>,
}

/// A bottle's enforcement: alive while this value lives, torn down by [`Enforcement::remove`]
/// (or Drop). Dropping the loaded objects does not detach anything: the link pins hold the
/// attachments until they are removed.
pub struct Enforcement {
    pin_dir: PathBuf,
    /// A VM bottle's tap object (its program); empty for a cgroup bottle.
    objects: Vec<Ebpf>,
    /// The bottle's maps.
    maps: MapSet,
    attachments: Vec<Attachment>,
    /// A cgroup bottle's `cork_cfg` entry: its cgroup's id and what it holds.
    cfg: Option<(u64, abi::cork_bottle_cfg)>,
    /// A cgroup bottle's program set (shared.rs): its directory and the bottle's id, its
    /// slot in the set's outer arrays.
    shared: Option<(PathBuf, u32)>,
    removed: bool,
}

/// A cgroup bottle's objects. sock_create first: it creates (and pins) the shared maps the
/// other objects reuse.
pub(crate) const CGROUP_OBJECTS: &[&ObjectSpec] = &[
    &sock_create::OBJECT,
    &sock_addr::OBJECT,
    &skb::OBJECT,
    &sock_ops::OBJECT,
];

/// A VM bottle's objects: the tap program alone (it creates the maps).
pub(crate) const TAP_OBJECTS: &[&ObjectSpec] = &[&tap::OBJECT];

/// The objects a target takes.
fn objects_for(target: &AttachTarget) -> &'static [&'static ObjectSpec] {
    match target {
        AttachTarget::Cgroup(_) => CGROUP_OBJECTS,
        AttachTarget::TcIngress { .. } => TAP_OBJECTS,
    }
}

impl Enforcement {
    /// Nothing yet, to be pinned in `pin_dir`: what [`Enforcement::install`] and the
    /// kernel-model tests fill (dropped half-filled, it removes what it holds).
    pub(crate) fn empty(pin_dir: &Path) -> Self {
        Enforcement {
            pin_dir: pin_dir.to_path_buf(),
            objects: Vec::new(),
            maps: MapSet::default(),
            attachments: Vec::new(),
            cfg: None,
            shared: None,
            removed: false,
        }
    }

    /// Loads, fills, attaches, pins and verifies. On any error everything done so far is
    /// undone before returning: a bottle is either fully enforced or not started.
    pub fn install(
        consts: LoadConstants,
        target: &AttachTarget,
        pin_dir: &Path,
        plan: &KernelPlan,
    ) -> Result<Self, BpfError> {
        let mut this = Enforcement::empty(pin_dir);
        // On error `this` drops here and removes whatever was created.
        this.install_inner(consts, target, plan)?;
        Ok(this)
    }

    fn install_inner(
        &mut self,
        consts: LoadConstants,
        target: &AttachTarget,
        plan: &KernelPlan,
    ) -> Result<(), BpfError> {
        let AttachTarget::Cgroup(cgroup) = target else {
            return self.install_tap(consts, target, plan);
        };
        // The host's program set, next to the bottles' pin directories.
        let root = self
            .pin_dir
            .parent()
            .unwrap_or(Path::new("/"))
            .join(shared::DIR);
        let key = cfg::cgroup_id(cgroup)?;
        // The bottle's own maps first, outside the set's lock: filling them is the long
        // part for a large policy, and other bottles may be starting meanwhile.
        self.make_bottle_maps(plan)?;
        let mut set = shared::Shared::ensure(&root)?;
        self.join_set(&set, consts, key)?;
        // Registered: the set is in use now, `cork clean` keeps it.
        set.unlock();
        let open = target.open()?;
        let cgroup = attach::cgroup_of(&open, "the cgroup hooks")?;
        for program in set.open_programs()? {
            self.attachments
                .push(direct::attach(program, cgroup, &self.pin_dir)?);
        }
        // The cgroup's local storage exists now: the hooks' fast copy of the entry.
        if let Some((key, entry)) = &self.cfg {
            cfg::write_attached(set.dir(), *key, entry)?;
        }
        self.verify_against(target, &open, plan, 0, false)
    }

    /// Makes this bottle's maps in its pin directory and fills them from `plan`.
    fn make_bottle_maps(&mut self, plan: &KernelPlan) -> Result<(), BpfError> {
        fs::create_dir(&self.pin_dir).map_err(|source| BpfError::PinDir {
            path: self.pin_dir.clone(),
            source,
        })?;
        self.maps = MapSet::create_pinned("bottle_maps", shared::BOTTLE_MAPS, &self.pin_dir)?;
        maps::write_plan(&mut self.maps, plan)?;
        Ok(())
    }

    /// Registers this bottle's maps and its `cork_cfg` entry (for the cgroup `key`) in
    /// the program set. Nothing is attached yet.
    fn join_set(
        &mut self,
        set: &shared::Shared,
        consts: LoadConstants,
        key: u64,
    ) -> Result<(), BpfError> {
        self.shared = Some((set.dir().to_path_buf(), consts.bottle_id));
        shared::register_maps(set.dir(), &self.pin_dir, consts.bottle_id)?;
        // Last: with its entry the programs judge the cgroup as this bottle.
        let entry = cfg::entry(&consts);
        self.cfg = Some((key, entry));
        cfg::write(set.dir(), key, entry)?;
        cfg::verify(set.dir(), key, &entry)?;
        Ok(())
    }

    /// A VM bottle: its own tap program, loaded with its guest as constants.
    fn install_tap(
        &mut self,
        consts: LoadConstants,
        target: &AttachTarget,
        plan: &KernelPlan,
    ) -> Result<(), BpfError> {
        let specs = objects_for(target);
        self.load_objects(specs, consts, plan)?;
        let open = target.open()?;
        // Every program is verified before the first is attached.
        load::load_all(&mut self.objects, specs, None)?;
        for (spec, ebpf) in specs.iter().zip(self.objects.iter_mut()) {
            for &(program, attach) in spec.programs {
                let att = attach::attach_one(ebpf, spec, program, attach, &open, &self.pin_dir)?;
                self.attachments.push(att);
            }
        }
        self.verify_against(target, &open, plan, 0, false)
    }

    /// Creates the pin directory, loads every object into it (sharing one set of maps) and
    /// fills the maps from the plan. No program is loaded and nothing attached yet. Returns
    /// the kernel's BTF, which the objects loaded outside aya relocate against too.
    fn load_objects(
        &mut self,
        specs: &[&ObjectSpec],
        consts: LoadConstants,
        plan: &KernelPlan,
    ) -> Result<Btf, BpfError> {
        fs::create_dir(&self.pin_dir).map_err(|source| BpfError::PinDir {
            path: self.pin_dir.clone(),
            source,
        })?;
        let (btf, mut loader) = load::btf_and_loader()?;
        let guest = consts.guest.unwrap_or_default();
        loader
            .btf(Some(&btf))
            .default_map_pin_directory(&self.pin_dir)
            // Only the tap object has constants: the cgroup hooks read cork_cfg.
            .override_global("CORK_BOTTLE_ID", &consts.bottle_id, false)
            .override_global("CORK_GUEST", &guest, false);
        for (i, spec) in specs.iter().enumerate() {
            let ebpf = loader
                .load(spec.bytes)
                .map_err(|source| BpfError::LoadObject {
                    object: spec.name,
                    source,
                })?;
            self.objects.push(ebpf);
            if i == 0 {
                // The maps exist now; fill them before any program can run.
                self.maps = MapSet::take_all(&mut self.objects[0]);
                maps::write_plan(&mut self.maps, plan)?;
            }
        }
        Ok(btf)
    }

    /// Reads back what the kernel has now, as at install: exactly our program on each hook
    /// of the cgroup, `slot` live, and the plan's entries in that slot's maps (with what
    /// the DNS proxy learned since set aside).
    pub fn verify(
        &self,
        target: &AttachTarget,
        plan: &KernelPlan,
        slot: cork_policy::PolicySlot,
    ) -> Result<(), BpfError> {
        let open = target.open()?;
        let live = maps::live_slot(&self.maps)?;
        if live != slot {
            return Err(MapError::Mismatch {
                map: maps::GEN,
                detail: format!("slot {live} is live, slot {slot} was expected"),
            }
            .into());
        }
        self.verify_against(target, &open, plan, slot, true)
    }

    /// First half of a policy update: empties the slot that is not live, writes `plan`
    /// into it and reads it back. The programs do not look at it yet.
    pub fn stage(
        &mut self,
        plan: &KernelPlan,
        slot: cork_policy::PolicySlot,
    ) -> Result<(), BpfError> {
        if maps::live_slot(&self.maps)? == slot {
            return Err(MapError::Mismatch {
                map: maps::GEN,
                detail: format!("slot {slot} is live: an update stages the other one"),
            }
            .into());
        }
        maps::clear_slot(&mut self.maps, slot)?;
        maps::write_slot(&mut self.maps, plan, slot)?;
        maps::verify_plan(&self.maps, plan, slot, true)?;
        Ok(())
    }

    /// Second half: reads the staged slot back once more (learned entries carried over
    /// were written since), then makes it live with one write.
    pub fn switch(
        &mut self,
        plan: &KernelPlan,
        slot: cork_policy::PolicySlot,
    ) -> Result<(), BpfError> {
        maps::verify_plan(&self.maps, plan, slot, true)?;
        maps::set_live_slot(&mut self.maps, slot)?;
        Ok(())
    }

    /// Empties a slot that is not live (the previous generation's, once no decision can
    /// still be reading it), so an old policy does not hold kernel memory.
    pub fn clear(&mut self, slot: cork_policy::PolicySlot) -> Result<(), BpfError> {
        if maps::live_slot(&self.maps)? == slot {
            return Ok(());
        }
        maps::clear_slot(&mut self.maps, slot)?;
        Ok(())
    }

    /// Reads back what the kernel has: exactly our program on each hook of the cgroup, and
    /// map contents equal to the plan.
    fn verify_against(
        &self,
        target: &AttachTarget,
        open: &target::OpenTarget,
        plan: &KernelPlan,
        slot: cork_policy::PolicySlot,
        learned: bool,
    ) -> Result<(), BpfError> {
        for att in &self.attachments {
            let found = open
                .attached_programs(att.attach)
                .map_err(|source| BpfError::Query {
                    path: target.path(),
                    attach: att.attach,
                    source,
                })?;
            if found != [att.prog_id] {
                return Err(BpfError::NotAttached {
                    path: target.path(),
                    attach: att.attach,
                    found,
                    expected: att.prog_id,
                });
            }
        }
        if let (Some((dir, bottle_id)), Some((key, entry))) = (&self.shared, &self.cfg) {
            cfg::verify(dir, *key, entry)?;
            cfg::verify_attached(dir, *key, entry)?;
            shared::verify_maps(dir, &self.pin_dir, *bottle_id)?;
        }
        maps::verify_plan(&self.maps, plan, slot, learned)?;
        Ok(())
    }

    /// The bottle's maps live in the first object (the others reuse them by pin).
    pub fn maps_object(&mut self) -> &mut MapSet {
        &mut self.maps
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// Seals the ended bottle's cgroup `cgroup` ([`seal`]): once its processes are dead,
    /// before [`Enforcement::remove`]. A VM bottle's tap goes with its guest: nothing to seal.
    pub fn seal(&self, cgroup: &Path) -> Result<(), seal::SealError> {
        match &self.shared {
            Some((set, _)) => seal::seal(set, cgroup),
            None => Ok(()),
        }
    }

    /// Detaches every program and removes every pin. Errors are collected, not fatal:
    /// teardown goes as far as it can.
    pub fn remove(mut self) -> Vec<TeardownError> {
        self.remove_inner()
    }

    /// Leaves every pin in place (programs stay attached) and lets go of this process's
    /// handles: used when the bottle's processes could not be killed.
    pub fn abandon(mut self) {
        self.removed = true;
    }

    fn remove_inner(&mut self) -> Vec<TeardownError> {
        if self.removed {
            return Vec::new();
        }
        self.removed = true;
        let mut problems = Vec::new();
        for att in self.attachments.drain(..) {
            if let Some(link) = att.link {
                match link.unpin() {
                    Ok(fd_link) => drop(fd_link), // closing the last fd detaches it
                    Err(source) => problems.push(TeardownError::Unpin {
                        program: att.program,
                        source,
                    }),
                }
            }
        }
        self.objects.clear();
        self.maps = MapSet::default();
        // Out of the program set: the entry first (the hooks are gone already).
        if let Some((dir, bottle_id)) = self.shared.take() {
            if let Some((key, _)) = self.cfg.take()
                && let Err(source) = cfg::delete(&dir, key)
            {
                problems.push(TeardownError::Shared {
                    what: "deleting the bottle's cork_cfg entry",
                    source,
                });
            }
            for source in shared::forget_maps(&dir, bottle_id) {
                problems.push(TeardownError::Shared {
                    what: "emptying the bottle's slot of the outer maps",
                    source,
                });
            }
        }
        problems.extend(remove_pin_dir(&self.pin_dir));
        problems
    }
}

impl Drop for Enforcement {
    fn drop(&mut self) {
        for p in self.remove_inner() {
            tracing::warn!("bottle teardown: {}", error_chain(&p));
        }
    }
}

/// CLOCK_BOOTTIME now, in nanoseconds: the clock of `bpf_ktime_get_boot_ns` (the
/// programs' stamps and counting windows, learned addresses' expiry).
pub fn boot_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Removes a bottle pin directory and everything pinned in it (used by `cork clean` too).
/// Unlinking a link pin whose fd nobody holds detaches the program.
pub fn remove_pin_dir(dir: &Path) -> Vec<TeardownError> {
    let mut problems = Vec::new();
    match fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries.flatten() {
                if let Err(source) = fs::remove_file(entry.path()) {
                    problems.push(TeardownError::RemovePin {
                        path: entry.path(),
                        source,
                    });
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return problems,
        Err(source) => problems.push(TeardownError::ListPins {
            path: dir.to_path_buf(),
            source,
        }),
    }
    if let Err(source) = fs::remove_dir(dir) {
        problems.push(TeardownError::RemoveDir {
            path: dir.to_path_buf(),
            source,
        });
    }
    problems
}

/// "outer: inner" for an error and its sources (this crate sits below the audit crate,
/// which has the same helper for everyone above).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}
