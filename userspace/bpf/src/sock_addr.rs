//! Loader side of `ebpf/sock_addr.bpf.c` (cgroup/connect, sendmsg, recvmsg, getpeername,
//! v4 and v6): judges every connect and datagram, redirects DNS and inspected flows to the
//! bottle's proxies, and restores original addresses for the bottle's view.

use aya::programs::CgroupSockAddr;

use crate::attach::{ObjectSpec, cgroup_attach};
use crate::query::AttachType;

pub(crate) const OBJECT: ObjectSpec = ObjectSpec {
    name: "sock_addr",
    bytes: aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sock_addr.bpf.o")),
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
    attach: cgroup_attach!(CgroupSockAddr),
};
