//! cork-guestnet against real clients and the real kernel, on a veth standing in for a
//! VM bottle's tap (see `cork_integration::guest_lab`): busybox `udhcpc`, the kernel's own
//! SLAAC with `rdisc6` reading the advertisements, and systemd-networkd play the guest.

use anyhow::{Context, Result};
use cork_guestnet::GuestNet;
use cork_integration::World;
use cork_integration::guest_lab::{
    self, GUEST_MAC, Lab, OTHER_MAC, WAIT, expected_lease, lease, wait_for,
};
use cork_integration::process::Spawned;
use nix::sys::signal::{Signal, kill};

#[test]
fn udhcpc_gets_exactly_the_configured_lease_and_renews_it() -> Result<()> {
    let lab = Lab::new(
        "udhcpc_gets_exactly_the_configured_lease_and_renews_it",
        GUEST_MAC,
    )?;
    let mut client = Spawned::start(&mut lab.udhcpc(&["-t", "5", "-T", "3"])?)?;
    let bound = client.wait_line("bound", WAIT)?;
    assert_eq!(lease(&bound)?, expected_lease(), "{bound:?}");

    // The lease works: the guest reaches its gateway from the address it was given.
    let ping = lab
        .world
        .run(lab.world.internet().command("busybox").args([
            "ping",
            "-c",
            "1",
            "-W",
            "5",
            "198.51.100.129",
        ]))?;
    assert_eq!(ping.code(), 0, "{ping}");

    // SIGUSR1 makes udhcpc renew: a REQUEST unicast from its address, with ciaddr set,
    // which the server acks by unicast back to it.
    kill(client.pid(), Signal::SIGUSR1).context("signal udhcpc")?;
    let renewed = client.wait_line("renew", WAIT)?;
    assert_eq!(lease(&renewed)?, expected_lease(), "{renewed:?}");
    client.kill()?;
    let stats = lab.net().stats();
    assert!(stats.dhcp_offers >= 1 && stats.dhcp_acks >= 2, "{stats:?}");
    assert_eq!(
        (stats.dhcp_naks, stats.dhcp_malformed, stats.send_errors),
        (0, 0, 0),
        "{stats:?}"
    );
    Ok(())
}

#[test]
fn dhcp_from_another_mac_gets_no_answer() -> Result<()> {
    let lab = Lab::new("dhcp_from_another_mac_gets_no_answer", OTHER_MAC)?;
    // -n: give up after the retries (3 discovers, 1 s apart) instead of backing off.
    let refused = lab
        .world
        .run(lab.udhcpc(&["-q", "-n", "-t", "3", "-T", "1", "-A", "0"])?)?;
    assert_eq!(refused.code(), 1, "{refused}");
    assert!(refused.lines().contains(&"leasefail"), "{refused}");
    assert!(!refused.stdout.contains("bound"), "{refused}");
    // The server heard every discover and refused it (not a lost packet).
    let stats = lab.wait_stats("3 ignored discovers", |s| s.dhcp_ignored >= 3)?;
    assert_eq!((stats.dhcp_offers, stats.dhcp_acks), (0, 0), "{stats:?}");

    // Positive control: the same client with the guest's MAC is served.
    lab.world
        .internet()
        .ip(&["link", "set", &lab.guest, "address", GUEST_MAC])?;
    let served = lab
        .world
        .run(lab.udhcpc(&["-q", "-n", "-t", "5", "-T", "3"])?)?;
    assert_eq!(served.code(), 0, "{served}");
    let lines: Vec<String> = served.lines().iter().map(|l| l.to_string()).collect();
    assert_eq!(lease(&lines)?, expected_lease(), "{served}");
    Ok(())
}

#[test]
fn kernel_slaac_forms_an_address_and_a_default_route_via_the_tap() -> Result<()> {
    let lab = Lab::new(
        "kernel_slaac_forms_an_address_and_a_default_route_via_the_tap",
        GUEST_MAC,
    )?;
    let (i, guest) = (lab.world.internet(), lab.guest.clone());
    let router = lab.net().gateway_link_local();
    assert!(router.is_unicast_link_local(), "{router}");

    wait_for("a SLAAC address in 2001:db8:100:1::/64", || {
        let out = i.ip(&[
            "-6",
            "addr",
            "show",
            "dev",
            &guest,
            "to",
            "2001:db8:100:1::/64",
            "-tentative",
        ])?;
        Ok(out.contains("inet6 2001:db8:100:1:"))
    })?;
    let addrs = i.ip(&["-6", "addr", "show", "dev", &guest, "scope", "global"])?;
    assert!(
        addrs.contains("dynamic"),
        "SLAAC addresses are dynamic: {addrs}"
    );
    let want = format!("default via {router} dev {guest} proto ra");
    wait_for("a default route via the tap's link-local", || {
        Ok(i.ip(&["-6", "route", "show", "default"])?.contains(&want))
    })?;
    // The kernel applied the RA's MTU option to the guest link.
    let mtu_path = format!("/proc/sys/net/ipv6/conf/{guest}/mtu");
    let mtu = i.run(move || std::fs::read_to_string(&mtu_path).context("read guest mtu"))?;
    assert_eq!(mtu.trim(), "1400");

    // rdisc6 solicits and prints the advertisement: an independent reader of RDNSS.
    let out = lab.world.run(
        i.command("rdisc6")
            .args(["-1", "-n", "-r", "3", "-w", "4000", &guest]),
    )?;
    assert_eq!(out.code(), 0, "{out}");
    let field = |name: &str| -> Vec<String> {
        out.lines()
            .iter()
            .filter_map(|l| l.split_once(':').filter(|(k, _)| k.trim() == name))
            .map(|(_, v)| v.split_whitespace().next().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(
        field("Recursive DNS server"),
        ["2001:db8:100:1::1"],
        "{out}"
    );
    assert_eq!(field("Prefix"), ["2001:db8:100:1::/64"], "{out}");
    assert_eq!(field("MTU"), ["1400"], "{out}");
    assert_eq!(field("Router lifetime"), ["1800"], "{out}");
    assert_eq!(field("Autonomous address conf."), ["Yes"], "{out}");
    assert!(out.stdout.contains(&format!("from {router}")), "{out}");
    let mac = lab.net().router_mac();
    assert_eq!(field("Source link-layer address").len(), 1, "{out}");
    assert!(
        out.stdout.to_lowercase().contains(&mac.to_string()),
        "{mac} in {out}"
    );
    let stats = lab.wait_stats("a router solicitation", |s| s.rs_received >= 1)?;
    assert_eq!(stats.rs_dropped, 0, "{stats:?}");

    // The route carries traffic, and survives the neighbour advertisement that confirms
    // the router: its Router flag (tap forwarding = 1) keeps a Linux guest from deleting
    // the default route (RFC 4861 7.2.5).
    lab.world
        .bottle()
        .ip(&["addr", "add", "2001:db8:100:ff::1/128", "dev", "lo"])?;
    i.sysctl(
        &format!("net.ipv6.neigh.{guest}.delay_first_probe_time"),
        "1",
    )?;
    let ping = lab.world.run(i.command("busybox").args([
        "ping",
        "-6",
        "-c",
        "1",
        "-W",
        "5",
        "2001:db8:100:ff::1",
    ]))?;
    assert_eq!(ping.code(), 0, "{ping}");
    let router_s = router.to_string();
    wait_for("the router's neighbour entry confirmed (REACHABLE)", || {
        Ok(i.ip(&["-6", "neigh", "show", "dev", &guest, &router_s])?
            .contains("REACHABLE"))
    })?;
    let neigh = i.ip(&["-6", "neigh", "show", "dev", &guest, &router_s])?;
    assert!(neigh.contains("router"), "router flag lost: {neigh}");
    assert!(i.ip(&["-6", "route", "show", "default"])?.contains(&want));
    Ok(())
}

#[test]
fn shutdown_closes_both_sockets() -> Result<()> {
    let mut lab = Lab::new("shutdown_closes_both_sockets", GUEST_MAC)?;
    let b = lab.world.bottle();
    let sockets = || -> Result<(String, String)> {
        Ok((
            String::from_utf8_lossy(
                &b.command("ss")
                    .args(["-H", "-u", "-l", "-n"])
                    .output()?
                    .stdout,
            )
            .into_owned(),
            String::from_utf8_lossy(
                &b.command("ss")
                    .args(["-H", "-w", "-a", "-n"])
                    .output()?
                    .stdout,
            )
            .into_owned(),
        ))
    };
    let (udp, raw) = sockets()?;
    assert!(udp.contains(&format!("0.0.0.0%{}:67", lab.tap)), "{udp}");
    assert!(
        !raw.trim().is_empty(),
        "the raw ICMPv6 socket is listed: {raw}"
    );
    let net = lab.net.take().expect("service running");
    lab.rt.block_on(net.shutdown());
    let (udp, raw) = sockets()?;
    assert!(
        udp.trim().is_empty() && raw.trim().is_empty(),
        "left open: {udp} {raw}"
    );
    Ok(())
}

/// Runs systemd-networkd on the guest end, in a private mount namespace: a tmpfs over
/// /run hides the host's bus, udev and networkd state, another over /etc/systemd/network
/// the host's own network files, and a read-only sysfs of the guest's netns over /sys
/// tells networkd there is no udev to wait for. `unshare` and `sh` exec, so the spawned
/// pid is networkd's own.
const NETWORKD: &str = r#"set -e
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=0755 tmpfs /etc/systemd/network
mount -t sysfs -o ro sysfs /sys
mkdir -p /run/systemd/network /run/systemd/netif
chown systemd-network:systemd-network /run/systemd/netif
printf '[Match]\nName=%s\n\n[Network]\nDHCP=ipv4\nIPv6AcceptRA=yes\n\n[DHCPv4]\nUseMTU=yes\n' "$1" \
    > /run/systemd/network/10-guest.network
exec /lib/systemd/systemd-networkd
"#;

#[test]
fn systemd_networkd_configures_both_families() -> Result<()> {
    let lab = Lab::new("systemd_networkd_configures_both_families", GUEST_MAC)?;
    let (i, guest) = (lab.world.internet(), lab.guest.clone());
    let router = lab.net().gateway_link_local();
    let mut cmd = i.command("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        NETWORKD,
        "sh",
        &guest,
    ])
    .env("SYSTEMD_LOG_TARGET", "console")
    .stdin(std::process::Stdio::null());
    let mut networkd = Spawned::start(&mut cmd)?;

    wait_for("the DHCP address on the guest link", || {
        Ok(i.ip(&["-4", "addr", "show", "dev", &guest])?
            .contains("inet 198.51.100.130/26"))
    })?;
    let v4_default = format!("default via 198.51.100.129 dev {guest} proto dhcp");
    wait_for("the DHCP default route", || {
        Ok(i.ip(&["-4", "route", "show", "default"])?
            .contains(&v4_default))
    })?;
    wait_for("a SLAAC address", || {
        let out = i.ip(&[
            "-6",
            "addr",
            "show",
            "dev",
            &guest,
            "to",
            "2001:db8:100:1::/64",
        ])?;
        Ok(out.contains("inet6 2001:db8:100:1:"))
    })?;
    let v6_default = format!("default via {router} dev {guest} proto ra");
    wait_for("the RA default route", || {
        Ok(i.ip(&["-6", "route", "show", "default"])?
            .contains(&v6_default))
    })?;
    let link = i.ip(&["link", "show", "dev", &guest])?;
    assert!(link.contains("mtu 1400"), "DHCP MTU not applied: {link}");

    // networkd's own view: the link's state file names both DNS servers (DHCP and RDNSS).
    let g = guest.clone();
    let ifindex = i.run(move || nix::net::if_::if_nametoindex(g.as_str()).context("ifindex"))?;
    let state = format!(
        "/proc/{}/root/run/systemd/netif/links/{ifindex}",
        networkd.pid()
    );
    wait_for("networkd's link state naming both DNS servers", || {
        let text = std::fs::read_to_string(&state).unwrap_or_default();
        Ok(text.lines().any(|l| {
            l.starts_with("DNS=") && l.contains("198.51.100.129") && l.contains("2001:db8:100:1::1")
        }))
    })
    .with_context(|| std::fs::read_to_string(&state).unwrap_or_default())?;
    networkd.kill()?;
    let stats = lab.net().stats();
    assert!(stats.dhcp_offers >= 1 && stats.dhcp_acks >= 1, "{stats:?}");
    assert_eq!((stats.dhcp_naks, stats.rs_dropped), (0, 0), "{stats:?}");
    Ok(())
}

/// Sends one bare router solicitation to ff02::2 from the guest end with the hop limit
/// given (a raw ICMPv6 socket; the kernel computes the checksum).
const SEND_RS: &str = r#"
import socket, sys
dev, hops = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, hops)
s.sendto(bytes([133, 0, 0, 0, 0, 0, 0, 0]), ("ff02::2", 0, 0, socket.if_nametoindex(dev)))
print("sent")
"#;

#[test]
fn router_solicitations_not_from_the_link_are_dropped() -> Result<()> {
    let lab = Lab::new(
        "router_solicitations_not_from_the_link_are_dropped",
        GUEST_MAC,
    )?;
    let send = |hops: &str| -> Result<()> {
        let mut cmd = lab.world.internet().command("python3");
        let out = lab.world.run(cmd.args(["-c", SEND_RS, &lab.guest, hops]))?;
        assert_eq!((out.code(), out.lines()), (0, vec!["sent"]), "{out}");
        Ok(())
    };
    // The guest end sends from its link-local address once DAD has passed.
    wait_for("the guest's link-local address", || {
        let out = lab.world.internet().ip(&[
            "-6",
            "addr",
            "show",
            "dev",
            &lab.guest,
            "scope",
            "link",
            "-tentative",
        ])?;
        Ok(out.contains("inet6 fe80"))
    })?;
    // RFC 4861 6.1.1: a solicitation whose hop limit is not 255 was routed here from
    // elsewhere and must be dropped.
    let before = lab.net().stats();
    send("64")?;
    lab.wait_stats("the hop-limit-64 solicitation dropped", |s| {
        s.rs_dropped > before.rs_dropped
    })?;
    // The same message with hop limit 255 is accepted (the guest kernel's own
    // solicitations may be counted too; none of them is dropped).
    let mid = lab.net().stats();
    send("255")?;
    let after = lab.wait_stats("the hop-limit-255 solicitation", |s| {
        s.rs_received > mid.rs_received
    })?;
    assert_eq!(after.rs_dropped, before.rs_dropped + 1, "{after:?}");
    Ok(())
}

/// On a real tap (cork-kvm's, held open by this process as cork holds it for QEMU) the
/// service starts right after link-up: with `prepare_tap_sysctls` applied first, the
/// link-local address is there at once, no DAD to wait for. No guest is attached; the
/// advertisements queue on the tap unread.
#[test]
fn starts_on_a_real_tap_right_after_link_up() -> Result<()> {
    let world = World::new("starts_on_a_real_tap_right_after_link_up")?;
    let name = format!("{}k", world.id());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let handle = rt.handle().clone();
    let (tap, net) = world.bottle().run(move || {
        let tap = cork_kvm::Tap::create(&name).context("create tap")?;
        cork_guestnet::prepare_tap_sysctls(&name).context("tap sysctls")?;
        tap.set_up().context("tap up")?;
        let net = GuestNet::start(&name, guest_lab::config(), &handle).context("start")?;
        Ok((tap, net))
    })?;
    assert!(net.gateway_link_local().is_unicast_link_local());
    let mut rx = net.watch_stats();
    let stats = rt.block_on(async {
        tokio::time::timeout(WAIT, rx.wait_for(|s| s.ra_sent >= 1))
            .await
            .map(|r| r.map(|s| *s))
    });
    let stats = stats
        .context("no advertisement sent")?
        .context("service stopped")?;
    assert_eq!(stats.send_errors, 0, "{stats:?}");
    rt.block_on(net.shutdown());
    drop(tap);
    Ok(())
}
