//! Loader side of `ebpf/skb.bpf.c` (cgroup_skb/egress): the packet-level backstop behind
//! the socket hooks.

use aya::programs::{CgroupSkb, CgroupSkbAttachType};

use crate::attach::{ObjectSpec, cgroup_attach};
use crate::query::AttachType;

/// The object's bytes, also run without attaching by [`crate::test_run`].
pub(crate) const BYTES: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/skb.bpf.o"));

pub(crate) const OBJECT: ObjectSpec = ObjectSpec {
    name: "skb",
    bytes: BYTES,
    programs: &[("cork_skb_egress", AttachType::SkbEgress)],
    attach: cgroup_attach!(CgroupSkb, CgroupSkbAttachType::Egress),
};
