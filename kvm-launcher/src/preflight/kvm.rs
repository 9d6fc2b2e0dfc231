//! The KVM half of the preflight: open the device and ask it what QEMU will ask, with the
//! same ioctls (include/uapi/linux/kvm.h), so "opens but does not work" is caught here
//! rather than as a QEMU failure after cork has set everything up.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use super::{PreflightError, is_char_device};

/// `KVM_API_VERSION`: the only version the kernel has ever reported since 2.6.22.
pub(super) const API_VERSION: i32 = 12;

// _IO(KVMIO = 0xAE, nr): no payload, so the request is just (type << 8) | nr.
const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
const KVM_CREATE_VM: libc::c_ulong = 0xAE01;
const KVM_CHECK_EXTENSION: libc::c_ulong = 0xAE03;
const KVM_CREATE_VCPU: libc::c_ulong = 0xAE41;
const KVM_CAP_MAX_VCPUS: u32 = 66;

/// Capabilities QEMU refuses to start without on x86: the generic list
/// (`kvm_required_capabilites` in QEMU's accel/kvm/kvm-all.c) and the x86 one
/// (`kvm_arch_required_capabilities`, target/i386/kvm/kvm.c), numbered as in kvm.h.
const REQUIRED: &[(&str, u32)] = &[
    ("KVM_CAP_USER_MEMORY", 3),
    ("KVM_CAP_DESTROY_MEMORY_REGION_WORKS", 21),
    ("KVM_CAP_JOIN_MEMORY_REGIONS_WORKS", 30),
    ("KVM_CAP_SET_TSS_ADDR", 4),
    ("KVM_CAP_EXT_CPUID", 7),
    ("KVM_CAP_MP_STATE", 14),
];

/// What KVM said.
#[derive(Debug, Clone)]
pub struct KvmReport {
    pub device: PathBuf,
    pub api_version: i32,
    /// `KVM_CAP_MAX_VCPUS` (0 when the kernel does not say).
    pub max_vcpus: i32,
}

/// Opens `device` and runs the API checks.
pub(super) fn check(device: &Path) -> Result<KvmReport, PreflightError> {
    let path = device.to_owned();
    match is_char_device(device) {
        Ok(true) => {}
        Ok(false) => return Err(PreflightError::KvmNotDevice { path }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(PreflightError::KvmMissing { path });
        }
        Err(e) => return Err(open_error(path, e)),
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
        .map_err(|e| open_error(path.clone(), e))?;
    let fd = file.as_raw_fd();
    let api = |op: &'static str| {
        let path = path.clone();
        move |source| PreflightError::KvmApi { path, op, source }
    };
    let api_version = ioctl(fd, KVM_GET_API_VERSION, 0).map_err(api("KVM_GET_API_VERSION"))?;
    if api_version != API_VERSION {
        return Err(PreflightError::KvmApiVersion {
            path,
            got: api_version,
        });
    }
    for &(cap, number) in REQUIRED {
        let have =
            ioctl(fd, KVM_CHECK_EXTENSION, number.into()).map_err(api("KVM_CHECK_EXTENSION"))?;
        if have <= 0 {
            return Err(PreflightError::KvmCapability { path, cap, number });
        }
    }
    let max_vcpus = ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS.into()).unwrap_or(0);
    create_vm(fd)?;
    Ok(KvmReport {
        device: path,
        api_version,
        max_vcpus,
    })
}

/// Creates (and drops) a VM with one vCPU: what QEMU does first, and where a host whose
/// virtualisation extensions are held elsewhere or not really there fails.
fn create_vm(kvm: RawFd) -> Result<(), PreflightError> {
    let vm =
        ioctl(kvm, KVM_CREATE_VM, 0).map_err(|source| create_error("KVM_CREATE_VM", source))?;
    // SAFETY: KVM_CREATE_VM returned a new file descriptor that nothing else owns.
    let vm = unsafe { OwnedFd::from_raw_fd(vm) };
    let vcpu = ioctl(vm.as_raw_fd(), KVM_CREATE_VCPU, 0)
        .map_err(|source| create_error("KVM_CREATE_VCPU", source))?;
    // SAFETY: KVM_CREATE_VCPU returned a new file descriptor that nothing else owns.
    drop(unsafe { OwnedFd::from_raw_fd(vcpu) });
    Ok(())
}

fn create_error(op: &'static str, source: io::Error) -> PreflightError {
    let hint = match source.raw_os_error() {
        Some(libc::EBUSY) => {
            ": another hypervisor (VirtualBox, VMware…) holds the CPU's virtualisation \
             extensions — stop it"
        }
        Some(libc::ENOMEM) => ": not enough memory for a VM — free some",
        Some(libc::EINVAL) | Some(libc::ENXIO) | Some(libc::EOPNOTSUPP) => {
            ": the CPU (or, nested, its hypervisor) does not offer usable virtualisation \
             — enable VT-x/AMD-V in the firmware or nested virtualisation on the host"
        }
        _ => ": check `dmesg` for kvm errors",
    };
    PreflightError::KvmCreate { op, hint, source }
}

/// Sorts an open/stat failure of the KVM device into "fix the permissions" or "fix KVM".
pub(super) fn open_error(path: PathBuf, source: io::Error) -> PreflightError {
    match source.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) => PreflightError::KvmPermission { path, source },
        Some(libc::ENOENT) => PreflightError::KvmMissing { path },
        _ => PreflightError::KvmOpen { path, source },
    }
}

fn ioctl(fd: RawFd, request: libc::c_ulong, arg: libc::c_ulong) -> io::Result<i32> {
    // SAFETY: every request used here takes an integer argument (or none), never a
    // pointer, so the kernel reads no memory of ours; `fd` is open for the call.
    let r = unsafe { libc::ioctl(fd, request, arg) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}
