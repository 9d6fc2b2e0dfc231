//! `connect-loop ADDR PORT COUNT`: COUNT × (TCP connect + close) to ADDR:PORT, then
//! prints `connects=N failed=F secs=S rate=R/s`. The same client runs inside and outside
//! a bottle in `cork-bench`, so the two rates compare the enforcement alone.
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
    let [addr, port, count] = args.as_slice() else {
        bail!("usage: connect-loop ADDR PORT COUNT");
    };
    let ip: IpAddr = addr.parse().context("ADDR")?;
    if !cork_integration::addr::is_test_ip(ip) {
        bail!("{ip} is outside the test ranges");
    }
    let to = SocketAddr::new(ip, port.parse().context("PORT")?);
    let count: u64 = count.parse().context("COUNT")?;
    let mut failed = 0u64;
    let start = Instant::now();
    for _ in 0..count {
        match TcpStream::connect_timeout(&to, Duration::from_secs(2)) {
            Ok(s) => abort(s),
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
