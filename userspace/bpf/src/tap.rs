//! Loader side of `ebpf/tap.bpf.c` (tc ingress through a tcx link): judges every frame a
//! VM bottle's guest sends on its tap and marks what it lets through for the bottle's
//! nftables chains.

use aya::programs::links::FdLink;
use aya::programs::{Program, SchedClassifier, TcAttachType};

use crate::BpfError;
use crate::attach::{ObjectSpec, attach_link};
use crate::query::AttachType;
use crate::target::OpenTarget;

/// The object's bytes, also run without attaching by [`crate::test_run`].
pub(crate) const BYTES: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tap.bpf.o"));

pub(crate) const PROGRAM: &str = "cork_tap_ingress";

pub(crate) const OBJECT: ObjectSpec = ObjectSpec {
    name: "tap",
    bytes: BYTES,
    programs: &[(PROGRAM, AttachType::TcxIngress)],
    attach,
};

/// On kernels with tcx (6.6+) aya attaches through a bpf link, which is what lets the
/// attachment be pinned and outlive the agent like the cgroup hooks'.
fn attach(
    prog: &mut Program,
    target: &OpenTarget,
    program: &'static str,
) -> Result<FdLink, BpfError> {
    let ifname = target.device().ok_or(BpfError::WrongTarget {
        program,
        wants: "a network device",
    })?;
    Ok(attach_link!(
        prog,
        program,
        SchedClassifier,
        ifname,
        TcAttachType::Ingress
    ))
}
