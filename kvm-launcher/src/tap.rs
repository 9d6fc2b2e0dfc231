//! The VM's tap: created by cork's own process with `TUNSETIFF` on `/dev/net/tun`, in the
//! network namespace of the calling thread, never persistent — the device exists exactly
//! as long as some process holds its fd (cork, and QEMU which inherits it), so a killed
//! cork leaves no tap behind once QEMU, killed with it, is gone too.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

const TUN_DEVICE: &str = "/dev/net/tun";
/// IFNAMSIZ, terminating NUL included.
const IFNAMSIZ: usize = 16;

// include/uapi/linux/if_tun.h
const TUNSETIFF: libc::c_ulong = 0x4004_54ca; // _IOW('T', 202, int)
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
/// Frames carry a virtio-net header: QEMU uses it for checksum/segmentation offload.
const IFF_VNET_HDR: libc::c_short = 0x4000;
/// Fail with EBUSY instead of attaching to an existing device of that name.
const IFF_TUN_EXCL: libc::c_short = -0x8000; // 0x8000 as a c_short

/// `struct ifreq` with the flags member of its union (40 bytes on 64-bit Linux).
#[repr(C)]
struct IfReqFlags {
    name: [u8; IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("tap name {name:?}: use 1-15 bytes of letters, digits, '-' or '_' (an interface name)")]
    BadName { name: String },
    #[error("open {TUN_DEVICE} (load the tun module: `modprobe tun`)")]
    Open {
        #[source]
        source: io::Error,
    },
    #[error("an interface named {name} exists already: cork creates its own taps")]
    Exists { name: String },
    #[error("create tap {name} (TUNSETIFF)")]
    Create {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("{op} on tap {name}")]
    Link {
        name: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

/// A tap device this process owns.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

impl Tap {
    /// Creates tap `name` in the calling thread's network namespace. Fails if an interface
    /// of that name exists (cork never adopts someone else's device).
    pub fn create(name: &str) -> Result<Self, TapError> {
        let valid = !name.is_empty()
            && name.len() < IFNAMSIZ
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(TapError::BadName {
                name: name.to_owned(),
            });
        }
        // O_CLOEXEC: only QEMU, which gets the fd on purpose, may inherit the tap.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(TUN_DEVICE)
            .map_err(|source| TapError::Open { source })?;
        let mut req = IfReqFlags {
            name: [0; IFNAMSIZ],
            flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_TUN_EXCL,
            _pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`; `req` is one (same size and
        // layout for the name and flags members) and lives across the call.
        let r = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req as *mut IfReqFlags) };
        if r < 0 {
            let source = io::Error::last_os_error();
            return Err(if source.raw_os_error() == Some(libc::EBUSY) {
                TapError::Exists {
                    name: name.to_owned(),
                }
            } else {
                TapError::Create {
                    name: name.to_owned(),
                    source,
                }
            });
        }
        Ok(Self {
            file,
            name: name.to_owned(),
        })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tap's fd (for QEMU's `-netdev tap,fd=`).
    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// The interface index, for tc and netlink (resolved in the caller's namespace).
    pub fn ifindex(&self) -> Result<u32, TapError> {
        let cname = self.cname();
        // SAFETY: `cname` is a NUL-terminated buffer that outlives the call.
        let index = unsafe { libc::if_nametoindex(cname.as_ptr().cast()) };
        if index == 0 {
            return Err(self.link_error("if_nametoindex", io::Error::last_os_error()));
        }
        Ok(index)
    }

    /// Sets the link up (`SIOCSIFFLAGS` with `IFF_UP`), in the caller's namespace.
    pub fn set_up(&self) -> Result<(), TapError> {
        // SAFETY: socket(2) with constant arguments; the result is checked before use.
        let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if sock < 0 {
            return Err(self.link_error("socket", io::Error::last_os_error()));
        }
        // SAFETY: socket(2) returned a new descriptor that nothing else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(sock) };
        let mut req = IfReqFlags {
            name: self.cname(),
            flags: 0,
            _pad: [0; 22],
        };
        // SAFETY: SIOCGIFFLAGS fills the flags member of the `struct ifreq` `req` points
        // to, which lives across the call.
        if unsafe {
            libc::ioctl(
                sock.as_raw_fd(),
                libc::SIOCGIFFLAGS,
                &mut req as *mut IfReqFlags,
            )
        } < 0
        {
            return Err(self.link_error("SIOCGIFFLAGS", io::Error::last_os_error()));
        }
        req.flags |= libc::IFF_UP as libc::c_short;
        // SAFETY: as above; SIOCSIFFLAGS reads the same structure.
        if unsafe {
            libc::ioctl(
                sock.as_raw_fd(),
                libc::SIOCSIFFLAGS,
                &mut req as *mut IfReqFlags,
            )
        } < 0
        {
            return Err(self.link_error("SIOCSIFFLAGS", io::Error::last_os_error()));
        }
        Ok(())
    }

    fn cname(&self) -> [u8; IFNAMSIZ] {
        let mut n = [0u8; IFNAMSIZ];
        n[..self.name.len()].copy_from_slice(self.name.as_bytes());
        n
    }

    fn link_error(&self, op: &'static str, source: io::Error) -> TapError {
        TapError::Link {
            name: self.name.clone(),
            op,
            source,
        }
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_has_the_kernels_size() {
        assert_eq!(std::mem::size_of::<IfReqFlags>(), 40);
        assert_eq!(IFF_TUN_EXCL as u16, 0x8000);
    }

    #[test]
    fn names_are_checked_before_the_kernel_sees_them() {
        for bad in ["", "a/b", "sixteen-chars-xx", "with space", "ck%d"] {
            let e = Tap::create(bad).unwrap_err();
            assert!(matches!(e, TapError::BadName { .. }), "{bad}: {e:?}");
        }
    }
}
