//! Loading a bottle's programs into the kernel, several at once. `BPF_PROG_LOAD` runs the
//! verifier in the calling thread (kernel/bpf/verifier.c, `bpf_check`; privileged loads
//! take no global lock), and the verifier is most of a bottle's start: its five large
//! programs take ~35 ms each on this machine. So the loads are spread over worker threads,
//! one per CPU, before anything is attached; attaching stays one program at a time, in
//! order, on the caller's thread.
//!
//! Nothing here changes what is loaded or how: each program goes through the same load
//! (aya's, or [`crate::direct`]'s for the unix hooks) with the same verifier log on a
//! refusal. When any load fails, the first failure in program order is returned and the
//! caller drops everything (a loaded program attached nowhere enforces nothing and goes
//! with its fd). The workers are joined before this returns: `cork run` forks its command
//! after enforcement and must have no other threads then.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use aya::programs::{Program, ProgramError};
use aya::{Btf, Ebpf, EbpfLoader};

use crate::attach::{ObjectSpec, program_err};
use crate::{BpfError, unix};

/// More workers than this would only queue in the kernel on a small machine's CPUs, and
/// a bottle has only five large programs.
const MAX_WORKERS: usize = 4;

/// What the unix hooks' loader needs (their object is loaded outside aya).
/// The kernel's BTF and a loader. Parsing the BTF (~15 ms) is the loader's main cost, and
/// aya 0.14's `EbpfLoader::new` always parses a copy of its own that cannot be taken out
/// of it: so one loader serves every object, and the copy returned here (for the unix
/// object and as the one aya relocates against) is parsed meanwhile on another CPU.
pub(crate) fn btf_and_loader() -> Result<(Btf, EbpfLoader<'static>), BpfError> {
    let (btf, loader) = std::thread::scope(|s| {
        let ours = s.spawn(Btf::from_sys_fs);
        let loader = EbpfLoader::new();
        let btf = ours.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        (btf, loader)
    });
    Ok((btf.map_err(BpfError::Btf)?, loader))
}

pub(crate) struct UnixLoad<'a> {
    pub btf: &'a Btf,
    pub pin_dir: &'a Path,
}

/// One unit of work for a worker.
enum Job<'a> {
    /// One program of an aya object.
    Aya {
        program: &'static str,
        prog: &'a mut Program,
    },
    /// The unix object: relocated against the pinned maps, both programs loaded.
    Unix(UnixLoad<'a>),
}

/// What a finished job hands back.
enum Done {
    Aya,
    Unix(unix::Loaded),
}

/// Loads every program `specs` names from `objects` (the same order: `objects[i]` was
/// loaded from `specs[i]`), and the unix programs when `unix` is given. Returns the loaded
/// unix programs (attached nowhere yet); the aya programs stay in their objects, loaded.
pub(crate) fn load_all(
    objects: &mut [Ebpf],
    specs: &[&ObjectSpec],
    unix: Option<UnixLoad<'_>>,
) -> Result<Option<unix::Loaded>, BpfError> {
    let mut jobs = Vec::new();
    for (spec, ebpf) in specs.iter().zip(objects.iter_mut()) {
        // Only the programs the spec attaches, in the spec's order.
        let mut progs: Vec<(&str, &mut Program)> = ebpf.programs_mut().collect();
        for &(program, _) in spec.programs {
            let at = progs.iter().position(|(name, _)| *name == program).ok_or(
                BpfError::MissingProgram {
                    object: spec.name,
                    program,
                },
            )?;
            let (_, prog) = progs.swap_remove(at);
            jobs.push(Job::Aya { program, prog });
        }
    }
    if let Some(u) = unix {
        jobs.push(Job::Unix(u));
    }
    let workers = std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .clamp(1, MAX_WORKERS)
        .min(jobs.len());
    let queue = Mutex::new(jobs.into_iter().enumerate().collect::<VecDeque<_>>());
    // After a failure the remaining jobs are skipped: the bottle will not start anyway.
    let failed = AtomicBool::new(false);
    let mut results: Vec<(usize, Result<Done, BpfError>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    while !failed.load(Ordering::Relaxed) {
                        let next = queue
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .pop_front();
                        let Some((i, job)) = next else { break };
                        let result = run(job);
                        if result.is_err() {
                            failed.store(true, Ordering::Relaxed);
                        }
                        done.push((i, result));
                    }
                    done
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    let mut loaded_unix = None;
    for (_, result) in results {
        if let Done::Unix(u) = result? {
            loaded_unix = Some(u);
        }
    }
    Ok(loaded_unix)
}

fn run(job: Job<'_>) -> Result<Done, BpfError> {
    match job {
        Job::Aya { program, prog } => {
            load_program(prog, program)?;
            Ok(Done::Aya)
        }
        Job::Unix(u) => Ok(Done::Unix(unix::load_all(u.btf, u.pin_dir)?)),
    }
}

/// Loads one aya program of a type cork attaches (each type has its own `load`).
pub(crate) fn load_program(prog: &mut Program, program: &'static str) -> Result<(), BpfError> {
    match prog {
        Program::CgroupSock(p) => p.load(),
        Program::CgroupSockAddr(p) => p.load(),
        Program::CgroupSkb(p) => p.load(),
        Program::SockOps(p) => p.load(),
        Program::SchedClassifier(p) => p.load(),
        _ => Err(ProgramError::UnexpectedProgramType),
    }
    .map_err(program_err(program, "load"))
}
