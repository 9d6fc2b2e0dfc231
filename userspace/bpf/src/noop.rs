//! The benchmark's floor: `ebpf/noop.bpf.c`, a program per hook that lets everything
//! through, attached to a cgroup of the benchmark's own. What a connect costs under it is
//! what cgroup BPF costs before anything is decided; cork's programs are measured
//! against it (`cork-bench`, kernel section). Never attached to a bottle.

use std::fs::File;
use std::path::Path;

use aya::Ebpf;
use aya::programs::{
    CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr, SockOps,
};

use crate::BpfError;
use crate::attach::program_err;

const OBJECT: &str = "noop";
const BYTES: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/noop.bpf.o"));

/// The no-op programs attached to one cgroup; dropping this detaches them.
pub struct NoopPrograms {
    _object: Ebpf,
}

/// The type-checked program `name` of `object`, loaded.
macro_rules! loaded {
    ($object:expr, $name:expr, $ty:ty) => {{
        let p: &mut $ty = $object
            .program_mut($name)
            .ok_or(BpfError::MissingProgram {
                object: OBJECT,
                program: $name,
            })?
            .try_into()
            .map_err(program_err($name, "type check"))?;
        p.load().map_err(program_err($name, "load"))?;
        p
    }};
}

impl NoopPrograms {
    /// Loads the no-op object and attaches each of its programs to the cgroup at `cgroup`.
    pub fn attach(cgroup: &Path) -> Result<Self, BpfError> {
        let cg = File::open(cgroup).map_err(|source| BpfError::Cgroup {
            path: cgroup.to_path_buf(),
            source,
        })?;
        let mut object = Ebpf::load(BYTES).map_err(|source| BpfError::LoadObject {
            object: OBJECT,
            source,
        })?;
        let mode = CgroupAttachMode::Single;
        let attach = |name| program_err(name, "attach");
        loaded!(object, "noop_sock_create", CgroupSock)
            .attach(&cg, mode)
            .map_err(attach("noop_sock_create"))?;
        for name in ["noop_connect4", "noop_connect6"] {
            loaded!(object, name, CgroupSockAddr)
                .attach(&cg, mode)
                .map_err(attach(name))?;
        }
        loaded!(object, "noop_skb_egress", CgroupSkb)
            .attach(&cg, CgroupSkbAttachType::Egress, mode)
            .map_err(attach("noop_skb_egress"))?;
        loaded!(object, "noop_sock_ops", SockOps)
            .attach(&cg, mode)
            .map_err(attach("noop_sock_ops"))?;
        Ok(NoopPrograms { _object: object })
    }
}
