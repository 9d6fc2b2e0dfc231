//! [`Lab`]: a world for cork-guestnet's tests (`tests/guestnet.rs`). A veth stands in for
//! a VM bottle's tap: its "tap" end `<id>t` is in the world's bottle netns (the host, where
//! the service runs), its "guest" end `<id>g` in the internet netns, where real clients
//! play the guest. Addresses: 198.51.100.128/26 (gateway .129, guest .130) and
//! 2001:db8:100:1::/64 (gateway ::1), both inside the world's test ranges.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cork_guestnet::{GuestNet, GuestNetConfig, GuestNetStats, RunningGuestNet};

use crate::World;

pub const GUEST_MAC: &str = "02:00:00:00:01:30";
pub const OTHER_MAC: &str = "02:00:00:00:01:99";
pub const WAIT: Duration = Duration::from_secs(30);

/// What udhcpc's script prints for `bound` and `renew`: one line of the lease, then the
/// event alone on a line (the marker `Spawned::wait_line` waits for). It also configures
/// the address, so a renewal (unicast from that address) can happen.
pub const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
bound|renew)
    ip addr replace "$ip/$mask" dev "$interface"
    echo "lease ip=$ip mask=$mask subnet=$subnet broadcast=$broadcast router=$router dns=$dns mtu=$mtu lease=$lease serverid=$serverid"
    ;;
esac
echo "$1"
"#;

pub fn config() -> GuestNetConfig {
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
pub struct Lab {
    pub net: Option<RunningGuestNet>,
    pub rt: tokio::runtime::Runtime,
    pub tap: String,
    pub guest: String,
    pub world: World,
}

impl Lab {
    pub fn new(test: &str, guest_mac: &str) -> Result<Self> {
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

    pub fn net(&self) -> &RunningGuestNet {
        self.net.as_ref().expect("service running")
    }

    pub fn script(&self) -> Result<String> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.world.path("udhcpc", "sh");
        std::fs::write(&path, UDHCPC_SCRIPT).context("write udhcpc script")?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .context("chmod udhcpc script")?;
        Ok(path.display().to_string())
    }

    /// `busybox udhcpc` on the guest end, in the foreground, with extra `args`.
    pub fn udhcpc(&self, args: &[&str]) -> Result<std::process::Command> {
        let mut cmd = self.world.internet().command("busybox");
        let script = self.script()?;
        cmd.args(["udhcpc", "-f", "-i", &self.guest, "-s", &script])
            .args(args);
        cmd.stdin(std::process::Stdio::null());
        Ok(cmd)
    }

    /// Waits until the service's counters satisfy `pred`.
    pub fn wait_stats(
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
pub fn wait_for(what: &str, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
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
pub fn lease(lines: &[String]) -> Result<Vec<(String, String)>> {
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

pub fn expected_lease() -> Vec<(String, String)> {
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
