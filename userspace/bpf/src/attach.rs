//! The steps every program goes through, whatever its hook, once loaded: attach as a bpf link,
//! take the link out of aya's table (so dropping the object does not detach it), pin it
//! in the bottle's pin directory, and note the program id for verification. Each hook
//! family's module supplies only how its program type attaches.

use std::path::Path;

use aya::Ebpf;
use aya::programs::links::FdLink;
use aya::programs::{Program, ProgramError};

use crate::query::AttachType;
use crate::target::OpenTarget;
use crate::{Attachment, BpfError};

/// One eBPF object: its bytes, its programs and how each attaches.
pub(crate) struct ObjectSpec {
    pub name: &'static str,
    pub bytes: &'static [u8],
    pub programs: &'static [(&'static str, AttachType)],
    /// Attaches one (loaded) program of this object to the target.
    pub attach: fn(&mut Program, &OpenTarget, &'static str) -> Result<FdLink, BpfError>,
}

/// The error for `operation` on `program`.
pub(crate) fn program_err(
    program: &'static str,
    operation: &'static str,
) -> impl Fn(ProgramError) -> BpfError {
    move |source| BpfError::Program {
        program,
        operation,
        source,
    }
}

/// The cgroup fd of a target, or the error that this hook attaches only to cgroups.
pub(crate) fn cgroup_of<'t>(
    target: &'t OpenTarget,
    program: &'static str,
) -> Result<&'t std::fs::File, BpfError> {
    target.cgroup().ok_or(BpfError::WrongTarget {
        program,
        wants: "a cgroup",
    })
}

/// Attaches an already loaded program (see [`crate::load`]) as a bpf link and takes the
/// link out of aya's table: the same steps for each program type, `$ty` being the aya
/// program type.
macro_rules! attach_link {
    ($prog:expr, $program:expr, $ty:ty, $($attach_arg:expr),+) => {{
        let err = $crate::attach::program_err;
        let p: &mut $ty = $prog.try_into().map_err(err($program, "type check"))?;
        let id = p.attach($($attach_arg),+).map_err(err($program, "attach"))?;
        let link = p.take_link(id).map_err(err($program, "take link"))?;
        aya::programs::links::FdLink::try_from(link)
            .map_err(|source| $crate::BpfError::Link { program: $program, source })?
    }};
}
pub(crate) use attach_link;

/// The `attach` of an object whose programs attach to the target's cgroup as aya's `$ty`,
/// with `$arg`s between the cgroup and the attach mode (every cgroup hook attaches the
/// same way; only the program type and its extra arguments differ).
macro_rules! cgroup_attach {
    ($ty:ty $(, $arg:expr)*) => {
        |prog, target, program| {
            let cgroup = $crate::attach::cgroup_of(target, program)?;
            Ok($crate::attach::attach_link!(
                prog,
                program,
                $ty,
                cgroup
                $(, $arg)*,
                aya::programs::CgroupAttachMode::Single
            ))
        }
    };
}
pub(crate) use cgroup_attach;

/// Attaches `program` of `spec` (loaded already) to `target` and pins its link in
/// `pin_dir`.
pub(crate) fn attach_one(
    ebpf: &mut Ebpf,
    spec: &ObjectSpec,
    program: &'static str,
    attach: AttachType,
    target: &OpenTarget,
    pin_dir: &Path,
) -> Result<Attachment, BpfError> {
    let object = spec.name;
    let prog = ebpf
        .program_mut(program)
        .ok_or(BpfError::MissingProgram { object, program })?;
    let fd_link = (spec.attach)(prog, target, program)?;
    let prog = ebpf
        .program(program)
        .ok_or(BpfError::MissingProgram { object, program })?;
    let prog_id = prog.info().map_err(program_err(program, "info"))?.id();
    let path = pin_dir.join(format!("link_{program}"));
    let link = fd_link.pin(&path).map_err(|source| BpfError::PinLink {
        program,
        path: path.clone(),
        source,
    })?;
    Ok(Attachment {
        program,
        attach,
        prog_id,
        link: Some(link),
    })
}
