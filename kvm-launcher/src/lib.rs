//! cork-kvm: everything cork needs to run a guest under QEMU except the enforcement.
//!
//! A `cork vm` run uses it in this order:
//!
//! 1. [`preflight`] — before anything is created: is `/dev/kvm` there, usable, and does
//!    the KVM API answer as QEMU needs (real ioctls); is QEMU installed; is there a
//!    `/dev/net/tun`. Each failure is a [`PreflightError`] whose message names the fix.
//! 2. [`Tap::create`] — a tap owned by this process (non-persistent: it disappears with
//!    the last fd, i.e. with cork and QEMU). The caller enforces on it (tc, nftables —
//!    not this crate) and verifies before going on.
//! 3. [`VmConfig`] + [`launch`] — QEMU's command line (pure, see [`qemu_args`]) and the
//!    spawn: the tap's fd and a QMP socketpair are inherited by QEMU only, QEMU gets
//!    `PR_SET_PDEATHSIG = SIGKILL` (tied to a launcher-owned thread that outlives it)
//!    and its own session.
//! 4. [`Vm::wait`] — the guest's life: the serial console is on QEMU's stdio; a stop
//!    request (a byte on a pipe, see [`StopSignals`]) asks the guest to power off over
//!    QMP and kills QEMU after a grace period. [`VmExit::code`] maps the end to cork's
//!    exit status.
//!
//! fw_cfg carries what the guest needs from cork without a shared filesystem
//! ([`fw_cfg`]): `opt/cork/ca.pem`, `opt/cork/env`, and for test guests `opt/cork/probe`.

pub mod argv;
pub mod fw_cfg;
pub mod launch;
pub mod mac;
pub mod preflight;
mod qmp;
pub mod seams;
pub mod stop;
pub mod tap;
mod wait;

pub use argv::{ArgvError, Disk, DiskFormat, Fds, VmConfig, kernel_cmdline, qemu_args};
pub use fw_cfg::FwCfg;
pub use launch::{LaunchError, Vm, launch};
pub use mac::Mac;
pub use preflight::{Accel, Host, PreflightError, Report, preflight};
pub use stop::StopSignals;
pub use tap::{Tap, TapError};
pub use wait::VmExit;
