//! UDP egress: unconnected sendto/sendmsg (the sendmsg hooks) and connected UDP (the
//! connect hooks), denied and allowed, IPv4 and IPv6. The receiving side is checked with
//! a sentinel datagram sent after the bottle exited, so "nothing arrived" needs no sleep.

use std::time::Duration;

use anyhow::Result;
use cork_integration::{Probe, Side, UdpServer, World};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(5);

fn payloads_except_sentinels(srv: &UdpServer) -> Vec<String> {
    srv.payloads()
        .into_iter()
        .filter(|p| !p.starts_with("sentinel-"))
        .collect()
}

#[test]
fn unconnected_udp_is_denied_by_default() -> Result<()> {
    let world = World::new("unconnected_udp_is_denied_by_default")?;
    let u4 = world.udp_server(Side::Internet, "198.51.100.10:5300")?;
    let u6 = world.udp_server(Side::Internet, "[2001:db8::10]:5300")?;
    let probe = Probe::new()
        .udp_sendto(&u4.ip(), 5300, "to-v4")?
        .udp_sendto(&u6.ip(), 5300, "to-v6")?
        .udp_sendmsg(&u4.ip(), 5300, "msg-v4")?
        .udp_sendmsg(&u6.ip(), 5300, "msg-v6")?;
    let (out, audit) = world.run_probe("a", "", &probe)?;
    assert_eq!(out.lines(), ["EPERM"; 4], "{out}");
    world.udp_sentinel(&u4)?;
    world.udp_sentinel(&u6)?;
    assert!(
        payloads_except_sentinels(&u4).is_empty(),
        "{:?}",
        u4.datagrams()
    );
    assert!(
        payloads_except_sentinels(&u6).is_empty(),
        "{:?}",
        u6.datagrams()
    );
    for (hook, dst) in [("sendmsg4", "198.51.100.10"), ("sendmsg6", "2001:db8::10")] {
        audit.expect(
            json!({"hook": hook, "proto": "udp", "dst": dst, "dport": 5300,
                            "verdict": "deny", "reason": "default_deny"}),
        )?;
    }
    Ok(())
}

#[test]
fn unconnected_udp_to_an_allowed_udp_rule_arrives() -> Result<()> {
    let world = World::new("unconnected_udp_to_an_allowed_udp_rule_arrives")?;
    let u4 = world.udp_server(Side::Internet, "198.51.100.10:5300")?;
    let u6 = world.udp_server(Side::Internet, "[2001:db8::10]:5300")?;
    let manifest = r#"
[[egress.allow]]
cidr = "198.51.100.10/32"
ports = [5300]
proto = "udp"

[[egress.allow]]
cidr = "2001:db8::10/128"
ports = [5300]
proto = "any"
"#;
    let probe = Probe::new()
        .udp_sendto(&u4.ip(), 5300, "to-v4")?
        .udp_sendmsg(&u6.ip(), 5300, "msg-v6")?;
    let (out, audit) = world.run_probe("a", manifest, &probe)?;
    assert_eq!(out.lines(), ["ok", "ok"], "{out}");
    let got4 = u4.wait_payload("to-v4", WAIT)?;
    let got6 = u6.wait_payload("msg-v6", WAIT)?;
    assert_eq!(
        got4.first().map(|d| d.peer.ip().to_string()).as_deref(),
        Some("198.51.100.1")
    );
    assert_eq!(
        got6.first().map(|d| d.peer.ip().to_string()).as_deref(),
        Some("2001:db8::1")
    );
    audit.expect(
        json!({"hook": "sendmsg4", "proto": "udp", "dst": "198.51.100.10", "dport": 5300,
                        "verdict": "allow", "reason": "allow_rule", "rule": "egress.allow[0]"}),
    )?;
    audit.expect(
        json!({"hook": "sendmsg6", "proto": "udp", "dst": "2001:db8::10", "dport": 5300,
                        "verdict": "allow", "reason": "allow_rule", "rule": "egress.allow[1]"}),
    )?;
    Ok(())
}

#[test]
fn a_tcp_rule_does_not_allow_udp() -> Result<()> {
    let world = World::new("a_tcp_rule_does_not_allow_udp")?;
    let u4 = world.udp_server(Side::Internet, "198.51.100.10:5300")?;
    let u6 = world.udp_server(Side::Internet, "[2001:db8::10]:5300")?;
    // proto defaults to "tcp".
    let manifest = r#"
[[egress.allow]]
cidr = "198.51.100.10/32"
ports = [5300]

[[egress.allow]]
cidr = "2001:db8::10/128"
ports = [5300]
"#;
    let probe = Probe::new()
        .udp_sendto(&u4.ip(), 5300, "to-v4")?
        .udp_sendto(&u6.ip(), 5300, "to-v6")?;
    let (out, audit) = world.run_probe("a", manifest, &probe)?;
    assert_eq!(out.lines(), ["EPERM", "EPERM"], "{out}");
    for (hook, dst) in [("sendmsg4", "198.51.100.10"), ("sendmsg6", "2001:db8::10")] {
        audit.expect(
            json!({"hook": hook, "proto": "udp", "dst": dst, "dport": 5300,
                            "verdict": "deny", "reason": "default_deny"}),
        )?;
    }
    world.udp_sentinel(&u4)?;
    world.udp_sentinel(&u6)?;
    assert!(payloads_except_sentinels(&u4).is_empty() && payloads_except_sentinels(&u6).is_empty());
    Ok(())
}

#[test]
fn connected_udp_is_judged_at_connect() -> Result<()> {
    let world = World::new("connected_udp_is_judged_at_connect")?;
    let ok4 = world.udp_server(Side::Internet, "198.51.100.10:5300")?;
    let ok6 = world.udp_server(Side::Internet, "[2001:db8::10]:5300")?;
    let no4 = world.udp_server(Side::Internet, "198.51.100.11:5300")?;
    let no6 = world.udp_server(Side::Internet, "[2001:db8::11]:5300")?;
    let manifest = r#"
[[egress.allow]]
cidr = "198.51.100.10/32"
proto = "udp"

[[egress.allow]]
cidr = "2001:db8::10/128"
proto = "udp"
"#;
    let probe = Probe::new()
        .udp_connect(&ok4.ip(), 5300, "c-v4")?
        .udp_connect(&ok6.ip(), 5300, "c-v6")?
        .udp_connect(&no4.ip(), 5300, "x-v4")?
        .udp_connect(&no6.ip(), 5300, "x-v6")?;
    let (out, audit) = world.run_probe("a", manifest, &probe)?;
    assert_eq!(out.lines(), ["ok", "ok", "EPERM", "EPERM"], "{out}");
    assert_eq!(ok4.wait_payload("c-v4", WAIT)?.len(), 1);
    assert_eq!(ok6.wait_payload("c-v6", WAIT)?.len(), 1);
    world.udp_sentinel(&no4)?;
    world.udp_sentinel(&no6)?;
    assert!(
        payloads_except_sentinels(&no4).is_empty() && payloads_except_sentinels(&no6).is_empty()
    );
    audit.expect(
        json!({"hook": "connect4", "proto": "udp", "dst": "198.51.100.11", "verdict": "deny"}),
    )?;
    audit.expect(
        json!({"hook": "connect6", "proto": "udp", "dst": "2001:db8::11", "verdict": "deny"}),
    )?;
    audit.expect(json!({"proto": "udp", "dst": "198.51.100.10", "verdict": "allow", "rule": "egress.allow[0]"}))?;
    audit.expect(json!({"proto": "udp", "dst": "2001:db8::10", "verdict": "allow", "rule": "egress.allow[1]"}))?;
    Ok(())
}
