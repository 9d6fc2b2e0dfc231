//! [`GuestNet`]: the DHCPv4 server and router advertiser for one tap, as two tasks on the
//! caller's tokio runtime, and [`RunningGuestNet`], the handle that stops them.
//!
//! Preconditions (the caller's, since it owns the tap): the tap exists in the current
//! network namespace, [`crate::prepare_tap_sysctls`] was applied before link-up, the tap
//! is up and carries the gateway IPv4 address (the DHCP replies' source and server id)
//! and, if RDNSS names it, the gateway's IPv6 address. The tap's link-local address is
//! read here and becomes the guest's IPv6 router.

mod dhcp_task;
mod iface;
mod ra_task;
mod sockets;

use std::net::Ipv6Addr;
use std::sync::Arc;

use tokio::io::unix::AsyncFd;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{ConfigError, GuestNetConfig};
use crate::mac::MacAddr;
use crate::ndp::{RouterAdvertisement, build_router_advertisement};
use crate::sysctl::valid_ifname;

/// Counters of what the server did, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuestNetStats {
    pub dhcp_offers: u64,
    pub dhcp_acks: u64,
    pub dhcp_naks: u64,
    /// Well-formed messages that got no reply (foreign MAC, release, …).
    pub dhcp_ignored: u64,
    /// Messages that did not parse.
    pub dhcp_malformed: u64,
    /// Router advertisements sent (unsolicited and solicited).
    pub ra_sent: u64,
    /// Valid router solicitations received.
    pub rs_received: u64,
    /// Solicitations dropped: bad hop limit, malformed, or inconsistent.
    pub rs_dropped: u64,
    /// Replies or advertisements the kernel refused to send.
    pub send_errors: u64,
}

/// Why [`GuestNet::start`] failed; nothing is left running when it does.
#[derive(Debug, thiserror::Error)]
pub enum GuestNetError {
    #[error("invalid guest network configuration for {ifname}")]
    Config {
        ifname: String,
        #[source]
        source: ConfigError,
    },
    #[error("interface name {name:?} is not a valid Linux interface name")]
    InterfaceName { name: String },
    #[error("interface {ifname} not found in this network namespace")]
    NoInterface {
        ifname: String,
        #[source]
        source: nix::Error,
    },
    #[error("list the addresses of {ifname}")]
    ListAddresses {
        ifname: String,
        #[source]
        source: nix::Error,
    },
    #[error("interface {ifname} has no Ethernet address (not a tap in TAP mode?)")]
    NoMac { ifname: String },
    #[error(
        "interface {ifname} has no IPv6 link-local address yet (is it up, with IPv6 enabled and accept_dad=0 set before link-up?)"
    )]
    NoLinkLocal { ifname: String },
    #[error("{step} on {ifname}")]
    Socket {
        ifname: String,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// The guest network service of one tap. See [`GuestNet::start`].
#[derive(Debug)]
pub struct GuestNet;

impl GuestNet {
    /// Validates `config`, opens the DHCP and ICMPv6 sockets on `ifname` (in the calling
    /// thread's network namespace) and spawns the two server tasks on `runtime`.
    ///
    /// Blocks only while the tap's link-local address is still tentative: about 10 ms
    /// right after link-up with `accept_dad = 0`, at most 3 s (then an error).
    pub fn start(
        ifname: &str,
        config: GuestNetConfig,
        runtime: &Handle,
    ) -> Result<RunningGuestNet, GuestNetError> {
        config.validate().map_err(|source| GuestNetError::Config {
            ifname: ifname.to_owned(),
            source,
        })?;
        if !valid_ifname(ifname) {
            return Err(GuestNetError::InterfaceName {
                name: ifname.to_owned(),
            });
        }
        let link = iface::lookup(ifname)?;
        let fail = |step, source| GuestNetError::Socket {
            ifname: ifname.to_owned(),
            step,
            source,
        };
        // Registering with the reactor needs the runtime's context.
        let _context = runtime.enter();
        let dhcp = sockets::dhcp_socket(ifname).map_err(|(step, e)| fail(step, e))?;
        let dhcp = tokio::net::UdpSocket::from_std(dhcp)
            .map_err(|e| fail("register the DHCP socket with tokio", e))?;
        let icmp = sockets::icmpv6_socket(ifname, link.index, link.link_local)
            .map_err(|(step, e)| fail(step, e))?;
        // SAFETY: the OwnedFd is moved into the AsyncFd and never leaves it, so the fd stays
        // open and `as_raw_fd` returns the same descriptor for the AsyncFd's whole life.
        let icmp = unsafe { AsyncFd::register(icmp) }
            .map_err(|e| fail("register the ICMPv6 socket with tokio", e.into()))?;

        let ra = build_router_advertisement(&RouterAdvertisement::for_guest(&config, link.mac));
        let (stats_tx, stats) = watch::channel(GuestNetStats::default());
        let stats_tx = Arc::new(stats_tx);
        let name: Arc<str> = Arc::from(ifname);
        let interval = config.ra_interval;
        tracing::info!(
            tap = ifname,
            guest_mac = %config.guest_mac,
            guest_v4 = %config.guest_v4,
            prefix_v6 = %config.prefix_v6,
            router = %link.link_local,
            "guest network service started"
        );
        let tasks = vec![
            runtime.spawn(dhcp_task::run(
                dhcp,
                Arc::new(config),
                Arc::clone(&stats_tx),
                Arc::clone(&name),
            )),
            runtime.spawn(ra_task::run(icmp, ra, link.index, interval, stats_tx, name)),
        ];
        Ok(RunningGuestNet {
            ifname: ifname.to_owned(),
            gateway_link_local: link.link_local,
            router_mac: link.mac,
            stats,
            tasks,
        })
    }
}

/// A running guest network service; `stop()` or dropping it aborts its tasks, which
/// close their sockets as the runtime drops them.
#[derive(Debug)]
pub struct RunningGuestNet {
    ifname: String,
    gateway_link_local: Ipv6Addr,
    router_mac: MacAddr,
    stats: watch::Receiver<GuestNetStats>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningGuestNet {
    /// The tap's link-local address: the guest's IPv6 default router.
    pub fn gateway_link_local(&self) -> Ipv6Addr {
        self.gateway_link_local
    }

    /// The tap's MAC, announced as the router's link-layer address.
    pub fn router_mac(&self) -> MacAddr {
        self.router_mac
    }

    /// The tap this service runs on.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The counters now.
    pub fn stats(&self) -> GuestNetStats {
        *self.stats.borrow()
    }

    /// A receiver that sees every counter change (to wait for one without polling).
    pub fn watch_stats(&self) -> watch::Receiver<GuestNetStats> {
        self.stats.clone()
    }

    /// Ends both tasks (they close their sockets once the runtime drops them, which is
    /// promptly but after this returns; see [`RunningGuestNet::shutdown`]).
    pub fn stop(self) {
        drop(self);
    }

    /// Ends both tasks and waits until they are gone and their sockets closed, so that
    /// the tap can be reused or deleted at once.
    pub async fn shutdown(mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            // A cancelled task's future (and its sockets) is dropped before its JoinHandle
            // resolves; the result is the cancellation, or a panic that was already logged.
            let _ = task.await;
        }
    }
}

impl Drop for RunningGuestNet {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        tracing::info!(tap = %self.ifname, "guest network service stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::sample;

    fn start(ifname: &str, config: GuestNetConfig) -> GuestNetError {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        GuestNet::start(ifname, config, rt.handle()).expect_err("start must fail")
    }

    /// Each refusal comes before any socket exists (they only read interface names).
    #[test]
    fn start_refuses_bad_config_names_and_links_clearly() {
        let mut bad = sample();
        bad.mtu = 576;
        let err = start("lo", bad);
        assert!(matches!(err, GuestNetError::Config { .. }), "{err}");
        let err = start("../all", sample());
        assert!(matches!(err, GuestNetError::InterfaceName { .. }), "{err}");
        let err = start("cknosuch0", sample());
        assert!(matches!(err, GuestNetError::NoInterface { .. }), "{err}");
        // Loopback exists everywhere and has no Ethernet address.
        let err = start("lo", sample());
        assert!(matches!(err, GuestNetError::NoMac { .. }), "{err}");
    }
}
