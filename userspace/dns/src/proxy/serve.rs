//! The proxy's threads: the poll thread over the four sockets, a fixed pool of UDP workers
//! (a thread per query cost more than the query itself: clone + first schedule was most of
//! the proxy's latency), and a thread per TCP connection.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, poll};

use super::{
    BoundDnsProxy, MAX_TCP_CONNECTIONS, MAX_UDP_IN_FLIGHT, POLL_INTERVAL, Shared, TCP_IDLE_TIMEOUT,
    TCP_WRITE_TIMEOUT, Transport,
};
use crate::Rcode;
use crate::tcp::{FrameError, read_frame, write_frame};

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not stop DNS (and so the bottle) for good.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The poll thread: receives datagrams, accepts connections, hands work to threads and
/// joins them all before returning.
pub(super) fn serve(shared: &Arc<Shared>, sockets: &BoundDnsProxy) {
    let (udp_jobs, queue) = sync_channel::<UdpJob>(MAX_UDP_IN_FLIGHT);
    let queue = Arc::new(Mutex::new(queue));
    let mut udp_tasks: Vec<JoinHandle<()>> = (0..UDP_WORKERS)
        .filter_map(|i| {
            let (shared, queue) = (Arc::clone(shared), Arc::clone(&queue));
            thread::Builder::new()
                .name(format!("cork-dns-udp{i}"))
                .spawn(move || udp_worker(&shared, &queue))
                .map_err(|e| tracing::error!(error = %e, "spawning a DNS UDP worker"))
                .ok()
        })
        .collect();
    let mut tcp_tasks: Vec<JoinHandle<()>> = Vec::new();
    let mut buf = vec![0u8; usize::from(u16::MAX)];
    while !shared.stop.load(Ordering::Relaxed) {
        tcp_tasks.retain(|t| !t.is_finished());
        let ready = {
            let mut fds = [
                PollFd::new(sockets.udp[0].as_fd(), PollFlags::POLLIN),
                PollFd::new(sockets.udp[1].as_fd(), PollFlags::POLLIN),
                PollFd::new(sockets.tcp[0].as_fd(), PollFlags::POLLIN),
                PollFd::new(sockets.tcp[1].as_fd(), PollFlags::POLLIN),
            ];
            let timeout = u16::try_from(POLL_INTERVAL.as_millis()).unwrap_or(u16::MAX);
            match poll(&mut fds, timeout) {
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) => fds.map(|fd| fd.revents().is_some_and(|r| !r.is_empty())),
                Err(e) => {
                    tracing::error!(error = %e, "polling the DNS proxy sockets");
                    thread::sleep(POLL_INTERVAL);
                    continue;
                }
            }
        };
        for (i, sock) in sockets.udp.iter().enumerate() {
            if ready[i] {
                drain_udp(shared, sock, &mut buf, &udp_jobs);
            }
        }
        for (i, listener) in sockets.tcp.iter().enumerate() {
            if ready[2 + i] {
                accept_tcp(shared, listener, &mut tcp_tasks);
            }
        }
    }
    // Closing the queue ends the workers once they finish what they hold.
    drop(udp_jobs);
    for task in udp_tasks.drain(..).chain(tcp_tasks) {
        if task.join().is_err() {
            tracing::error!("a DNS proxy query thread panicked");
        }
    }
}

/// UDP worker threads: enough for queries waiting on a slow upstream not to hold up
/// others, few enough to stay cheap.
const UDP_WORKERS: usize = 4;

/// One UDP query for a worker.
struct UdpJob {
    packet: Vec<u8>,
    client: SocketAddr,
    sock: Arc<UdpSocket>,
}

fn udp_worker(shared: &Arc<Shared>, queue: &Mutex<Receiver<UdpJob>>) {
    loop {
        // One worker waits on the queue at a time; the others wait for the lock.
        let job = lock(queue).recv_timeout(POLL_INTERVAL);
        match job {
            Ok(job) => {
                if let Some(reply) = shared.decide(&job.packet, Transport::Udp, job.client) {
                    send_udp(&job.sock, &reply, job.client);
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if shared.stop.load(Ordering::Relaxed) {
                    return;
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Reads the datagrams waiting on `sock` (a bounded number, so one family cannot starve
/// the other). Rate-limited and overload refusals are answered here; the rest goes to the
/// workers.
fn drain_udp(
    shared: &Arc<Shared>,
    sock: &Arc<UdpSocket>,
    buf: &mut [u8],
    jobs: &SyncSender<UdpJob>,
) {
    for _ in 0..64 {
        let (n, client) = match sock.recv_from(buf) {
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => {
                tracing::debug!(error = %e, "receiving on the DNS proxy UDP socket");
                return;
            }
        };
        let packet = buf[..n].to_vec();
        let early = if !shared.take_token() {
            Some(("rate_limited", Rcode::Refused, packet))
        } else {
            let job = UdpJob {
                packet,
                client,
                sock: Arc::clone(sock),
            };
            match jobs.try_send(job) {
                Ok(()) => None,
                // More than MAX_UDP_IN_FLIGHT waiting: answer now rather than queue forever.
                Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                    Some(("overloaded", Rcode::ServFail, job.packet))
                }
            }
        };
        if let Some((reason, rcode, packet)) = early
            && let Some(reply) = shared.refuse_early(&packet, reason, rcode, Transport::Udp, client)
        {
            send_udp(sock, &reply, client);
        }
    }
}

fn send_udp(sock: &UdpSocket, reply: &[u8], client: SocketAddr) {
    if let Err(e) = sock.send_to(reply, client) {
        tracing::debug!(%client, error = %e, "sending a DNS reply");
    }
}

fn accept_tcp(shared: &Arc<Shared>, listener: &TcpListener, tasks: &mut Vec<JoinHandle<()>>) {
    loop {
        let (stream, client) = match listener.accept() {
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => {
                tracing::debug!(error = %e, "accepting a DNS proxy TCP connection");
                return;
            }
        };
        if tasks.len() >= MAX_TCP_CONNECTIONS {
            tracing::warn!(%client, "too many DNS TCP connections; closing one");
            continue;
        }
        let task_shared = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name("cork-dns-tcp".into())
            .spawn(move || serve_tcp(&task_shared, stream, client));
        match spawned {
            Ok(task) => tasks.push(task),
            Err(e) => tracing::warn!(error = %e, "spawning a DNS TCP thread; connection closed"),
        }
    }
}

/// One TCP connection: messages answered in order until the client closes, goes idle for
/// [`TCP_IDLE_TIMEOUT`], or the proxy stops.
fn serve_tcp(shared: &Shared, mut stream: TcpStream, client: SocketAddr) {
    let setup = stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_read_timeout(Some(POLL_INTERVAL)))
        .and_then(|()| stream.set_write_timeout(Some(TCP_WRITE_TIMEOUT)));
    if let Err(e) = setup {
        tracing::debug!(%client, error = %e, "setting up a DNS TCP connection");
        return;
    }
    loop {
        let deadline = Instant::now() + TCP_IDLE_TIMEOUT;
        let msg = match read_frame(&mut stream, deadline, &shared.stop) {
            Ok(Some(msg)) => msg,
            Ok(None) | Err(FrameError::Stopped) => return,
            Err(e) => {
                tracing::debug!(%client, error = %e, "closing a DNS TCP connection");
                return;
            }
        };
        let reply = if shared.take_token() {
            shared.decide(&msg, Transport::Tcp, client)
        } else {
            shared.refuse_early(&msg, "rate_limited", Rcode::Refused, Transport::Tcp, client)
        };
        if let Some(reply) = reply
            && let Err(e) = write_frame(&mut stream, &reply)
        {
            tracing::debug!(%client, error = %e, "sending a DNS reply over TCP");
            return;
        }
    }
}
