//! Loader side of `ebpf/sock_ops.bpf.c` (sockops): publishes where each connection that
//! was redirected to the inspecting proxy was going, keyed by the client's address.

use aya::programs::links::FdLink;
use aya::programs::{CgroupAttachMode, Program, SockOps};

use crate::BpfError;
use crate::attach::{ObjectSpec, attach_link, cgroup_of};
use crate::query::AttachType;
use crate::target::OpenTarget;

pub(crate) const OBJECT: ObjectSpec = ObjectSpec {
    name: "sock_ops",
    bytes: aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sock_ops.bpf.o")),
    programs: &[("cork_sock_ops", AttachType::SockOps)],
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
        SockOps,
        cgroup,
        CgroupAttachMode::Single
    ))
}
