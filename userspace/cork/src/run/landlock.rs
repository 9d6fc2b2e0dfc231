//! A Landlock domain for the bottled command (Documentation/userspace-api/landlock.rst):
//! a sandboxed process may not ptrace — nor reach through `/proc/PID/{root,cwd,fd,environ}`
//! — any process outside its domain. The bottle's PID namespace (clone_into.rs) already leaves
//! no host process with a pid the bottle could name; the domain is the wall behind it, for
//! a process that enters the namespace later from outside (nsenter): one of CMD's user
//! would be a window onto the host's file system with no mask in it (ptrace_may_access:
//! same uid, no more capabilities, dumpable).
//!
//! The ruleset handles no file system or network right — a domain that handled a file
//! system right would also refuse every mount, and with it the namespaces of sandboxes an
//! agent runs inside the bottle (bubblewrap) — only the signal scope (ABI 6, Linux 6.12):
//! the command cannot signal processes outside its bottle either.
//!
//! The ruleset is created before fork; the child only calls landlock_restrict_self, which
//! needs no_new_privs (set just before). A kernel without Landlock ABI 6 runs the command
//! without it, and `cork run` says so.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// LANDLOCK_CREATE_RULESET_VERSION (uapi linux/landlock.h).
const CREATE_RULESET_VERSION: libc::c_uint = 1 << 0;
/// LANDLOCK_SCOPE_SIGNAL (ABI 6).
const SCOPE_SIGNAL: u64 = 1 << 1;
/// The first ABI with scopes.
const SCOPED_ABI: libc::c_long = 6;

/// `struct landlock_ruleset_attr` as of ABI 6.
#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

pub struct Domain {
    ruleset: Option<OwnedFd>,
}

impl Domain {
    /// Creates the ruleset; none when this kernel has no Landlock ABI 6.
    pub fn prepare() -> io::Result<Self> {
        // SAFETY: the version query takes no attribute pointer.
        let abi = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<RulesetAttr>(),
                0usize,
                CREATE_RULESET_VERSION,
            )
        };
        if abi < SCOPED_ABI {
            let why = if abi < 0 {
                let e = io::Error::last_os_error();
                if !matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EOPNOTSUPP)) {
                    return Err(e);
                }
                "no Landlock".to_owned()
            } else {
                format!("Landlock ABI {abi}, not {SCOPED_ABI}")
            };
            tracing::warn!(
                "this kernel has {why}: a process that joins the bottle's PID namespace \
                 from outside can be signalled and, if of the bottle's user (and no more \
                 capabilities), traced by the bottle"
            );
            return Ok(Domain { ruleset: None });
        }
        let attr = RulesetAttr {
            handled_access_fs: 0,
            handled_access_net: 0,
            scoped: SCOPE_SIGNAL,
        };
        // SAFETY: a valid attribute struct and its size; the kernel returns a new
        // descriptor (close-on-exec) or -1.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &attr as *const RulesetAttr,
                std::mem::size_of::<RulesetAttr>(),
                0 as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the descriptor was just created and is owned by nothing else.
        let ruleset = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        Ok(Domain {
            ruleset: Some(ruleset),
        })
    }

    /// Runs in the child after no_new_privs: enters the domain.
    pub fn apply(&self) -> io::Result<()> {
        let Some(ruleset) = &self.ruleset else {
            return Ok(());
        };
        // SAFETY: landlock_restrict_self with a ruleset descriptor and no flags.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_landlock_restrict_self,
                ruleset.as_raw_fd(),
                0 as libc::c_uint,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
