//! cork-nft against the real kernel, without a VM: a guest namespace on a veth standing
//! in for the tap, the bottle's rules applied in the bottle netns ("the host"), and a
//! test-only netdev ingress chain on the tap setting the marks the tc program will set
//! (`Guest::mark_flows`). Real traffic from the guest end shows what the rules do.
//! (Batches, read-back and removal: `nft_batches.rs`.)

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result};
use cork_integration::guest::{GATEWAY_V4, GATEWAY_V6, GUEST_MAC, GUEST_V4, GUEST_V6};
use cork_integration::nft::{apply, in_host, original_dst, vm_rules};
use cork_integration::{Guest, Side, World};
use cork_nft::{MARK_DIRECT, MARK_DNS, MARK_HOST_PORT, MARK_INSPECT, VmRules};

const ID: u32 = 7;
const WAIT: Duration = Duration::from_secs(5);
/// How long a connect may wait for a SYN/ACK before the SYN counts as dropped.
const DROPPED: Duration = Duration::from_secs(3);

fn rules(guest: &Guest) -> VmRules {
    vm_rules(guest, ID)
}

fn sa(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

/// The first line the server sent on `stream`.
fn greeting(stream: TcpStream) -> Result<String> {
    stream.set_read_timeout(Some(WAIT))?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(line.trim_end().to_owned())
}

fn assert_dropped(result: std::io::Result<TcpStream>, what: &str) {
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
        other => panic!("{what}: expected the SYN to be dropped (timeout), got {other:?}"),
    }
}

#[test]
fn dns_to_any_address_lands_on_the_dns_proxy() -> Result<()> {
    let world = World::new("dns_to_any_address_lands_on_the_dns_proxy")?;
    let guest = world.guest()?;
    apply(&world, &rules(&guest))?;
    guest.mark_flows(
        world.bottle(),
        &[("udp dport 53", MARK_DNS), ("tcp dport 53", MARK_DNS)],
    )?;
    let udp4 = world.udp_server(Side::Bottle, "198.51.100.129:5353")?;
    let udp6 = world.udp_server(Side::Bottle, "[2001:db8:100::1]:5353")?;
    let tcp4 = world.tcp_server(Side::Bottle, "198.51.100.129:5353")?;
    let tcp6 = world.tcp_server(Side::Bottle, "[2001:db8:100::1]:5353")?;
    // Nothing listens at these resolvers: only the DNAT can answer.
    for (to, guest_ip, udp, tcp) in [
        (
            sa(cork_integration::addr::v4(53), 53),
            IpAddr::V4(GUEST_V4),
            &udp4,
            &tcp4,
        ),
        (
            sa(cork_integration::addr::v6(0x53), 53),
            IpAddr::V6(GUEST_V6),
            &udp6,
            &tcp6,
        ),
    ] {
        let query = format!("query to {to}");
        guest.udp_send(None, to, &query)?;
        let got = udp.wait_payload(&query, WAIT)?;
        assert!(
            got.iter()
                .any(|d| d.payload == query && d.peer.ip() == guest_ip),
            "{got:?}"
        );
        let stream = guest
            .tcp_connect(to, WAIT)?
            .with_context(|| format!("tcp {to}"))?;
        let hello = greeting(stream)?;
        assert_eq!(
            hello,
            format!("hello from Bottle {}", tcp.addr),
            "tcp to {to}"
        );
        tcp.wait_peers(1, WAIT)?;
    }
    Ok(())
}

#[test]
fn inspected_flow_lands_on_the_proxy_which_recovers_the_original_destination() -> Result<()> {
    let world = World::new("inspected_flow_lands_on_the_proxy")?;
    let guest = world.guest()?;
    apply(&world, &rules(&guest))?;
    guest.mark_flows(world.bottle(), &[("tcp dport 443", MARK_INSPECT)])?;
    for (proxy, original) in [
        (
            sa(GATEWAY_V4, 15001),
            sa(cork_integration::addr::v4(10), 443),
        ),
        (
            sa(GATEWAY_V6, 15001),
            sa(cork_integration::addr::v6(0x10), 443),
        ),
    ] {
        // The proxy stand-in: accept one connection and ask conntrack where it was going.
        let accepted = world.bottle().spawn("proxy", move || {
            let listener = TcpListener::bind(proxy).with_context(|| format!("bind {proxy}"))?;
            let (conn, peer) = listener.accept().context("accept")?;
            Ok((peer, original_dst(&conn).context("SO_ORIGINAL_DST")?))
        })?;
        // Retried until the listener is bound: a refused connect means "not yet".
        let stream = loop {
            match guest.tcp_connect(original, WAIT)? {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                other => break other.with_context(|| format!("connect {original}"))?,
            }
        };
        let (peer, dst) = accepted
            .join()
            .map_err(|_| anyhow::anyhow!("proxy panicked"))??;
        drop(stream);
        assert_eq!(dst, original, "original destination of {peer}");
        assert!(
            peer.ip() == IpAddr::V4(GUEST_V4) || peer.ip() == IpAddr::V6(GUEST_V6),
            "{peer}"
        );
    }
    Ok(())
}

#[test]
fn direct_flows_are_forwarded_and_masqueraded_unmarked_ones_dropped() -> Result<()> {
    let world = World::new("direct_flows_are_forwarded_unmarked_dropped")?;
    let guest = world.guest()?;
    apply(&world, &rules(&guest))?;
    guest.mark_flows(world.bottle(), &[("tcp dport 8080", MARK_DIRECT)])?;
    for (ip, host) in [
        ("198.51.100.10", "198.51.100.1"),
        ("2001:db8::10", "2001:db8::1"),
    ] {
        let ip: IpAddr = ip.parse()?;
        let marked = world.tcp_server(Side::Internet, &sa(ip, 8080).to_string())?;
        let unmarked = world.tcp_server(Side::Internet, &sa(ip, 8081).to_string())?;
        let stream = guest
            .tcp_connect(marked.addr, WAIT)?
            .context("direct flow")?;
        assert!(greeting(stream)?.starts_with("hello from Internet"));
        let peers = marked.wait_peers(1, WAIT)?;
        assert_eq!(
            peers[0].ip().to_string(),
            host,
            "masqueraded to the host's address"
        );

        assert_dropped(
            guest.tcp_connect(unmarked.addr, DROPPED)?,
            "unmarked forward",
        );
        // Positive control: the server itself is reachable from the host.
        world.connect_from_bottle(unmarked.addr)?;
        let peers = unmarked.wait_peers(1, WAIT)?;
        assert_eq!(peers.len(), 1, "only the host's own connection: {peers:?}");
        assert_eq!(peers[0].ip().to_string(), host);
    }
    Ok(())
}

#[test]
fn host_access_is_only_listed_ports_on_the_gateway() -> Result<()> {
    let world = World::new("host_access_is_only_listed_ports_on_the_gateway")?;
    let guest = world.guest()?;
    apply(&world, &rules(&guest))?;
    guest.mark_flows(
        world.bottle(),
        &[("tcp dport { 7000, 7001 }", MARK_HOST_PORT)],
    )?;
    for gw in [IpAddr::V4(GATEWAY_V4), IpAddr::V6(GATEWAY_V6)] {
        let listed = world.tcp_server(Side::Bottle, &sa(gw, 7000).to_string())?;
        let unlisted = world.tcp_server(Side::Bottle, &sa(gw, 7001).to_string())?;
        let stream = guest
            .tcp_connect(listed.addr, WAIT)?
            .context("listed host port")?;
        assert!(greeting(stream)?.starts_with("hello from Bottle"));
        assert_dropped(
            guest.tcp_connect(unlisted.addr, DROPPED)?,
            "unlisted host port",
        );
        world.connect_from_bottle(unlisted.addr)?;
        assert_eq!(unlisted.wait_peers(1, WAIT)?.len(), 1);
    }
    // The host's other address, on the listed port, is not the gateway.
    let other = world.tcp_server(Side::Bottle, "198.51.100.1:7000")?;
    assert_dropped(
        guest.tcp_connect(other.addr, DROPPED)?,
        "host's uplink address",
    );
    world.connect_from_bottle(other.addr)?;
    assert_eq!(other.wait_peers(1, WAIT)?.len(), 1);
    Ok(())
}

#[test]
fn spoofed_source_address_and_mac_are_dropped() -> Result<()> {
    let world = World::new("spoofed_source_address_and_mac_are_dropped")?;
    let guest = world.guest()?;
    apply(&world, &rules(&guest))?;
    guest.mark_flows(world.bottle(), &[("udp dport 9000", MARK_DIRECT)])?;
    guest.pin_gateway_neighbours(world.bottle())?;
    let spoof4: IpAddr = "198.51.100.131".parse()?;
    // Inside the /56 but outside the guest's /64.
    let spoof6: IpAddr = "2001:db8:100:1::99".parse()?;
    guest.add_ip(spoof4)?;
    guest.add_ip(spoof6)?;
    let other_mac = [0x52, 0x54, 0x00, 0xc0, 0x00, 0x99];
    // (server, spoofed source, genuine source): genuine sends name their source, since
    // address selection may prefer the extra address.
    let servers = [
        (
            world.udp_server(Side::Internet, "198.51.100.10:9000")?,
            spoof4,
            IpAddr::V4(GUEST_V4),
        ),
        (
            world.udp_server(Side::Internet, "[2001:db8::10]:9000")?,
            spoof6,
            IpAddr::V6(GUEST_V6),
        ),
    ];
    for (srv, spoof, _) in &servers {
        guest.udp_send(Some(*spoof), srv.addr, "spoofed address")?;
    }
    guest.set_mac(other_mac)?;
    for (srv, _, genuine) in &servers {
        guest.udp_send(Some(*genuine), srv.addr, "spoofed mac")?;
    }
    guest.set_mac(GUEST_MAC)?;
    for (srv, _, genuine) in &servers {
        guest.udp_send(Some(*genuine), srv.addr, "genuine")?;
        srv.wait_payload("genuine", WAIT)?;
        let payloads = srv.payloads();
        assert_eq!(payloads, ["genuine"], "{}", srv.addr);
    }

    // Control: without cork's rules the same spoofed packets do get through, so the
    // drops above were the guard's.
    in_host(&world, || cork_nft::remove(ID))?;
    for (srv, spoof, _) in &servers {
        guest.udp_send(Some(*spoof), srv.addr, "spoofed, unguarded")?;
        let got = srv.wait_payload("spoofed, unguarded", WAIT)?;
        assert!(got.iter().any(|d| d.peer.ip() == *spoof), "{got:?}");
    }
    guest.set_mac(other_mac)?;
    for (srv, _, genuine) in &servers {
        guest.udp_send(Some(*genuine), srv.addr, "other mac, unguarded")?;
        srv.wait_payload("other mac, unguarded", WAIT)?;
    }
    Ok(())
}

#[test]
fn dhcp_reaches_the_server_on_the_tap_and_nothing_else() -> Result<()> {
    let world = World::new("dhcp_reaches_the_server_on_the_tap")?;
    let guest = world.guest()?;
    // The DHCP server's socket (no marks: DHCP is the host's own business).
    let server = world.udp_server(Side::Bottle, "0.0.0.0:67")?;
    let other: Ipv4Addr = "198.51.100.140".parse()?;
    let host_uplink: Ipv4Addr = "198.51.100.1".parse()?;
    let bcast = Ipv4Addr::BROADCAST;
    guest.add_ip(IpAddr::V4(other))?;
    // Control: without cork's rules a foreign source, and the host's other address,
    // get through.
    guest.dhcp_send(other, bcast, "foreign, unguarded")?;
    server.wait_payload("foreign, unguarded", WAIT)?;
    guest.dhcp_send(GUEST_V4, host_uplink, "uplink, unguarded")?;
    server.wait_payload("uplink, unguarded", WAIT)?;

    apply(&world, &rules(&guest))?;
    guest.dhcp_send(other, bcast, "foreign")?;
    guest.dhcp_send(GUEST_V4, host_uplink, "uplink")?;
    guest.dhcp_send(GUEST_V4, GATEWAY_V4, "renew")?;
    server.wait_payload("renew", WAIT)?;
    guest.flush_v4()?;
    guest.dhcp_send(Ipv4Addr::UNSPECIFIED, bcast, "discover")?;
    let got = server.wait_payload("discover", WAIT)?;
    let discover = got
        .iter()
        .find(|d| d.payload == "discover")
        .context("discover")?;
    assert_eq!(discover.peer, "0.0.0.0:68".parse::<SocketAddr>()?);
    assert_eq!(
        server.payloads(),
        [
            "foreign, unguarded",
            "uplink, unguarded",
            "renew",
            "discover"
        ],
        "the foreign source and the host's other address were dropped"
    );
    Ok(())
}

#[test]
fn nothing_new_reaches_the_guest_from_outside() -> Result<()> {
    let world = World::new("nothing_new_reaches_the_guest_from_outside")?;
    let guest = world.guest()?;
    // The internet side routes the guest's addresses via the host, as a real upstream
    // would if it tried to reach the guest.
    let inet = world.internet();
    inet.ip(&["route", "add", "198.51.100.128/26", "via", "198.51.100.1"])?;
    inet.ip(&[
        "-6",
        "route",
        "add",
        "2001:db8:100::/56",
        "via",
        "2001:db8::1",
    ])?;
    let (srv, stop) = cork_integration::server::start_tcp(
        guest.ns(),
        "[::]:8000".parse()?,
        "hello from the guest\n".into(),
    )?;
    let targets = [sa(GUEST_V4, 8000), sa(GUEST_V6, 8000)];
    // Control: without cork's rules the guest's service is reachable from outside.
    for to in targets {
        let stream = inet.run(move || Ok(TcpStream::connect_timeout(&to, WAIT)?))?;
        assert_eq!(greeting(stream)?, "hello from the guest");
    }
    srv.wait_peers(2, WAIT)?;

    apply(&world, &rules(&guest))?;
    for to in targets {
        let result = inet.run(move || Ok(TcpStream::connect_timeout(&to, DROPPED)))?;
        assert_dropped(result, "a new connection towards the guest");
    }
    assert_eq!(srv.peers().len(), 2, "only the control connections");
    stop.stop()
}
