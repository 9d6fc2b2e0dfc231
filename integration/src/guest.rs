//! [`Guest`]: a third namespace, `<id>g`, standing in for a VM guest. It is joined to the
//! bottle netns ("the host") by a veth pair whose host end, `<id>t`, plays the tap a VM
//! bottle's guest sits on; the guest end `<id>e` has a fixed MAC, addresses on the guest
//! side (198.51.100.128/26, 2001:db8:100::/56 only) and default routes via the gateway.
//!
//! ```text
//!  guest netns <id>g                      bottle netns <id>b ("the host")
//!  <id>e 198.51.100.130/26                <id>t 198.51.100.129/26
//!        2001:db8:100::2/64   ==========        2001:db8:100::1/64   (forwarding on)
//!  default via the gateway                <id>v ... to the internet netns as usual
//! ```
//! Dropping the Guest kills what runs in its namespace and deletes it (the veth goes
//! with it); the sweeper removes a dead world's `<id>g` like its other namespaces.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::addr::check_ip;
use crate::netns::Netns;
use crate::world::World;

/// The gateway (host) address on the stand-in tap.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 129);
/// The guest's address.
pub const GUEST_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 130);
/// The gateway's IPv6 address on the stand-in tap.
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 1);
/// The guest's IPv6 address (in 2001:db8:100::/64).
pub const GUEST_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 2);
/// The guest NIC's MAC address (locally administered, unicast).
pub const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xc0, 0x00, 0x02];

/// A guest namespace joined to the world's bottle netns; see the module docs.
#[derive(Debug)]
pub struct Guest {
    ns: Option<Netns>,
    tap: String,
    eth: String,
}

impl World {
    /// Creates the guest namespace `<id>g` and its link to the bottle netns, and turns
    /// on forwarding in the bottle netns. A partial setup is rolled back.
    pub fn guest(&self) -> Result<Guest> {
        let id = self.id();
        let mut guest = Guest {
            ns: Some(Netns::create(&format!("{id}g"))?),
            tap: format!("{id}t"),
            eth: format!("{id}e"),
        };
        // On error `guest` is dropped, which deletes the namespace and the veth with it.
        guest
            .setup(self.bottle())
            .context("set up the guest netns")?;
        Ok(guest)
    }
}

impl Guest {
    fn setup(&mut self, host: &Netns) -> Result<()> {
        let g = self.ns();
        let (tap, eth) = (self.tap.clone(), self.eth.clone());
        g.ip(&["link", "set", "lo", "up"])?;
        // Created in the guest netns with its peer placed straight into the bottle netns.
        g.ip(&[
            "link",
            "add",
            &eth,
            "type",
            "veth",
            "peer",
            "name",
            &tap,
            "netns",
            host.name(),
        ])?;
        g.ip(&["link", "set", &eth, "address", &mac_text(GUEST_MAC)])?;
        g.ip(&["addr", "add", &format!("{GUEST_V4}/26"), "dev", &eth])?;
        g.ip(&[
            "addr",
            "add",
            &format!("{GUEST_V6}/64"),
            "dev",
            &eth,
            "nodad",
        ])?;
        host.ip(&["addr", "add", &format!("{GATEWAY_V4}/26"), "dev", &tap])?;
        host.ip(&[
            "addr",
            "add",
            &format!("{GATEWAY_V6}/64"),
            "dev",
            &tap,
            "nodad",
        ])?;
        g.ip(&["link", "set", &eth, "up"])?;
        host.ip(&["link", "set", &tap, "up"])?;
        g.ip(&["route", "add", "default", "via", &GATEWAY_V4.to_string()])?;
        g.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            &GATEWAY_V6.to_string(),
        ])?;
        host.sysctl("net.ipv4.ip_forward", "1")?;
        host.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        // Reverse-path filtering off, so a drop a test sees is the rules', not rp_filter's.
        host.sysctl("net.ipv4.conf.all.rp_filter", "0")?;
        host.sysctl(&format!("net.ipv4.conf.{tap}.rp_filter"), "0")?;
        Ok(())
    }

    /// The guest namespace.
    pub fn ns(&self) -> &Netns {
        self.ns.as_ref().expect("guest netns exists until drop")
    }

    /// The host end of the link (the stand-in tap), in the bottle netns.
    pub fn tap(&self) -> &str {
        &self.tap
    }

    /// The guest's end of the link, in the guest netns.
    pub fn eth(&self) -> &str {
        &self.eth
    }

    /// Sets the guest NIC's MAC address (to spoof one, and back).
    pub fn set_mac(&self, mac: [u8; 6]) -> Result<()> {
        self.ns()
            .ip(&["link", "set", &self.eth, "address", &mac_text(mac)])
            .map(drop)
    }

    /// Pins the guest's neighbour entries for the gateway addresses (permanent, so a MAC
    /// change keeps them). A spoofing guest otherwise loses its own neighbour
    /// resolution: the kernel sends the NS/ARP for a queued packet from that packet's
    /// (spoofed) source, the guard drops it, and the genuine packets queued behind fail
    /// with it.
    pub fn pin_gateway_neighbours(&self, host: &Netns) -> Result<()> {
        let brief = host.ip(&["-br", "link", "show", "dev", &self.tap])?;
        let mac = brief
            .split_whitespace()
            .nth(2)
            .with_context(|| format!("the tap's MAC in {brief:?}"))?
            .to_owned();
        for gw in [GATEWAY_V4.to_string(), GATEWAY_V6.to_string()] {
            self.ns().ip(&[
                "neigh",
                "replace",
                &gw,
                "lladdr",
                &mac,
                "dev",
                &self.eth,
                "nud",
                "permanent",
            ])?;
        }
        Ok(())
    }

    /// Adds an extra address to the guest NIC (a spoofed source to bind to).
    pub fn add_ip(&self, ip: IpAddr) -> Result<()> {
        check_ip(ip)?;
        let spec = match ip {
            IpAddr::V4(a) => vec![format!("{a}/32")],
            IpAddr::V6(a) => vec![format!("{a}/128"), "nodad".into()],
        };
        let mut args = vec!["addr", "add"];
        args.push(&spec[0]);
        args.extend(["dev", &self.eth]);
        args.extend(spec[1..].iter().map(String::as_str));
        self.ns().ip(&args).map(drop)
    }

    /// Sends one datagram from the guest, from `from` (or the default source) to `to`.
    pub fn udp_send(&self, from: Option<IpAddr>, to: SocketAddr, payload: &str) -> Result<()> {
        check_ip(to.ip())?;
        let payload = payload.to_owned();
        self.ns().run(move || {
            let bind = match (from, to) {
                (Some(ip), _) => SocketAddr::new(ip, 0),
                (None, SocketAddr::V4(_)) => "0.0.0.0:0".parse()?,
                (None, SocketAddr::V6(_)) => "[::]:0".parse()?,
            };
            let s = UdpSocket::bind(bind).with_context(|| format!("bind {bind}"))?;
            s.send_to(payload.as_bytes(), to)
                .with_context(|| format!("send to {to} from {bind}"))?;
            Ok(())
        })
    }

    /// Sends a DHCP-shaped datagram as a client does: from port 68 of `from` (0.0.0.0
    /// when the NIC has no IPv4 address) to port 67 of `to` (255.255.255.255 before a
    /// lease), out of the guest NIC.
    pub fn dhcp_send(&self, from: Ipv4Addr, to: Ipv4Addr, payload: &str) -> Result<()> {
        check_ip(IpAddr::V4(from))?;
        if to != Ipv4Addr::BROADCAST {
            check_ip(IpAddr::V4(to))?;
        }
        let (payload, eth) = (payload.to_owned(), self.eth.clone());
        self.ns().run(move || {
            let s = bind_reusable(SocketAddrV4::new(from, 68))
                .with_context(|| format!("bind {from}:68"))?;
            s.set_broadcast(true)?;
            let dev = std::ffi::CString::new(eth)?;
            // SAFETY: passes the NUL-terminated device name and its length to
            // setsockopt on our own socket.
            let rc = unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&s),
                    libc::SOL_SOCKET,
                    libc::SO_BINDTODEVICE,
                    dev.as_ptr().cast(),
                    dev.as_bytes_with_nul().len() as libc::socklen_t,
                )
            };
            anyhow::ensure!(
                rc == 0,
                "SO_BINDTODEVICE: {}",
                std::io::Error::last_os_error()
            );
            s.send_to(payload.as_bytes(), (to, 67))
                .with_context(|| format!("send to {to}:67"))?;
            Ok(())
        })
    }

    /// Removes the guest NIC's IPv4 addresses (a guest before its DHCP lease).
    pub fn flush_v4(&self) -> Result<()> {
        self.ns()
            .ip(&["-4", "addr", "flush", "dev", &self.eth])
            .map(drop)
    }

    /// A TCP connection from the guest to `to`: the stream, or the connect error
    /// (`TimedOut` when the SYN was dropped).
    pub fn tcp_connect(
        &self,
        to: SocketAddr,
        timeout: Duration,
    ) -> Result<std::io::Result<TcpStream>> {
        check_ip(to.ip())?;
        self.ns()
            .run(move || Ok(TcpStream::connect_timeout(&to, timeout)))
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Some(ns) = self.ns.take() {
            ns.kill_all();
            let name = ns.name().to_owned();
            if let Err(e) = ns.delete() {
                eprintln!("cork-integration: delete guest netns {name}: {e:#}");
            }
        }
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_text(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Guest {
    /// Stands in for the tc program on the tap: a test-only `netdev` table in the
    /// bottle netns whose ingress chain on the tap sets `skb->mark` by 5-tuple, at the
    /// same place in the path (device ingress, before the IP stack) where the tc program
    /// will. Each entry is an nft match (`ip daddr 198.51.100.10 tcp dport 8080`) and
    /// the mark for packets it matches; everything else stays unmarked.
    pub fn mark_flows(&self, host: &Netns, flows: &[(&str, u32)]) -> Result<()> {
        let mut script = format!(
            "table netdev corktest {{\n chain tcstandin {{\n  type filter hook ingress device \"{}\" priority 0; policy accept;\n",
            self.tap
        );
        for (matches, mark) in flows {
            script.push_str(&format!("  {matches} meta mark set {mark:#010x}\n"));
        }
        script.push_str(" }\n}\n");
        let mut child = host
            .command("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("run nft -f -")?;
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().context("nft's stdin")?;
            stdin
                .write_all(script.as_bytes())
                .context("write the marker script")?;
        }
        let out = child.wait_with_output().context("wait for nft")?;
        anyhow::ensure!(
            out.status.success(),
            "nft -f (marker) failed: {}\n{script}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }
}

/// A UDP socket bound to a fixed port with SO_REUSEADDR. Each `dhcp_send` binds port 68
/// afresh, and the last one's socket can outlive its close for a moment: a process that
/// another test thread forks at the wrong time holds a copy of the fd until its exec.
/// Without the option the next bind fails with EADDRINUSE (seen once in CI).
fn bind_reusable(addr: SocketAddrV4) -> Result<UdpSocket> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, bind, setsockopt, socket, sockopt,
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::from(addr),
    )?;
    Ok(UdpSocket::from(fd))
}
