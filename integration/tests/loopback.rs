//! Loopback scoping: a bottle reaches its own loopback listeners, not the host's
//! loopback services (by any spelling of loopback), unless their port is in
//! `loopback.host_ports`; a host service on the namespace's own non-loopback address is
//! ordinary egress. The bottle netns plays the host; its servers are host services.

use std::time::Duration;

use anyhow::Result;
use cork_integration::{Probe, Side, World};
use serde_json::json;

/// Every way a bottle can name the host's loopback.
const LOOPBACK_SPELLINGS: [&str; 5] = ["127.0.0.1", "::1", "::ffff:127.0.0.1", "0.0.0.0", "::"];

#[test]
fn bottle_reaches_its_own_loopback_listeners() -> Result<()> {
    let world = World::new("bottle_reaches_its_own_loopback_listeners")?;
    let probe = Probe::new()
        .listen("127.0.0.1", 9100)?
        .tcp("127.0.0.1", 9100)?
        .tcp("0.0.0.0", 9100)?
        .listen("::1", 9101)?
        .tcp("::1", 9101)?
        .tcp("::", 9101)?;
    let (out, audit) = world.run_probe("a", "", &probe)?;
    assert_eq!(
        out.lines(),
        ["ok 9100", "ok", "ok", "ok 9101", "ok", "ok"],
        "{out}"
    );
    audit.expect(
        json!({"hook": "connect4", "dport": 9100, "verdict": "allow", "reason": "loopback_own"}),
    )?;
    audit.expect(
        json!({"hook": "connect6", "dport": 9101, "verdict": "allow", "reason": "loopback_own"}),
    )?;
    // Only the probe's own connects are asserted: the host's name service (glibc trying
    // nscd's socket, say) may add denials of its own that this test is not about.
    for dport in [9100, 9101] {
        audit.expect_none(json!({"verdict": "deny", "dport": dport}))?;
    }
    Ok(())
}

/// Listens without binding first (listen() picks the port; no post_bind hook sees that),
/// then connects to itself over loopback and talks both ways: the listener is still known
/// as the bottle's own (tagged when it listened), and the answers of what it accepted pass.
const AUTOBOUND: &str = r#"
import socket
for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    l = socket.socket(fam, socket.SOCK_STREAM)
    l.listen()
    port = l.getsockname()[1]
    c = socket.create_connection((host, port), timeout=5)
    a, _ = l.accept()
    c.sendall(b"q")
    assert a.recv(1) == b"q"
    a.sendall(b"a")
    assert c.recv(1) == b"a"
    print("ok", port)
"#;

#[test]
fn listeners_that_never_bound_are_the_bottles_own() -> Result<()> {
    let world = World::new("listeners_that_never_bound_are_the_bottles_own")?;
    let argv = [
        cork_integration::probe::python3().to_string(),
        "-c".into(),
        AUTOBOUND.into(),
    ];
    let (out, audit) = world.run_argv("a", "", &argv)?;
    assert_eq!(out.code(), 0, "{out}");
    let ports: Vec<u64> = out
        .lines()
        .iter()
        .filter_map(|l| l.strip_prefix("ok ")?.parse().ok())
        .collect();
    assert_eq!(ports.len(), 2, "{out}");
    audit.expect(json!({"hook": "connect4", "dport": ports[0], "verdict": "allow", "reason": "loopback_own"}))?;
    audit.expect(json!({"hook": "connect6", "dport": ports[1], "verdict": "allow", "reason": "loopback_own"}))?;
    for dport in ports {
        audit.expect_none(json!({"verdict": "deny", "dport": dport}))?;
    }
    Ok(())
}

#[test]
fn host_loopback_service_is_not_reachable() -> Result<()> {
    let world = World::new("host_loopback_service_is_not_reachable")?;
    // Dual-stack: answers on 127.0.0.1, ::1 and the mapped form alike.
    let host = world.tcp_server(Side::Bottle, "[::]:9200")?;
    world.connect_from_bottle("127.0.0.1:9200".parse()?)?;
    world.connect_from_bottle("[::1]:9200".parse()?)?;
    assert_eq!(
        host.wait_peers(2, Duration::from_secs(5))?.len(),
        2,
        "baseline outside cork"
    );

    let mut probe = Probe::new();
    for a in LOOPBACK_SPELLINGS {
        probe = probe.tcp(a, 9200)?;
    }
    let (out, audit) = world.run_probe("a", "", &probe)?;
    assert_eq!(out.lines(), ["EPERM"; 5], "{out}");
    assert_eq!(
        host.peers().len(),
        2,
        "only the baseline connections: {:?}",
        host.peers()
    );
    audit.expect(
        json!({"hook": "connect4", "dport": 9200, "verdict": "deny", "reason": "loopback_foreign"}),
    )?;
    audit.expect(
        json!({"hook": "connect6", "dport": 9200, "verdict": "deny", "reason": "loopback_foreign"}),
    )?;
    assert_eq!(
        audit
            .find(json!({"dport": 9200, "reason": "loopback_foreign"}))
            .len(),
        5,
        "{}",
        audit.dump()
    );
    Ok(())
}

#[test]
fn host_loopback_service_is_reachable_on_a_host_port() -> Result<()> {
    let world = World::new("host_loopback_service_is_reachable_on_a_host_port")?;
    let host = world.tcp_server(Side::Bottle, "[::]:9200")?;
    let other = world.tcp_server(Side::Bottle, "[::]:9201")?;
    let mut probe = Probe::new();
    for a in LOOPBACK_SPELLINGS {
        probe = probe.tcp(a, 9200)?;
    }
    probe = probe.tcp("127.0.0.1", 9201)?.tcp("::1", 9201)?;
    let (out, audit) = world.run_probe("a", "[loopback]\nhost_ports = [9200]", &probe)?;
    assert_eq!(
        out.lines(),
        ["ok", "ok", "ok", "ok", "ok", "EPERM", "EPERM"],
        "{out}"
    );
    assert_eq!(host.wait_peers(5, Duration::from_secs(5))?.len(), 5);
    assert!(other.peers().is_empty());
    audit.expect(json!({"hook": "connect4", "dport": 9200, "verdict": "allow", "reason": "loopback_host_port"}))?;
    audit.expect(json!({"hook": "connect6", "dport": 9200, "verdict": "allow", "reason": "loopback_host_port"}))?;
    audit.expect(json!({"dport": 9201, "verdict": "deny", "reason": "loopback_foreign"}))?;
    Ok(())
}

#[test]
fn host_service_on_the_netns_address_needs_an_allow_rule() -> Result<()> {
    let world = World::new("host_service_on_the_netns_address_needs_an_allow_rule")?;
    let host = world.tcp_server(Side::Bottle, "[::]:9300")?;
    let probe = Probe::new()
        .tcp("198.51.100.1", 9300)?
        .tcp("2001:db8::1", 9300)?;

    let (out, audit) = world.run_probe("a", "", &probe)?;
    assert_eq!(out.lines(), ["EPERM", "EPERM"], "{out}");
    assert!(host.peers().is_empty());
    audit.expect(json!({"dst": "198.51.100.1", "dport": 9300, "verdict": "deny"}))?;
    audit.expect(json!({"dst": "2001:db8::1", "dport": 9300, "verdict": "deny"}))?;

    let allow = r#"
[[egress.allow]]
cidr = "198.51.100.1/32"
ports = [9300]

[[egress.allow]]
cidr = "2001:db8::1/128"
ports = [9300]
"#;
    let (out, audit) = world.run_probe("b", allow, &probe)?;
    assert_eq!(out.lines(), ["ok", "ok"], "{out}");
    assert_eq!(host.wait_peers(2, Duration::from_secs(5))?.len(), 2);
    audit.expect(json!({"dst": "198.51.100.1", "verdict": "allow", "rule": "egress.allow[0]"}))?;
    audit.expect(json!({"dst": "2001:db8::1", "verdict": "allow", "rule": "egress.allow[1]"}))?;
    Ok(())
}
