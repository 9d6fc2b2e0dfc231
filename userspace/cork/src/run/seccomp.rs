//! Audit for the sockets a bottle is refused before any cgroup hook can see them.
//!
//! Raw and `AF_PACKET` sockets fail in the kernel for want of `CAP_NET_RAW`, and ICMP
//! "ping" sockets by `ping_group_range`, before `cgroup/sock_create` runs; tracing and LSM
//! programs that would see them cannot be loaded on every kernel (this one refuses them).
//! So the bottled process installs a seccomp filter that hands exactly those `socket(2)`
//! calls to the agent (SECCOMP_RET_USER_NOTIF); the agent writes an audit event and answers
//! EPERM. If the agent is gone, the kernel fails the call (ENOSYS): refused either way.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};

use cork_audit::{self as audit, AuditSink, VerdictEvent};

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const NR_SOCKET: u32 = libc::SYS_socket as u32;

/// offsets in `struct seccomp_data` (uapi linux/seccomp.h)
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARG0: u32 = 16;
const OFF_ARG1: u32 = 24;
const OFF_ARG2: u32 = 32;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// socket(AF_PACKET, …), socket(AF_INET|AF_INET6, SOCK_RAW, …) and ICMP/ICMPv6 sockets
/// notify the agent; everything else is allowed (the cgroup hooks judge it).
fn filter() -> Vec<libc::sock_filter> {
    use libc::{
        BPF_ABS, BPF_ALU, BPF_AND, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W,
        SECCOMP_RET_ALLOW, SECCOMP_RET_USER_NOTIF,
    };
    let ld = (BPF_LD | BPF_W | BPF_ABS) as u16;
    let jeq = (BPF_JMP | BPF_JEQ | BPF_K) as u16;
    let ret = (BPF_RET | BPF_K) as u16;
    vec![
        /* 0 */ stmt(ld, OFF_ARCH),
        /* 1 */
        jump(jeq, AUDIT_ARCH_X86_64, 0, 13), // other ABIs: allow (caps still refuse)
        /* 2 */ stmt(ld, OFF_NR),
        /* 3 */ jump(jeq, NR_SOCKET, 0, 11),
        /* 4 */ stmt(ld, OFF_ARG0),
        /* 5 */ jump(jeq, libc::AF_PACKET as u32, 10, 0),
        /* 6 */ jump(jeq, libc::AF_INET as u32, 1, 0),
        /* 7 */ jump(jeq, libc::AF_INET6 as u32, 0, 7),
        /* 8 */ stmt(ld, OFF_ARG1),
        /* 9 */
        stmt((BPF_ALU | BPF_AND | BPF_K) as u16, 0xf), // strip SOCK_NONBLOCK|CLOEXEC
        /* 10 */ jump(jeq, libc::SOCK_RAW as u32, 5, 0),
        /* 11 */ stmt(ld, OFF_ARG2),
        /* 12 */ jump(jeq, libc::IPPROTO_ICMP as u32, 3, 0),
        /* 13 */ jump(jeq, libc::IPPROTO_ICMPV6 as u32, 2, 0),
        /* 14 */ stmt(ret, SECCOMP_RET_ALLOW),
        /* 15 */ stmt(ret, SECCOMP_RET_ALLOW),
        /* 16 */ stmt(ret, SECCOMP_RET_USER_NOTIF),
    ]
}

/// The two ends of the socket that carries the listener fd from the child to the agent.
pub struct ListenerChannel {
    pub agent: OwnedFd,
    pub child: OwnedFd,
}

impl ListenerChannel {
    pub fn new() -> io::Result<Self> {
        let (agent, child) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        Ok(ListenerChannel { agent, child })
    }

    /// The agent's side, after the child was spawned: the listener fd it sent.
    pub fn receive(&self) -> io::Result<OwnedFd> {
        let mut buf = [0u8; 1];
        let mut iov = [io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!(RawFd);
        let msg = recvmsg::<()>(
            self.agent.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
        )?;
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg
                && let Some(&fd) = fds.first()
            {
                // SAFETY: the kernel just installed this fd in our table for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        Err(io::Error::other(
            "the bottled process sent no seccomp listener",
        ))
    }
}

/// In the child, last before exec (needs no_new_privs): install the filter and send the
/// listener to the agent.
pub fn install_in_child(channel_child: RawFd) -> io::Result<()> {
    let prog = filter();
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut _,
    };
    // SAFETY: fprog points at `prog`, alive for the call; seccomp copies the program.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &fprog as *const libc::sock_fprog,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = fd as RawFd;
    let fds = [fd];
    let iov = [IoSlice::new(b"L")];
    sendmsg::<()>(
        channel_child,
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )?;
    // SAFETY: fd is ours; the agent has its own copy now.
    unsafe { libc::close(fd) };
    Ok(())
}

/// Answers the notifications: audit, then EPERM.
pub struct SocketAuditor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SocketAuditor {
    pub fn start(listener: OwnedFd, bottle: String, sink: Arc<Mutex<AuditSink>>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("cork-seccomp".into())
            .spawn(move || serve(&listener, &bottle, &sink, &stop2))
            .expect("spawning the seccomp thread");
        SocketAuditor {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SocketAuditor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(listener: &OwnedFd, bottle: &str, sink: &Mutex<AuditSink>, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                tracing::error!("polling the seccomp listener: {e}");
                return;
            }
            Ok(_) => {}
        }
        let revents = fds[0].revents().unwrap_or(PollFlags::empty());
        if revents.contains(PollFlags::POLLIN) {
            answer_one(listener, bottle, sink);
        } else if revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
            return; // no process of the bottle is left
        }
    }
}

fn answer_one(listener: &OwnedFd, bottle: &str, sink: &Mutex<AuditSink>) {
    // SAFETY: all-zero is a valid seccomp_notif, and the kernel requires a zeroed buffer.
    let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: req is a valid seccomp_notif for the kernel to fill.
    if unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            &mut req,
        )
    } < 0
    {
        return; // the caller was killed meanwhile (ENOENT)
    }
    let [family, ty, proto, ..] = req.data.args;
    let (reason, proto_name) = if family == libc::AF_PACKET as u64 {
        ("packet_socket", "packet".to_string())
    } else if ty & 0xf == libc::SOCK_RAW as u64 {
        ("raw_socket", "raw".to_string())
    } else if proto == libc::IPPROTO_ICMPV6 as u64 {
        ("icmp_socket", "icmpv6".to_string())
    } else {
        ("icmp_socket", "icmp".to_string())
    };
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", req.pid))
        .ok()
        .map(|c| c.trim_end().to_string());
    let resp = libc::seccomp_notif_resp {
        id: req.id,
        val: 0,
        error: -libc::EPERM,
        flags: 0,
    };
    // SAFETY: resp is a valid seccomp_notif_resp.
    unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &resp) };
    let ev = VerdictEvent {
        head: audit::EventHead::now(bottle, "kernel", "verdict"),
        hook: "socket",
        verdict: "deny",
        reason,
        rule: None,
        proto: proto_name,
        src: None,
        sport: None,
        dst: None,
        dport: None,
        domain: None,
        pid: Some(req.pid),
        comm,
        cgroup_id: 0,
        cookie: 0,
        count: None,
    };
    let mut sink = sink.lock().unwrap_or_else(|p| p.into_inner());
    if let Err(e) = sink.write(&ev).and_then(|()| sink.flush()) {
        tracing::error!("{e:#}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_jump_lands_inside_the_program() {
        let prog = filter();
        for (i, ins) in prog.iter().enumerate() {
            if ins.code as u32 & 0x07 == libc::BPF_JMP {
                assert!(i + 1 + (ins.jt as usize) < prog.len(), "jt of {i}");
                assert!(i + 1 + (ins.jf as usize) < prog.len(), "jf of {i}");
            }
        }
        let last = prog.last().unwrap();
        assert_eq!(last.k, libc::SECCOMP_RET_USER_NOTIF);
    }
}
