//! TCP egress from a bottle: default deny, CIDR + port allow, deny beating allow, TCP Fast
//! Open, and IPv4-mapped IPv6 destinations judged as IPv4. IPv4 and IPv6 in every test.

use std::time::Duration;

use anyhow::Result;
use cork_integration::{Probe, Side, World};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(5);

#[test]
fn tcp_connect_is_denied_by_default() -> Result<()> {
    let world = World::new("tcp_connect_is_denied_by_default")?;
    let s4 = world.tcp_server(Side::Internet, "198.51.100.10:8443")?;
    let s6 = world.tcp_server(Side::Internet, "[2001:db8::10]:8443")?;
    let probe = Probe::new()
        .tcp(&s4.ip(), s4.port())?
        .tcp(&s6.ip(), s6.port())?;
    let (out, audit) = world.run_probe("a", "", &probe)?;
    assert_eq!(out.lines(), ["EPERM", "EPERM"], "{out}");
    assert!(s4.peers().is_empty() && s6.peers().is_empty());
    let bottle = world.bottle_name("a");
    for (hook, dst) in [("connect4", "198.51.100.10"), ("connect6", "2001:db8::10")] {
        audit.expect(json!({
            "event": "verdict", "layer": "kernel", "bottle": bottle, "hook": hook,
            "proto": "tcp", "dst": dst, "dport": 8443, "verdict": "deny",
            "reason": "default_deny", "rule": Value::Null,
        }))?;
    }
    Ok(())
}

#[test]
fn tcp_connect_to_allowed_cidr_and_port_succeeds() -> Result<()> {
    let world = World::new("tcp_connect_to_allowed_cidr_and_port_succeeds")?;
    let s4 = world.tcp_server(Side::Internet, "198.51.100.10:8443")?;
    let s6 = world.tcp_server(Side::Internet, "[2001:db8::10]:8443")?;
    let manifest = r#"
[[egress.allow]]
cidr = "198.51.100.0/24"
ports = [443, "8000-8500"]

[[egress.allow]]
cidr = "2001:db8::/64"
ports = [8443]
"#;
    let probe = Probe::new()
        .tcp(&s4.ip(), s4.port())?
        .tcp(&s6.ip(), s6.port())?;
    let (out, audit) = world.run_probe("a", manifest, &probe)?;
    assert_eq!(out.lines(), ["ok", "ok"], "{out}");
    assert_eq!(s4.wait_peers(1, WAIT)?[0].ip().to_string(), "198.51.100.1");
    assert_eq!(s6.wait_peers(1, WAIT)?[0].ip().to_string(), "2001:db8::1");
    for (hook, dst, rule) in [
        ("connect4", "198.51.100.10", "egress.allow[0]"),
        ("connect6", "2001:db8::10", "egress.allow[1]"),
    ] {
        audit.expect(json!({
            "event": "verdict", "hook": hook, "proto": "tcp", "dst": dst, "dport": 8443,
            "verdict": "allow", "reason": "allow_rule", "rule": rule,
        }))?;
    }
    Ok(())
}

#[test]
fn tcp_connect_to_port_outside_the_list_is_denied() -> Result<()> {
    let world = World::new("tcp_connect_to_port_outside_the_list_is_denied")?;
    let s4 = world.tcp_server(Side::Internet, "198.51.100.10:8444")?;
    let s6 = world.tcp_server(Side::Internet, "[2001:db8::10]:8444")?;
    let manifest = r#"
[[egress.allow]]
cidr = "198.51.100.10/32"
ports = [8443]

[[egress.allow]]
cidr = "2001:db8::10/128"
ports = [8443]
"#;
    let probe = Probe::new()
        .tcp(&s4.ip(), s4.port())?
        .tcp(&s6.ip(), s6.port())?;
    let (out, audit) = world.run_probe("a", manifest, &probe)?;
    assert_eq!(out.lines(), ["EPERM", "EPERM"], "{out}");
    assert!(s4.peers().is_empty() && s6.peers().is_empty());
    for dst in ["198.51.100.10", "2001:db8::10"] {
        audit.expect(
            json!({"dst": dst, "dport": 8444, "verdict": "deny", "reason": "default_deny"}),
        )?;
    }
    Ok(())
}

#[test]
fn deny_rule_beats_a_broader_allow() -> Result<()> {
    let world = World::new("deny_rule_beats_a_broader_allow")?;
    let ok4 = world.tcp_server(Side::Internet, "198.51.100.10:8443")?;
    let ok6 = world.tcp_server(Side::Internet, "[2001:db8::10]:8443")?;
    let no4 = world.tcp_server(Side::Internet, "198.51.100.66:8443")?;
    let no6 = world.tcp_server(Side::Internet, "[2001:db8::66]:8443")?;
    let manifest = r#"
[[egress.allow]]
cidr = "198.51.100.0/24"

[[egress.allow]]
cidr = "2001:db8::/64"

[[egress.deny]]
cidr = "198.51.100.66/32"

[[egress.deny]]
cidr = "2001:db8::66/128"
"#;
    let probe = Probe::new()
        .tcp(&no4.ip(), 8443)?
        .tcp(&no6.ip(), 8443)?
        .tcp(&ok4.ip(), 8443)?
        .tcp(&ok6.ip(), 8443)?;
    let (out, audit) = world.run_probe("a", manifest, &probe)?;
    assert_eq!(out.lines(), ["EPERM", "EPERM", "ok", "ok"], "{out}");
    assert!(no4.peers().is_empty() && no6.peers().is_empty());
    assert_eq!(ok4.wait_peers(1, WAIT)?.len(), 1);
    assert_eq!(ok6.wait_peers(1, WAIT)?.len(), 1);
    audit.expect(json!({"dst": "198.51.100.66", "verdict": "deny", "reason": "deny_rule", "rule": "egress.deny[0]"}))?;
    audit.expect(json!({"dst": "2001:db8::66", "verdict": "deny", "reason": "deny_rule", "rule": "egress.deny[1]"}))?;
    audit.expect(json!({"dst": "198.51.100.10", "verdict": "allow", "rule": "egress.allow[0]"}))?;
    audit.expect(json!({"dst": "2001:db8::10", "verdict": "allow", "rule": "egress.allow[1]"}))?;
    Ok(())
}

#[test]
fn tcp_fast_open_to_a_denied_destination_is_refused() -> Result<()> {
    let world = World::new("tcp_fast_open_to_a_denied_destination_is_refused")?;
    let s4 = world.tcp_server(Side::Internet, "198.51.100.10:8443")?;
    let s6 = world.tcp_server(Side::Internet, "[2001:db8::10]:8443")?;
    let probe = Probe::new()
        .tcp_fastopen(&s4.ip(), 8443)?
        .tcp_fastopen(&s6.ip(), 8443)?;
    let (out, audit) = world.run_probe("a", "", &probe)?;
    assert_eq!(out.lines(), ["EPERM", "EPERM"], "{out}");
    assert!(s4.peers().is_empty() && s6.peers().is_empty());
    for dst in ["198.51.100.10", "2001:db8::10"] {
        audit.expect(json!({"dst": dst, "dport": 8443, "proto": "tcp", "verdict": "deny"}))?;
    }
    Ok(())
}

#[test]
fn v4_mapped_destination_is_judged_as_ipv4() -> Result<()> {
    let world = World::new("v4_mapped_destination_is_judged_as_ipv4")?;
    let allowed = world.tcp_server(Side::Internet, "198.51.100.10:8443")?;
    let other = world.tcp_server(Side::Internet, "198.51.100.11:8443")?;
    // Only an IPv4 rule: the mapped form of an allowed address passes, the mapped form of
    // any other IPv4 address does not, and an IPv6 rule covering 2001:db8::/32 is no help.
    let manifest = r#"
[[egress.allow]]
cidr = "198.51.100.10/32"
ports = [8443]

[[egress.allow]]
cidr = "2001:db8::/32"
"#;
    let probe = Probe::new()
        .tcp("::ffff:198.51.100.10", 8443)?
        .tcp("::ffff:198.51.100.11", 8443)?;
    let (out, audit) = world.run_probe("a", manifest, &probe)?;
    assert_eq!(out.lines(), ["ok", "EPERM"], "{out}");
    assert_eq!(
        allowed.wait_peers(1, WAIT)?[0].ip().to_string(),
        "198.51.100.1"
    );
    assert!(other.peers().is_empty());
    audit.expect(
        json!({"hook": "connect6", "dst": "198.51.100.10", "dport": 8443,
                        "verdict": "allow", "rule": "egress.allow[0]"}),
    )?;
    audit.expect(
        json!({"hook": "connect6", "dst": "198.51.100.11", "dport": 8443,
                        "verdict": "deny", "reason": "default_deny"}),
    )?;
    Ok(())
}
