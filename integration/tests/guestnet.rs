//! cork-guestnet against real clients and the real kernel. A veth stands in for a VM
//! bottle's tap: its "tap" end `<id>t` is in the world's bottle netns (the host, where the
//! service runs), its "guest" end `<id>g` in the internet netns, where busybox `udhcpc`,
//! the kernel's own SLAAC and `rdisc6` play the guest. Addresses: 198.51.100.128/26
//! (gateway .129, guest .130) and 2001:db8:100:1::/64 (gateway ::1).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cork_guestnet::{GuestNet, GuestNetConfig, GuestNetStats, RunningGuestNet};
use cork_integration::World;
use cork_integration::process::Spawned;
use nix::sys::signal::{Signal, kill};

const GUEST_MAC: &str = "02:00:00:00:01:30";
const OTHER_MAC: &str = "02:00:00:00:01:99";
const WAIT: Duration = Duration::from_secs(30);

/// What udhcpc's script prints for `bound` and `renew`: one line of the lease, then the
/// event alone on a line (the marker `Spawned::wait_line` waits for). It also configures
/// the address, so a renewal (unicast from that address) can happen.
const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
bound|renew)
    ip addr replace "$ip/$mask" dev "$interface"
    echo "lease ip=$ip mask=$mask subnet=$subnet broadcast=$broadcast router=$router dns=$dns mtu=$mtu lease=$lease serverid=$serverid"
    ;;
esac
echo "$1"
"#;

fn config() -> GuestNetConfig {
    GuestNetConfig {
        guest_mac: GUEST_MAC.parse().expect("literal MAC"),
        guest_v4: "198.51.100.130".parse().expect("literal"),
        prefix_len_v4: 26,
        gateway_v4: "198.51.100.129".parse().expect("literal"),
        dns_v4: vec!["198.51.100.129".parse().expect("literal")],
        dns_v6: vec!["2001:db8:100:1::1".parse().expect("literal")],
        prefix_v6: "2001:db8:100:1::".parse().expect("literal"),
        mtu: 1400,
        lease_secs: 3600,
        ra_interval: Duration::from_secs(15),
    }
}

/// A world with the tap/guest veth and the service running on the tap end. Fields drop
/// in order: the service, then its runtime, then the world.
struct Lab {
    net: Option<RunningGuestNet>,
    rt: tokio::runtime::Runtime,
    tap: String,
    guest: String,
    world: World,
}

impl Lab {
    fn new(test: &str, guest_mac: &str) -> Result<Self> {
        let world = World::new(test)?;
        let (tap, guest) = (format!("{}t", world.id()), format!("{}g", world.id()));
        let (b, i) = (world.bottle(), world.internet());
        // Created in the bottle netns with its peer placed straight into the internet
        // netns, like the world's own veth: no link ever exists in the host namespace.
        b.ip(&[
            "link",
            "add",
            &tap,
            "type",
            "veth",
            "peer",
            "name",
            &guest,
            "netns",
            i.name(),
        ])?;
        let t = tap.clone();
        b.run(move || cork_guestnet::prepare_tap_sysctls(&t).context("tap sysctls"))?;
        b.ip(&["addr", "add", "198.51.100.129/26", "dev", &tap])?;
        b.ip(&["addr", "add", "2001:db8:100:1::1/64", "dev", &tap, "nodad"])?;
        // The guest is a host, not a router: SLAAC and RAs accepted.
        i.sysctl("net.ipv6.conf.all.forwarding", "0")?;
        i.sysctl(&format!("net.ipv6.conf.{guest}.accept_ra"), "1")?;
        i.sysctl(&format!("net.ipv6.conf.{guest}.autoconf"), "1")?;
        i.ip(&["link", "set", &guest, "address", guest_mac])?;
        b.ip(&["link", "set", &tap, "up"])?;
        i.ip(&["link", "set", &guest, "up"])?;
        wait_for("the tap's link-local address", || {
            Ok(b.ip(&["-6", "addr", "show", "dev", &tap, "scope", "link"])?
                .contains("inet6 fe80"))
        })?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("tokio runtime")?;
        let (t, handle) = (tap.clone(), rt.handle().clone());
        let net =
            b.run(move || GuestNet::start(&t, config(), &handle).context("start guestnet"))?;
        Ok(Self {
            net: Some(net),
            rt,
            tap,
            guest,
            world,
        })
    }

    fn net(&self) -> &RunningGuestNet {
        self.net.as_ref().expect("service running")
    }

    fn script(&self) -> Result<String> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.world.path("udhcpc", "sh");
        std::fs::write(&path, UDHCPC_SCRIPT).context("write udhcpc script")?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .context("chmod udhcpc script")?;
        Ok(path.display().to_string())
    }

    /// `busybox udhcpc` on the guest end, in the foreground, with extra `args`.
    fn udhcpc(&self, args: &[&str]) -> Result<std::process::Command> {
        let mut cmd = self.world.internet().command("busybox");
        let script = self.script()?;
        cmd.args(["udhcpc", "-f", "-i", &self.guest, "-s", &script])
            .args(args);
        cmd.stdin(std::process::Stdio::null());
        Ok(cmd)
    }

    /// Waits until the service's counters satisfy `pred`.
    fn wait_stats(
        &self,
        what: &str,
        pred: impl Fn(&GuestNetStats) -> bool,
    ) -> Result<GuestNetStats> {
        let mut rx = self.net().watch_stats();
        self.rt.block_on(async {
            let waited = tokio::time::timeout(WAIT, rx.wait_for(|s| pred(s)))
                .await
                .map(|r| r.map(|s| *s));
            match waited {
                Ok(Ok(s)) => Ok(s),
                Ok(Err(_)) => bail!("guestnet stopped while waiting for {what}"),
                Err(_) => bail!("no {what} within {WAIT:?}; stats: {:?}", *rx.borrow()),
            }
        })
    }
}

/// Polls `check` until it is true (a state the kernel reaches on its own, with no event
/// to wait on); an error names what never happened.
fn wait_for(what: &str, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    while !check()? {
        if Instant::now() > deadline {
            bail!("{what} did not appear within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The `key=value` pairs of the script's `lease` line.
fn lease(lines: &[String]) -> Result<Vec<(String, String)>> {
    let line = lines
        .iter()
        .rev()
        .find(|l| l.starts_with("lease "))
        .with_context(|| format!("no lease line in {lines:?}"))?;
    Ok(line
        .split_whitespace()
        .skip(1)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

fn expected_lease() -> Vec<(String, String)> {
    [
        ("ip", "198.51.100.130"),
        ("mask", "26"),
        ("subnet", "255.255.255.192"),
        ("broadcast", "198.51.100.191"),
        ("router", "198.51.100.129"),
        ("dns", "198.51.100.129"),
        ("mtu", "1400"),
        ("lease", "3600"),
        ("serverid", "198.51.100.129"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .to_vec()
}

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
