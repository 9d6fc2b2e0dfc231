//! The VM launcher end to end (cork-kvm through `cork-vm-boot`, no enforcement yet): the
//! test guest boots under TCG on a tap in the World's bottle netns, reaches TCP servers in
//! the internet netns over IPv4 and IPv6, prints its results on the serial console and
//! powers off; afterwards no QEMU and no tap remain. Also: a stop signal powers the guest
//! off over QMP (its probe given on the kernel command line), a SIGKILLed launcher takes QEMU and the tap with it, and the preflight
//! refuses a host without /dev/kvm (simulated).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use std::os::unix::process::ExitStatusExt;

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::prelude::BASE64_STANDARD;
use cork_integration::process::{Spawned, pids_in_netns};
use cork_integration::vm::{Guest, TAP_V4, TAP_V6, route_guest_subnets, static_net_append};
use cork_integration::{Side, World, host};

/// Generous: TCG on two shared cores boots in seconds, but other suites run alongside.
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

/// Where the guest's probe script comes from.
enum ProbeFrom<'a> {
    /// fw_cfg `opt/cork/probe` (what cork uses).
    FwCfg(&'a Path),
    /// The kernel command line (`cork.probe=BASE64`), the init's fallback.
    Cmdline(&'a str),
}

fn vm_boot(world: &World, guest: &Guest, tap: &str, probe: ProbeFrom, append: &str) -> Command {
    let mut cmd = world.command(Side::Bottle, env!("CARGO_BIN_EXE_cork-vm-boot"));
    cmd.args(["--accel", "tcg", "--memory", "256", "--tap", tap])
        .args(["--tap-addr", TAP_V4, "--tap-addr", TAP_V6])
        .arg("--kernel")
        .arg(&guest.kernel)
        .arg("--initrd")
        .arg(&guest.initrd);
    let mut append = format!("quiet panic=-1 {append}");
    match probe {
        ProbeFrom::FwCfg(file) => {
            cmd.arg("--probe").arg(file);
        }
        ProbeFrom::Cmdline(script) => {
            append.push_str(" cork.probe=");
            append.push_str(&BASE64_STANDARD.encode(script));
        }
    }
    cmd.args(["--append", &append]);
    cmd
}

/// The QEMU pid `cork-vm-boot` reported on stderr.
fn qemu_pid(stderr: &str) -> Result<i32> {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("cork-vm-boot: qemu pid "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("no qemu pid on stderr:\n{stderr}"))
}

/// Waits (bounded) until QEMU `pid` is dead, the tap is gone and nothing runs in the
/// bottle netns any more. A dead process's fds (the tap's among them) close as it exits,
/// which can trail the launcher's own exit by a moment when QEMU was killed.
fn wait_gone(world: &World, tap: &str, pid: i32) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let qemu =
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "));
        let tap_there = world.bottle().ip(&["link", "show", tap]).is_ok();
        let left = pids_in_netns(world.bottle().inode());
        if !qemu && !tap_there && left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "left behind: QEMU {pid} alive {qemu}, tap {tap} {tap_there}, processes {left:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The pid of the QEMU running the guest on `tap` (its `-name guest=<tap>`).
fn qemu_of(tap: &str) -> Result<i32> {
    host::cork_qemu_processes()
        .into_iter()
        .find(|(_, cmdline)| cmdline.contains(&format!("guest={tap},")))
        .map(|(pid, _)| pid)
        .with_context(|| format!("no QEMU for tap {tap}"))
}

#[test]
fn guest_boots_on_a_tap_and_reaches_tcp_servers_over_v4_and_v6() -> Result<()> {
    let guest = Guest::locate()?;
    let world = World::new("guest_boots_on_a_tap_and_reaches_tcp_servers")?;
    route_guest_subnets(&world)?;
    let srv4 = world.tcp_server(Side::Internet, "198.51.100.10:8080")?;
    let srv6 = world.tcp_server(Side::Internet, "[2001:db8::10]:8080")?;
    let probe = world.path("probe", "sh");
    std::fs::write(
        &probe,
        "echo \"addr4 $(ip -4 -o addr show dev eth0 | awk '{print $4}')\"\n\
         echo \"addr6 $(ip -6 -o addr show dev eth0 scope global | awk '{print $4}')\"\n\
         echo \"tcp4 $(nc -w 10 198.51.100.10 8080 </dev/null)\"\n\
         echo \"tcp6 $(nc -w 10 2001:db8::10 8080 </dev/null)\"\n",
    )?;
    let tap = format!("{}t", world.id());

    let started = Instant::now();
    let mut run = Spawned::start(&mut vm_boot(
        &world,
        &guest,
        &tap,
        ProbeFrom::FwCfg(&probe),
        &static_net_append(),
    ))?;
    run.wait_line("CORK-PROBE-BEGIN", BOOT_TIMEOUT)?;
    let to_probe = started.elapsed();
    let out = run.finish(BOOT_TIMEOUT)?;
    eprintln!("vm_boot: launch to first probe line under TCG: {to_probe:.2?}");
    assert_eq!(out.code(), 0, "{out}");

    let lines = out.lines();
    let after = |marker: &str| lines.iter().position(|l| *l == marker);
    let (begin, end) = (after("CORK-PROBE-BEGIN"), after("CORK-PROBE-END rc=0"));
    assert!(matches!((begin, end), (Some(b), Some(e)) if b < e), "{out}");
    let results = &lines[begin.unwrap_or(0) + 1..end.unwrap_or(0)];
    assert_eq!(
        results,
        [
            "addr4 198.51.100.130/26",
            "addr6 2001:db8:100::2/64",
            "tcp4 hello from Internet 198.51.100.10:8080",
            "tcp6 hello from Internet [2001:db8::10]:8080",
        ],
        "{out}"
    );
    let peers4 = srv4.peers();
    let peers6 = srv6.peers();
    assert!(
        peers4
            .iter()
            .any(|p| p.ip().to_string() == "198.51.100.130"),
        "{peers4:?}"
    );
    assert!(
        peers6
            .iter()
            .any(|p| p.ip().to_string() == "2001:db8:100::2"),
        "{peers6:?}"
    );
    assert!(out.stderr.contains("reason: \"guest-shutdown\""), "{out}");
    wait_gone(&world, &tap, qemu_pid(&out.stderr)?)
}

#[test]
fn sigterm_powers_the_guest_off_over_qmp() -> Result<()> {
    let guest = Guest::locate()?;
    let world = World::new("sigterm_powers_the_guest_off_over_qmp")?;
    let tap = format!("{}t", world.id());
    let probe = ProbeFrom::Cmdline("echo ready\nexec sleep 600\n");
    let mut cmd = vm_boot(&world, &guest, &tap, probe, "");
    // Long enough that only the guest's own power-off ends it in time.
    cmd.args(["--grace-ms", "120000"]);
    let mut run = Spawned::start(&mut cmd)?;
    run.wait_line("ready", BOOT_TIMEOUT)?;
    nix::sys::signal::kill(run.pid(), nix::sys::signal::Signal::SIGTERM)?;
    let out = run.finish(BOOT_TIMEOUT)?;
    assert_eq!(out.code(), 128 + libc::SIGTERM, "{out}");
    assert!(
        out.stdout.contains("cork-guest: power button pressed"),
        "{out}"
    );
    assert!(out.stderr.contains("graceful: true"), "{out}");
    wait_gone(&world, &tap, qemu_pid(&out.stderr)?)
}

#[test]
fn sigkill_of_the_launcher_takes_qemu_and_the_tap_with_it() -> Result<()> {
    let guest = Guest::locate()?;
    let world = World::new("sigkill_of_the_launcher_takes_qemu_and_the_tap")?;
    let probe = world.path("probe", "sh");
    std::fs::write(&probe, "echo ready\nexec sleep 600\n")?;
    let tap = format!("{}t", world.id());
    let mut run = Spawned::start(&mut vm_boot(
        &world,
        &guest,
        &tap,
        ProbeFrom::FwCfg(&probe),
        "",
    ))?;
    run.wait_line("ready", BOOT_TIMEOUT)?;
    let qemu = qemu_of(&tap)?;
    // Not `finish`: if QEMU survived, it would hold the output pipes open forever.
    let status = run.kill()?;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    wait_gone(&world, &tap, qemu)
}

#[test]
fn preflight_refuses_a_host_without_dev_kvm() -> Result<()> {
    let world = World::new("preflight_refuses_a_host_without_dev_kvm")?;
    let missing = world.dir().join("no-kvm-here");
    let preflight = |harness: bool| {
        let mut cmd = world.command(Side::Bottle, env!("CARGO_BIN_EXE_cork-vm-boot"));
        cmd.args(["--preflight", "--accel", "kvm"])
            .env("CORK_TEST_KVM_DEVICE", &missing);
        if harness {
            cmd.env("CORK_TEST_HARNESS", "1");
        } else {
            cmd.env_remove("CORK_TEST_HARNESS");
        }
        world.run(cmd)
    };
    let out = preflight(true)?;
    assert_eq!(out.code(), 125, "{out}");
    for needle in [
        "does not exist",
        "modprobe kvm-intel",
        "nested virtualisation",
        "--accel tcg",
    ] {
        assert!(out.stderr.contains(needle), "{needle:?} missing:\n{out}");
    }
    // Without the harness marker the seam is refused rather than obeyed.
    let out = preflight(false)?;
    assert_eq!(out.code(), 125, "{out}");
    assert!(out.stderr.contains("CORK_TEST_HARNESS=1"), "{out}");
    Ok(())
}
