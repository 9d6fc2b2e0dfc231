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
    // cork run remounts every cgroup filesystem read-only in the bottle's mount namespace
    // (run/child.rs): the write fails with EROFS, not for want of a file or a permission
    // bit, which a root process with CAP_DAC_OVERRIDE would not lack.
    assert_eq!(
        lines[0], "EROFS",
        "writing the root cgroup.procs must fail as read-only: {out}"
    );
    let own = format!("cork-{}", world.bottle_name("a"));
    assert!(lines[1].contains(&own), "still in the bottle cgroup: {out}");
    assert_eq!(lines[2], "EPERM", "still enforced: {out}");
    assert!(srv.peers().is_empty());
    Ok(())
}

#[test]
fn root_in_a_bottle_cannot_change_host_settings() -> Result<()> {
    let world = World::new("root_in_a_bottle_cannot_change_host_settings")?;
    // Each write puts back what is there: harmless even if the bottle could write.
    let paths = [
        "/proc/sys/kernel/core_pattern",
        "/proc/sys/net/ipv4/ip_forward",
        "/proc/sys/net/ipv6/conf/all/forwarding",
        "/sys/module/printk/parameters/time",
    ];
    let mut probe = Probe::new();
    for p in paths {
        probe = probe.rewrite(p);
    }
    // Outside a bottle, as root in the same network namespace, the same writes work.
    let outside = world.run(
        world
            .command(Side::Bottle, "python3")
            .args(&probe.argv()[1..]),
    )?;
    assert_eq!(outside.lines(), ["ok"; 4], "baseline: {outside}");
    let (out, _audit) = world.run_probe("a", "", &probe)?;
    assert_eq!(
        out.lines(),
        ["EROFS"; 4],
        "kernel settings must be read-only in a bottle: {out}"
    );
    Ok(())
}

/// Adds a route per family and an nftables table, printing each tool's output and then
/// `<key>=<exit status>`.
const NET_ADMIN_SCRIPT: &str = "ip route add 198.51.100.128/25 dev lo 2>&1; echo ip=$?; \
                  ip -6 route add 2001:db8:ff::/48 dev lo 2>&1; echo ip6=$?; \
                  nft add table inet ckescape 2>&1; echo nft=$?";

#[test]
fn bottle_cannot_change_routes_or_nftables() -> Result<()> {
    let world = World::new("bottle_cannot_change_routes_or_nftables")?;
    let argv = ["sh", "-c", NET_ADMIN_SCRIPT].map(String::from);
    let (out, _audit) = world.run_argv("a", "", &argv)?;
    // The kernel refuses each netlink request for want of CAP_NET_ADMIN (EPERM), in each
    // tool's own words; any other failure (a missing module, a bad argument) is not this.
    let lines = out.lines();
    let at = |key: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(key))
            .with_context(|| format!("{key} in {out}"))
    };
    let (ip, ip6, nft) = (at("ip=")?, at("ip6=")?, at("nft=")?);
    assert_eq!(
        lines[..ip6 + 1],
        [
            "RTNETLINK answers: Operation not permitted",
            "ip=2",
            "RTNETLINK answers: Operation not permitted",
            "ip6=2",
        ],
        "{out}"
    );
    assert_eq!(ip, 1, "{out}");
    assert!(
        lines[ip6 + 1..nft]
            .first()
            .is_some_and(|l| l.starts_with("Error: ") && l.ends_with(": Operation not permitted")),
        "{out}"
    );
    assert_eq!(lines[nft], "nft=1", "{out}");
    // And nothing changed, seen from outside the bottle.
    let routes = |world: &World| -> Result<(String, String)> {
        Ok((
            world.bottle().ip(&["route", "show", "198.51.100.128/25"])?,
            world
                .bottle()
                .ip(&["-6", "route", "show", "2001:db8:ff::/48"])?,
        ))
    };
    let tables = |world: &World| -> Result<String> {
        Ok(world
            .run(world.command(Side::Bottle, "nft").args(["list", "tables"]))?
            .stdout)
    };
    let (r4, r6) = routes(&world)?;
    assert!(r4.trim().is_empty() && r6.trim().is_empty(), "{r4}{r6}");
    assert!(!tables(&world)?.contains("ckescape"));

    // The positive control: the same commands outside the bottle, in the same netns,
    // succeed — and the checks above see what they did.
    let control = world.run(
        world
            .command(Side::Bottle, "sh")
            .args(["-c", NET_ADMIN_SCRIPT]),
    )?;
    assert_eq!(control.lines(), ["ip=0", "ip6=0", "nft=0"], "{control}");
    let (r4, r6) = routes(&world)?;
    assert!(r4.contains("198.51.100.128/25") && r6.contains("2001:db8:ff::/48"));
    assert!(tables(&world)?.contains("table inet ckescape"));
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
