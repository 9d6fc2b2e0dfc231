//! The proxy's tasks: a receive loop per UDP socket and an accept loop per TCP listener,
//! each owning the tasks it spawned (a query, a connection) in a `JoinSet`, so ending a
//! loop ends everything it started.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::{JoinError, JoinSet};
use tokio::time::timeout;

use super::{Shared, TCP_IDLE_TIMEOUT, TCP_WRITE_TIMEOUT, Transport};
use crate::Rcode;
use crate::tcp::{read_frame, write_frame};

/// Pause after a failed accept (EMFILE and friends) instead of spinning on it.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Receives datagrams on `sock` until the proxy stops. Rate-limited and overload refusals
/// are answered here; each other query is a task. `_alive` is dropped when the loop and
/// every query it started have ended.
pub(super) async fn udp_loop(shared: Arc<Shared>, sock: Arc<UdpSocket>, _alive: Sender<()>) {
    let mut queries = JoinSet::new();
    let mut buf = vec![0u8; usize::from(u16::MAX)];
    loop {
        tokio::select! {
            () = shared.stopped() => break,
            got = sock.recv_from(&mut buf) => match got {
                Ok((n, client)) => {
                    let packet = buf[..n].to_vec();
                    receive_udp(&shared, &sock, packet, client, &mut queries).await;
                }
                Err(e) => tracing::debug!(error = %e, "receiving on the DNS proxy UDP socket"),
            },
            // Reap finished queries so the set holds only live ones.
            Some(done) = queries.join_next(), if !queries.is_empty() => reaped(done),
        }
    }
    // Queries waiting on upstream see the stop too and end (audited `proxy_stopped`).
    while let Some(done) = queries.join_next().await {
        reaped(done);
    }
}

/// One datagram from the bottle: refused now (rate, overload), or a query task.
async fn receive_udp(
    shared: &Arc<Shared>,
    sock: &Arc<UdpSocket>,
    packet: Vec<u8>,
    client: SocketAddr,
    queries: &mut JoinSet<()>,
) {
    let (reason, rcode) = if !shared.rate.take() {
        ("rate_limited", Rcode::Refused)
    } else if let Ok(permit) = Arc::clone(&shared.udp_in_flight).try_acquire_owned() {
        let (shared, sock) = (Arc::clone(shared), Arc::clone(sock));
        queries.spawn(async move {
            let _permit = permit;
            if let Some(reply) = shared.decide(&packet, Transport::Udp, client).await {
                send_udp(&sock, &reply, client).await;
            }
        });
        return;
    } else {
        // MAX_UDP_IN_FLIGHT waiting on upstream already: answer now rather than queue.
        ("overloaded", Rcode::ServFail)
    };
    if let Some(reply) = shared.refuse_early(&packet, reason, rcode, Transport::Udp, client) {
        send_udp(sock, &reply, client).await;
    }
}

async fn send_udp(sock: &UdpSocket, reply: &[u8], client: SocketAddr) {
    if let Err(e) = sock.send_to(reply, client).await {
        tracing::debug!(%client, error = %e, "sending a DNS reply");
    }
}

/// Accepts TCP connections until the proxy stops; each is a task, at most
/// [`MAX_TCP_CONNECTIONS`](super::MAX_TCP_CONNECTIONS) over both listeners.
pub(super) async fn tcp_loop(shared: Arc<Shared>, listener: TcpListener, _alive: Sender<()>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = shared.stopped() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, client)) => {
                    match Arc::clone(&shared.tcp_connections).try_acquire_owned() {
                        Ok(permit) => {
                            let shared = Arc::clone(&shared);
                            connections.spawn(serve_tcp(shared, stream, client, permit));
                        }
                        Err(_) => {
                            // Closed unread: its queries are not known, so the event names
                            // the connection only. Audited first, so the event is written
                            // by the time the bottle sees the close.
                            shared.refuse_connection(client);
                            drop(stream);
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "accepting a DNS proxy TCP connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(done) = connections.join_next(), if !connections.is_empty() => reaped(done),
        }
    }
    // No new connections from here on; the open ones see the stop and close.
    drop(listener);
    while let Some(done) = connections.join_next().await {
        reaped(done);
    }
}

/// One TCP connection: messages answered in order until the client closes, sends no
/// complete message for [`TCP_IDLE_TIMEOUT`], does not take a reply within
/// [`TCP_WRITE_TIMEOUT`], or the proxy stops.
async fn serve_tcp(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    client: SocketAddr,
    _permit: OwnedSemaphorePermit,
) {
    loop {
        let read = tokio::select! {
            () = shared.stopped() => return,
            read = timeout(TCP_IDLE_TIMEOUT, read_frame(&mut stream)) => read,
        };
        let msg = match read {
            Ok(Ok(Some(msg))) => msg,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                tracing::debug!(%client, error = %e, "closing a DNS TCP connection");
                return;
            }
            Err(_) => {
                tracing::debug!(%client, "closing an idle DNS TCP connection");
                return;
            }
        };
        let reply = if shared.rate.take() {
            shared.decide(&msg, Transport::Tcp, client).await
        } else {
            shared.refuse_early(&msg, "rate_limited", Rcode::Refused, Transport::Tcp, client)
        };
        let Some(reply) = reply else { continue };
        let written = tokio::select! {
            () = shared.stopped() => return,
            written = timeout(TCP_WRITE_TIMEOUT, write_frame(&mut stream, &reply)) => written,
        };
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(%client, error = %e, "sending a DNS reply over TCP");
                return;
            }
            Err(_) => {
                tracing::debug!(%client, "a DNS TCP client did not take its reply; closing");
                return;
            }
        }
    }
}

/// A task of the proxy ended: only a panic is worth a word.
fn reaped(done: Result<(), JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        tracing::error!(error = %e, "a DNS proxy task panicked");
    }
}
