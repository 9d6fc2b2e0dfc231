//! The router advertisement task: an RA to ff02::1 at start and every interval, and an
//! answer to each valid router solicitation. A solicitor with an address gets its answer
//! unicast at once (RFC 4861 6.2.6 allows it; a booting guest should not wait), at most
//! one per MIN_DELAY_BETWEEN_UNICAST; anything else is folded into the multicast schedule,
//! never two multicast RAs within MIN_DELAY_BETWEEN_RAS (RFC 4861 10). Either way a
//! soliciting guest cannot make us send more than it does.

use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrIn6, recvmsg, sendto};
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

use super::GuestNetStats;
use crate::ndp::{NdpError, parse_router_solicitation};

const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const MIN_DELAY_BETWEEN_RAS: Duration = Duration::from_secs(3);
const MIN_DELAY_BETWEEN_UNICAST: Duration = Duration::from_secs(1);
const ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// One received datagram: bytes, source, hop limit (from IPV6_RECVHOPLIMIT).
struct Received {
    bytes: Vec<u8>,
    from: Option<SocketAddrV6>,
    hop_limit: Option<i32>,
}

pub(super) async fn run(
    fd: AsyncFd<OwnedFd>,
    ra: Vec<u8>,
    ifindex: u32,
    interval: Duration,
    stats: Arc<watch::Sender<GuestNetStats>>,
    tap: Arc<str>,
) {
    let all_nodes = SocketAddrV6::new(ALL_NODES, 0, 0, ifindex);
    let sent = |result: std::io::Result<()>, to: &SocketAddrV6| match result {
        Ok(()) => stats.send_modify(|s| s.ra_sent += 1),
        Err(error) => {
            tracing::warn!(%tap, %to, %error, "router advertisement not sent");
            stats.send_modify(|s| s.send_errors += 1);
        }
    };
    let mut next = Instant::now();
    let mut last_multicast: Option<Instant> = None;
    let mut last_unicast: Option<Instant> = None;
    loop {
        tokio::select! {
            () = sleep_until(next) => {
                sent(send(&fd, &ra, all_nodes).await, &all_nodes);
                let now = Instant::now();
                last_multicast = Some(now);
                next = now + interval;
            }
            got = recv(&fd) => match got {
                Ok(rx) => match check(&rx) {
                    Ok(()) => {
                        stats.send_modify(|s| s.rs_received += 1);
                        let now = Instant::now();
                        let solicitor = rx.from.filter(|f| !f.ip().is_unspecified());
                        match solicitor {
                            Some(from) if last_unicast.is_none_or(|t| now >= t + MIN_DELAY_BETWEEN_UNICAST) => {
                                let to = SocketAddrV6::new(*from.ip(), 0, 0, ifindex);
                                sent(send(&fd, &ra, to).await, &to);
                                last_unicast = Some(now);
                            }
                            _ => {
                                let earliest = last_multicast.map_or(now, |t| t + MIN_DELAY_BETWEEN_RAS);
                                next = next.min(earliest.max(now));
                            }
                        }
                    }
                    Err(why) => {
                        tracing::debug!(%tap, from = ?rx.from, %why, "router solicitation dropped");
                        stats.send_modify(|s| s.rs_dropped += 1);
                    }
                },
                Err(error) => {
                    tracing::warn!(%tap, %error, "ICMPv6 receive failed");
                    tokio::time::sleep(ERROR_BACKOFF).await;
                }
            },
        }
    }
}

/// Why a solicitation was dropped (RFC 4861 6.1.1's checks, parser's included).
#[derive(Debug, thiserror::Error)]
enum Dropped {
    #[error("hop limit {0:?} is not 255: not sent from this link")]
    HopLimit(Option<i32>),
    #[error(transparent)]
    Malformed(#[from] NdpError),
    #[error("source link-layer address option from the unspecified address")]
    LinkLayerFromUnspecified,
}

fn check(rx: &Received) -> Result<(), Dropped> {
    if rx.hop_limit != Some(255) {
        return Err(Dropped::HopLimit(rx.hop_limit));
    }
    let rs = parse_router_solicitation(&rx.bytes)?;
    let unspecified = rx.from.is_none_or(|f| f.ip().is_unspecified());
    if unspecified && rs.source_mac.is_some() {
        return Err(Dropped::LinkLayerFromUnspecified);
    }
    Ok(())
}

async fn recv(fd: &AsyncFd<OwnedFd>) -> std::io::Result<Received> {
    loop {
        let mut guard = fd.readable().await?;
        if let Ok(result) = guard.try_io(|inner| recv_now(inner.get_ref())) {
            return result;
        }
    }
}

fn recv_now(fd: &OwnedFd) -> std::io::Result<Received> {
    let mut buf = [0u8; 1500];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!(libc::c_int);
    let msg = recvmsg::<SockaddrIn6>(
        fd.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_DONTWAIT,
    )?;
    let hop_limit = msg.cmsgs()?.find_map(|c| match c {
        ControlMessageOwned::Ipv6HopLimit(h) => Some(h),
        _ => None,
    });
    let from = msg.address.map(SocketAddrV6::from);
    let len = msg.bytes;
    Ok(Received {
        bytes: buf[..len].to_vec(),
        from,
        hop_limit,
    })
}

async fn send(fd: &AsyncFd<OwnedFd>, ra: &[u8], to: SocketAddrV6) -> std::io::Result<()> {
    let to = SockaddrIn6::from(to);
    loop {
        let mut guard = fd.writable().await?;
        if let Ok(result) = guard.try_io(|inner| {
            sendto(inner.get_ref().as_raw_fd(), ra, &to, MsgFlags::MSG_DONTWAIT)
                .map_err(std::io::Error::from)
        }) {
            return result.map(drop);
        }
    }
}
