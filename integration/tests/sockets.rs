//! Sockets that bypass connect/sendmsg: raw, ICMP datagram ("ping") and packet sockets
//! are refused at creation, IPv4 and IPv6.

use anyhow::Result;
use cork_integration::{Probe, World};
use serde_json::json;

#[test]
fn icmp_datagram_sockets_are_refused() -> Result<()> {
    let world = World::new("icmp_datagram_sockets_are_refused")?;
    // The World opened ping_group_range to root, so only cork can refuse these.
    let probe = Probe::new()
        .socket("inet", "dgram", "icmp")
        .socket("inet6", "dgram", "icmpv6");
    let (out, audit) = world.run_probe("a", "", &probe)?;
    assert_eq!(out.lines(), ["EPERM", "EPERM"], "{out}");
    // Refused (and audited) by cork's seccomp listener before the socket exists.
    audit.expect(
        json!({"hook": "socket", "proto": "icmp", "verdict": "deny", "reason": "icmp_socket", "comm": "python3"}),
    )?;
    audit.expect(
        json!({"hook": "socket", "proto": "icmpv6", "verdict": "deny", "reason": "icmp_socket"}),
    )?;
    Ok(())
}

#[test]
fn raw_sockets_are_refused() -> Result<()> {
    let world = World::new("raw_sockets_are_refused")?;
    let probe = Probe::new()
        .socket("inet", "raw", "icmp")
        .socket("inet6", "raw", "icmpv6")
        .socket("inet", "raw", "udp");
    let (out, audit) = world.run_probe("a", "", &probe)?;
    assert_eq!(out.lines(), ["EPERM"; 3], "{out}");
    // Each attempt is one audit event from cork's seccomp listener (the kernel would refuse
    // it anyway: CAP_NET_RAW is gone, and inet_create() checks that before any cgroup hook).
    let events = audit
        .find(json!({"hook": "socket", "verdict": "deny", "reason": "raw_socket", "proto": "raw"}));
    assert_eq!(events.len(), 3, "one raw_socket event per attempt");
    // Refused before any socket existed: cgroup/sock_create (which would deny raw sockets
    // too, with a kernel event) never saw one.
    audit.expect_none(json!({"hook": "sock_create"}))?;
    Ok(())
}

#[test]
fn packet_sockets_are_refused() -> Result<()> {
    let world = World::new("packet_sockets_are_refused")?;
    let probe = Probe::new()
        .socket("packet", "raw", "all")
        .socket("packet", "dgram", "all");
    let (out, audit) = world.run_probe("a", "", &probe)?;
    assert_eq!(
        out.lines(),
        ["EPERM", "EPERM"],
        "CAP_NET_RAW must be gone: {out}"
    );
    let events = audit.find(
        json!({"hook": "socket", "verdict": "deny", "reason": "packet_socket", "proto": "packet"}),
    );
    assert_eq!(events.len(), 2, "one packet_socket event per attempt");
    Ok(())
}

#[test]
fn inet_protocols_other_than_tcp_and_udp_are_refused() -> Result<()> {
    let world = World::new("inet_protocols_other_than_tcp_and_udp_are_refused")?;
    // MPTCP and SCTP sockets would bypass nothing today, but the sock_addr hooks only
    // understand TCP and UDP: cgroup/sock_create refuses anything else.
    let probe = Probe::new()
        .socket("inet", "stream", "mptcp")
        .socket("inet6", "stream", "mptcp")
        .socket("inet", "stream", "tcp");
    let (out, audit) = world.run_probe("a", "", &probe)?;
    let lines = out.lines();
    assert_eq!(lines[2], "ok", "plain TCP still works: {out}");
    assert_eq!(lines[..2], ["EPERM", "EPERM"], "{out}");
    let events = audit
        .find(json!({"hook": "sock_create", "verdict": "deny", "reason": "unsupported_socket"}));
    assert_eq!(events.len(), 2, "one unsupported_socket event per attempt");
    Ok(())
}
