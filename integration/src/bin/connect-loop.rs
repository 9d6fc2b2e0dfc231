//! `connect-loop [--refused | --new-flows] ADDR PORT COUNT [PACE_US]`: COUNT × (TCP
//! connect + close) to ADDR:PORT, back to back or one every PACE_US microseconds, then
//! prints `connects=N failed=F secs=S rate=R/s` (with `--refused`, a connect fails unless
//! the kernel refuses it with EPERM; with `--new-flows`, connect i goes to port PORT + i —
//! each a flow of its own, so the kernel never has a verdict kept for it — and a refusal
//! by the peer (nothing listens there) counts as done). The same client runs inside and outside a
//! bottle in `cork-bench`, so the two rates compare the enforcement alone.
//! `connect-loop --dns SERVER NAME COUNT`: COUNT sequential UDP A queries for NAME to
//! SERVER:53, printing `queries=N failed=F secs=S rate=R/s p50=…us p99=…us q=…` (`q`:
//! the latency in µs at every percent and at 99.9 %, for the CDF figure).
//! `connect-loop --serve ADDR PORT` is the other end: accept and close, nothing else, so
//! the server is never what is measured.

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Closes with SO_LINGER 0 (RST): tens of thousands of connects in a row would otherwise
/// fill the port range with TIME_WAIT and stall on SYN retransmits, measuring the timer
/// instead of the connect path.
fn abort(s: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a correctly sized linger struct.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [mode, addr, port] = args.as_slice()
        && mode == "--serve"
    {
        return serve(addr, port);
    }
    if let [mode, server, name, count] = args.as_slice()
        && mode == "--dns"
    {
        return dns_loop(server, name, count);
    }
    // `--refused`: every connect must be refused by the kernel (EPERM), as a bottle's
    // connects to a destination no rule allows are: the audit-delivery bench's load.
    let (refused, args) = match args.split_first() {
        Some((flag, rest)) if flag == "--refused" => (true, rest.to_vec()),
        _ => (false, args),
    };
    let (new_flows, args) = match args.split_first() {
        Some((flag, rest)) if flag == "--new-flows" && !refused => (true, rest.to_vec()),
        _ => (false, args),
    };
    let (addr, port, count, pace) = match args.as_slice() {
        [addr, port, count] => (addr, port, count, None),
        [addr, port, count, pace] => (addr, port, count, Some(pace)),
        _ => bail!("usage: connect-loop [--refused | --new-flows] ADDR PORT COUNT [PACE_US]"),
    };
    let pace = pace
        .map(|p| p.parse().map(Duration::from_micros))
        .transpose()
        .context("PACE_US")?;
    let ip: IpAddr = addr.parse().context("ADDR")?;
    if !cork_integration::addr::is_test_ip(ip) {
        bail!("{ip} is outside the test ranges");
    }
    let port: u16 = port.parse().context("PORT")?;
    let count: u64 = count.parse().context("COUNT")?;
    if new_flows && u64::from(port) + count > 65536 {
        bail!("--new-flows: PORT + COUNT is past the last port");
    }
    let mut failed = 0u64;
    let start = Instant::now();
    for i in 0..count {
        // On a fixed schedule from the start, so a slow connect does not shift the rest.
        if let Some(pace) = pace {
            let due = start + pace * i as u32;
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        let to = SocketAddr::new(ip, if new_flows { port + i as u16 } else { port });
        match TcpStream::connect_timeout(&to, Duration::from_secs(2)) {
            Err(e) if new_flows && e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Ok(s) if refused => {
                abort(s);
                failed += 1;
            }
            Ok(s) => abort(s),
            Err(e) if refused && e.raw_os_error() == Some(libc::EPERM) => {}
            Err(_) => failed += 1,
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let rate = count as f64 / secs;
    println!("connects={count} failed={failed} secs={secs:.3} rate={rate:.1}/s");
    if failed > 0 {
        bail!("{failed} of {count} connects failed");
    }
    Ok(())
}

fn serve(addr: &str, port: &str) -> Result<()> {
    let ip: IpAddr = addr.parse().context("ADDR")?;
    if !cork_integration::addr::is_test_ip(ip) {
        bail!("{ip} is outside the test ranges");
    }
    let listener = TcpListener::bind(SocketAddr::new(ip, port.parse().context("PORT")?))?;
    // std listens with a backlog of 128; a burst beyond it drops SYNs and the client
    // waits a 1 s retransmit. listen() again only raises the backlog.
    // SAFETY: listen on a socket we own.
    if unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), 4096) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    println!("ready");
    std::io::stdout().flush()?;
    loop {
        // Accept errors (a client that already reset) are not the server's business.
        let _ = listener.accept();
    }
}

/// One A query for `name` with id `id`, recursion desired.
fn dns_query(name: &str, id: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

fn dns_loop(server: &str, name: &str, count: &str) -> Result<()> {
    let ip: IpAddr = server.parse().context("SERVER")?;
    if !cork_integration::addr::is_test_ip(ip) {
        bail!("{ip} is outside the test ranges");
    }
    let count: u16 = count.parse().context("COUNT (at most 65535)")?;
    let bind: SocketAddr = if ip.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse()?;
    let sock = std::net::UdpSocket::bind(bind)?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))?;
    let to = SocketAddr::new(ip, 53);
    let mut buf = [0u8; 1500];
    let mut rtts = Vec::with_capacity(count as usize);
    let mut failed = 0u32;
    let start = Instant::now();
    for id in 0..count {
        let t = Instant::now();
        sock.send_to(&dns_query(name, id), to)?;
        // Wait for this id (a late answer to an earlier one is skipped); rcode must be 0.
        loop {
            match sock.recv_from(&mut buf) {
                Ok((n, _)) if n >= 12 && u16::from_be_bytes([buf[0], buf[1]]) == id => {
                    if buf[3] & 0x0f != 0 {
                        failed += 1;
                    }
                    rtts.push(t.elapsed());
                    break;
                }
                Ok(_) => continue,
                Err(_) => {
                    failed += 1;
                    break;
                }
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let mut us: Vec<u64> = rtts
        .iter()
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .collect();
    us.sort_unstable();
    let pct = |p: f64| cork_bench_report::quantiles(&us, &[p])[0];
    let cdf = cork_bench_report::quantiles(&us, &cork_bench_report::cdf_probabilities());
    println!(
        "queries={count} failed={failed} secs={secs:.3} rate={:.1}/s p50={}us p99={}us {}",
        f64::from(count) / secs,
        pct(0.50),
        pct(0.99),
        cork_bench_report::format_list("q", &cdf)
    );
    if failed > 0 {
        bail!("{failed} of {count} queries failed");
    }
    Ok(())
}
