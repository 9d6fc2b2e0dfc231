//! Escape attempts from inside a bottle: leaving the cgroup, changing routes or
//! nftables, keeping dangerous capabilities, and hiding in a grandchild.

use anyhow::{Context, Result};
use cork_integration::{Probe, Side, World, host};
use serde_json::json;

/// Capability numbers (include/uapi/linux/capability.h) a bottle must not hold.
const FORBIDDEN_CAPS: [(&str, u32); 7] = [
    ("SYS_MODULE", 16),
    ("SYS_PTRACE", 19),
    ("SYS_ADMIN", 21),
    ("NET_ADMIN", 12),
    ("NET_RAW", 13),
    ("PERFMON", 38),
    ("BPF", 39),
];

fn field<'a>(status: &'a str, key: &str) -> Result<&'a str> {
    status
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .with_context(|| format!("{key} missing from {status:?}"))
}

fn assert_confined(status: &str) -> Result<()> {
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        let bits = u64::from_str_radix(field(status, set)?, 16)?;
        for (name, bit) in FORBIDDEN_CAPS {
            assert_eq!(bits & (1 << bit), 0, "{set} still has CAP_{name}: {status}");
        }
    }
    assert_eq!(field(status, "NoNewPrivs")?, "1", "{status}");
    Ok(())
}

#[test]
fn bottle_cannot_move_itself_to_the_root_cgroup() -> Result<()> {
    let world = World::new("bottle_cannot_move_itself_to_the_root_cgroup")?;
    let srv = world.tcp_server(Side::Internet, "198.51.100.10:8443")?;
    let procs = host::cgroup2_mount()?.join("cgroup.procs");
    let probe = Probe::new()
        .write(&procs.display().to_string(), "$PID")
        .read("/proc/self/cgroup")
        .tcp(&srv.ip(), 8443)?;
    let (out, _audit) = world.run_probe("a", "", &probe)?;
    let lines = out.lines();
    assert_ne!(
        lines[0], "ok",
        "writing the root cgroup.procs must fail: {out}"
    );
    let own = format!("cork-{}", world.bottle_name("a"));
    assert!(lines[1].contains(&own), "still in the bottle cgroup: {out}");
    assert_eq!(lines[2], "EPERM", "still enforced: {out}");
    assert!(srv.peers().is_empty());
    Ok(())
}

#[test]
fn bottle_cannot_change_routes_or_nftables() -> Result<()> {
    let world = World::new("bottle_cannot_change_routes_or_nftables")?;
    let script = "ip route add 198.51.100.128/25 dev lo 2>&1; echo ip=$?; \
                  ip -6 route add 2001:db8:ff::/48 dev lo 2>&1; echo ip6=$?; \
                  nft add table inet ckescape 2>&1; echo nft=$?";
    let argv = ["sh", "-c", script].map(String::from);
    let (out, _audit) = world.run_argv("a", "", &argv)?;
    for key in ["ip=", "ip6=", "nft="] {
        let line = out
            .lines()
            .into_iter()
            .find(|l| l.starts_with(key))
            .with_context(|| format!("{key} in {out}"))?;
        assert_ne!(line, format!("{key}0"), "{out}");
    }
    // And nothing changed, seen from outside the bottle.
    assert!(
        world
            .bottle()
            .ip(&["route", "show", "198.51.100.128/25"])?
            .trim()
            .is_empty()
    );
    assert!(
        world
            .bottle()
            .ip(&["-6", "route", "show", "2001:db8:ff::/48"])?
            .trim()
            .is_empty()
    );
    let tables = world.run(world.command(Side::Bottle, "nft").args(["list", "tables"]))?;
    assert!(!tables.stdout.contains("ckescape"), "{tables}");
    Ok(())
}

#[test]
fn bottle_has_no_dangerous_capabilities_and_no_new_privs() -> Result<()> {
    let world = World::new("bottle_has_no_dangerous_capabilities_and_no_new_privs")?;
    let (out, _audit) = world.run_probe("a", "", &Probe::new().status())?;
    assert_confined(&out.stdout)
}

#[test]
fn grandchildren_are_confined_and_denied_too() -> Result<()> {
    let world = World::new("grandchildren_are_confined_and_denied_too")?;
    let s4 = world.tcp_server(Side::Internet, "198.51.100.10:8443")?;
    let s6 = world.tcp_server(Side::Internet, "[2001:db8::10]:8443")?;
    let probe = Probe::new()
        .status()
        .tcp(&s4.ip(), 8443)?
        .tcp(&s6.ip(), 8443)?;
    let (out, audit) = world.run_argv("a", "", &probe.argv_via_shell())?;
    let lines = out.lines();
    assert_confined(lines[0])?;
    assert_eq!(lines[1..], ["EPERM", "EPERM"], "{out}");
    assert!(s4.peers().is_empty() && s6.peers().is_empty());
    let e = audit.expect(json!({"dst": "198.51.100.10", "verdict": "deny"}))?;
    assert_eq!(
        e["comm"], "python3",
        "the grandchild is named in the audit: {e}"
    );
    audit.expect(json!({"dst": "2001:db8::10", "verdict": "deny"}))?;
    Ok(())
}

#[test]
fn user_switch_runs_cmd_unprivileged_and_still_enforced() -> Result<()> {
    let world = World::new("user_switch_runs_cmd_unprivileged_and_still_enforced")?;
    let srv = world.tcp_server(Side::Internet, "198.51.100.10:8443")?;
    let manifest = world.manifest("a", "")?;
    let audit_path = world.audit_path();
    // Debian's python3: the toolchain's may live under /root, which nobody cannot enter.
    let script = "import os, socket, errno\n\
                  print(os.getuid(), os.getgid(), os.getgroups())\n\
                  s = socket.socket()\n\
                  try:\n    s.connect(('198.51.100.10', 8443)); print('ok')\n\
                  except OSError as e:\n    print(errno.errorcode[e.errno])\n";
    let mut cmd = world.cork(["run", "--manifest"]);
    cmd.arg(&manifest)
        .arg("--audit-log")
        .arg(&audit_path)
        .args([
            "--user",
            "65534:65534",
            "--",
            "/usr/bin/python3",
            "-c",
            script,
        ]);
    let out = world.run(&mut cmd)?;
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(out.lines(), ["65534 65534 [65534]", "EPERM"], "{out}");
    assert!(srv.peers().is_empty());
    let audit = cork_integration::Audit::read(&audit_path)?;
    audit.expect(
        json!({"dst": "198.51.100.10", "dport": 8443, "verdict": "deny",
                        "reason": "default_deny", "comm": "python3"}),
    )?;
    Ok(())
}
