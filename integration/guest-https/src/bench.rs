//! `guest-https --connects|--send|--requests`: the measuring loops `cork-vm-bench` runs in
//! the guest, in-process so that the figure is the network path's (through the tap, the
//! tc program and nftables), not busybox's fork/exec under emulation.

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn arg<T: std::str::FromStr>(
    args: &mut impl Iterator<Item = String>,
    what: &str,
) -> Result<T, String> {
    args.next()
        .ok_or_else(|| format!("missing {what}"))?
        .parse()
        .map_err(|_| format!("bad {what}"))
}

fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| format!("connect {addr}: {e}"))
}

/// Runs the mode `mode` with the remaining arguments; the result line.
pub fn run(mode: &str, mut args: impl Iterator<Item = String>) -> Result<String, String> {
    match mode {
        // --connects IP PORT N: N sequential connects (each closed at once).
        "--connects" => {
            let ip: IpAddr = arg(&mut args, "IP")?;
            let port: u16 = arg(&mut args, "PORT")?;
            let n: u32 = arg(&mut args, "N")?;
            let addr = SocketAddr::new(ip, port);
            let start = Instant::now();
            for _ in 0..n {
                drop(connect(addr)?);
            }
            let secs = start.elapsed().as_secs_f64();
            Ok(format!(
                "connects={n} secs={secs:.3} per_sec={:.1}",
                f64::from(n) / secs
            ))
        }
        // --send IP PORT MIB: MIB MiB to a sink that closes at EOF.
        "--send" => {
            let ip: IpAddr = arg(&mut args, "IP")?;
            let port: u16 = arg(&mut args, "PORT")?;
            let mib: u32 = arg(&mut args, "MIB")?;
            let mut s = connect(SocketAddr::new(ip, port))?;
            let buf = vec![0u8; 64 * 1024];
            let start = Instant::now();
            for _ in 0..mib * 16 {
                s.write_all(&buf).map_err(|e| format!("send: {e}"))?;
            }
            s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
            let secs = start.elapsed().as_secs_f64();
            Ok(format!(
                "sent_mib={mib} secs={secs:.3} mib_per_sec={:.1}",
                f64::from(mib) / secs
            ))
        }
        // --requests IP HOST PATH N: N HTTPS GETs, a new connection each.
        "--requests" => {
            let ip: IpAddr = arg(&mut args, "IP")?;
            let host: String = arg(&mut args, "HOST")?;
            let path: String = arg(&mut args, "PATH")?;
            let n: u32 = arg(&mut args, "N")?;
            let cfg = crate::config()?;
            let start = Instant::now();
            for _ in 0..n {
                let req = crate::Request {
                    ip,
                    host: host.clone(),
                    path: path.clone(),
                    headers: Vec::new(),
                    body: None,
                };
                let line = crate::fetch_with(&req, cfg.clone())?;
                if !line.starts_with("status=200") {
                    return Err(line);
                }
            }
            let secs = start.elapsed().as_secs_f64();
            Ok(format!(
                "requests={n} secs={secs:.3} per_sec={:.1}",
                f64::from(n) / secs
            ))
        }
        other => Err(format!("unknown mode {other}")),
    }
}
