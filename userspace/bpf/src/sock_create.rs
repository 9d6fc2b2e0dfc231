//! Loader side of `ebpf/sock_create.bpf.c` (cgroup/sock_create, cgroup/post_bind4|6): tags
//! the bottle's sockets and refuses raw and other non-TCP/UDP inet sockets. Loaded first: its
//! object creates and pins the maps every other object reuses.

use aya::programs::CgroupSock;

use crate::attach::{ObjectSpec, cgroup_attach};
use crate::query::AttachType;

pub(crate) const OBJECT: ObjectSpec = ObjectSpec {
    name: "sock_create",
    bytes: aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sock_create.bpf.o")),
    programs: &[
        ("cork_sock_create", AttachType::SockCreate),
        ("cork_post_bind4", AttachType::PostBind4),
        ("cork_post_bind6", AttachType::PostBind6),
    ],
    attach: cgroup_attach!(CgroupSock),
};
