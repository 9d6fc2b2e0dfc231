//! The netlink conversation with nf_tables: send a finalized batch and collect every
//! acknowledgement and error, and run a dump (tables, chains, rules of one table).
//!
//! The kernel processes a batch synchronously inside `sendto` (nfnetlink runs in the
//! sender's context) and queues one reply per message before the call returns, so after
//! sending, the replies are drained without blocking: a batch can never hang cork.

use std::io;
use std::os::fd::AsRawFd;

use nftnl::FinalizedBatch;
use nftnl::nftnl_sys as sys;

use crate::sys::FAMILY;

/// `NLMSG_ERROR` / `NLMSG_DONE` (linux/netlink.h).
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// `NLM_F_DUMP_INTR`: the dump was interrupted by a change (linux/netlink.h).
const NLM_F_DUMP_INTR: u16 = 0x10;
/// Size of `struct nlmsghdr`.
const HDR: usize = 16;

/// A netfilter netlink socket of the calling thread's network namespace.
pub(crate) struct Socket {
    inner: mnl::Socket,
    seq: u32,
}

/// A reply to one message of a batch.
pub(crate) struct Reply {
    pub seq: u32,
    /// 0 for an acknowledgement, else the errno.
    pub errno: i32,
}

impl Socket {
    pub(crate) fn open() -> io::Result<Socket> {
        let inner = mnl::Socket::new(mnl::Bus::Netfilter)?;
        // Distinct sequence numbers per socket keep a stale reply from matching.
        let seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() | 1)
            .unwrap_or(1);
        Ok(Socket { inner, seq })
    }

    /// Sends `batch` (all pages in one datagram: the kernel needs begin and end in one
    /// skb) and returns every reply it caused.
    pub(crate) fn send_batch(&mut self, batch: &FinalizedBatch) -> io::Result<Vec<Reply>> {
        let bytes: Vec<u8> = batch.iter().flatten().copied().collect();
        let replies_expected = batch.sequence_numbers().len();
        self.size_buffers(bytes.len(), replies_expected)?;
        let sent = self.inner.send(&bytes)?;
        if sent != bytes.len() {
            return Err(io::Error::other(format!(
                "sent {sent} of {} batch bytes",
                bytes.len()
            )));
        }
        let mut replies = Vec::new();
        let mut buf = AlignedBuf::new();
        loop {
            match recv(&self.inner, &mut buf, libc::MSG_DONTWAIT) {
                Ok(n) => {
                    for msg in messages(buf.bytes(n))? {
                        if let Some(errno) = error_of(msg) {
                            replies.push(Reply {
                                seq: seq_of(msg),
                                errno,
                            });
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(replies),
                Err(e) => return Err(e),
            }
        }
    }

    /// Makes room for a batch of `len` bytes (netlink refuses a datagram larger than the
    /// send buffer: EMSGSIZE) and for its `replies` acknowledgements, all queued before
    /// `sendto` returns (a full receive buffer would drop some: ENOBUFS). The FORCE
    /// options (CAP_NET_ADMIN, which changing nftables needs anyway) pass the
    /// net.core.*mem_max caps, as nft does; acks carry no copy of the request
    /// (NETLINK_CAP_ACK).
    fn size_buffers(&self, len: usize, replies: usize) -> io::Result<()> {
        let fd = self.inner.as_raw_fd();
        let set = |level: libc::c_int, name: libc::c_int, value: usize| {
            let v = libc::c_int::try_from(value).unwrap_or(libc::c_int::MAX);
            // SAFETY: passes a valid c_int and its size to setsockopt on our own fd.
            let rc = unsafe {
                libc::setsockopt(
                    fd,
                    level,
                    name,
                    (&v as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        };
        set(libc::SOL_NETLINK, libc::NETLINK_CAP_ACK, 1)?;
        // An ack's skb costs well under 1 KiB of receive buffer; 2 KiB leaves slack.
        for (force, plain, want) in [
            (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, len + 64 * 1024),
            (
                libc::SO_RCVBUFFORCE,
                libc::SO_RCVBUF,
                replies * 2048 + 64 * 1024,
            ),
        ] {
            if set(libc::SOL_SOCKET, force, want).is_err() {
                set(libc::SOL_SOCKET, plain, want)?;
            }
        }
        Ok(())
    }

    /// Dumps the inet objects of `msg_type` (NFT_MSG_GETTABLE/GETCHAIN/GETRULE); rules
    /// only of `table`. Returns each reply message's bytes. A dump the kernel marks as
    /// interrupted (the ruleset changed while it was being listed: another process
    /// committed a batch) is inconsistent and is run again.
    pub(crate) fn dump(
        &mut self,
        msg_type: libc::c_int,
        table: &std::ffi::CStr,
    ) -> io::Result<Vec<Vec<u8>>> {
        for _ in 0..16 {
            let (out, interrupted) = self.dump_once(msg_type, table)?;
            if !interrupted {
                return Ok(out);
            }
        }
        Err(io::Error::other(
            "the ruleset kept changing while it was being listed (16 interrupted dumps)",
        ))
    }

    fn dump_once(
        &mut self,
        msg_type: libc::c_int,
        table: &std::ffi::CStr,
    ) -> io::Result<(Vec<Vec<u8>>, bool)> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut req = AlignedBuf::new();
        let flags = (libc::NLM_F_DUMP | libc::NLM_F_ACK) as u16;
        // SAFETY: `req` is far larger than one request header plus a table-name
        // attribute; the build functions write within it.
        let len = unsafe {
            let hdr = sys::nftnl_nlmsg_build_hdr(req.ptr(), msg_type as u16, FAMILY, flags, seq);
            if msg_type == libc::NFT_MSG_GETRULE {
                // The kernel lists only this table's rules (it has no such filter for
                // tables and chains: those are filtered by the caller).
                crate::sys::Rule::table_filter(table).build_payload(hdr);
            }
            (*hdr).nlmsg_len as usize
        };
        self.inner.send(req.bytes(len))?;
        let mut out = Vec::new();
        let mut interrupted = false;
        let mut buf = AlignedBuf::new();
        loop {
            let n = recv(&self.inner, &mut buf, 0)?;
            for msg in messages(buf.bytes(n))? {
                if seq_of(msg) != seq {
                    continue;
                }
                interrupted |= flags_of(msg) & NLM_F_DUMP_INTR != 0;
                match type_of(msg) {
                    NLMSG_DONE => return Ok((out, interrupted)),
                    NLMSG_ERROR => match error_of(msg) {
                        Some(0) | None => {}
                        Some(errno) => return Err(io::Error::from_raw_os_error(errno)),
                    },
                    _ => out.push(msg.to_vec()),
                }
            }
        }
    }
}

/// A receive buffer aligned for `nlmsghdr` (u64 words).
struct AlignedBuf(Vec<u64>);

impl AlignedBuf {
    fn new() -> Self {
        AlignedBuf(vec![0u64; 32 * 1024])
    }

    fn ptr(&mut self) -> *mut libc::c_char {
        self.0.as_mut_ptr().cast()
    }

    fn len(&self) -> usize {
        self.0.len() * 8
    }

    fn bytes(&self, n: usize) -> &[u8] {
        let n = n.min(self.len());
        // SAFETY: the Vec's allocation is `len()` initialised bytes; `n` is within it.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast::<u8>(), n) }
    }
}

fn recv(sock: &mnl::Socket, buf: &mut AlignedBuf, flags: libc::c_int) -> io::Result<usize> {
    let len = buf.len();
    // SAFETY: the buffer is writable for `len` bytes; the fd is the socket's own.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.ptr().cast(), len, flags) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Splits a datagram into its netlink messages (each aligned to 4 bytes).
fn messages(mut data: &[u8]) -> io::Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    while data.len() >= HDR {
        let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
        if len < HDR || len > data.len() {
            return Err(io::Error::other(format!(
                "malformed netlink message length {len}"
            )));
        }
        out.push(&data[..len]);
        let next = ((len + 3) & !3usize).min(data.len());
        data = &data[next..];
    }
    Ok(out)
}

fn type_of(msg: &[u8]) -> u16 {
    u16::from_ne_bytes([msg[4], msg[5]])
}

fn flags_of(msg: &[u8]) -> u16 {
    u16::from_ne_bytes([msg[6], msg[7]])
}

fn seq_of(msg: &[u8]) -> u32 {
    u32::from_ne_bytes([msg[8], msg[9], msg[10], msg[11]])
}

/// For an NLMSG_ERROR message, the (positive) errno, 0 for an acknowledgement.
fn error_of(msg: &[u8]) -> Option<i32> {
    if type_of(msg) != NLMSG_ERROR || msg.len() < HDR + 4 {
        return None;
    }
    let e = i32::from_ne_bytes([msg[HDR], msg[HDR + 1], msg[HDR + 2], msg[HDR + 3]]);
    Some(-e)
}
