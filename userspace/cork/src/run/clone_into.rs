//! Starting the bottle's init with `clone3(CLONE_INTO_CGROUP | CLONE_NEWPID)`: the process
//! is born in the bottle's cgroup and as PID 1 of a new PID namespace, instead of being
//! forked outside and then writing itself into `cgroup.procs`. Moving a process between
//! cgroups takes the kernel's cgroup-wide thread-group lock for writing, which waits for
//! an RCU grace period whenever no migration happened lately: 10-16 ms on the development
//! VM for a `cork exec` after a pause, while a process born in the cgroup only takes the
//! lock for reading. It also means the process never runs a single instruction outside
//! the bottle.
//!
//! This does what std's `Command::spawn` did for the command, the same way: the signal
//! mask emptied and SIGPIPE back to its default in the child, the set-up closure (the
//! child's hardening, which forks the command's process and stays as the init), then
//! `execvp` with the command's environment as `environ` (so `PATH` is looked up as the
//! command will see it), and an exec-error pipe (close-on-exec) on which the child reports
//! a failed step or exec as an errno — so a missing command is still `NotFound` (exit
//! 127) and an unexecutable one `PermissionDenied` (126). The pipe reads empty once the
//! command has exec'd and the init has closed its copy.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;

/// `CLONE_INTO_CGROUP` (linux/sched.h, since 5.7): `cgroup` in [`CloneArgs`] is a
/// descriptor of the cgroup directory the child is born in.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` (linux/sched.h), as far as `cgroup` (`CLONE_ARGS_SIZE_VER2`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// The command's environment, built as std builds a changed one: the caller's variables,
/// with `changes` applied in order (`None` removes), sorted by name.
pub fn environment(changes: &[(OsString, Option<OsString>)]) -> BTreeMap<OsString, OsString> {
    let mut env: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
    for (name, value) in changes {
        match value {
            Some(v) => env.insert(name.clone(), v.clone()),
            None => env.remove(name),
        };
    }
    env
}

/// The bottle's init, started.
#[derive(Debug)]
pub struct Process {
    pid: libc::pid_t,
    status: Option<ExitStatus>,
}

impl Process {
    pub fn id(&self) -> u32 {
        self.pid.unsigned_abs()
    }

    /// SIGKILL, unless it was already reaped.
    pub fn kill(&mut self) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        // SAFETY: kill(2) on the pid of a child not yet reaped: it cannot have been reused.
        if unsafe { libc::kill(self.pid, libc::SIGKILL) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits for it to end (once; later calls return the same status).
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let mut raw: libc::c_int = 0;
        loop {
            // SAFETY: waitpid writes the status we own.
            if unsafe { libc::waitpid(self.pid, &mut raw, 0) } >= 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        let status = ExitStatus::from_raw(raw);
        self.status = Some(status);
        Ok(status)
    }
}

/// What the child runs, all prepared before the clone (nothing is allocated for the
/// command after it).
pub struct Spawn<'a> {
    /// The bottle's cgroup directory.
    pub cgroup: &'a Path,
    pub program: &'a OsStr,
    pub args: &'a [OsString],
    pub env: &'a BTreeMap<OsString, OsString>,
    /// The set-up between clone and exec; returns only in the process that execs.
    pub setup: &'a dyn Fn() -> io::Result<()>,
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// Starts the child in the bottle's cgroup and a new PID namespace, runs `setup` and
/// execs the program. The caller must have no other threads (as for a fork).
pub fn spawn(s: &Spawn<'_>) -> io::Result<Process> {
    let program = cstring(s.program)?;
    let mut argv_owned = vec![program.clone()];
    for a in s.args {
        argv_owned.push(cstring(a)?);
    }
    let mut argv: Vec<*const libc::c_char> = argv_owned.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let env_owned = s
        .env
        .iter()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
        })
        .collect::<io::Result<Vec<CString>>>()?;
    let mut envp: Vec<*const libc::c_char> = env_owned.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());

    let cgroup = File::open(s.cgroup)?;
    let (read_end, write_end) = pipe()?;
    let mut args = CloneArgs {
        flags: CLONE_INTO_CGROUP | libc::CLONE_NEWPID as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd().unsigned_abs().into(),
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without CLONE_VM and without a stack is a fork: the child runs on a
    // copy of this (single-threaded) process. `args` outlives the call.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // The child: never returns.
        let err = child(s.setup, &program, &argv, &envp);
        let errno = err.raw_os_error().unwrap_or(libc::EINVAL);
        let bytes = errno.to_be_bytes();
        // SAFETY: write(2) and _exit(2) are async-signal-safe; the pipe's write end is
        // ours. A short write leaves the parent with an unreadable report, which it
        // treats as a failure too.
        unsafe {
            libc::write(write_end.as_raw_fd(), bytes.as_ptr().cast(), bytes.len());
            libc::_exit(1);
        }
    }
    drop(write_end);
    drop(cgroup);
    let mut process = Process {
        pid: libc::pid_t::try_from(pid).map_err(io::Error::other)?,
        status: None,
    };
    let mut report = Vec::new();
    let read = File::from(read_end).read_to_end(&mut report);
    match (read, report.len()) {
        (Ok(_), 0) => Ok(process),
        (read, _) => {
            // The child failed before the command ran: reap it, and say why.
            let _ = process.wait();
            read?;
            let errno: [u8; 4] = report
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| io::Error::other("the bottle's init sent a short error report"))?;
            Err(io::Error::from_raw_os_error(i32::from_be_bytes(errno)))
        }
    }
}

/// The child's part: returns only the error that stopped it.
fn child(
    setup: &dyn Fn() -> io::Result<()>,
    program: &CString,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> io::Error {
    // SAFETY: emptying the signal mask and restoring SIGPIPE's default disposition (Rust
    // ignores it in its own processes) touch only this process, as std does in a child.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0
            || libc::signal(libc::SIGPIPE, libc::SIG_DFL) == libc::SIG_ERR
        {
            return io::Error::last_os_error();
        }
    }
    if let Err(e) = setup() {
        return e;
    }
    unsafe extern "C" {
        static mut environ: *const *const libc::c_char;
    }
    // SAFETY: this process is single-threaded and about to exec: `environ` points at the
    // command's variables, which outlive the exec, so that execvp looks `PATH` up there.
    unsafe {
        environ = envp.as_ptr();
        libc::execvp(program.as_ptr(), argv.as_ptr());
    }
    io::Error::last_os_error()
}

/// A pipe, both ends close-on-exec.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into the array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
