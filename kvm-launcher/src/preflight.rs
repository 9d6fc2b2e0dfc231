//! Preflight: before cork creates anything for a VM bottle, check that this host can run
//! one with the asked accelerator, and when it cannot, say exactly what to fix.
//!
//! Checks, in order: `/dev/kvm` (only for [`Accel::Kvm`]: present, a character device,
//! openable read-write, and answering the KVM API — see [`kvm`]), `/dev/net/tun`, and
//! QEMU (`qemu-system-x86_64` in `PATH`, runs `--version`).
//!
//! Messages name the fix; an OS error, when there is one, is the error's `source` (cork
//! prints the chain: "message: Permission denied (os error 13)").

mod kvm;

use std::ffi::OsString;
use std::fmt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;

pub use kvm::KvmReport;

use crate::seams::{self, SeamError};

/// The QEMU system emulator cork runs.
pub const QEMU_NAME: &str = "qemu-system-x86_64";
const KVM_DEVICE: &str = "/dev/kvm";
const TUN_DEVICE: &str = "/dev/net/tun";

/// QEMU's accelerator: hardware virtualisation, or TCG (emulation, no KVM needed, slow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// The name QEMU's `-accel` takes (and `cork vm --accel`).
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown accelerator {given:?}: use kvm or tcg")]
pub struct UnknownAccel {
    pub given: String,
}

impl FromStr for Accel {
    type Err = UnknownAccel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            _ => Err(UnknownAccel {
                given: s.to_owned(),
            }),
        }
    }
}

/// Why this host cannot run a VM bottle; each message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error(
        "{} does not exist: KVM is not available on this host. Load the module for this CPU \
         (`modprobe kvm-intel` or `modprobe kvm-amd`) and enable virtualisation (VT-x/AMD-V, \
         SVM) in the firmware settings; inside a VM, enable nested virtualisation on its host. \
         Or run with --accel tcg (emulation: no KVM needed, much slower)",
        path.display()
    )]
    KvmMissing { path: PathBuf },
    #[error(
        "{} is not a character device (it should be the KVM device, major 10 minor 232): \
         remove what is there and reload the KVM module (`modprobe -r kvm-intel && modprobe \
         kvm-intel`, or kvm-amd), or run with --accel tcg",
        path.display()
    )]
    KvmNotDevice { path: PathBuf },
    #[error(
        "cannot open {} read-write — add this user to the kvm group (`usermod -aG \
         kvm USER`, then log in again) or check the device's mode (crw-rw---- root:kvm); \
         or run with --accel tcg",
        path.display()
    )]
    KvmPermission {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot open {} — the KVM module is not working; check `dmesg` for kvm \
         errors and reload it (`modprobe kvm-intel` or `modprobe kvm-amd`), or run with \
         --accel tcg",
        path.display()
    )]
    KvmOpen {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} does not answer the KVM API ({op} failed): it is not a working KVM device \
         — reload the KVM module (`modprobe kvm-intel` or `modprobe kvm-amd`) and \
         check `dmesg`, or run with --accel tcg",
        path.display()
    )]
    KvmApi {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} speaks KVM API version {got}, QEMU needs {}: the kernel's KVM is not what QEMU \
         expects; update the kernel or QEMU, or run with --accel tcg",
        path.display(), kvm::API_VERSION
    )]
    KvmApiVersion { path: PathBuf, got: i32 },
    #[error(
        "KVM on {} lacks {cap} (capability {number}), which QEMU requires: the host (or, \
         nested, its hypervisor) does not offer it — enable full nested virtualisation or \
         run with --accel tcg",
        path.display()
    )]
    KvmCapability {
        path: PathBuf,
        cap: &'static str,
        number: u32,
    },
    #[error("KVM cannot create a virtual machine ({op} failed){hint}; or run with --accel tcg")]
    KvmCreate {
        op: &'static str,
        hint: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} does not exist: load the tun module (`modprobe tun`); in a container, pass \
         /dev/net/tun in (e.g. `--device /dev/net/tun`)",
        path.display()
    )]
    TunMissing { path: PathBuf },
    #[error(
        "{QEMU_NAME} not found (looked in {looked}): install QEMU — `cargo xtask deps` does \
         (Debian package qemu-system-x86)"
    )]
    QemuMissing { looked: String },
    #[error(
        "{} cannot run ({why}): reinstall QEMU — `cargo xtask deps` installs it (Debian \
         package qemu-system-x86)",
        path.display()
    )]
    QemuBroken { path: PathBuf, why: String },
    #[error("test seam refused")]
    Seam(#[from] SeamError),
}

/// What the preflight found; the launcher takes the QEMU path from here.
#[derive(Debug, Clone)]
pub struct Report {
    pub accel: Accel,
    pub qemu: PathBuf,
    /// First line of `qemu-system-x86_64 --version`.
    pub qemu_version: String,
    /// Present when `accel` is KVM.
    pub kvm: Option<KvmReport>,
}

impl Report {
    /// One line for stderr (and an audit lifecycle event): what will run and how.
    pub fn summary(&self) -> String {
        match (&self.kvm, self.accel) {
            (Some(k), _) => format!(
                "accelerator kvm ({}, API {}, up to {} vCPUs); {}",
                k.device.display(),
                k.api_version,
                k.max_vcpus,
                self.qemu_version
            ),
            (None, _) => format!(
                "accelerator tcg: emulation without KVM, much slower than kvm; {}",
                self.qemu_version
            ),
        }
    }
}

/// Where the preflight looks. [`Host::system`] is the real host (test seams applied);
/// tests build their own to simulate failures.
#[derive(Debug, Clone)]
pub struct Host {
    pub kvm_device: PathBuf,
    pub tun_device: PathBuf,
    /// An explicit QEMU binary; `None` searches `path`.
    pub qemu: Option<PathBuf>,
    /// The search path for QEMU (`$PATH`).
    pub path: OsString,
}

impl Host {
    /// This host, with the launcher's test seams applied (only under the harness).
    pub fn system() -> Result<Self, PreflightError> {
        let seams = seams::from_env()?;
        Ok(Self {
            kvm_device: seams.kvm_device.unwrap_or_else(|| KVM_DEVICE.into()),
            tun_device: TUN_DEVICE.into(),
            qemu: seams.qemu,
            path: std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        })
    }

    /// Runs every check for `accel`; the first failure is returned.
    pub fn check(&self, accel: Accel) -> Result<Report, PreflightError> {
        let kvm = match accel {
            Accel::Kvm => Some(kvm::check(&self.kvm_device)?),
            Accel::Tcg => None,
        };
        if !self.tun_device.exists() {
            return Err(PreflightError::TunMissing {
                path: self.tun_device.clone(),
            });
        }
        let qemu = self.find_qemu()?;
        let qemu_version = qemu_version(&qemu)?;
        Ok(Report {
            accel,
            qemu,
            qemu_version,
            kvm,
        })
    }

    fn find_qemu(&self) -> Result<PathBuf, PreflightError> {
        if let Some(q) = &self.qemu {
            return if is_executable(q) {
                Ok(q.clone())
            } else {
                Err(PreflightError::QemuMissing {
                    looked: q.display().to_string(),
                })
            };
        }
        let dirs: Vec<PathBuf> = std::env::split_paths(&self.path).collect();
        dirs.iter()
            .map(|d| d.join(QEMU_NAME))
            .find(|p| is_executable(p))
            .ok_or_else(|| PreflightError::QemuMissing {
                looked: dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":"),
            })
    }
}

/// Checks the real host for `accel` (see the module doc).
pub fn preflight(accel: Accel) -> Result<Report, PreflightError> {
    Host::system()?.check(accel)
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn qemu_version(qemu: &Path) -> Result<String, PreflightError> {
    let broken = |why: String| PreflightError::QemuBroken {
        path: qemu.to_owned(),
        why,
    };
    let out = Command::new(qemu)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| broken(e.to_string()))?;
    if !out.status.success() {
        return Err(broken(format!(
            "--version exited {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().next().unwrap_or_default().trim().to_owned())
}

/// Whether `path` is a character device (what `/dev/kvm` must be).
fn is_char_device(path: &Path) -> std::io::Result<bool> {
    Ok(std::fs::metadata(path)?.file_type().is_char_device())
}

#[cfg(test)]
mod tests;
