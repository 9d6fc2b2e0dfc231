//! `cork probe --guest` inside a VM bottle's guest: the test guest boots under TCG with
//! the cork binary under test in it (`cork_integration::guest_cork`) and runs the probe
//! twice. With the manifest `cork vm` hands over in fw_cfg, every probe passes — allowed
//! destinations answered (IPv4, IPv6, a domain learned through cork's DNS), denied and
//! default-deny ones dropped, the gateway's host port answered and another port dropped,
//! DNS filtered and redirected, the CA and the placeholder in fw_cfg — and it exits 0.
//! With a manifest claiming a deny that the bottle does not enforce, exactly that probe
//! fails, explaining that the tap let the connection through, and it exits 1.

use std::time::Duration;

use anyhow::{Context, Result};
use cork_integration::dns_server::Zone;
use cork_integration::guest_cork::{GUEST_CORK, guest_with_cork};
use cork_integration::process::run_with_timeout;
use cork_integration::vm::{Guest, cork_vm, make_room_for_pools};
use cork_integration::{Side, World};
use serde_json::Value;

const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

const MANIFEST: &str = r#"[[egress.allow]]
cidr = "198.51.100.10/32"
ports = [8080]

[[egress.allow]]
cidr = "2001:db8::10/128"
ports = [8080]

[[egress.deny]]
cidr = "198.51.100.20/32"

[[egress.deny]]
cidr = "2001:db8::20/128"

[[egress.allow]]
domain = "api.vm.test"
ports = [443]

[loopback]
host_ports = [7000]

[dns]
upstream = ["198.51.100.53"]

[[credentials]]
domain = "api.vm.test"
header = "x-api-key"
placeholder = "cork-placeholder-vmprobe"
env = "VM_KEY"
value_env = "VM_REAL_KEY"
"#;

/// What the guest claims instead: 198.51.100.10:8080, which the bottle allows, denied.
const CLAIMS: &str = r#"version = 1
[bottle]
name = "claims"

[[egress.deny]]
cidr = "198.51.100.10/32"
ports = [8080]
"#;

fn script() -> String {
    format!(
        r#"
n=0
while [ $n -lt 100 ] && ! ip -6 -o addr show dev eth0 scope global | grep -q inet6; do
	sleep 0.1; n=$((n + 1))
done
echo HONEST-BEGIN
{GUEST_CORK} probe --guest --json --timeout 2
echo "HONEST-END rc=$?"
echo CLAIMS-BEGIN
{GUEST_CORK} probe --guest --json --timeout 2 --manifest /opt/cork/claims.toml
echo "CLAIMS-END rc=$?"
"#
    )
}

/// The JSON lines between `begin` and `end`, and the exit status `end` reports.
fn section(stdout: &str, begin: &str, end: &str) -> Result<(Vec<Value>, String)> {
    let mut probes = Vec::new();
    let mut inside = false;
    for line in stdout.lines().map(|l| l.trim_end_matches('\r')) {
        if line.starts_with(begin) {
            inside = true;
        } else if let Some(rc) = line.strip_prefix(end) {
            return Ok((probes, rc.trim().to_owned()));
        } else if inside && line.starts_with('{') {
            probes.push(serde_json::from_str(line).with_context(|| format!("not JSON: {line}"))?);
        }
    }
    anyhow::bail!("no {begin} … {end} section in:\n{stdout}")
}

#[test]
fn the_probe_inside_a_guest_checks_what_the_tap_keeps() -> Result<()> {
    let world = World::new("the_probe_inside_a_guest_checks_what_the_tap_keeps")?;
    let guest = guest_with_cork(&world, &Guest::locate()?, &[("claims.toml", CLAIMS)])?;
    make_room_for_pools(&world)?;
    let allowed4 = world.tcp_server(Side::Internet, "198.51.100.10:8080")?;
    let allowed6 = world.tcp_server(Side::Internet, "[2001:db8::10]:8080")?;
    let denied4 = world.tcp_server(Side::Internet, "198.51.100.20:443")?;
    let denied6 = world.tcp_server(Side::Internet, "[2001:db8::20]:443")?;
    let host = world.tcp_server(Side::Bottle, "[::]:7000")?;
    let _dns = world.dns_server(
        "198.51.100.53:53",
        Zone::new()
            .a("api.vm.test", "198.51.100.30", 300)
            .aaaa("api.vm.test", "2001:db8::30", 300)
            .txt("api.vm.test", "exfil-channel", 300),
    )?;
    let manifest = world.manifest("vm", MANIFEST)?;
    let probe = world.path("probe", "sh");
    std::fs::write(&probe, script())?;
    let mut cmd = cork_vm(&world, &guest, &manifest, "vm", &probe, "cork.dhcp=1");
    cmd.env("VM_REAL_KEY", "real-vm-key-51c2");
    let out = run_with_timeout(&mut cmd, BOOT_TIMEOUT)?;
    assert_eq!(out.code(), 0, "{out}");

    let (honest, rc) = section(&out.stdout, "HONEST-BEGIN", "HONEST-END rc=")?;
    let failed: Vec<&Value> = honest.iter().filter(|p| p["passed"] != true).collect();
    assert!(failed.is_empty(), "failed probes: {failed:#?}\n{out}");
    assert_eq!(rc, "0", "{out}");
    let ids: Vec<&str> = honest.iter().filter_map(|p| p["id"].as_str()).collect();
    for id in [
        "net.allow:egress.allow[0]",
        "net.allow:egress.allow[1]",
        "net.deny:egress.deny[0]",
        "net.deny:egress.deny[1]",
        "net.default_deny:198.51.100.254",
        "net.default_deny:2001:db8::fe",
        "dns.allow:egress.allow[2]",
        "dns.not_allowed",
        "dns.txt_refused",
        "dns.redirect:198.51.100.253",
        "dns.redirect:2001:db8::253",
        "ca.fw_cfg",
        "cred.fw_cfg_placeholder:VM_KEY",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    // The gateway, over IPv4 and the router's IPv6 address: the host port answered,
    // another port dropped.
    for prefix in ["gateway.host_port:", "gateway.foreign:"] {
        let n = ids.iter().filter(|i| i.starts_with(prefix)).count();
        assert_eq!(n, 2, "{prefix} per gateway: {ids:?}");
    }
    // What was dropped never arrived; what was answered did.
    assert!(denied4.peers().is_empty() && denied6.peers().is_empty());
    assert!(!allowed4.peers().is_empty() && !allowed6.peers().is_empty());
    assert!(!host.peers().is_empty(), "the host port was reached");
    // No process probe runs in a guest.
    assert!(
        !ids.iter()
            .any(|i| i.starts_with("proc.") || i.starts_with("unix."))
    );

    let (claims, rc) = section(&out.stdout, "CLAIMS-BEGIN", "CLAIMS-END rc=")?;
    assert_eq!(rc, "1", "a hard probe failed: {out}");
    let failed: Vec<&Value> = claims.iter().filter(|p| p["passed"] != true).collect();
    assert_eq!(failed.len(), 1, "{failed:#?}");
    let f = failed[0];
    assert_eq!(f["id"], "net.deny:egress.deny[0]", "{f:#}");
    assert_eq!(f["observed"], "connected", "{f:#}");
    assert!(
        f.to_string()
            .contains("the tap let the connection to 198.51.100.10:8080 through"),
        "{f:#}"
    );
    Ok(())
}
