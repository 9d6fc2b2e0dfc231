//! `cork vm`'s flags and their handler (see [`crate::vm`] for the VM bottle itself).

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct VmArgs {
    /// Only run the preflight checks (KVM, QEMU, /dev/net/tun) and print the result.
    #[arg(long)]
    preflight: bool,
    /// The bottle's manifest (TOML).
    #[arg(long, short = 'm', required_unless_present = "preflight")]
    manifest: Option<PathBuf>,
    /// The guest kernel (bzImage/vmlinuz).
    #[arg(long, required_unless_present = "preflight")]
    kernel: Option<PathBuf>,
    /// The guest's initramfs.
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// A disk image (raw or qcow2, detected), as a virtio disk; repeatable.
    #[arg(long = "disk")]
    disks: Vec<PathBuf>,
    /// Kernel command line; `console=ttyS0` is added unless it names a console.
    #[arg(long, default_value = "")]
    append: String,
    /// Accelerator: kvm (default, checked by the preflight) or tcg (emulation, slow).
    #[arg(long, default_value = "kvm")]
    accel: cork_kvm::Accel,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 512)]
    memory: u32,
    /// Guest vCPUs.
    #[arg(long, default_value_t = 1)]
    cpus: u32,
    /// IPv4 pool the guest's /30 comes from (default 10.239.0.0/16).
    #[arg(long)]
    pool4: Option<cork_policy::Prefix>,
    /// IPv6 pool the guest's /64 comes from (default fd63:6f72:6b00::/48).
    #[arg(long)]
    pool6: Option<cork_policy::Prefix>,
    /// Append audit events (JSON lines) to this file instead of standard error.
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// Hand FILE to the guest as fw_cfg entry NAME (`opt/...`; cork's own `opt/cork/ca.pem`,
    /// `opt/cork/env` and `opt/cork/manifest` are reserved); repeatable.
    #[arg(long = "fw-cfg", value_name = "NAME=FILE")]
    fw_cfg: Vec<String>,
}

pub fn vm(a: VmArgs) -> ExitCode {
    let fail = |e: &dyn std::error::Error| {
        eprintln!("cork vm: {}", cork_audit::error_chain(e));
        ExitCode::from(crate::vm::EXIT_CORK_FAILED as u8)
    };
    if a.preflight {
        return match crate::vm::preflight_only(a.accel) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        };
    }
    let (Some(manifest), Some(kernel)) = (a.manifest, a.kernel) else {
        eprintln!("cork vm: --manifest and --kernel are required");
        return ExitCode::from(crate::vm::EXIT_CORK_FAILED as u8);
    };
    match crate::vm::vm(crate::vm::VmOptions {
        manifest,
        kernel,
        initrd: a.initrd,
        disks: a.disks,
        append: a.append,
        accel: a.accel,
        memory_mib: a.memory,
        cpus: a.cpus,
        pool4: a.pool4,
        pool6: a.pool6,
        audit_log: a.audit_log,
        fw_cfg: a.fw_cfg,
    }) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => fail(&e),
    }
}
