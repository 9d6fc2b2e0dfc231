//! What the socket hooks cannot see. A socket belongs to the cgroup that created it, so an
//! inherited socket would escape every bottle program: `cork run` lets no descriptor but
//! 0-2 reach CMD. And cgroup_skb/egress is the last line for packets no connect/sendmsg
//! verdict covers, such as a bottle listener's answers to a peer outside its allowlist.

use std::time::Duration;

use anyhow::Result;
use cork_integration::cork::{cork_bin, run_args};
use cork_integration::hand_out;
use cork_integration::process::Spawned;
use cork_integration::{Audit, Side, World};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(5);
/// A bottle's start (debug build, python, other suites on two cores) can take seconds:
/// readiness waits get room; they return as soon as the line comes.
const START: Duration = Duration::from_secs(60);

/// Opens connected UDP sockets outside any bottle, proves they work, then execs
/// `cork run ... -- python3 -c <send on the inherited fds>`.
const OPENER: &str = r#"
import os, socket, sys
fds = []
for fam, addr in ((socket.AF_INET, "198.51.100.10"), (socket.AF_INET6, "2001:db8::10")):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.connect((addr, 5301))
    s.send(b"before-bottle")
    os.set_inheritable(s.fileno(), True)
    fds.append(s.detach())
child = (
    "import os, errno\n"
    "for fd in %r:\n"
    "    try:\n"
    "        os.write(fd, b'leak'); print('sent')\n"
    "    except OSError as e:\n"
    "        print(errno.errorcode[e.errno])\n" % (fds,)
)
argv = sys.argv[1:] + ["python3", "-c", child]
os.execvp(argv[0], argv)
"#;

#[test]
fn sockets_opened_outside_the_bottle_are_not_inherited() -> Result<()> {
    let world = World::new("sockets_opened_outside_the_bottle_are_not_inherited")?;
    let u4 = world.udp_server(Side::Internet, "198.51.100.10:5301")?;
    let u6 = world.udp_server(Side::Internet, "[2001:db8::10]:5301")?;
    let manifest = world.manifest("a", "")?;
    let mut cmd = world.command(Side::Bottle, "python3");
    cmd.arg("-c")
        .arg(OPENER)
        .arg(cork_bin()?)
        .args(run_args(&manifest, &world.audit_path(), &[]));
    let out = world.run(&mut cmd)?;
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(out.lines(), ["EBADF", "EBADF"], "{out}");

    // The path itself works: what was sent before the bottle arrived.
    for srv in [&u4, &u6] {
        srv.wait_payload("before-bottle", WAIT)?;
    }
    world.udp_sentinel(&u4)?;
    world.udp_sentinel(&u6)?;
    for srv in [&u4, &u6] {
        assert!(
            !srv.payloads().iter().any(|p| p == "leak"),
            "a packet outside the policy left the bottle: {:?}",
            srv.datagrams()
        );
    }
    Ok(())
}

/// The bottle listens on its netns address; a peer in the "internet" connects in. The
/// bottle never called connect(), so only cgroup_skb/egress sees its SYN-ACK — and drops it.
#[test]
fn answers_to_peers_outside_the_allowlist_are_dropped_at_egress() -> Result<()> {
    let world = World::new("answers_to_peers_outside_the_allowlist_are_dropped_at_egress")?;
    let manifest = world.manifest("a", "")?;
    let server = r#"
import signal, socket
ls = []
for fam, addr in ((socket.AF_INET, "198.51.100.1"), (socket.AF_INET6, "2001:db8::1")):
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.bind((addr, 7000))
    s.listen(8)
    ls.append(s)
print("listening", flush=True)
signal.pause()
"#;
    let mut cork = world.cork_run(
        &manifest,
        "a",
        &["python3".into(), "-c".into(), server.into()],
    );
    let mut bottle = Spawned::start(&mut cork)?;
    bottle.wait_line("listening", START)?;

    let client = r#"
import socket
for fam, addr in ((socket.AF_INET, "198.51.100.1"), (socket.AF_INET6, "2001:db8::1")):
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(1.5)
    try:
        s.connect((addr, 7000)); print("connected")
    except socket.timeout:
        print("timeout")
    except OSError as e:
        print(e.strerror)
"#;
    let mut cmd = world.command(Side::Internet, "python3");
    cmd.arg("-c").arg(client);
    let out = world.run(&mut cmd)?;
    // cork passes SIGTERM on to the server and then tears the bottle down normally.
    nix::sys::signal::kill(bottle.pid(), nix::sys::signal::Signal::SIGTERM)?;
    let done = bottle.finish(START)?;
    assert_eq!(done.code(), 128 + 15, "{done}");
    assert_eq!(out.lines(), ["timeout", "timeout"], "{out}");

    let audit = Audit::read(&world.audit_path())?;
    for (dst, src) in [
        ("198.51.100.2", "198.51.100.1"),
        ("2001:db8::2", "2001:db8::1"),
    ] {
        audit.expect(
            json!({"hook": "skb_egress", "proto": "tcp", "dst": dst, "src": src,
                            "sport": 7000, "verdict": "deny", "reason": "unvetted_packet"}),
        )?;
    }
    Ok(())
}

/// The bottle's side of [`refused_data_stays_refused_after_the_bottle_ends`]: learns the
/// peer's addresses (a two-second TTL), accepts the peer on each family, waits until the
/// addresses have expired, then writes a line the kernel refuses and waits to be ended.
const LEARN_ACCEPT_WRITE: &str = r#"
import signal, socket, struct, time
q = struct.pack(">HHHHHH", 7, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(l)]) + l for l in b"peer.example.test".split(b".")) + b"\0"
def learn():
    for qtype in (1, 28):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.settimeout(10)
        u.sendto(q + struct.pack(">HH", qtype, 1), ("198.51.100.53", 53))
        u.recv(512)
        u.close()
    return time.monotonic()
learned = learn()
ls = []
for fam, addr in ((socket.AF_INET, "198.51.100.1"), (socket.AF_INET6, "2001:db8::1")):
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.bind((addr, 7000))
    s.listen(8)
    s.settimeout(0.5)
    ls.append(s)
print("listening", flush=True)
# Asked again until the peer is in, however slow it is to come: its handshake needs the
# addresses learned.
conns = []
while ls:
    for l in list(ls):
        try:
            conns.append(l.accept()[0])
            ls.remove(l)
        except socket.timeout:
            learned = learn()
time.sleep(max(0.0, learned + 3.0 - time.monotonic()))
for c in conns:
    c.send(b"refused-after-expiry\n")
print("sent", flush=True)
signal.pause()
"#;

/// The peer: connects to the bottle from its learned address on each family, then prints
/// every line that arrives.
const PEER: &str = r#"
import select, socket
ss = []
for fam, src, dst in ((socket.AF_INET, "198.51.100.14", "198.51.100.1"),
                      (socket.AF_INET6, "2001:db8::14", "2001:db8::1")):
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.settimeout(10)
    s.connect((dst, 7000))
    ss.append(s)
print("connected", flush=True)
while ss:
    for s in select.select(ss, [], [])[0]:
        d = s.recv(4096)
        if d:
            print("got", d.decode(errors="replace").strip(), flush=True)
        else:
            ss.remove(s)
"#;

/// A socket can outlive its bottle: closed with data still queued, the kernel keeps
/// sending it. Data cgroup_skb refused while the bottle lived (here: a bottle listener's
/// answer to a peer whose learned address expired) must stay refused after the bottle
/// ends — teardown seals the cgroup before the bottle's programs go (`cork_bpf::seal`).
/// The proof that the kernel tried again after teardown is the sockets' count of data
/// segments sent growing by two each; each try would have delivered the line unsealed.
#[test]
fn refused_data_stays_refused_after_the_bottle_ends() -> Result<()> {
    let world = World::new("refused_data_stays_refused_after_the_bottle_ends")?;
    let zone = cork_integration::dns_server::Zone::new()
        .a("peer.example.test", "198.51.100.14", 2)
        .aaaa("peer.example.test", "2001:db8::14", 2);
    let _dns = world.dns_server("198.51.100.53:53", zone)?;
    world.add_internet_ip("198.51.100.14".parse()?)?;
    world.add_internet_ip("2001:db8::14".parse()?)?;
    let manifest = world.manifest(
        "a",
        "[[egress.allow]]\ndomain = \"peer.example.test\"\nports = [\"1024-65535\"]\n\
         inspect = false\n\n[dns]\nupstream = [\"198.51.100.53\"]\nmin_ttl = 2\nmax_ttl = 2\n",
    )?;
    let mut bottle = Spawned::start(&mut world.cork_run(
        &manifest,
        "a",
        &["python3".into(), "-c".into(), LEARN_ACCEPT_WRITE.into()],
    ))?;
    bottle.wait_line("listening", START)?;
    let mut peer = Spawned::start(world.command(Side::Internet, "python3").arg("-c").arg(PEER))?;
    peer.wait_line("connected", START)?;
    bottle.wait_line("sent", START)?;
    for dst in ["198.51.100.14", "2001:db8::14"] {
        Audit::wait_for(
            &world.audit_path(),
            json!({"hook": "skb_egress", "dst": dst, "sport": 7000, "verdict": "deny"}),
            START,
        )?;
    }

    nix::sys::signal::kill(bottle.pid(), nix::sys::signal::Signal::SIGTERM)?;
    let done = bottle.finish(START)?;
    assert_eq!(done.code(), 128 + 15, "{done}");
    // The bottle is gone; its two sockets are not. Wait until each family's queue was
    // retried at least twice more, refused each time.
    let tried_at_end = send_attempts(&world)?;
    let deadline = std::time::Instant::now() + START;
    while send_attempts(&world)? < tried_at_end + 4 {
        let line = peer.wait_line_where("data from the bottle", Duration::from_millis(50), |l| {
            l.starts_with("got ")
        });
        if let Ok(line) = line {
            anyhow::bail!("data the kernel refused left after the bottle ended: {line}");
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the kernel did not retry the ended bottle's queued data within {START:?}"
        );
    }
    peer.kill()?;
    let got = peer.finish(WAIT)?;
    assert!(
        !got.stdout.contains("refused-after-expiry"),
        "data the kernel refused left after the bottle ended: {got}"
    );
    // The leftover sockets go now rather than at their own timeout.
    let _ = world
        .bottle()
        .command("ss")
        .args(["-K", "sport", "=", ":7000"])
        .output();
    Ok(())
}

/// How many data segments the bottle namespace's sockets on port 7000 have tried to send
/// (`ss`'s `data_segs_out`: every try counts, whether or not a program let it out).
fn send_attempts(world: &World) -> Result<u64> {
    let mut total = 0;
    for field in world
        .bottle()
        .ss_fields(&["-tniH", "sport", "=", ":7000"])?
    {
        if let Some(n) = field.strip_prefix("data_segs_out:") {
            total += n.parse::<u64>()?;
        }
    }
    Ok(total)
}

/// The bottle's side of [`an_allowed_flow_finishes_after_the_bottle_ends`]: queues
/// 512 KiB to a peer that is not reading yet, says how much is still unsent, and exits.
const QUEUE_AND_EXIT: &str = r#"
import fcntl, socket, struct, termios
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
s.connect(("2001:db8::10", 7100))
s.sendall(b"x" * (512 << 10))
unsent = struct.unpack("i", fcntl.ioctl(s.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
print("unsent", unsent, flush=True)
"#;

/// The peer: accepts one connection, waits for "go" on stdin, then reads to the end.
const SLOW_READER: &str = r#"
import socket, sys
l = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
l.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
l.bind(("2001:db8::10", 7100))
l.listen(1)
print("listening", flush=True)
c, _ = l.accept()
sys.stdin.readline()
n = 0
while True:
    d = c.recv(65536)
    if not d:
        break
    n += len(d)
print("received", n, flush=True)
"#;

/// The seal is not a wall: what the live programs let through whatever the policy goes
/// on after the bottle ends. A bottle queues data to an allowed peer that is not reading
/// and exits; its socket, orphaned, still holds most of it when the bottle is torn down;
/// the peer then reads, and all of it arrives.
#[test]
fn an_allowed_flow_finishes_after_the_bottle_ends() -> Result<()> {
    let world = World::new("an_allowed_flow_finishes_after_the_bottle_ends")?;
    world.add_internet_ip("2001:db8::10".parse()?)?;
    let mut reader = Spawned::start(
        world
            .command(Side::Internet, "python3")
            .arg("-c")
            .arg(SLOW_READER)
            .stdin(std::process::Stdio::piped()),
    )?;
    reader.wait_line("listening", START)?;
    let manifest = world.manifest(
        "a",
        "[[egress.allow]]\ncidr = \"2001:db8::10\"\nports = [7100]\n",
    )?;
    let out = world.run(world.cork_run(
        &manifest,
        "a",
        &["python3".into(), "-c".into(), QUEUE_AND_EXIT.into()],
    ))?;
    assert_eq!(out.code(), 0, "{out}");
    let unsent: u64 = out
        .lines()
        .iter()
        .find_map(|l| l.strip_prefix("unsent "))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no unsent count: {out}"))?;
    assert!(
        unsent > 0,
        "nothing was left queued when the bottle ended: {out}"
    );
    // Torn down (cork run has returned): now the peer reads.
    let mut go = reader
        .take_stdin()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?;
    std::io::Write::write_all(&mut go, b"go\n")?;
    let line = reader.wait_line_where(
        "the byte count (the whole stream and its end)",
        START,
        |l| l.starts_with("received"),
    )?;
    assert_eq!(
        line,
        format!("received {}", 512 << 10),
        "{unsent} bytes were left queued"
    );
    Ok(())
}

/// A socket belongs to the cgroup that made it, and runs that cgroup's programs wherever
/// it goes. A bottle's TCP socket handed out over an allowed unix socket (here to a process
/// outside any bottle; another bottle could hold it the same way) and connected once the
/// bottle has ended finds no connect hook left to judge it: its SYN must still not leave.
#[test]
fn a_socket_handed_out_cannot_connect_after_the_bottle_ends() -> Result<()> {
    let world = World::new("a_socket_handed_out_cannot_connect_after_the_bottle_ends")?;
    let server = world.tcp_server(Side::Internet, &hand_out::TARGET.to_string())?;
    let mut receiver = hand_out::Receiver::start(&world)?;
    let out = world.run(world.cork_run(
        &receiver.manifest(&world)?,
        "a",
        &hand_out::bottle_argv(&receiver.path, false),
    ))?;
    assert_eq!(out.lines(), ["handed"], "{out}");
    // cork run has returned: the bottle is torn down. Now connect the socket it made.
    receiver.assert_connect_stopped(&world, START)?;
    assert!(
        server.peers().is_empty(),
        "the server saw a connection: {:?}",
        server.peers()
    );
    Ok(())
}
