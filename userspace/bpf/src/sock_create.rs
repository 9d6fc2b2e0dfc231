//! Loader side of `ebpf/sock_create.bpf.c` (cgroup/sock_create): tags sockets created in
//! the bottle and refuses raw and other non-TCP/UDP inet sockets. Loaded first: its
//! object creates and pins the maps every other object reuses.

use aya::programs::links::FdLink;
use aya::programs::{CgroupAttachMode, CgroupSock, Program};

use crate::BpfError;
use crate::attach::{ObjectSpec, attach_link, cgroup_of};
use crate::query::AttachType;
use crate::target::OpenTarget;

pub(crate) const OBJECT: ObjectSpec = ObjectSpec {
    name: "sock_create",
    bytes: aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sock_create.bpf.o")),
    programs: &[("cork_sock_create", AttachType::SockCreate)],
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
        CgroupSock,
        cgroup,
        CgroupAttachMode::Single
    ))
}
