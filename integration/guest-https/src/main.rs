//! `guest-https`: one HTTPS/1.1 request from inside cork's test guest, verified against
//! the CA in `$CORK_CA` (the bottle CA cork hands the guest over fw_cfg) — what a real
//! client in a VM bottle does. Built static by `cargo xtask guest` (the guest is busybox
//! only: no libc, no resolver), so the caller resolves the name and passes the address.
//!
//! ```text
//! guest-https IP HOST PATH [-H 'Name: value']... [-d BODY]
//! ```
//! Prints `status=NNN body=<first 200 bytes, one line>`, or `error=<why>`; exit 0 when a
//! response came back. The measuring modes (`--connects`, `--send`, `--requests`) are in
//! [`bench`].

mod bench;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

struct Request {
    ip: IpAddr,
    host: String,
    path: String,
    headers: Vec<String>,
    body: Option<String>,
}

fn parse() -> Result<Request, String> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: guest-https IP HOST PATH [-H 'Name: value']... [-d BODY]";
    let ip = args
        .next()
        .ok_or(usage)?
        .parse()
        .map_err(|e| format!("IP: {e}"))?;
    let host = args.next().ok_or(usage)?;
    let path = args.next().ok_or(usage)?;
    let mut req = Request {
        ip,
        host,
        path,
        headers: Vec::new(),
        body: None,
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(usage)?;
        match flag.as_str() {
            "-H" => req.headers.push(value),
            "-d" => req.body = Some(value),
            _ => return Err(usage.into()),
        }
    }
    Ok(req)
}

fn config() -> Result<Arc<rustls::ClientConfig>, String> {
    let ca = std::env::var("CORK_CA").map_err(|_| "CORK_CA is not set".to_string())?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&ca).map_err(|e| format!("{ca}: {e}"))? {
        let cert = cert.map_err(|e| format!("{ca}: {e}"))?;
        roots.add(cert).map_err(|e| format!("{ca}: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

fn fetch(req: &Request) -> Result<String, String> {
    fetch_with(req, config()?)
}

fn fetch_with(req: &Request, config: Arc<rustls::ClientConfig>) -> Result<String, String> {
    let name = ServerName::try_from(req.host.clone()).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let addr = SocketAddr::new(req.ip, 443);
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let method = if req.body.is_some() { "POST" } else { "GET" };
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        req.path, req.host
    );
    for h in &req.headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    let body = req.body.clone().unwrap_or_default();
    if req.body.is_some() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    head.push_str(&body);
    tls.write_all(head.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut response = Vec::new();
    match tls.read_to_end(&mut response) {
        Ok(_) => {}
        // A server that closes without close_notify: what arrived still counts.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(e) => return Err(format!("receive: {e}")),
    }
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| "no status line".to_string())?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    let body: String = body
        .chars()
        .take(200)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    Ok(format!("status={status} body={body}"))
}

/// The data of a chunked body (sizes in hex, each chunk followed by CRLF; trailers
/// ignored). Stops at the last chunk or at anything malformed.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = size.split(';').next().unwrap_or_default().trim();
        let Ok(n) = usize::from_str_radix(size, 16) else {
            break;
        };
        let (Some(chunk), Some(next)) = (after.get(..n), after.get(n..)) else {
            break;
        };
        if n == 0 {
            break;
        }
        out.push_str(chunk);
        rest = next.trim_start_matches("\r\n");
    }
    out
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    let result = match args.peek().cloned() {
        Some(mode) if mode.starts_with("--") => {
            args.next();
            bench::run(&mode, args)
        }
        _ => parse().and_then(|req| fetch(&req)),
    };
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("error={e}");
            ExitCode::from(1)
        }
    }
}
