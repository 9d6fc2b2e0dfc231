//! `cork run` and `cork daemon` started the way a new user would start them in a named
//! network namespace: `ip netns exec <the World's bottle netns> cork ...`. `ip` gives cork
//! a mount namespace of its own whose /sys is a fresh sysfs, so neither the cgroup2 nor
//! the bpf mount is there; cork reaches the host's through its parent's root. The proof
//! that it reached the right ones: the bottle's cgroup and pins show up in this test
//! process's own (the host's) mount namespace while the bottle lives, and `cork clean`,
//! run there, finds what a SIGKILLed `cork run` left.
//!
//! `cork vm`: its preflight only (a boot is slow).
//!
//! The only place in the suite where cork runs under `ip netns exec` (every other test
//! enters the namespace with `setns` alone, keeping the host's mount namespace).

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use cork_integration::cork::cork_bin;
use cork_integration::daemon::exec_probe;
use cork_integration::process::{RunOutput, Spawned};
use cork_integration::{Audit, Probe, Side, World, host};
use nix::sys::signal::{Signal, kill};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// `ip netns exec <bottle netns> <cork> ARGS...`, with the environment `World::cork` gives.
fn under_ip_netns_exec<I, S>(world: &World, args: I) -> Result<Command>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", world.bottle().name()])
        .arg(cork_bin()?)
        .args(args)
        .stdin(Stdio::null());
    if std::env::var_os("HOME").is_none() {
        cmd.env("HOME", "/root");
    }
    Ok(cmd)
}

/// The premise of this file: `pid`'s mount namespace has neither cgroup2 nor bpffs (so
/// whatever cork made, it made through another namespace's mounts).
fn assert_mounts_hidden_from(pid: i32) -> Result<()> {
    let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .with_context(|| format!("read /proc/{pid}/mountinfo"))?;
    let own = std::fs::read_link("/proc/self/ns/mnt")?;
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/mnt"))?;
    assert_ne!(own, theirs, "ip netns exec gave cork a mount namespace");
    for line in info.lines() {
        let fstype = line.split(" - ").nth(1).and_then(|t| t.split(' ').next());
        assert!(
            !matches!(fstype, Some("cgroup2" | "bpf")),
            "pid {pid} has {line:?} in its own mount namespace"
        );
    }
    Ok(())
}

fn dump(what: &str, paths: &[std::path::PathBuf]) -> String {
    format!("{what}: {paths:?}")
}

#[test]
fn cork_run_under_ip_netns_exec_enforces_and_leaves_pins_where_clean_finds_them() -> Result<()> {
    let world = World::new("cork_run_under_ip_netns_exec")?;
    let allowed4 = world.tcp_server(Side::Internet, "198.51.100.10:8080")?;
    let allowed6 = world.tcp_server(Side::Internet, "[2001:db8::10]:8080")?;
    let denied = world.tcp_server(Side::Internet, "198.51.100.11:8080")?;
    let manifest = world.manifest(
        "a",
        "[[egress.allow]]\ncidr = \"198.51.100.10/32\"\nports = [8080]\n\
         [[egress.allow]]\ncidr = \"2001:db8::10/128\"\nports = [8080]\n",
    )?;
    let audit_path = world.audit_path_for("a");
    let run = |probe: &Probe| -> Result<Command> {
        let mut args: Vec<String> = vec![
            "run".into(),
            "--manifest".into(),
            manifest.display().to_string(),
            "--audit-log".into(),
            audit_path.display().to_string(),
            "--".into(),
        ];
        args.extend(probe.argv());
        under_ip_netns_exec(&world, args)
    };

    // A whole run: it starts, enforces, and tears down.
    let probe = Probe::new()
        .tcp("198.51.100.10", 8080)?
        .tcp("2001:db8::10", 8080)?
        .tcp("198.51.100.11", 8080)?;
    let out = world.run(run(&probe)?)?;
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(out.lines(), ["ok", "ok", "EPERM"], "{out}");
    assert_eq!(allowed4.peers().len() + allowed6.peers().len(), 2);
    assert!(denied.peers().is_empty(), "{:?}", denied.peers());
    let audit = Audit::read(&audit_path)?;
    audit.expect(json!({
        "verdict": "deny", "reason": "default_deny", "dst": "198.51.100.11", "dport": 8080
    }))?;
    let prefix = format!("{}-", world.bottle_name("a"));
    assert!(
        host::cork_pins(&prefix).is_empty() && host::cork_cgroups(&prefix).is_empty(),
        "a finished run leaves nothing: {} {}",
        dump("pins", &host::cork_pins(&prefix)),
        dump("cgroups", &host::cork_cgroups(&prefix))
    );

    // A held run: its cgroup and pins are the host's, and survive its SIGKILL for `cork
    // clean` to find.
    let go = world.dir().join("go");
    let held = Probe::new()
        .tcp("198.51.100.10", 8080)?
        .say("held")
        .wait_file(&go.display().to_string());
    let mut cork = Spawned::start(&mut run(&held)?)?;
    cork.wait_line("held", WAIT)?;
    // `ip netns exec` execs its command: the child is cork itself.
    assert_mounts_hidden_from(cork.pid().as_raw())?;
    let cgroups = host::cork_cgroups(&prefix);
    assert_eq!(cgroups.len(), 1, "{}", dump("cgroups", &cgroups));
    let pins = host::cork_pins(&prefix);
    assert_eq!(pins.len(), 1, "{}", dump("pins", &pins));
    let pinned = std::fs::read_dir(&pins[0])?.count();
    assert!(pinned > 0, "{} is empty", pins[0].display());
    let members = std::fs::read_to_string(cgroups[0].join("cgroup.procs"))?;
    assert!(
        !members.trim().is_empty(),
        "the bottle runs in the host's cgroup"
    );

    cork.kill()?;
    let clean = world.run(world.cork(["clean"]))?;
    assert_eq!(clean.code(), 0, "{clean}");
    assert!(
        clean.stdout.contains(&prefix) || clean.stderr.contains(&prefix),
        "cork clean reports what it removed: {clean}"
    );
    assert!(
        host::cork_cgroups(&prefix).is_empty(),
        "{}",
        dump("cgroups", &host::cork_cgroups(&prefix))
    );
    assert!(
        host::cork_pins(&prefix).is_empty(),
        "{}",
        dump("pins", &host::cork_pins(&prefix))
    );
    Ok(())
}

/// SIGTERM, then the exit.
fn stop(daemon: Spawned) -> Result<RunOutput> {
    kill(daemon.pid(), Signal::SIGTERM)?;
    daemon.finish(WAIT)
}

#[test]
fn cork_daemon_under_ip_netns_exec_serves_the_host() -> Result<()> {
    let world = World::new("cork_daemon_under_ip_netns_exec")?;
    let allowed = world.tcp_server(Side::Internet, "198.51.100.10:8080")?;
    let denied = world.tcp_server(Side::Internet, "[2001:db8::11]:8080")?;
    let sock = world.path("cork", "sock").display().to_string();
    let log = world.path("daemon-audit", "jsonl");

    let mut cmd = under_ip_netns_exec(
        &world,
        [
            "daemon".as_ref(),
            "--socket".as_ref(),
            sock.as_ref(),
            "--audit-log".as_ref(),
            log.as_os_str(),
        ],
    )?;
    cmd.env("CORK_TEST_HARNESS", "1")
        .env("CORK_TEST_DAEMON_LOCK", world.path("daemon", "lock"));
    let mut daemon = Spawned::start(&mut cmd)?;
    let served = daemon.wait_line(&format!("cork daemon: serving on {sock}"), WAIT);
    if let Err(e) = served {
        let _ = kill(daemon.pid(), Signal::SIGKILL);
        return Err(e);
    }
    let result = with_daemon(
        &world,
        &sock,
        &log,
        daemon.pid().as_raw(),
        (&allowed, &denied),
    );
    let out = stop(daemon)?;
    result?;
    assert_eq!(out.code(), 0, "{out}");
    let prefix = format!("{}-", world.bottle_name("a"));
    assert!(
        host::cork_cgroups(&prefix).is_empty() && host::cork_pins(&prefix).is_empty(),
        "SIGTERM tears the bottle down: {} {}",
        dump("cgroups", &host::cork_cgroups(&prefix)),
        dump("pins", &host::cork_pins(&prefix))
    );
    Ok(())
}

fn with_daemon(
    world: &World,
    sock: &str,
    log: &Path,
    daemon_pid: i32,
    (allowed, denied): (&cork_integration::TcpServer, &cork_integration::TcpServer),
) -> Result<()> {
    assert_mounts_hidden_from(daemon_pid)?;
    let manifest = world.manifest(
        "a",
        "[[egress.allow]]\ncidr = \"198.51.100.10/32\"\nports = [8080]\n",
    )?;
    cork_integration::daemon::create_ok(world, sock, &manifest)?;
    let name = world.bottle_name("a");
    let out = world.run(world.cork(["bottle", "ls", "--socket", sock]))?;
    assert_eq!(out.code(), 0, "{out}");
    assert!(out.stdout.contains(&name), "{out}");

    let prefix = format!("{name}-");
    assert_eq!(
        host::cork_cgroups(&prefix).len(),
        1,
        "{}",
        dump("cgroups", &host::cork_cgroups(&prefix))
    );
    assert_eq!(
        host::cork_pins(&prefix).len(),
        1,
        "{}",
        dump("pins", &host::cork_pins(&prefix))
    );
    // The cgroup.procs path the daemon hands out opens from another process too.
    let show = world.run(world.cork(["bottle", "show", &name, "--socket", sock]))?;
    let info: serde_json::Value = serde_json::from_str(&show.stdout)
        .with_context(|| format!("bottle show is JSON: {show}"))?;
    let procs = info["cgroup_procs"].as_str().context("cgroup_procs")?;
    assert!(Path::new(procs).exists(), "{procs} from the host: {show}");

    let probe = Probe::new()
        .tcp("198.51.100.10", 8080)?
        .tcp("2001:db8::11", 8080)?;
    assert_eq!(exec_probe(world, sock, &name, &probe)?, ["ok", "EPERM"]);
    assert_eq!(allowed.peers().len(), 1);
    assert!(denied.peers().is_empty(), "{:?}", denied.peers());
    Audit::wait_for(
        log,
        json!({"bottle": name, "verdict": "deny", "dst": "2001:db8::11", "dport": 8080}),
        WAIT,
    )?;
    Ok(())
}

/// `cork vm` gets as far as its preflight (KVM or TCG, QEMU, /dev/net/tun) under `ip netns
/// exec`; a whole boot there is left to the VM suites (TCG boots take minutes).
#[test]
fn cork_vm_preflight_passes_under_ip_netns_exec() -> Result<()> {
    let world = World::new("cork_vm_preflight_under_ip_netns_exec")?;
    let out = world.run(under_ip_netns_exec(
        &world,
        ["vm", "--preflight", "--accel", "tcg"],
    )?)?;
    assert_eq!(out.code(), 0, "{out}");
    Ok(())
}
