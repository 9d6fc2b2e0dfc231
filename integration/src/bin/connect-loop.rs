//! `connect-loop ADDR PORT COUNT`: COUNT × (TCP connect + close) to ADDR:PORT, then
//! prints `connects=N failed=F secs=S rate=R/s`. The same client runs inside and outside
//! a bottle in `cork-bench`, so the two rates compare the enforcement alone.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
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
            Ok(s) => drop(s),
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
