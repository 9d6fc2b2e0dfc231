//! `cork-vm-boot`: boots a guest with cork-kvm the way `cork vm` will (preflight, own tap,
//! QEMU with the tap's fd, stop signals, exit status), minus the enforcement, so the
//! launcher is tested end to end before `cork vm` exists. Test tooling: run it inside a
//! World's namespace; it adds the given addresses to its tap so the test can route.
//!
//! ```text
//! cork-vm-boot --tap NAME [--tap-addr CIDR]... --kernel K [--initrd I] [--append A]
//!              [--accel kvm|tcg] [--memory MIB] [--cpus N] [--probe FILE]
//!              [--fw-cfg NAME=FILE]... [--grace-ms MS] [--preflight]
//! ```
//! stdout is the guest's serial console; stderr gets `cork-vm-boot: ...` lines (the
//! preflight summary, `qemu pid N`, `exit ...`). Exit status: `VmExit::code`, or 125
//! when the launcher fails.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cork_kvm::{Accel, FwCfg, Mac, StopSignals, Tap, VmConfig, fw_cfg};

#[derive(Debug)]
struct Args {
    tap: String,
    tap_addrs: Vec<String>,
    kernel: PathBuf,
    initrd: Option<PathBuf>,
    append: String,
    accel: Accel,
    memory: u32,
    cpus: u32,
    fw_cfg: Vec<FwCfg>,
    grace: Duration,
    preflight_only: bool,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        tap: String::new(),
        tap_addrs: Vec::new(),
        kernel: PathBuf::new(),
        initrd: None,
        append: String::new(),
        accel: Accel::Kvm,
        memory: 256,
        cpus: 1,
        fw_cfg: Vec::new(),
        grace: Duration::from_secs(10),
        preflight_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--preflight" {
            a.preflight_only = true;
            continue;
        }
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--tap" => a.tap = value,
            "--tap-addr" => a.tap_addrs.push(value),
            "--kernel" => a.kernel = value.into(),
            "--initrd" => a.initrd = Some(value.into()),
            "--append" => a.append = value,
            "--accel" => a.accel = value.parse()?,
            "--memory" => a.memory = value.parse().context("--memory")?,
            "--cpus" => a.cpus = value.parse().context("--cpus")?,
            "--probe" => a.fw_cfg.push(FwCfg::new(fw_cfg::PROBE, value)?),
            "--fw-cfg" => {
                let (name, file) = value.split_once('=').context("--fw-cfg NAME=FILE")?;
                a.fw_cfg.push(FwCfg::new(name, file)?);
            }
            "--grace-ms" => a.grace = Duration::from_millis(value.parse().context("--grace-ms")?),
            _ => bail!("unknown flag {flag}"),
        }
    }
    if !a.preflight_only && (a.tap.is_empty() || a.kernel.as_os_str().is_empty()) {
        bail!("--tap and --kernel are required");
    }
    Ok(a)
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("cork-vm-boot: {e:#}");
            ExitCode::from(125)
        }
    }
}

fn run() -> Result<u8> {
    let args = parse()?;
    // Before anything exists, so an early SIGTERM is a stop request like a later one.
    let stop = StopSignals::install(&[libc::SIGINT, libc::SIGTERM]).context("stop signals")?;
    let report = cork_kvm::preflight(args.accel).context("preflight")?;
    eprintln!("cork-vm-boot: {}", report.summary());
    if args.preflight_only {
        return Ok(0);
    }
    let tap = Tap::create(&args.tap)?;
    tap.set_up()?;
    for cidr in &args.tap_addrs {
        let mut ip = Command::new("ip");
        ip.args(["addr", "add", cidr, "dev", &args.tap]);
        if cidr.contains(':') {
            ip.arg("nodad");
        }
        let status = ip.status().context("run ip")?;
        if !status.success() {
            bail!("ip addr add {cidr} dev {} failed: {status}", args.tap);
        }
    }
    let cfg = VmConfig {
        name: args.tap.clone(),
        accel: args.accel,
        memory_mib: args.memory,
        cpus: args.cpus,
        kernel: args.kernel,
        initrd: args.initrd,
        append: args.append,
        disks: Vec::new(),
        mac: Mac::local(args.tap.as_bytes()),
        fw_cfg: args.fw_cfg,
    };
    // Launched from a thread that ends at once, on purpose: QEMU's death signal must not
    // depend on the caller's thread living on (the SIGTERM and boot tests would fail).
    let vm = std::thread::scope(|s| {
        s.spawn(|| cork_kvm::launch(&report.qemu, &cfg, &tap))
            .join()
            .map_err(|_| anyhow::anyhow!("launch thread panicked"))
    })??;
    eprintln!(
        "cork-vm-boot: qemu pid {} tap {} mac {}",
        vm.pid(),
        tap.name(),
        cfg.mac
    );
    let exit = vm.wait(Some(stop.fd()), args.grace)?;
    eprintln!("cork-vm-boot: exit {exit:?} code {}", exit.code());
    drop(tap);
    Ok(u8::try_from(exit.code()).unwrap_or(125))
}
