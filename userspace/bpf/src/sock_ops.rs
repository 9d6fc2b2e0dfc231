//! Loader side of `ebpf/sock_ops.bpf.c` (sockops): publishes where each connection that
//! was redirected to the inspecting proxy was going, keyed by the client's address.

use aya::programs::SockOps;

use crate::attach::{ObjectSpec, cgroup_attach};
use crate::query::AttachType;

pub(crate) const OBJECT: ObjectSpec = ObjectSpec {
    name: "sock_ops",
    bytes: aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sock_ops.bpf.o")),
    programs: &[("cork_sock_ops", AttachType::SockOps)],
    attach: cgroup_attach!(SockOps),
};
