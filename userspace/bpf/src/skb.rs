//! Loader side of `ebpf/skb.bpf.c` (cgroup_skb/egress): the packet-level backstop behind
//! the socket hooks.

use aya::programs::links::FdLink;
use aya::programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, Program};

use crate::BpfError;
use crate::attach::{ObjectSpec, attach_link, cgroup_of};
use crate::query::AttachType;
use crate::target::OpenTarget;

/// The object's bytes, also run without attaching by [`crate::test_run`].
pub(crate) const BYTES: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/skb.bpf.o"));

pub(crate) const OBJECT: ObjectSpec = ObjectSpec {
    name: "skb",
    bytes: BYTES,
    programs: &[("cork_skb_egress", AttachType::SkbEgress)],
    attach,
};

fn attach(
    prog: &mut Program,
    _attach: AttachType,
    target: &OpenTarget,
    program: &'static str,
) -> Result<FdLink, BpfError> {
    let cgroup = cgroup_of(target, program)?;
    Ok(attach_link!(
        prog,
        program,
        CgroupSkb,
        cgroup,
        CgroupSkbAttachType::Egress,
        CgroupAttachMode::Single
    ))
}
