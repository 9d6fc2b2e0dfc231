//! BPF_PROG_QUERY on a cgroup: which programs are attached to it for one attach type.
//! aya has no public query for cgroup sock/skb programs, so this is the raw syscall
//! (include/uapi/linux/bpf.h, `union bpf_attr` query member).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// The cgroup hooks cork attaches to; values are `enum bpf_attach_type` (uapi bpf.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachType {
    SkbEgress = 1,
    SockCreate = 2,
    SockOps = 3,
    Connect4 = 10,
    Connect6 = 11,
    PostBind4 = 12,
    PostBind6 = 13,
    Sendmsg4 = 14,
    Sendmsg6 = 15,
    Recvmsg4 = 19,
    Recvmsg6 = 20,
    GetPeerName4 = 29,
    GetPeerName6 = 30,
    /// tcx ingress of a network device (a VM bottle's tap).
    TcxIngress = 46,
    /// `BPF_CGROUP_UNIX_CONNECT` (Linux 6.7).
    ConnectUnix = 49,
    /// `BPF_CGROUP_UNIX_SENDMSG` (Linux 6.7).
    SendmsgUnix = 50,
}

const BPF_PROG_QUERY: libc::c_long = 16;

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
    prog_attach_flags: u64,
    link_ids: u64,
    link_attach_flags: u64,
    revision: u64,
}

/// Program ids attached directly to `cgroup` (not inherited) for `attach`.
pub fn attached_programs(cgroup: &File, attach: AttachType) -> io::Result<Vec<u32>> {
    query(cgroup.as_raw_fd() as u32, attach)
}

/// Program ids attached to the network device `ifindex` for `attach` (tcx).
pub fn attached_to_device(ifindex: u32, attach: AttachType) -> io::Result<Vec<u32>> {
    query(ifindex, attach)
}

/// `target` is the union's `target_fd` / `target_ifindex` (uapi bpf.h): a cgroup fd for
/// cgroup hooks, an ifindex for tcx.
fn query(target: u32, attach: AttachType) -> io::Result<Vec<u32>> {
    let mut ids = [0u32; 64];
    let mut attr = QueryAttr {
        target_fd: target,
        attach_type: attach as u32,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    // SAFETY: attr is a valid, fully initialised bpf_attr prefix of the size we pass; the
    // kernel writes at most prog_cnt u32s into `ids`, which outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_QUERY,
            &mut attr as *mut QueryAttr,
            std::mem::size_of::<QueryAttr>() as u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = (attr.prog_cnt as usize).min(ids.len());
    Ok(ids[..n].to_vec())
}
