//! Network probes from inside the bottle: TCP/UDP connects that cork's cgroup hooks must
//! refuse (EPERM) or let out, unix connects to cork's control socket, and the socket(2)
//! calls (raw, ICMP, packet) that must be refused before any socket exists.
//!
//! A refused connect is EPERM from the kernel, before any packet exists: that is the only
//! pass for a deny probe. A timeout means the kernel did not refuse — the SYN left the
//! bottle — so it fails, saying so. In a VM guest (`--guest`) it is the other way round:
//! cork's tap drops denied packets, so a timeout is the pass.

use std::io;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use cork_policy::Proto;

use super::catalogue::Expect;
use super::report::{Outcome, Trace};

/// The errno name of an I/O error (`EPERM`), or its text when it has none.
pub fn errno_name(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => format!("{:?}", nix::errno::Errno::from_raw(n)),
        None if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock => {
            "timeout".to_owned()
        }
        None => e.to_string(),
    }
}

fn is_refusal(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
}

/// connect(2) to `addr`: TCP with a deadline, or a UDP socket's connect (which the hooks
/// judge as they judge its datagrams).
fn connect(addr: SocketAddr, proto: Proto, timeout: Duration, trace: &mut Trace) -> io::Result<()> {
    let started = Instant::now();
    let (call, result) = match proto {
        Proto::Udp => {
            let unspecified: SocketAddr = if addr.is_ipv4() {
                (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let r = UdpSocket::bind(unspecified).and_then(|s| {
                s.connect(addr)?;
                trace.detail(|| format!("UDP local address after connect: {:?}", s.local_addr()));
                Ok(())
            });
            (format!("UDP connect({addr})"), r)
        }
        Proto::Tcp | Proto::Any => {
            let r = TcpStream::connect_timeout(&addr, timeout).map(|s| {
                trace.detail(|| {
                    format!(
                        "TCP connected: local {:?}, peer {:?}",
                        s.local_addr(),
                        s.peer_addr()
                    )
                });
            });
            (
                format!("TCP connect({addr}) with a {timeout:?} deadline"),
                r,
            )
        }
    };
    let took = started.elapsed();
    match &result {
        Ok(()) => trace.step(format!("{call} = ok after {took:?}")),
        Err(e) => trace.step(format!("{call} = {} ({e}) after {took:?}", errno_name(e))),
    }
    result
}

/// A connect probe: refused (EPERM) or not refused by the kernel, as `expect` says.
pub fn connect_probe(
    addr: SocketAddr,
    proto: Proto,
    expect: Expect,
    timeout: Duration,
    trace: &mut Trace,
) -> Outcome {
    let result = connect(addr, proto, timeout, trace);
    let hook = match (addr.is_ipv4(), proto) {
        (true, Proto::Udp) => "connect4 (udp)",
        (false, Proto::Udp) => "connect6 (udp)",
        (true, _) => "connect4",
        (false, _) => "connect6",
    };
    trace.detail(|| {
        format!(
            "cork audits this as a kernel verdict: hook {hook}, dst {}, dport {}",
            addr.ip(),
            addr.port()
        )
    });
    match (expect, result) {
        (Expect::Refused, Err(e)) if is_refusal(&e) => Outcome::pass(errno_name(&e)),
        (Expect::Refused, Ok(())) => Outcome::fail(
            "connected",
            format!(
                "the kernel let the connection to {addr} out: no cork program refused it \
                 (is this process in the bottle's cgroup, are cork's programs attached?)"
            ),
        ),
        (Expect::Refused, Err(e)) if e.kind() == io::ErrorKind::TimedOut => Outcome::fail(
            "timeout",
            "no EPERM: the packet left the bottle (the kernel did not refuse the connect, \
             nothing answered before the deadline)",
        ),
        (Expect::Refused, Err(e)) => {
            let name = errno_name(&e);
            Outcome::fail(
                name.clone(),
                format!(
                    "no EPERM: connect failed with {name} ({e}), so the kernel did not refuse \
                     it for cork — the attempt went past cork's hook"
                ),
            )
        }
        (Expect::NotRefused, Ok(())) => Outcome::pass("connected"),
        (Expect::NotRefused, Err(e)) if is_refusal(&e) => {
            let name = errno_name(&e);
            Outcome::fail(
                name,
                format!(
                    "the kernel refused a destination the manifest allows ({addr}): cork \
                     blocks what it should let through"
                ),
            )
        }
        (Expect::NotRefused, Err(e)) => {
            // Past cork: the network or the other end decided.
            let name = errno_name(&e);
            Outcome::pass(format!(
                "{name}: not refused by the kernel (the attempt left the bottle)"
            ))
        }
        (Expect::Dropped | Expect::Answered, result) => guest_outcome(addr, expect, result),
    }
}

/// From a VM guest, where cork's tap drops what it denies (no RST, no error): denied means
/// a timeout, allowed means an answer — a connection or the other end's refusal.
fn guest_outcome(addr: SocketAddr, expect: Expect, result: io::Result<()>) -> Outcome {
    let timed_out = |e: &io::Error| {
        e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock
    };
    match (expect, result) {
        (Expect::Dropped, Err(e)) if timed_out(&e) => Outcome::pass("timeout (dropped)"),
        (Expect::Dropped, Ok(())) => Outcome::fail(
            "connected",
            format!("the tap let the connection to {addr} through: cork did not drop it"),
        ),
        (Expect::Dropped, Err(e)) => {
            let name = errno_name(&e);
            Outcome::fail(
                name.clone(),
                format!(
                    "{name} ({e}), not a timeout: something answered or refused inside the                      guest, so this does not show that cork's tap drops {addr}"
                ),
            )
        }
        (_, Ok(())) => Outcome::pass("connected"),
        (_, Err(e)) if timed_out(&e) => Outcome::fail(
            "timeout",
            format!(
                "nothing answered {addr} before the deadline: the tap dropped a destination                  the manifest allows (or the far end is down; the audit log says which)"
            ),
        ),
        (_, Err(e)) if e.raw_os_error() == Some(libc::ECONNREFUSED) => Outcome::pass(
            "ECONNREFUSED: the other end answered (the tap let it through)".to_owned(),
        ),
        (_, Err(e)) => {
            let name = errno_name(&e);
            Outcome::fail(
                name.clone(),
                format!(
                    "{name} ({e}): no answer from {addr}, so nothing shows the tap let it through"
                ),
            )
        }
    }
}

/// socket(2) that must be refused.
pub fn socket_probe(
    family: libc::c_int,
    ty: libc::c_int,
    protocol: libc::c_int,
    what: &str,
    trace: &mut Trace,
) -> Outcome {
    // SAFETY: socket(2) with integer arguments; a descriptor it returns is closed below.
    let fd = unsafe { libc::socket(family, ty | libc::SOCK_CLOEXEC, protocol) };
    if fd >= 0 {
        // SAFETY: closing the descriptor socket(2) just returned to us.
        unsafe { libc::close(fd) };
        trace.step(format!("{what} = fd {fd} (closed at once)"));
        return Outcome::fail(
            "socket created",
            format!(
                "{what} succeeded: neither cork's seccomp filter nor a missing capability \
                 refused it, and such a socket bypasses cork's connect/sendmsg hooks"
            ),
        );
    }
    let e = io::Error::last_os_error();
    let name = errno_name(&e);
    trace.step(format!("{what} = {name} ({e})"));
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => Outcome::pass(name),
        Some(libc::ENOSYS) => Outcome::pass(format!(
            "{name}: refused by cork's seccomp filter with nobody answering it (the agent's \
             socket auditor is gone, so this refusal is not audited)"
        )),
        _ => Outcome::fail(
            name.clone(),
            format!(
                "{what} failed with {name}, not EPERM/EACCES: this kernel may lack the \
                 family, so the probe cannot show that cork refuses it"
            ),
        ),
    }
}

/// connect(2) to a unix socket path that must fail with EPERM.
pub fn unix_probe(path: &str, trace: &mut Trace) -> Outcome {
    trace.detail(|| {
        format!(
            "{path} exists on this file system view: {}",
            std::path::Path::new(path).exists()
        )
    });
    match UnixStream::connect(path) {
        Ok(_) => {
            trace.step(format!("connect(AF_UNIX, {path:?}) = ok"));
            Outcome::fail(
                "connected",
                format!(
                    "the bottle reached cork's control socket {path}: the kernel's unix \
                     connect hook did not refuse it"
                ),
            )
        }
        Err(e) => {
            let name = errno_name(&e);
            trace.step(format!("connect(AF_UNIX, {path:?}) = {name} ({e})"));
            if e.raw_os_error() == Some(libc::EPERM) {
                Outcome::pass(name)
            } else {
                Outcome::fail(
                    name.clone(),
                    format!(
                        "connect failed with {name}, not EPERM: cork's unix hook did not \
                         refuse it (nothing listens there now, but a daemon that did would \
                         be reachable)"
                    ),
                )
            }
        }
    }
}
