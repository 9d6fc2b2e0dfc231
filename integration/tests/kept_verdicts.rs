//! Verdicts the kernel keeps (`cork_allow_hit`, ebpf/include/cork_events.h): a flow's
//! slot in `cork_allows` keeps the allow its last asked connect got, and its next
//! connects are let through without asking the policy — while the policy generation is
//! the one it was reached under and the learned addresses it read are still valid. What
//! is checked is that nothing kept outlives what made it: a DNS answer that changes a
//! kept flow's answer (its address now goes through the inspecting proxy) reaches the very
//! next connect, and no connect gets through on a kept verdict after the learned address
//! it read has expired, nor after two policy updates that bring the live slot back to the
//! one it was kept in. (One policy update reaching kept flows: bottle_update.rs.)

use anyhow::Result;
use std::time::Duration;

use cork_integration::daemon::{TestDaemon, exec};
use cork_integration::dns_client::argv;
use cork_integration::dns_server::Zone;
use cork_integration::process::Spawned;
use cork_integration::{Audit, Side, World};
use serde_json::json;

/// `addr`:443 allowed directly by a prefix rule; api.example.test, which resolves to it,
/// allowed on 443 through the inspecting proxy (a domain rule's default).
fn direct_then_inspected(addr: &str) -> String {
    format!(
        "[[egress.allow]]\ncidr = \"{addr}\"\nports = [443]\n\n\
         [[egress.allow]]\ndomain = \"api.example.test\"\nports = [443]\n\n\
         [dns]\nupstream = [\"198.51.100.53\"]\n"
    )
}

/// A flow to `addr` kept as a direct allow, then a DNS answer (`qtype`) that gives `addr` to
/// the inspected domain rule: the very next connect goes through the proxy.
fn a_dns_answer_reaches_the_next_connect(
    test: &str,
    addr: &str,
    qtype: &str,
    hook: &str,
) -> Result<()> {
    let world = World::new(test)?;
    let zone = match qtype {
        "A" => Zone::new().a("api.example.test", addr, 300),
        _ => Zone::new().aaaa("api.example.test", addr, 300),
    };
    let _upstream = world.dns_server("198.51.100.53:53", zone)?;
    let listen = if addr.contains(':') {
        format!("[{addr}]:443")
    } else {
        format!("{addr}:443")
    };
    let _srv = world.tcp_server(Side::Internet, &listen)?;
    let connect = ["connect", addr, "443"];
    let mut ops: Vec<&str> = connect.repeat(4);
    ops.extend(["udp", "198.51.100.53", "api.example.test", qtype]);
    ops.extend(connect);
    let (out, audit) = world.run_argv("a", &direct_then_inspected(addr), &argv(&ops))?;
    let answer = format!("NOERROR {addr} from=198.51.100.53");
    assert_eq!(
        out.lines(),
        ["ok", "ok", "ok", "ok", answer.as_str(), "ok"],
        "{out}"
    );
    // Before the answer: direct, the first connect a line, the repeats counted (the
    // verdict kept); the answer made the address the domain rule's: the next connect
    // goes through the proxy, whatever the flow's slot kept.
    let direct = audit.find(json!({"layer": "kernel", "hook": hook, "dst": addr,
                                   "dport": 443, "reason": "allow_rule"}));
    assert_eq!(Audit::stood_for(&direct), 4, "{}", audit.dump());
    assert!(
        direct.len() < 4,
        "the repeats were counted: {}",
        audit.dump()
    );
    let proxied = audit.find(json!({"layer": "kernel", "hook": hook, "dst": addr,
                                    "dport": 443, "reason": "proxy_redirect"}));
    assert_eq!(proxied.len(), 1, "{}", audit.dump());
    Ok(())
}

#[test]
fn a_dns_answer_reaches_the_next_connect_of_a_kept_flow() -> Result<()> {
    a_dns_answer_reaches_the_next_connect(
        "a_dns_answer_reaches_the_next_connect_of_a_kept_flow",
        "198.51.100.20",
        "A",
        "connect4",
    )
}

#[test]
fn an_aaaa_answer_reaches_the_next_connect_of_a_kept_ipv6_flow() -> Result<()> {
    a_dns_answer_reaches_the_next_connect(
        "an_aaaa_answer_reaches_the_next_connect_of_a_kept_ipv6_flow",
        "2001:db8::20",
        "AAAA",
        "connect6",
    )
}

/// Resolves short.example.test (its answers live one second), waits 0.3 s, then connects
/// to the answer every 10 ms until refused ten times in a row or three seconds passed,
/// printing the boot-clock time the answer arrived and, per connect, the boot-clock
/// time before it and what it got.
const AGAINST_EXPIRY: &str = r#"
import errno, socket, struct, time
def boot():
    return time.clock_gettime(time.CLOCK_BOOTTIME)
q = struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(l)]) + l.encode() for l in "short.example.test".split(".")) + b"\0"
q += struct.pack(">HH", 1, 1)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(5)
u.sendto(q, ("198.51.100.53", 53))
u.recv(512)
answered = boot()
print("answered", answered)
time.sleep(0.3)
refused = 0
while refused < 10 and boot() < answered + 3:
    before = boot()
    try:
        socket.create_connection(("198.51.100.14", 8443), timeout=5).close()
        print("ok", before)
        refused = 0
    except OSError as e:
        print(errno.errorcode.get(e.errno, str(e)), before)
        refused += 1
    time.sleep(0.01)
"#;

#[test]
fn no_connect_gets_through_on_a_kept_verdict_after_its_address_expired() -> Result<()> {
    let world = World::new("no_connect_gets_through_on_a_kept_verdict")?;
    let zone = Zone::new().a("short.example.test", "198.51.100.14", 1);
    let _upstream = world.dns_server("198.51.100.53:53", zone)?;
    let _srv = world.tcp_server(Side::Internet, "198.51.100.14:8443")?;
    let manifest = "[[egress.allow]]\ndomain = \"short.example.test\"\nports = [8443]\n\n\
                    [dns]\nupstream = [\"198.51.100.53\"]\nmin_ttl = 1\nmax_ttl = 1\n";
    let argv = [
        cork_integration::probe::python3().to_string(),
        "-c".into(),
        AGAINST_EXPIRY.into(),
    ];
    let (out, audit) = world.run_argv("a", manifest, &argv)?;
    let lines = out.lines();
    let answered: f64 = lines
        .first()
        .and_then(|l| l.strip_prefix("answered "))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no answer time: {out}"));
    let tries: Vec<(&str, f64)> = lines
        .iter()
        .skip(1)
        .filter_map(|l| {
            let (what, at) = l.split_once(' ')?;
            Some((what, at.parse().ok()?))
        })
        .collect();
    let ok: Vec<f64> = tries
        .iter()
        .filter(|(w, _)| *w == "ok")
        .map(|(_, t)| *t)
        .collect();
    // The learner stamps the address's end before the answer leaves the proxy, so it
    // is at most `answered` + 1 s; a connect that got through began before its program
    // ran, and its program let it through only before that end.
    let late: Vec<&f64> = ok.iter().filter(|t| **t >= answered + 1.0).collect();
    assert!(
        late.is_empty(),
        "connects got through after the address expired: {late:?} (answered {answered}):\n{out}"
    );
    assert!(
        ok.len() >= 5,
        "the flow was connected to while valid: {out}"
    );
    assert!(
        tries.iter().any(|(w, _)| *w == "EPERM"),
        "refused once expired: {out}"
    );
    // The allows were kept and counted (one record, the rest in a count), so the bound
    // above held on the path that does not ask the policy.
    let allowed = audit.find(json!({"layer": "kernel", "hook": "connect4",
                                    "dst": "198.51.100.14", "dport": 8443,
                                    "verdict": "allow"}));
    let total = Audit::stood_for(&allowed);
    assert_eq!(total as usize, ok.len(), "{}", audit.dump());
    assert!(
        allowed.len() < ok.len(),
        "counted, not recorded: {}",
        audit.dump()
    );
    Ok(())
}

/// Connects to 198.51.100.10:8080 over and over, one line per connect ("ok", "EPERM");
/// whenever the file argv[1] says something new, prints "mark <it>" first; stops at
/// "stop".
const HAMMER: &str = r#"
import errno, socket, sys
def one():
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect(("198.51.100.10", 8080))
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    finally:
        s.close()
last = ""
while True:
    try:
        with open(sys.argv[1]) as f:
            said = f.read()
    except FileNotFoundError:
        said = ""
    if said != last:
        print("mark", said, flush=True)
        last = said
    if said == "stop":
        break
    print(one(), flush=True)
"#;

/// Rounds of the slot test: a verdict comes back (when the flips are not counted) only for
/// what is left of the flow's counting window, under a second — so one round may miss it,
/// three rarely all do.
const ROUNDS: usize = 3;

/// Allows 198.51.100.10:8080, then refuses it under two updates in a row: the second
/// brings the live slot back to the one the allow was kept in. A verdict kept under the
/// allowing generation must not come back with its slot (the flips are counted in the
/// generation, not only the slot). In [`ROUNDS`] rounds, each opened by an update that
/// allows again.
#[test]
fn a_kept_verdict_does_not_come_back_when_the_live_slot_does() -> Result<()> {
    const WAIT: Duration = Duration::from_secs(30);
    let world = World::new("a_kept_verdict_does_not_come_back_when_the_live_slot_does")?;
    let _x = world.tcp_server(Side::Internet, "198.51.100.10:8080")?;
    let sock = world.path("cork", "sock").display().to_string();
    let daemon = TestDaemon::start(&world, &sock, &world.path("daemon-audit", "jsonl"))?;
    let rule = |last: u8| {
        world.manifest(
            "slot",
            &format!("[[egress.allow]]\ncidr = \"198.51.100.{last}/32\"\nports = [8080]\n"),
        )
    };
    let (allows, refuses, refuses_too) = (rule(10)?, rule(11)?, rule(12)?);
    let name = world.bottle_name("slot");
    let cork = |args: &[&str]| -> Result<()> {
        let out = world.run(world.cork(args))?;
        anyhow::ensure!(out.code() == 0, "cork {args:?}: {out}");
        Ok(())
    };
    let update = |m: &std::path::Path| {
        let m = m.display().to_string();
        cork(&["bottle", "update", &name, "--socket", &sock, "-m", &m])
    };
    cork(&[
        "bottle",
        "create",
        "--socket",
        &sock,
        "-m",
        &allows.display().to_string(),
    ])?;
    let said = world.path("said", "file");
    let mut hammer = Spawned::start(&mut exec(
        &world,
        &sock,
        &name,
        &["python3", "-c", HAMMER, &said.display().to_string()],
    ))?;
    for round in 0..ROUNDS {
        std::fs::write(&said, format!("allow{round}"))?;
        hammer.wait_line(&format!("mark allow{round}"), WAIT)?;
        if round > 0 {
            update(&allows)?;
        }
        hammer.wait_line("ok", WAIT)?;
        update(&refuses)?;
        update(&refuses_too)?;
        std::fs::write(&said, format!("check{round}"))?;
        hammer.wait_line(&format!("mark check{round}"), WAIT)?;
        // Connects under the second refusing generation, whatever the window left.
        for _ in 0..30 {
            hammer.wait_line("EPERM", WAIT)?;
        }
    }
    std::fs::write(&said, "stop")?;
    let out = hammer.finish(WAIT)?;
    // Each round: from its first allow on, once refused, never allowed again.
    for (round, part) in out.stdout.split("mark allow").skip(1).enumerate() {
        let lines: Vec<&str> = part.lines().skip_while(|l| *l != "ok").collect();
        let refused = lines
            .iter()
            .position(|l| *l == "EPERM")
            .unwrap_or_else(|| panic!("round {round}: never refused: {out}"));
        assert!(
            lines[refused..].iter().all(|l| *l != "ok"),
            "round {round}: allowed again after a refusal (the allow kept under an older \
             generation, back with its slot): {out}"
        );
    }
    cork(&["bottle", "rm", &name, "--socket", &sock])?;
    let out = daemon.stop()?;
    assert_eq!(out.code(), 0, "{out}");
    Ok(())
}
