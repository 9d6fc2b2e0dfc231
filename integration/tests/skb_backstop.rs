//! What the socket hooks cannot see. A socket belongs to the cgroup that created it, so an
//! inherited socket would escape every bottle program: `cork run` lets no descriptor but
//! 0-2 reach CMD. And cgroup_skb/egress is the last line for packets no connect/sendmsg
//! verdict covers, such as a bottle listener's answers to a peer outside its allowlist.

use std::time::Duration;

use anyhow::Result;
use cork_integration::cork::{cork_bin, run_args};
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
