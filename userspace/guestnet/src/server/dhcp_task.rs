//! The DHCP task: read a datagram from the tap, parse it, [`dhcp::answer`] it, send the
//! reply. Nothing here decides anything; it only moves bytes and counts.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::GuestNetStats;
use crate::config::GuestNetConfig;
use crate::dhcp::{self, Answer, Ignored, MessageType};

/// Large enough for any DHCP message a client on a 1500-byte link can send.
const BUF_LEN: usize = 2048;
/// A receive error that repeats (it should not) is retried at this pace, not in a spin.
const ERROR_BACKOFF: Duration = Duration::from_millis(100);

pub(super) async fn run(
    sock: UdpSocket,
    cfg: Arc<GuestNetConfig>,
    stats: Arc<watch::Sender<GuestNetStats>>,
    tap: Arc<str>,
) {
    let mut buf = vec![0u8; BUF_LEN];
    loop {
        let (len, from) = match sock.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(error) => {
                tracing::warn!(%tap, %error, "DHCP receive failed");
                tokio::time::sleep(ERROR_BACKOFF).await;
                continue;
            }
        };
        let msg = match dhcp::parse(&buf[..len]) {
            Ok(msg) => msg,
            Err(error) => {
                tracing::debug!(%tap, %from, %error, "malformed DHCP message dropped");
                stats.send_modify(|s| s.dhcp_malformed += 1);
                continue;
            }
        };
        match dhcp::answer(&cfg, &msg) {
            Answer::Reply { kind, packet, to } => match sock.send_to(&packet, to).await {
                Ok(_) => {
                    tracing::info!(%tap, xid = msg.xid, request = ?msg.kind, reply = ?kind, %to, "DHCP reply sent");
                    stats.send_modify(|s| match kind {
                        MessageType::Offer => s.dhcp_offers += 1,
                        MessageType::Nak => s.dhcp_naks += 1,
                        _ => s.dhcp_acks += 1,
                    });
                }
                Err(error) => {
                    tracing::warn!(%tap, reply = ?kind, %to, %error, "DHCP reply not sent");
                    stats.send_modify(|s| s.send_errors += 1);
                }
            },
            Answer::Ignore(why) => {
                let mut count = 0;
                stats.send_modify(|s| {
                    s.dhcp_ignored += 1;
                    count = s.dhcp_ignored;
                });
                // Worth a warning: a foreign MAC (spoofing, or a second NIC) and a decline (the
                // guest saw its address in use). A flooding guest's warnings thin out (1st,
                // 2nd, 4th, 8th… ignored message).
                let notable = matches!(why, Ignored::ForeignClient { .. } | Ignored::Declined);
                if notable && count.is_power_of_two() {
                    tracing::warn!(%tap, %why, ignored = count, "DHCP message refused");
                } else {
                    tracing::debug!(%tap, %why, "DHCP message ignored");
                }
            }
        }
    }
}
