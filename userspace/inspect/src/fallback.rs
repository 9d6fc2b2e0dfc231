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

/// Where to try, in order: `dialled` first, then the other addresses resolved for `name`
/// (on the same port), those of the other family before those of the same family.
pub fn candidates(dialled: SocketAddr, name: &str, resolved: &Resolved) -> Vec<SocketAddr> {
    let mut out = vec![dialled];
    let others: Vec<SocketAddr> = resolved
        .addresses(name)
        .into_iter()
        .map(|ip| SocketAddr::new(ip, dialled.port()))
        .filter(|a| *a != dialled)
        .collect();
    let (other_family, same_family): (Vec<_>, Vec<_>) = others
        .into_iter()
        .partition(|a| a.is_ipv4() != dialled.is_ipv4());
    out.extend(other_family);
    out.extend(same_family);
    out
}

/// Why no candidate connected: the last error seen, and where.
#[derive(Debug)]
pub struct Failed {
    pub dst: SocketAddr,
    /// `None`: the race ran out of time.
    pub error: Option<std::io::Error>,
}

/// Races TCP connects to `candidates` as described in the module docs; returns the stream
/// and the address that answered.
pub async fn connect(candidates: &[SocketAddr]) -> Result<(TcpStream, SocketAddr), Failed> {
    let Some(&first) = candidates.first() else {
        return Err(Failed {
            dst: SocketAddr::from(([0, 0, 0, 0], 0)),
            error: None,
        });
    };
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let mut attempts = JoinSet::new();
    let mut next = 0;
    let mut last = Failed {
        dst: first,
        error: None,
    };
    loop {
        if let Some(&dst) = candidates.get(next) {
            next += 1;
            attempts.spawn(async move { (dst, TcpStream::connect(dst).await) });
        }
        let all_started = next >= candidates.len();
        if all_started && attempts.is_empty() {
            return Err(last);
        }
        let wake = if all_started {
            deadline
        } else {
            (Instant::now() + ATTEMPT_DELAY).min(deadline)
        };
        tokio::select! {
            done = attempts.join_next() => match done {
                Some(Ok((dst, Ok(stream)))) => return Ok((stream, dst)),
                Some(Ok((dst, Err(e)))) => {
                    last = Failed { dst, error: Some(e) };
                    // Failed fast: the next candidate starts now (top of the loop).
                }
                Some(Err(_)) | None => {}
            },
            _ = tokio::time::sleep_until(wake) => {
                if Instant::now() >= deadline {
                    return Err(Failed { dst: last.dst, error: None });
                }
                // Slow: the next candidate starts beside it (top of the loop).
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dialled_address_first_then_the_other_family() {
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
        let got = candidates(dialled, "dual.example.test", &r);
        let want: Vec<SocketAddr> = [
            "[2001:db8::10]:443",
            "198.51.100.10:443",
            "[2001:db8::11]:443",
        ]
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
        let (_stream, served) = connect(&[closed, good]).await.expect("the second connects");
        assert_eq!(served, good);
        let err = connect(&[closed]).await.expect_err("nothing listens");
        assert_eq!(err.dst, closed);
        assert!(err.error.is_some());
    }
}
