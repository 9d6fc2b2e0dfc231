//! Runs a bottle's cgroup_skb/egress program on synthetic packets with BPF_PROG_TEST_RUN,
//! attached nowhere: the real, verifier-accepted program and real maps, judged packet by
//! packet. The kernel runs it with a socket of its own that carries no cork tag, so each
//! verdict is the one an unknown socket's packet gets: the policy's prefix rules alone
//! (plus `host_ports` for loopback).

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use aya::programs::Program;
use cork_policy::KernelPlan;

use super::attach::{ObjectSpec, program_err};
use super::direct::LoadedProgram;
use super::{BpfError, Enforcement, LoadConstants, shared};

const BPF_PROG_TEST_RUN: libc::c_long = 10;
const SKB_PROGRAM: &str = "cork_skb_egress";

/// `union bpf_attr`'s test member (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// `BPF_PROG_TEST_RUN` with `attr`; the kernel writes the program's return value (and
/// any output the attr asks for) back into it.
///
/// # Safety
/// Every pointer in `attr` must point at a buffer of the size given beside it, alive for
/// the call (writable for the output buffers).
unsafe fn test_run(attr: &mut TestRunAttr) -> io::Result<()> {
    // SAFETY: attr is a valid bpf_attr prefix of the size passed; its pointers are the
    // caller's promise.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            attr as *mut TestRunAttr,
            std::mem::size_of::<TestRunAttr>() as u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `specs` loaded into `pin_dir` (which must not exist; removed on drop) with their maps
/// filled from `plan`; nothing attached.
fn loaded(
    specs: &[&ObjectSpec],
    consts: LoadConstants,
    pin_dir: &Path,
    plan: &KernelPlan,
) -> Result<Enforcement, BpfError> {
    let mut enforcement = Enforcement::empty(pin_dir);
    enforcement.load_objects(specs, consts, plan)?;
    Ok(enforcement)
}

/// Program `program` of the loaded objects (`object` names it in the error).
fn program_mut<'e>(
    enforcement: &'e mut Enforcement,
    object: &'static str,
    program: &'static str,
) -> Result<&'e mut Program, BpfError> {
    enforcement
        .objects
        .iter_mut()
        .find_map(|o| o.program_mut(program))
        .ok_or(BpfError::MissingProgram { object, program })
}

/// The fd of loaded program `program`, for BPF_PROG_TEST_RUN.
fn program_fd(enforcement: &Enforcement, program: &str) -> io::Result<RawFd> {
    let prog = enforcement
        .objects
        .iter()
        .find_map(|o| o.program(program))
        .ok_or_else(|| io::Error::other(format!("{program} not loaded")))?;
    Ok(prog.fd().map_err(io::Error::other)?.as_fd().as_raw_fd())
}

/// A cgroup bottle's maps filled from a plan, registered in a program set of its own
/// (next to `pin_dir`, so tests side by side never share one); nothing attached.
pub struct SkbTestRun {
    enforcement: Enforcement,
    skb: LoadedProgram,
    root: PathBuf,
}

impl SkbTestRun {
    /// Loads everything into `pin_dir` (which must not exist; removed on drop) and
    /// `<pin_dir>_programs`.
    pub fn load(
        consts: LoadConstants,
        pin_dir: &Path,
        plan: &KernelPlan,
    ) -> Result<Self, BpfError> {
        let mut root = pin_dir.as_os_str().to_owned();
        root.push("_programs");
        let root = PathBuf::from(root);
        let mut enforcement = Enforcement::empty(pin_dir);
        enforcement.make_bottle_maps(plan)?;
        let mut set = match shared::Shared::ensure(&root) {
            Ok(set) => set,
            Err(e) => {
                let _ = shared::remove_unused_in(&root);
                return Err(e);
            }
        };
        // The kernel creates the test packet's socket in this process's cgroup, which is
        // where the program looks its bottle up (bpf_skb_cgroup_id).
        let joined = super::cfg::own_cgroup_id()
            .map_err(BpfError::from)
            .and_then(|key| enforcement.join_set(&set, consts, key));
        set.unlock();
        let found = joined.and_then(|()| {
            set.open_programs()?
                .into_iter()
                .find(|p| p.name() == SKB_PROGRAM)
                .ok_or(BpfError::MissingProgram {
                    object: "skb",
                    program: SKB_PROGRAM,
                })
        });
        match found {
            Ok(skb) => Ok(SkbTestRun {
                enforcement,
                skb,
                root,
            }),
            Err(e) => {
                drop(enforcement);
                let _ = shared::remove_unused_in(&root);
                Err(e)
            }
        }
    }

    /// Installs a learned host entry valid until `until_boot_ns` (CLOCK_BOOTTIME).
    pub fn learn(
        &mut self,
        entry: &cork_policy::LearnedEntry,
        until_boot_ns: u64,
    ) -> Result<(), super::MapError> {
        super::maps::learn(self.enforcement.maps_object(), entry, until_boot_ns)
    }

    /// Runs the program on one IP packet; true when it passes the packet.
    pub fn passes(&mut self, ip_packet: &[u8]) -> io::Result<bool> {
        let fd = self.skb.fd().as_raw_fd();
        // The kernel takes an Ethernet frame and starts cgroup_skb programs at the network
        // header (net/bpf/test_run.c, bpf_prog_test_run_skb: eth_type_trans).
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(if ip_packet.first().is_some_and(|b| b >> 4 == 6) {
            &[0x86, 0xdd]
        } else {
            &[0x08, 0x00]
        });
        frame.extend_from_slice(ip_packet);
        let mut attr = TestRunAttr {
            prog_fd: fd as u32,
            data_size_in: frame.len() as u32,
            data_in: frame.as_ptr() as u64,
            repeat: 1,
            ..Default::default()
        };
        // SAFETY: data_in points at `frame`, alive for the call; no output buffers.
        unsafe { test_run(&mut attr)? };
        Ok(attr.retval & 1 == 1)
    }
}

impl Drop for SkbTestRun {
    fn drop(&mut self) {
        // The bottle out of the set first, then the set (empty now) with its programs.
        let _ = self.enforcement.remove_inner();
        let _ = shared::remove_unused_in(&self.root);
    }
}

/// The tap program of a VM bottle loaded (not attached) with its maps filled from a plan
/// and the guest's identity set, run on synthetic Ethernet frames.
pub struct TapTestRun {
    enforcement: Enforcement,
}

/// What the tap program did with one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TapVerdict {
    /// TC_ACT_OK (0) passed it; TC_ACT_SHOT (2) dropped it.
    pub passed: bool,
    /// The mark it set (a `cork_mark` value, 0 for none).
    pub mark: u32,
}

impl TapTestRun {
    /// Loads the tap object into `pin_dir` (which must not exist; removed on drop).
    pub fn load(
        consts: LoadConstants,
        pin_dir: &Path,
        plan: &KernelPlan,
    ) -> Result<Self, BpfError> {
        let mut enforcement = loaded(super::TAP_OBJECTS, consts, pin_dir, plan)?;
        let program = super::tap::PROGRAM;
        let prog: &mut aya::programs::SchedClassifier =
            program_mut(&mut enforcement, "tap", program)?
                .try_into()
                .map_err(program_err(program, "type check"))?;
        prog.load().map_err(program_err(program, "load"))?;
        Ok(TapTestRun { enforcement })
    }

    /// Installs a learned host entry valid until `until_boot_ns` (CLOCK_BOOTTIME).
    pub fn learn(
        &mut self,
        entry: &cork_policy::LearnedEntry,
        until_boot_ns: u64,
    ) -> Result<(), super::MapError> {
        super::maps::learn(self.enforcement.maps_object(), entry, until_boot_ns)
    }

    /// Runs the program on one Ethernet frame.
    pub fn run(&mut self, frame: &[u8]) -> io::Result<TapVerdict> {
        let fd = program_fd(&self.enforcement, super::tap::PROGRAM)?;
        // struct __sk_buff: the first bytes, zero, in (the kernel accepts only a few
        // settable fields); all of it out (a shorter buffer is ENOSPC), `mark` at offset 8.
        let ctx_in = [0u8; 32];
        let mut ctx_out = [0u8; 256];
        let mut attr = TestRunAttr {
            prog_fd: fd as u32,
            data_size_in: frame.len() as u32,
            data_in: frame.as_ptr() as u64,
            repeat: 1,
            ctx_size_in: ctx_in.len() as u32,
            ctx_in: ctx_in.as_ptr() as u64,
            ctx_size_out: ctx_out.len() as u32,
            ctx_out: ctx_out.as_mut_ptr() as u64,
            ..Default::default()
        };
        // SAFETY: data_in, ctx_in and ctx_out point at buffers alive for the call, of the
        // sizes given.
        unsafe { test_run(&mut attr)? };
        Ok(TapVerdict {
            passed: attr.retval == 0,
            mark: u32::from_ne_bytes([ctx_out[8], ctx_out[9], ctx_out[10], ctx_out[11]]),
        })
    }
}

/// An Ethernet frame from `src_mac` (to a fixed router MAC) carrying `ip_packet`.
pub fn eth_frame(src_mac: [u8; 6], ip_packet: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x02, 0, 0, 0, 0, 0x01];
    frame.extend_from_slice(&src_mac);
    frame.extend_from_slice(if ip_packet.first().is_some_and(|b| b >> 4 == 6) {
        &[0x86, 0xdd]
    } else {
        &[0x08, 0x00]
    });
    frame.extend_from_slice(ip_packet);
    frame
}

/// A minimal IPv4 or IPv6 packet carrying the first 4 bytes (ports) of a TCP/UDP header,
/// or 8 bytes of payload for any other protocol. Checksums are not looked at.
pub fn ip_packet(src: IpAddr, dst: IpAddr, proto: u8, sport: u16, dport: u16) -> Vec<u8> {
    let mut l4 = Vec::with_capacity(20);
    l4.extend_from_slice(&sport.to_be_bytes());
    l4.extend_from_slice(&dport.to_be_bytes());
    l4.resize(20, 0);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = (20 + l4.len()) as u16;
            let mut p = vec![0x45, 0];
            p.extend_from_slice(&total.to_be_bytes());
            p.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&l4);
            p
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut p = vec![0x60, 0, 0, 0];
            p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            p.extend_from_slice(&[proto, 64]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&l4);
            p
        }
        _ => panic!("ip_packet: source and destination must be the same family"),
    }
}

pub use super::boot_ns;
