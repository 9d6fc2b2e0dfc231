//! Mounting a bottle's masks (see `cork_agent::secrets`) in the command's private mount
//! namespace, between fork and exec: every masked file gets an empty read-only file
//! mounted over it, every masked directory an empty read-only directory. A mount covers
//! the path in the mount tree, so every way to it — symlinks, relative paths, `..`,
//! `/proc/self/root` — lands on the mask.
//!
//! The empty file and directory live on a tmpfs staged at [`RUN_DIR`] in the command's
//! namespace only: mounted there, filled, bound over each target, then detached, so the
//! host never sees it and nothing is left to clean. Mount propagation is already cut
//! (the namespace is a slave of the host's), so no mask reaches the host either.
//!
//! Everything that allocates happens in [`MaskMounts::prepare`]; [`MaskMounts::apply`]
//! only makes system calls on the prepared C strings (async-signal-safe).

use std::ffi::{CStr, CString};
use std::io;

use cork_agent::key::RUN_DIR;
use cork_agent::secrets::{Mask, MaskKind};

const FILE_NAME: &str = "empty-file";
const DIR_NAME: &str = "empty-dir";

pub struct MaskMounts {
    staging: CString,
    file: CString,
    dir: CString,
    /// (target, is a directory)
    targets: Vec<(CString, bool)>,
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl MaskMounts {
    /// Prepares the mounts of `masks`; makes sure the staging directory exists on the host.
    pub fn prepare(masks: &[Mask]) -> io::Result<Self> {
        std::fs::create_dir_all(RUN_DIR)?;
        let targets = masks
            .iter()
            .map(|m| {
                let target = cstring(m.path.as_os_str().as_encoded_bytes())?;
                Ok((target, m.kind == MaskKind::Dir))
            })
            .collect::<io::Result<_>>()?;
        Ok(MaskMounts {
            staging: cstring(RUN_DIR.as_bytes())?,
            file: cstring(format!("{RUN_DIR}/{FILE_NAME}").as_bytes())?,
            dir: cstring(format!("{RUN_DIR}/{DIR_NAME}").as_bytes())?,
            targets,
        })
    }

    /// Runs in the child, in its private mount namespace, with CAP_SYS_ADMIN still held.
    pub fn apply(&self) -> io::Result<()> {
        if self.targets.is_empty() {
            return Ok(());
        }
        let quiet = (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC) as libc::c_ulong;
        // SAFETY: mount(2) with NUL-terminated strings that outlive the call.
        check(unsafe {
            libc::mount(
                c"cork-mask".as_ptr(),
                self.staging.as_ptr(),
                c"tmpfs".as_ptr(),
                quiet,
                c"mode=0755,size=16k".as_ptr().cast(),
            )
        })?;
        // SAFETY: open(2) on a prepared path; the descriptor is closed right away.
        let fd = unsafe {
            libc::open(
                self.file.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                0o444 as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: closing the descriptor opened above.
        unsafe { libc::close(fd) };
        // SAFETY: mkdir(2) on a prepared path.
        check(unsafe { libc::mkdir(self.dir.as_ptr(), 0o555) })?;
        for (target, is_dir) in &self.targets {
            let source = if *is_dir { &self.dir } else { &self.file };
            match bind_readonly(source, target, quiet) {
                // Removed since the masks were resolved: nothing left to hide.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                other => other?,
            }
        }
        // The binds keep the tmpfs alive; the staging directory shows the host's again.
        // SAFETY: umount2(2) on a prepared path.
        check(unsafe { libc::umount2(self.staging.as_ptr(), libc::MNT_DETACH) })
    }
}

/// Binds `source` over `target` and makes that mount read-only (a bind mount takes its
/// flags only from a remount, mount(2)).
fn bind_readonly(source: &CStr, target: &CStr, flags: libc::c_ulong) -> io::Result<()> {
    // SAFETY: mount(2) with NUL-terminated strings that outlive the call.
    check(unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND as libc::c_ulong,
            std::ptr::null(),
        )
    })?;
    let remount = (libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY) as libc::c_ulong | flags;
    // SAFETY: as above.
    check(unsafe {
        libc::mount(
            std::ptr::null(),
            target.as_ptr(),
            std::ptr::null(),
            remount,
            std::ptr::null(),
        )
    })
}
