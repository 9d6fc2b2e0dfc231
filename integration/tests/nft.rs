//! cork-nft against the real kernel, without a VM: a guest namespace on a veth standing
//! in for the tap, the bottle's rules applied in the bottle netns ("the host"), and a
//! test-only netdev ingress chain on the tap setting the marks the tc program will set
//! (`Guest::mark_flows`). Real traffic from the guest end shows what the rules do.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cork_integration::guest::{GATEWAY_V4, GATEWAY_V6, GUEST_MAC, GUEST_V4, GUEST_V6};
use cork_integration::{Guest, Side, World};
use cork_nft::plan::{Action, BottlePlan, RulePlan};
use cork_nft::{MARK_DIRECT, MARK_DNS, MARK_HOST_PORT, MARK_INSPECT, Marks, NftError, VmRules};

const ID: u32 = 7;
const WAIT: Duration = Duration::from_secs(5);
/// How long a connect may wait for a SYN/ACK before the SYN counts as dropped.
const DROPPED: Duration = Duration::from_secs(3);

fn rules(guest: &Guest) -> VmRules {
    VmRules {
        id: ID,
        ifname: guest.tap().to_owned(),
        guest_mac: GUEST_MAC,
        guest_v4: GUEST_V4,
        gateway_v4: GATEWAY_V4,
        guest_v6: GUEST_V6,
        guest_v6_prefix: 64,
        gateway_v6: GATEWAY_V6,
        dns_port: 5353,
        proxy_port: 15001,
        host_ports: vec![7000],
        marks: Marks::CORK,
    }
}

/// Runs `f` in the bottle netns (where cork's table lives).
fn in_host<T: Send + 'static>(
    world: &World,
    f: impl FnOnce() -> Result<T, NftError> + Send + 'static,
) -> Result<T> {
    world.bottle().run(move || f().map_err(anyhow::Error::from))
}

fn apply(world: &World, rules: &VmRules) -> Result<BottlePlan> {
    let rules = rules.clone();
    in_host(world, move || cork_nft::apply(&rules))
}

/// `nft ARGS...` in the bottle netns; stdout.
fn nft(world: &World, args: &[&str]) -> Result<String> {
    let mut cmd: Command = world.command(Side::Bottle, "nft");
    cmd.args(args);
    let out = world.run(cmd)?;
    if out.code() != 0 {
        bail!("nft {args:?} exited {}:\n{out}", out.code());
    }
    Ok(out.stdout)
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

/// SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST of an accepted, DNATed connection.
fn original_dst(conn: &TcpStream) -> std::io::Result<SocketAddr> {
    let fd = conn.as_raw_fd();
    let mut buf = [0u8; 28];
    let mut len = buf.len() as libc::socklen_t;
    let (level, name) = match conn.local_addr()? {
        SocketAddr::V4(_) => (libc::SOL_IP, libc::SO_ORIGINAL_DST),
        SocketAddr::V6(_) => (libc::SOL_IPV6, libc::IP6T_SO_ORIGINAL_DST),
    };
    // SAFETY: `buf` is writable for `len` bytes, enough for a sockaddr_in6.
    let rc = unsafe { libc::getsockopt(fd, level, name, buf.as_mut_ptr().cast(), &mut len) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let port = u16::from_be_bytes([buf[2], buf[3]]);
    Ok(match level {
        libc::SOL_IP => sa(
            std::net::Ipv4Addr::new(buf[4], buf[5], buf[6], buf[7]),
            port,
        ),
        _ => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&buf[8..24]);
            sa(std::net::Ipv6Addr::from(a), port)
        }
    })
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
fn a_refused_batch_leaves_the_previous_rules_and_a_valid_one_replaces_them() -> Result<()> {
    let world = World::new("a_refused_batch_leaves_the_previous_rules")?;
    let guest = world.guest()?;
    let old = apply(&world, &rules(&guest))?;
    let before = nft(&world, &["list", "table", "inet", "cork"])?;

    let new_rules = VmRules {
        host_ports: vec![7000, 7001],
        ..rules(&guest)
    };
    let mut bad = new_rules.plan()?;
    // A DNAT in a filter chain, last in the batch: the kernel refuses it (EOPNOTSUPP)
    // after accepting everything before it.
    let input = bad
        .chains
        .iter_mut()
        .find(|c| c.name == "b7_in")
        .context("b7_in")?;
    input
        .rules
        .push(RulePlan::new(vec![], Action::Dnat(sa(GATEWAY_V4, 1))));
    let err = in_host(&world, move || cork_nft::apply_plan(&bad)).expect_err("refused");
    let text = format!("{err:#}");
    assert!(text.contains("b7_in") && text.contains("dnat"), "{text}");
    assert_eq!(nft(&world, &["list", "table", "inet", "cork"])?, before);
    let plan = old.clone();
    in_host(&world, move || cork_nft::read_back(&plan))?;

    let new = apply(&world, &new_rules)?;
    let plan = new.clone();
    in_host(&world, move || cork_nft::read_back(&plan))?;
    let err = in_host(&world, move || cork_nft::read_back(&old)).expect_err("old plan");
    assert!(format!("{err:#}").contains("b7_in"), "{err:#}");
    Ok(())
}

#[test]
fn read_back_detects_a_deleted_rule_and_a_dormant_table() -> Result<()> {
    let world = World::new("read_back_detects_a_deleted_rule")?;
    let guest = world.guest()?;
    let plan = apply(&world, &rules(&guest))?;
    let p = plan.clone();
    in_host(&world, move || cork_nft::read_back(&p))?;

    let listing = nft(&world, &["-a", "list", "chain", "inet", "cork", "b7_fwd"])?;
    let handle = listing
        .lines()
        .find(|l| l.contains("drop") && l.contains("iifname"))
        .and_then(|l| l.rsplit("# handle ").next())
        .context(format!("a handle in:\n{listing}"))?
        .trim()
        .to_owned();
    nft(
        &world,
        &[
            "delete", "rule", "inet", "cork", "b7_fwd", "handle", &handle,
        ],
    )?;
    let p = plan.clone();
    let err = in_host(&world, move || cork_nft::read_back(&p)).expect_err("mismatch");
    let text = format!("{err:#}");
    assert!(
        text.contains("chain b7_fwd: 3 rules, the plan has 4"),
        "{text}"
    );

    apply(&world, &rules(&guest))?;
    let p = plan.clone();
    in_host(&world, move || cork_nft::read_back(&p))?;
    nft(
        &world,
        &["add", "table", "inet", "cork", "{ flags dormant; }"],
    )?;
    let err = in_host(&world, move || cork_nft::read_back(&plan)).expect_err("dormant");
    assert!(format!("{err:#}").contains("dormant"), "{err:#}");
    Ok(())
}

#[test]
fn remove_deletes_the_bottles_chains_and_the_last_one_the_table() -> Result<()> {
    let world = World::new("remove_deletes_the_bottles_chains")?;
    let guest = world.guest()?;
    apply(&world, &rules(&guest))?;
    let second = VmRules {
        id: 8,
        ifname: "ck8".into(),
        ..rules(&guest)
    };
    apply(&world, &second)?;
    assert_eq!(in_host(&world, cork_nft::bottles)?, [7, 8]);

    in_host(&world, || cork_nft::remove(7))?;
    assert_eq!(in_host(&world, cork_nft::bottles)?, [8]);
    let plan = second.plan()?;
    in_host(&world, move || cork_nft::read_back(&plan))?;
    assert!(nft(&world, &["list", "tables"])?.contains("table inet cork"));

    in_host(&world, || cork_nft::remove(8))?;
    let tables = nft(&world, &["list", "tables"])?;
    assert!(!tables.contains("cork"), "{tables}");
    assert!(in_host(&world, cork_nft::bottles)?.is_empty());
    // Removing again, with no table at all, is not an error.
    in_host(&world, || cork_nft::remove(8))?;
    Ok(())
}
