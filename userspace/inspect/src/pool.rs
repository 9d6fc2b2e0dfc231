//! Upstream connections kept between the bottle's connections. A bottle connection takes
//! its upstream from here when one is idle for the same key, and gives it back when it
//! ends; a new intercepted TLS connection then costs one handshake (the bottle's, with
//! the minted leaf), not two. What makes a connection reusable is in [`Key`]: the bottle
//! (one pool per bottle's proxy), the name the upstream's certificate was verified for,
//! the address the bottle dialled, and how it was made (plain, or TLS offering HTTP/1.1
//! or h2). Nothing of a request stays on a connection: credentials go in each request's
//! headers, and every request is admitted, scanned and audited on its own.
//!
//! Idle connections are bounded ([`MAX_IDLE_PER_KEY`], [`MAX_IDLE`]) and closed after
//! [`IDLE_TIMEOUT`]; one the server closed is never handed out. Dropping the pool (the
//! bottle's proxy stops) closes every idle connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;

use crate::body::lock;
use crate::upstream::Sender;

/// Idle connections kept for one key: a client opening connections in parallel (a
/// package manager's 16–64) finds most of them warm.
pub const MAX_IDLE_PER_KEY: usize = 32;
/// Idle connections kept for the whole bottle (each is one of the agent's descriptors).
pub const MAX_IDLE: usize = 64;
/// An idle connection older than this is closed rather than reused: servers close idle
/// keep-alive connections too (often after 5–75 s), and a stale one only costs a retry.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a given-back connection may take to finish its last exchange (the response
/// body a bottle stopped reading is drained or the connection closed) before it is
/// dropped instead of kept.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// What a pooled connection may be reused for: exactly what it was made for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// The name the upstream was verified for (TLS: its certificate; plain: the Host).
    pub name: String,
    /// The address the bottle dialled (the connection may have been served by a
    /// fallback address answered for the same name, see [`Lease::served`]).
    pub dialled: SocketAddr,
    pub profile: Profile,
}

/// How the upstream connection was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    Plain,
    /// TLS offering HTTP/1.1 only (the bottle spoke HTTP/1.1).
    TlsH1,
    /// TLS offering h2 first (the bottle spoke h2).
    TlsH2,
}

/// An upstream connection a bottle connection holds for its life.
pub struct Lease {
    pub sender: Sender,
    /// The address that served it.
    pub served: SocketAddr,
    pub key: Key,
}

struct Idle {
    sender: Sender,
    served: SocketAddr,
    since: Instant,
}

impl Idle {
    fn usable(&self, now: Instant) -> bool {
        now.duration_since(self.since) < IDLE_TIMEOUT
            && !self.sender.is_closed()
            && self.sender.is_ready()
    }
}

/// One bottle's idle upstream connections.
pub struct Pool {
    idle: Mutex<HashMap<Key, Vec<Idle>>>,
}

impl Pool {
    /// A pool whose idle connections are swept on `runtime` every [`IDLE_TIMEOUT`], for
    /// as long as the pool lives.
    pub fn new(runtime: &tokio::runtime::Handle) -> Arc<Self> {
        let pool = Arc::new(Pool {
            idle: Mutex::new(HashMap::new()),
        });
        runtime.spawn(sweep(Arc::downgrade(&pool)));
        pool
    }

    /// An idle connection for `key`, the most recently used first; stale or closed ones
    /// met on the way are dropped (which closes them).
    pub fn take(&self, key: &Key) -> Option<Lease> {
        let now = Instant::now();
        let mut idle = lock(&self.idle);
        let list = idle.get_mut(key)?;
        let mut found = None;
        while let Some(e) = list.pop() {
            if e.usable(now) {
                found = Some(Lease {
                    sender: e.sender,
                    served: e.served,
                    key: key.clone(),
                });
                break;
            }
        }
        if list.is_empty() {
            idle.remove(key);
        }
        found
    }

    /// Takes `lease` back once its connection is ready for another request (at once, or
    /// after its last exchange ends, within [`READY_TIMEOUT`]); a closed one is dropped.
    pub fn give_back(self: &Arc<Self>, mut lease: Lease) {
        if lease.sender.is_closed() {
            return;
        }
        if lease.sender.is_ready() {
            self.put(lease);
            return;
        }
        // Called from a connection's drop: without a runtime (shutting down) there is
        // nothing to wait on, and the connection goes.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pool = Arc::downgrade(self);
        rt.spawn(async move {
            let ready = tokio::time::timeout(READY_TIMEOUT, lease.sender.ready()).await;
            if let (Ok(Ok(())), Some(pool)) = (ready, pool.upgrade()) {
                pool.put(lease);
            }
        });
    }

    fn put(&self, lease: Lease) {
        let now = Instant::now();
        let mut idle = lock(&self.idle);
        let total: usize = idle.values().map(Vec::len).sum();
        let list = idle.entry(lease.key).or_default();
        list.retain(|e| e.usable(now));
        if list.len() >= MAX_IDLE_PER_KEY || total >= MAX_IDLE {
            return;
        }
        list.push(Idle {
            sender: lease.sender,
            served: lease.served,
            since: now,
        });
    }

    /// Drops every idle connection that is stale or closed.
    fn prune(&self) {
        let now = Instant::now();
        let mut idle = lock(&self.idle);
        idle.retain(|_, list| {
            list.retain(|e| e.usable(now));
            !list.is_empty()
        });
    }

    /// Idle connections held (tests).
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        lock(&self.idle).values().map(Vec::len).sum()
    }
}

/// Closes stale idle connections while the pool lives (a bottle that stops making
/// requests must not keep upstream connections open).
async fn sweep(pool: Weak<Pool>) {
    loop {
        tokio::time::sleep(IDLE_TIMEOUT).await;
        let Some(pool) = pool.upgrade() else { return };
        pool.prune();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream;

    /// A plain HTTP/1.1 server answering every request with 200, until dropped.
    async fn server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Empty::<bytes::Bytes>::new(),
                        ))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (addr, task)
    }

    fn key(name: &str, dialled: SocketAddr) -> Key {
        Key {
            name: name.to_owned(),
            dialled,
            profile: Profile::Plain,
        }
    }

    #[tokio::test]
    async fn a_given_back_connection_is_reused_for_its_key_only() {
        let (addr, _server) = server().await;
        let pool = Pool::new(&tokio::runtime::Handle::current());
        let (mut sender, served) = upstream::connect(addr, Vec::new, "a.example.test", None)
            .await
            .expect("connect");
        sender.ready().await.expect("ready");
        let k = key("a.example.test", addr);
        pool.give_back(Lease {
            sender,
            served,
            key: k.clone(),
        });
        assert_eq!(pool.idle_count(), 1);
        // Another name, another dialled address or another profile finds nothing.
        assert!(pool.take(&key("b.example.test", addr)).is_none());
        let other: SocketAddr = "127.0.0.2:80".parse().expect("addr");
        assert!(pool.take(&key("a.example.test", other)).is_none());
        let tls = Key {
            profile: Profile::TlsH1,
            ..k.clone()
        };
        assert!(pool.take(&tls).is_none());
        let lease = pool.take(&k).expect("the idle connection");
        assert_eq!(lease.served, addr);
        assert!(pool.take(&k).is_none(), "handed out once");
        drop(lease);
    }

    #[tokio::test]
    async fn a_closed_connection_is_never_kept() {
        // A server that closes every connection as soon as it accepts it.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let closer = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                drop(stream);
            }
        });
        let pool = Pool::new(&tokio::runtime::Handle::current());
        let (sender, served) = upstream::connect(addr, Vec::new, "a.example.test", None)
            .await
            .expect("connect");
        // Wait for hyper to see the close (readiness, not time).
        while !sender.is_closed() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let k = key("a.example.test", addr);
        pool.give_back(Lease {
            sender,
            served,
            key: k.clone(),
        });
        assert_eq!(pool.idle_count(), 0);
        assert!(pool.take(&k).is_none());
        closer.abort();
    }
}
