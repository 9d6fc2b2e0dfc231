//! QEMU's command line for a VM bottle, built as pure data (see [`qemu_args`]).
//!
//! Choices and why:
//! - **q35** with virtio-net-pci: what stock cloud images expect, and it boots Debian's
//!   cloud kernel reliably under TCG. `microvm` (virtio-mmio, qboot) was measured here:
//!   no faster to the first probe line (~3.7 s both, TCG, 2 loaded cores), and it hung in
//!   TSC calibration on most boots (it has no PIT/HPET/PM timer reference by default).
//! - `-nodefaults`: no default NIC (QEMU would otherwise add a user-mode `-nic user`,
//!   an unenforced path around the tap), no VGA, floppy or CD-ROM.
//! - `-nographic -serial stdio -monitor none`: the serial console is QEMU's stdio, and
//!   no human monitor is multiplexed onto it (its `Ctrl-A c` would reach commands that
//!   run host programs). QMP goes over an inherited socketpair instead.
//! - `-no-reboot`: a guest reboot ends the VM, like a power-off.
//! - The NIC has no option ROM (`romfile=`): cork boots the kernel directly.
//! - `-sandbox on,...`: QEMU's seccomp filter; no exec, no privilege changes.
//! - Values QEMU parses as `key=value,...` have commas doubled (QEMU's escape).

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::fd::RawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::fw_cfg::FwCfg;
use crate::mac::Mac;
use crate::preflight::Accel;

/// x86's kernel command line limit (COMMAND_LINE_SIZE), terminating NUL included.
const MAX_CMDLINE: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum ArgvError {
    #[error("memory must be at least 64 MiB (got {mib} MiB)")]
    Memory { mib: u32 },
    #[error("cpus must be between 1 and 255 (got {cpus})")]
    Cpus { cpus: u32 },
    #[error("VM name {name:?}: use 1-64 letters, digits, '-' or '_'")]
    Name { name: String },
    #[error("kernel command line is {len} bytes; x86 allows at most {}", MAX_CMDLINE - 1)]
    Cmdline { len: usize },
    #[error("reading disk image {}", path.display())]
    Disk {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A disk image's format (QEMU refuses to guess raw safely, so cork says which).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    Raw,
    Qcow2,
}

impl DiskFormat {
    /// qcow2 when the file starts with qcow2's magic, raw otherwise.
    pub fn detect(path: &Path) -> Result<Self, ArgvError> {
        let mut magic = [0u8; 4];
        let read = std::fs::File::open(path)
            .and_then(|mut f| f.read(&mut magic))
            .map_err(|source| ArgvError::Disk {
                path: path.to_owned(),
                source,
            })?;
        Ok(if read == 4 && magic == *b"QFI\xfb" {
            DiskFormat::Qcow2
        } else {
            DiskFormat::Raw
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

/// One virtio-blk disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub path: PathBuf,
    pub format: DiskFormat,
    pub read_only: bool,
}

/// Everything about the VM except the file descriptors.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// Shown as QEMU's `-name` (the bottle name).
    pub name: String,
    pub accel: Accel,
    pub memory_mib: u32,
    pub cpus: u32,
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    /// The user's kernel arguments; see [`kernel_cmdline`].
    pub append: String,
    pub disks: Vec<Disk>,
    /// The guest NIC's MAC address.
    pub mac: Mac,
    pub fw_cfg: Vec<FwCfg>,
}

/// File descriptors QEMU inherits (same numbers in the child).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fds {
    /// The tap, opened by cork.
    pub tap: RawFd,
    /// cork's QMP peer: one end of a connected socketpair.
    pub qmp: RawFd,
}

/// The kernel command line: `append` with `console=ttyS0` in front unless `append`
/// already names a console (words after `--` are init's, not the kernel's).
pub fn kernel_cmdline(append: &str) -> String {
    let kernel_words = append.split_whitespace().take_while(|w| *w != "--");
    if kernel_words.clone().any(|w| w.starts_with("console=")) {
        return append.trim().to_owned();
    }
    let rest = append.trim();
    if rest.is_empty() {
        "console=ttyS0".to_owned()
    } else {
        format!("console=ttyS0 {rest}")
    }
}

/// QEMU's arguments (without the program name) for `cfg` with `fds`.
pub fn qemu_args(cfg: &VmConfig, fds: Fds) -> Result<Vec<OsString>, ArgvError> {
    if cfg.memory_mib < 64 {
        return Err(ArgvError::Memory {
            mib: cfg.memory_mib,
        });
    }
    if !(1..=255).contains(&cfg.cpus) {
        return Err(ArgvError::Cpus { cpus: cfg.cpus });
    }
    let name_ok = !cfg.name.is_empty()
        && cfg.name.len() <= 64
        && cfg
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !name_ok {
        return Err(ArgvError::Name {
            name: cfg.name.clone(),
        });
    }
    let cmdline = kernel_cmdline(&cfg.append);
    if cmdline.len() >= MAX_CMDLINE {
        return Err(ArgvError::Cmdline { len: cmdline.len() });
    }

    let mut a = Args::default();
    a.pair(
        "-name",
        format!("guest={},process=cork-{}", cfg.name, cfg.name),
    );
    a.flags(&["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"]);
    a.pair("-serial", "stdio");
    a.pair("-monitor", "none");
    a.pair(
        "-sandbox",
        "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
    );
    a.pair("-machine", "q35");
    a.pair("-accel", cfg.accel.as_str());
    if cfg.accel == Accel::Kvm {
        a.pair("-cpu", "host");
    }
    a.pair("-m", cfg.memory_mib.to_string());
    a.pair("-smp", cfg.cpus.to_string());
    a.pair("-kernel", cfg.kernel.as_os_str());
    if let Some(initrd) = &cfg.initrd {
        a.pair("-initrd", initrd.as_os_str());
    }
    a.pair("-append", cmdline);
    for (i, d) in cfg.disks.iter().enumerate() {
        let mut drive = OsString::from(format!(
            "if=none,id=disk{i},format={},file=",
            d.format.as_str()
        ));
        drive.push(escape_commas(d.path.as_os_str()));
        if d.read_only {
            drive.push(",readonly=on");
        }
        a.pair("-drive", drive);
        a.pair("-device", format!("virtio-blk-pci,drive=disk{i}"));
    }
    a.pair("-netdev", format!("tap,id=n0,fd={}", fds.tap));
    // romfile= (empty): no iPXE option ROM — the kernel is loaded directly, and
    // initialising iPXE costs time under TCG.
    a.pair(
        "-device",
        format!("virtio-net-pci,netdev=n0,mac={},romfile=", cfg.mac),
    );
    for entry in &cfg.fw_cfg {
        let mut v = OsString::from(format!("name={},file=", entry.name()));
        v.push(escape_commas(entry.file().as_os_str()));
        a.pair("-fw_cfg", v);
    }
    a.pair("-chardev", format!("socket,id=qmp,fd={}", fds.qmp));
    a.pair("-mon", "chardev=qmp,mode=control");
    Ok(a.0)
}

/// QEMU's option syntax escapes a comma inside a value by doubling it.
fn escape_commas(s: &OsStr) -> OsString {
    let mut out = Vec::with_capacity(s.len());
    for &b in s.as_bytes() {
        out.push(b);
        if b == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn flags(&mut self, flags: &[&str]) {
        self.0.extend(flags.iter().map(OsString::from));
    }

    fn pair(&mut self, opt: &str, value: impl Into<OsString>) {
        self.0.push(opt.into());
        self.0.push(value.into());
    }
}

#[cfg(test)]
mod tests;
