//! `cork vm`: one VM bottle for one guest. Preflight (before anything is created), compile
//! the manifest and refuse what a VM cannot honour, enforce the policy on a new tap (tc
//! program + nftables chains, read back), start the bottle's DNS proxy, inspecting proxy,
//! DHCPv4/RA service and audit reader, boot QEMU on the tap with the bottle's CA and
//! placeholders in fw_cfg, wait for the guest (stop signals ask it to power off), and take
//! everything down in reverse order.
//!
//! The guest's serial console is this process's stdin/stdout; audit events go to
//! `--audit-log` or stderr. Exit status: 0 when the guest powered off, 128+N when stopped
//! or killed by signal N, 125 when cork itself failed (nothing was booted then).

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cork_agent::vm::{AddressingError, Pools};
use cork_agent::{BottleRuntime, RuntimeError};
use cork_audit::{AuditSink, SinkError};
use cork_kvm::{Accel, Disk, DiskFormat, FwCfg, Mac, StopSignals, VmConfig, fw_cfg};
use cork_policy::Prefix;

/// Exit status when cork itself fails.
pub const EXIT_CORK_FAILED: i32 = 125;
/// How long a guest asked to power off (SIGINT/SIGTERM) gets before QEMU is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

pub struct VmOptions {
    pub manifest: PathBuf,
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub disks: Vec<PathBuf>,
    pub append: String,
    pub accel: Accel,
    pub memory_mib: u32,
    pub cpus: u32,
    pub pool4: Option<Prefix>,
    pub pool6: Option<Prefix>,
    pub audit_log: Option<PathBuf>,
    /// Extra fw_cfg entries, `NAME=FILE`.
    pub fw_cfg: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum VmRunError {
    #[error("installing the stop-signal handlers")]
    Signals(#[source] io::Error),
    #[error(transparent)]
    Preflight(#[from] cork_kvm::PreflightError),
    #[error("reading manifest {path}")]
    ReadManifest {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Manifest(#[from] cork_policy::ManifestError),
    #[error("cork vm must run as root (it creates taps, nftables chains and loads eBPF programs)")]
    NotRoot,
    #[error(transparent)]
    Pools(#[from] AddressingError),
    #[error(transparent)]
    Audit(#[from] SinkError),
    #[error(transparent)]
    Bottle(#[from] RuntimeError),
    #[error("starting the agent's runtime")]
    Runtime(#[source] io::Error),
    #[error("writing the guest's fw_cfg files in {}", dir.display())]
    GuestFiles {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    FwCfg(#[from] cork_kvm::fw_cfg::FwCfgError),
    #[error(transparent)]
    Argv(#[from] cork_kvm::ArgvError),
    #[error(transparent)]
    Launch(#[from] cork_kvm::LaunchError),
    #[error("--fw-cfg {given:?}: {why}")]
    ExtraFwCfg { given: String, why: &'static str },
    #[error(transparent)]
    Seam(#[from] crate::seams::SeamGateError),
    #[error("the bottle's tap is gone")]
    NoTap,
}

/// `cork vm --preflight`: the checks alone; the summary on stdout.
pub fn preflight_only(accel: Accel) -> Result<(), VmRunError> {
    let report = cork_kvm::preflight(accel)?;
    println!("{}", report.summary());
    Ok(())
}

/// Runs the VM bottle and returns the exit status to report.
pub fn vm(opts: VmOptions) -> Result<i32, VmRunError> {
    // First, so that an early SIGTERM is a stop request like a later one.
    let stop = StopSignals::install(&[libc::SIGINT, libc::SIGTERM]).map_err(VmRunError::Signals)?;
    let seams = crate::seams::active(crate::seams::env(), cork_kvm::seams::NAMES)?;
    let report = cork_kvm::preflight(opts.accel)?;
    let extra = extra_fw_cfg(&opts.fw_cfg)?;
    let src =
        std::fs::read_to_string(&opts.manifest).map_err(|source| VmRunError::ReadManifest {
            path: opts.manifest.clone(),
            source,
        })?;
    let origin = opts.manifest.display().to_string();
    let policy = cork_policy::compile(&src, &origin)?;
    cork_policy::check_for_vm(&src, &origin)?;
    if !nix::unistd::geteuid().is_root() {
        return Err(VmRunError::NotRoot);
    }
    for w in &policy.warnings {
        tracing::warn!("{w}");
    }
    let defaults = Pools::defaults()?;
    let pools = Pools::new(
        opts.pool4.unwrap_or(defaults.v4),
        opts.pool6.unwrap_or(defaults.v6),
    )?;
    let policy = Arc::new(policy);
    let sink = Arc::new(Mutex::new(AuditSink::open(opts.audit_log.as_deref())?));
    let mut bottle = BottleRuntime::enforce_vm(policy.clone(), sink.clone(), &pools)?;
    if !seams.is_empty() {
        let what = format!(
            "test seams active (harness marker set): {}",
            seams.join(", ")
        );
        tracing::warn!("{what}");
        bottle.lifecycle("test_seams", what)?;
    }
    eprintln!("cork vm: {}", report.summary());
    if opts.accel == Accel::Tcg {
        let why = "running under TCG emulation (--accel tcg): no KVM, the guest is slow; \
                   not a production setup";
        eprintln!("cork vm: {why}");
        bottle.lifecycle("accel_tcg", why.to_owned())?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("cork-agent")
        .enable_all()
        .build()
        .map_err(VmRunError::Runtime)?;
    // Errors from here on drop `bottle` (full teardown) before `runtime`.
    bottle.start(runtime.handle())?;
    bottle.verify()?;
    let files = GuestFilesOnDisk::write(&bottle, &src)?;
    let tap = bottle.tap().ok_or(VmRunError::NoTap)?;
    let mac = Mac(bottle.guest_addressing().ok_or(VmRunError::NoTap)?.mac);
    let disks = opts
        .disks
        .iter()
        .map(|path| {
            Ok(Disk {
                format: DiskFormat::detect(path)?,
                path: path.clone(),
                read_only: false,
            })
        })
        .collect::<Result<Vec<_>, cork_kvm::ArgvError>>()?;
    let cfg = VmConfig {
        name: tap.name().to_owned(),
        accel: opts.accel,
        memory_mib: opts.memory_mib,
        cpus: opts.cpus,
        kernel: opts.kernel,
        initrd: opts.initrd,
        append: opts.append,
        disks,
        mac,
        fw_cfg: files.entries()?.into_iter().chain(extra).collect(),
    };
    let vm = cork_kvm::launch(&report.qemu, &cfg, tap)?;
    bottle.lifecycle(
        "vm_started",
        format!(
            "QEMU pid {} on tap {} ({}, {} MiB, {} vCPU), guest MAC {mac}",
            vm.pid(),
            cfg.name,
            opts.accel.as_str(),
            opts.memory_mib,
            opts.cpus
        ),
    )?;
    let exit = vm.wait(Some(stop.fd()), STOP_GRACE);
    let code = match &exit {
        Ok(e) => e.code(),
        Err(_) => EXIT_CORK_FAILED,
    };
    let detail = match &exit {
        Ok(e) => format!("guest ended: {e:?}; exit status {code}"),
        Err(e) => format!("waiting for QEMU failed: {}", cork_audit::error_chain(e)),
    };
    // Written before teardown so it precedes the `torn down` problems, if any.
    let written = bottle.lifecycle("vm_exited", detail);
    // QEMU read these at start; gone before the bottle's run directory is removed.
    drop(files);
    for p in bottle.stop() {
        tracing::error!("{}", cork_audit::error_chain(&p));
    }
    drop(runtime);
    exit?;
    written?;
    Ok(code)
}

/// `--fw-cfg NAME=FILE` entries, checked before anything is created.
fn extra_fw_cfg(given: &[String]) -> Result<Vec<FwCfg>, VmRunError> {
    given
        .iter()
        .map(|g| {
            let bad = |why| VmRunError::ExtraFwCfg {
                given: g.clone(),
                why,
            };
            let (name, file) = g.split_once('=').ok_or_else(|| bad("expected NAME=FILE"))?;
            if [fw_cfg::CA_PEM, fw_cfg::ENV, fw_cfg::MANIFEST].contains(&name) {
                return Err(bad("this name is cork's own"));
            }
            if !std::path::Path::new(file).is_file() {
                return Err(bad("FILE is not a readable file"));
            }
            Ok(FwCfg::new(name, file)?)
        })
        .collect()
}

/// The bottle's manifest, CA and placeholder env as files QEMU reads at start, removed
/// on drop.
struct GuestFilesOnDisk {
    dir: PathBuf,
    manifest: PathBuf,
    ca: Option<PathBuf>,
    env: Option<PathBuf>,
}

impl GuestFilesOnDisk {
    fn write(bottle: &BottleRuntime, manifest: &str) -> Result<Self, VmRunError> {
        let dir = bottle.key().run_dir().join("guest");
        let err = |source| VmRunError::GuestFiles {
            dir: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(err)?;
        let manifest_path = dir.join("manifest.toml");
        std::fs::write(&manifest_path, manifest).map_err(err)?;
        let mut this = GuestFilesOnDisk {
            dir: dir.clone(),
            manifest: manifest_path,
            ca: None,
            env: None,
        };
        let Some(files) = bottle.guest_files() else {
            return Ok(this);
        };
        if let Some(pem) = &files.ca_pem {
            let path = dir.join("ca.pem");
            std::fs::write(&path, pem).map_err(err)?;
            this.ca = Some(path);
        }
        if !files.env.is_empty() {
            let pairs: Vec<(&str, &str)> = files
                .env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let text = fw_cfg::env_text(&pairs)?;
            let path = dir.join("env");
            std::fs::write(&path, text).map_err(err)?;
            this.env = Some(path);
        }
        Ok(this)
    }

    fn entries(&self) -> Result<Vec<FwCfg>, VmRunError> {
        let mut out = vec![FwCfg::new(fw_cfg::MANIFEST, &self.manifest)?];
        if let Some(ca) = &self.ca {
            out.push(FwCfg::new(fw_cfg::CA_PEM, ca)?);
        }
        if let Some(env) = &self.env {
            out.push(FwCfg::new(fw_cfg::ENV, env)?);
        }
        Ok(out)
    }
}

impl Drop for GuestFilesOnDisk {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        // The bottle's run directory, when nothing else (the CA bundle) is in it.
        if let Some(parent) = self.dir.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}
