//! The connection a client would have made itself. Behind a transparent proxy the client's
//! own happy-eyeballs fallback never runs: the kernel handed its connect to the proxy,
//! which accepted. So the proxy does the fallback for it (RFC 8305 style): the address the
//! bottle dialled first, then — when that fails, or has not answered within
//! [`ATTEMPT_DELAY`] — the other addresses the DNS proxy answered to this bottle for the
//! same name, the other family first, racing, the first to connect wins, all within
//! [`CONNECT_TIMEOUT`]. Never an address that was not answered for the name.

use std::net::SocketAddr;
use std::time::Duration;

use cork_dns::Resolved;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How long an attempt runs alone before the next candidate starts beside it (RFC 8305's
/// recommended Connection Attempt Delay).
pub const ATTEMPT_DELAY: Duration = Duration::from_millis(250);
/// The whole race, every candidate included.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The addresses to fall back to after `dialled`: the others resolved for `name` (on the
/// same port), those of the other family before those of the same family. Asked only
/// when `dialled` fails or is slow, since it scans what the bottle was told.
pub fn fallbacks(dialled: SocketAddr, name: &str, resolved: &Resolved) -> Vec<SocketAddr> {
    let (mut other_family, same_family): (Vec<SocketAddr>, Vec<SocketAddr>) = resolved
        .addresses(name)
        .into_iter()
        .map(|ip| SocketAddr::new(ip, dialled.port()))
        .filter(|a| *a != dialled)
        .partition(|a| a.is_ipv4() != dialled.is_ipv4());
    other_family.extend(same_family);
    other_family
}

/// Why no candidate connected: the last error seen, and where.
#[derive(Debug)]
pub struct Failed {
    pub dst: SocketAddr,
    /// `None`: the race ran out of time.
    pub error: Option<std::io::Error>,
}

/// Connects to `dialled`, racing the addresses `fallbacks` gives (asked only once
/// `dialled` has failed or been slow) as the module docs describe; returns the stream and
/// the address that answered.
pub async fn connect(
    dialled: SocketAddr,
    fallbacks: impl FnOnce() -> Vec<SocketAddr>,
) -> Result<(TcpStream, SocketAddr), Failed> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let mut attempts = JoinSet::new();
    let mut fallbacks = Some(fallbacks);
    let mut queue: std::vec::IntoIter<SocketAddr> = Vec::new().into_iter();
    let mut last = Failed {
        dst: dialled,
        error: None,
    };
    attempts.spawn(async move { (dialled, TcpStream::connect(dialled).await) });
    loop {
        let wake = (Instant::now() + ATTEMPT_DELAY).min(deadline);
        let start_next = tokio::select! {
            done = attempts.join_next() => match done {
                Some(Ok((dst, Ok(stream)))) => return Ok((stream, dst)),
                Some(Ok((dst, Err(e)))) => {
                    last = Failed { dst, error: Some(e) };
                    true // failed fast: the next candidate starts now
                }
                Some(Err(_)) | None => true,
            },
            _ = tokio::time::sleep_until(wake) => {
                if Instant::now() >= deadline {
                    return Err(Failed { dst: last.dst, error: None });
                }
                true // slow: the next candidate starts beside it
            }
        };
        if start_next {
            if let Some(f) = fallbacks.take() {
                queue = f().into_iter();
            }
            if let Some(dst) = queue.next() {
                attempts.spawn(async move { (dst, TcpStream::connect(dst).await) });
            } else if attempts.is_empty() {
                return Err(last);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallbacks_put_the_other_family_first() {
        let r = Resolved::default();
        r.record("dual.example.test", "2001:db8::10".parse().expect("v6"), 60);
        r.record(
            "dual.example.test",
            "198.51.100.10".parse().expect("v4"),
            60,
        );
        r.record("dual.example.test", "2001:db8::11".parse().expect("v6"), 60);
        r.record(
            "other.example.test",
            "198.51.100.99".parse().expect("v4"),
            60,
        );
        let dialled: SocketAddr = "[2001:db8::10]:443".parse().expect("addr");
        let got = fallbacks(dialled, "dual.example.test", &r);
        let want: Vec<SocketAddr> = ["198.51.100.10:443", "[2001:db8::11]:443"]
            .iter()
            .map(|s| s.parse().expect("addr"))
            .collect();
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn a_refused_first_candidate_falls_back_at_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let good = listener.local_addr().expect("addr");
        // A port nothing listens on: refused.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let (_stream, served) = connect(closed, || vec![good])
            .await
            .expect("the fallback connects");
        assert_eq!(served, good);
        // A dialled address that answers never asks for the fallbacks.
        let (_stream, served) = connect(good, || panic!("fallbacks asked for"))
            .await
            .expect("the dialled address connects");
        assert_eq!(served, good);
        let err = connect(closed, Vec::new)
            .await
            .expect_err("nothing listens");
        assert_eq!(err.dst, closed);
        assert!(err.error.is_some());
    }
}
