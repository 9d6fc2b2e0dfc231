//! The HTTPS test upstream alone, without cork: real clients in the bottle netns (outside
//! any bottle) reach it over HTTP/1.1 and HTTP/2, IPv4 and IPv6, TLS and plain, and the
//! log records what they sent; SSE streams arrive incrementally; a cut body is seen as
//! cut; WebSocket messages echo and are recorded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use cork_integration::https_upstream::{BodyEnd, HttpsUpstream, TestCa, UpstreamConfig};
use cork_integration::process::Spawned;
use cork_integration::{Side, World};
use sha1::Digest;

const NAME: &str = "api.example.test";
const WAIT: Duration = Duration::from_secs(5);

struct Setup {
    world: World,
    up: HttpsUpstream,
    ca: std::path::PathBuf,
}

fn setup(test: &str) -> Result<Setup> {
    let world = World::new(test)?;
    let ca = TestCa::new()?;
    let ca_path = world.path("ca", "pem");
    ca.write_pem(&ca_path)?;
    let up = world.https_upstream(
        &ca,
        UpstreamConfig::new()
            .name(NAME)
            .tls("198.51.100.10:443".parse()?)
            .tls("[2001:db8::10]:443".parse()?)
            .plain("198.51.100.10:80".parse()?),
    )?;
    Ok(Setup {
        world,
        up,
        ca: ca_path,
    })
}

/// `curl -sS --cacert CA --resolve NAME:443:IP ARGS...` in the bottle netns; stdout.
fn curl(s: &Setup, ip: &str, args: &[&str]) -> Result<String> {
    let out = s.world.run(curl_cmd(&s.world, &s.ca, ip).args(args))?;
    ensure!(out.code() == 0, "curl {args:?}: {out}");
    Ok(out.stdout)
}

fn curl_cmd(world: &World, ca: &Path, ip: &str) -> std::process::Command {
    let mut cmd = world.command(Side::Bottle, "curl");
    cmd.args(["-sS", "--max-time", "20", "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("{NAME}:443:{ip}")]);
    cmd
}

#[test]
fn https_h1_h2_v4_v6_recorded() -> Result<()> {
    let s = setup("https_h1_h2_v4_v6_recorded")?;
    let cases = [
        ("198.51.100.10", "--http1.1", "HTTP/1.1"),
        ("198.51.100.10", "--http2", "HTTP/2.0"),
        ("[2001:db8::10]", "--http1.1", "HTTP/1.1"),
        ("[2001:db8::10]", "--http2", "HTTP/2.0"),
    ];
    for (i, (ip, flag, version)) in cases.iter().enumerate() {
        let body = format!("payload-{i}");
        let url = format!("https://{NAME}/echo/{i}?q={i}");
        let out = curl(
            &s,
            ip,
            &[flag, "-H", "x-test: yes", "--data-binary", &body, &url],
        )?;
        let json: serde_json::Value = serde_json::from_str(&out).context(out.clone())?;
        assert_eq!(json["method"], "POST", "{out}");
        assert_eq!(json["path"], format!("/echo/{i}?q={i}"), "{out}");
        assert_eq!(json["version"], *version, "{out}");
        assert_eq!(json["body"], body, "{out}");
        assert_eq!(json["sni"], NAME, "{out}");
        assert_eq!(json["headers"]["x-test"][0], "yes", "{out}");
    }
    let reqs = s.up.log().wait_settled(4, WAIT)?;
    assert_eq!(reqs.len(), 4);
    for (i, r) in reqs.iter().enumerate() {
        assert_eq!(r.body, format!("payload-{i}").as_bytes());
        assert_eq!(r.body_len, r.body.len() as u64);
        assert_eq!(r.body_end, BodyEnd::Complete);
        assert_eq!(r.host.as_deref(), Some(NAME));
        assert_eq!(r.sni.as_deref(), Some(NAME));
        assert_eq!(r.version, cases[i].2);
        assert_eq!(r.header("X-Test"), Some("yes"));
    }
    let conns = s.up.log().conns();
    let alpn: Vec<_> = conns.iter().map(|c| c.alpn.as_deref()).collect();
    assert_eq!(
        alpn,
        [Some("http/1.1"), Some("h2"), Some("http/1.1"), Some("h2")]
    );
    assert!(conns[2].local.is_ipv6() && conns[0].local.is_ipv4());
    Ok(())
}

#[test]
fn plain_http_endpoints() -> Result<()> {
    let s = setup("plain_http_endpoints")?;
    let base = "http://198.51.100.10:80";
    let bytes = curl(&s, "198.51.100.10", &[&format!("{base}/bytes?n=100000")])?;
    assert_eq!(bytes.len(), 100_000);
    assert!(bytes.bytes().all(|b| b == b'x'));

    let out = s.world.run(
        curl_cmd(&s.world, &s.ca, "198.51.100.10")
            .args(["-i", "-H", "authorization: Bearer tok-123"])
            .arg(format!("https://{NAME}/echo-header?name=authorization")),
    )?;
    assert!(out.stdout.contains("x-echo: Bearer tok-123"), "{out}");
    assert!(out.stdout.ends_with("\r\n\r\nBearer tok-123"), "{out}");

    for path in [
        "/org/repo.git/git-receive-pack",
        "/org/repo.git/info/refs?service=git-receive-pack",
    ] {
        let out = curl(
            &s,
            "198.51.100.10",
            &["--data-binary", "0000", &format!("{base}{path}")],
        )?;
        assert_eq!(out, "ok\n");
    }
    let reqs = s.up.log().wait_settled(4, WAIT)?;
    let targets: Vec<_> = reqs.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(
        targets,
        [
            "/bytes?n=100000",
            "/echo-header?name=authorization",
            "/org/repo.git/git-receive-pack",
            "/org/repo.git/info/refs?service=git-receive-pack"
        ]
    );
    assert!(reqs[0].sni.is_none() && reqs[1].sni.as_deref() == Some(NAME));
    assert!(s.up.log().saw(b"tok-123"));
    assert!(!s.up.log().saw(b"tok-124"));
    Ok(())
}

/// Events must reach the client while the stream is still open, over both protocols.
#[test]
fn sse_streams_incrementally() -> Result<()> {
    let s = setup("sse_streams_incrementally")?;
    for flag in ["--http1.1", "--http2"] {
        let mut child = Spawned::start(curl_cmd(&s.world, &s.ca, "198.51.100.10").args([
            flag,
            "-N",
            &format!("https://{NAME}/sse?n=4&interval_ms=400"),
        ]))?;
        let start = Instant::now();
        child.wait_line("data: 0", WAIT)?;
        let first = start.elapsed();
        child.wait_line("data: 1", WAIT)?;
        let out = child.finish(WAIT)?;
        let total = start.elapsed();
        assert_eq!(out.code(), 0, "{out}");
        assert_eq!(
            out.lines(),
            ["data: 0", "data: 1", "data: 2", "data: 3"],
            "{out}"
        );
        // Three 400 ms gaps follow the first event: it cannot have come with the last.
        assert!(
            total.saturating_sub(first) >= Duration::from_millis(1000),
            "{flag}: first event after {first:?}, end after {total:?}"
        );
    }
    Ok(())
}

/// A client that stops mid-body leaves a record marked cut, holding only what was sent.
#[test]
fn cut_body_is_recorded_as_cut() -> Result<()> {
    let s = setup("cut_body_is_recorded_as_cut")?;
    let to: SocketAddr = s.up.plain_addrs()[0];
    s.world.bottle().run(move || {
        let mut c = TcpStream::connect_timeout(&to, WAIT)?;
        c.write_all(
            b"POST /upload HTTP/1.1\r\nhost: api.example.test\r\ncontent-length: 100\r\n\r\nfirst-part",
        )?;
        // Wait until the server has read the head, then reset (SO_LINGER 0 sends RST).
        std::thread::sleep(Duration::from_millis(200));
        nix::sys::socket::setsockopt(&c, nix::sys::socket::sockopt::Linger, &libc::linger {
            l_onoff: 1,
            l_linger: 0,
        })?;
        Ok(())
    })?;
    let reqs = s.up.log().wait_settled(1, WAIT)?;
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].body, b"first-part");
    assert!(matches!(reqs[0].body_end, BodyEnd::Cut { .. }), "{reqs:?}");
    Ok(())
}

#[test]
fn websocket_echoes_and_records() -> Result<()> {
    let s = setup("websocket_echoes_and_records")?;
    let to: SocketAddr = s.up.plain_addrs()[0];
    s.world.bottle().run(move || ws_client(to))?;
    let reqs = s.up.log().wait_until("two WebSocket messages", WAIT, |r| {
        r.first().is_some_and(|q| q.ws_messages.len() == 2)
    })?;
    let msgs = &reqs[0].ws_messages;
    assert_eq!(reqs[0].path(), "/ws");
    assert_eq!(msgs.len(), 2, "{reqs:?}");
    assert!(msgs[0].text && msgs[0].payload == b"hello ws");
    assert!(!msgs[1].text && msgs[1].payload == b"\x00\x01fragmented\xff");
    assert!(s.up.log().saw(b"fragmented"));
    Ok(())
}

/// A deliberately separate client-side codec: masked frames out, unmasked frames in.
fn ws_client(to: SocketAddr) -> Result<()> {
    let mut c = TcpStream::connect_timeout(&to, WAIT)?;
    c.set_read_timeout(Some(WAIT))?;
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    write!(
        c,
        "GET /ws HTTP/1.1\r\nhost: api.example.test\r\nupgrade: websocket\r\n\
         connection: Upgrade\r\nsec-websocket-key: {key}\r\nsec-websocket-version: 13\r\n\r\n"
    )?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut b)?;
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let mut h = sha1::Sha1::new();
    h.update(format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11"));
    let accept = base64::engine::general_purpose::STANDARD.encode(h.finalize());
    ensure!(head.starts_with("http/1.1 101"), "handshake: {head}");
    ensure!(
        head.contains(&format!(
            "sec-websocket-accept: {}",
            accept.to_ascii_lowercase()
        )),
        "accept key: {head}"
    );
    let send = |c: &mut TcpStream, b0: u8, payload: &[u8]| -> Result<()> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut f = vec![b0, 0x80 | payload.len() as u8];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, x)| x ^ mask[i % 4]));
        Ok(c.write_all(&f)?)
    };
    let recv = |c: &mut TcpStream| -> Result<(u8, Vec<u8>)> {
        let mut h = [0u8; 2];
        c.read_exact(&mut h)?;
        ensure!(
            h[1] & 0x80 == 0 && h[1] < 126,
            "unexpected server frame header {h:?}"
        );
        let mut p = vec![0u8; h[1] as usize];
        c.read_exact(&mut p)?;
        Ok((h[0], p))
    };
    send(&mut c, 0x81, b"hello ws")?;
    assert_eq!(recv(&mut c)?, (0x81, b"hello ws".to_vec()));
    send(&mut c, 0x02, b"\x00\x01frag")?; // binary, not final
    send(&mut c, 0x89, b"ping!")?; // a ping between fragments
    assert_eq!(recv(&mut c)?, (0x8a, b"ping!".to_vec()));
    send(&mut c, 0x80, b"mented\xff")?; // final continuation
    assert_eq!(recv(&mut c)?, (0x82, b"\x00\x01fragmented\xff".to_vec()));
    send(&mut c, 0x88, &1000u16.to_be_bytes())?;
    let (op, code) = recv(&mut c)?;
    if op != 0x88 || code != 1000u16.to_be_bytes() {
        bail!("close not echoed: {op:#x} {code:?}");
    }
    Ok(())
}
