//! One bottle cannot starve another in one daemon: a noisy bottle floods its DNS proxy
//! with queries and opens connections by the thousand to its inspecting proxy, holding
//! them; meanwhile a quiet bottle's DNS queries and HTTPS requests (IPv4 and IPv6) all
//! succeed. The noisy bottle's refusals are each audited with the bound's reason
//! (`rate_limited`, `connection_limit`), and its thousands of identical kernel allows
//! reach the shared audit log as a few lines whose `count`s add up to every connect.
//!
//! The daemon runs with a lock of its own (`CORK_TEST_DAEMON_LOCK`), its own socket and
//! audit log, like `tests/daemon_audit.rs`. No timing is asserted: every wait is on a
//! line, a file or an audit event.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use cork_integration::dns_server::Zone;
use cork_integration::https_upstream::{TestCa, UpstreamConfig};
use cork_integration::process::{RunOutput, Spawned};
use cork_integration::{Audit, World};
use serde_json::{Value, json};

const API: &str = "api.example.test";
const RESOLVER: &str = "198.51.100.53";
const DNS_CLIENT: &str = include_str!("../src/dns_client.py");
/// Connections the noisy bottle opens and holds: far past the proxy's bound.
const CONNECTIONS: usize = 1000;
/// `cork_inspect`'s per-bottle `MAX_CONNECTIONS` (the test crate does not link it).
const MAX_CONNECTIONS: usize = 256;
/// DNS queries the noisy bottle sends back to back (its rate is 50 a second).
const QUERIES: usize = 2000;
const WAIT: Duration = Duration::from_secs(60);

/// The noisy bottle's program: argv = connections, bound, queries, go-file, name,
/// resolver. Resolves the name (both families) first, floods the resolver, then opens
/// every connection without sending a byte and waits until the proxy has closed all it
/// will not serve; prints its counts and `ready`, and holds the rest until the go-file.
const NOISY: &str = r#"
import errno, os, resource, select, socket, struct, sys, time
n, bound, q = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
go, name, resolver = sys.argv[4], sys.argv[5], sys.argv[6]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = n + 256
if soft < want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))
addrs = [socket.getaddrinfo(name, 443, fam, socket.SOCK_STREAM)[0] for fam in (socket.AF_INET, socket.AF_INET6)]

def query(i):
    qname = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    return struct.pack(">HHHHHH", i, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", 1, 1)

u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(q):
    u.sendto(query(i), (resolver, 53))
rcodes = {}
u.settimeout(3)
got = 0
try:
    while got < q:
        msg = u.recv(4096)
        got += 1
        rcodes[msg[3] & 0xF] = rcodes.get(msg[3] & 0xF, 0) + 1
except socket.timeout:
    pass
print(f"dns sent={q} answered={rcodes.get(0, 0)} refused={rcodes.get(5, 0)}", flush=True)

socks = []
for i in range(n):
    fam, typ, proto, _, addr = addrs[i % 2]
    s = socket.socket(fam, typ, proto)
    s.setblocking(False)
    err = s.connect_ex(addr)
    if err not in (0, errno.EINPROGRESS):
        print(f"connect failed: {errno.errorcode.get(err, err)}", flush=True)
    socks.append(s)
p = select.poll()
for s in socks:
    p.register(s, select.POLLIN)
closed = set()
deadline = time.monotonic() + 60
while len(closed) < n - bound and time.monotonic() < deadline:
    for fd, _ in p.poll(1000):
        if fd not in closed:
            closed.add(fd)
            p.unregister(fd)
print(f"conns opened={n} closed={len(closed)}", flush=True)
print("ready", flush=True)
deadline = time.monotonic() + 120
while not os.path.exists(go) and time.monotonic() < deadline:
    time.sleep(0.05)
print("done", flush=True)
"#;

use cork_integration::daemon::{TestDaemon as Daemon, exec};

fn ran(out: RunOutput, what: &str) -> Result<RunOutput> {
    ensure!(out.code() == 0, "{what} exited {}:\n{out}", out.code());
    Ok(out)
}

/// The number after `key=` in `line`.
fn field(line: &str, key: &str) -> Result<usize> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .with_context(|| format!("no {key}= in {line:?}"))?
        .parse()
        .with_context(|| format!("{key} in {line:?}"))
}

/// Allows the kernel reported for `bottle`'s connects to the name's addresses on 443:
/// a line stands for itself, or for `count` allows when it is a summary.
fn redirected_connects(audit: &Audit, bottle: &str) -> (u64, usize) {
    let lines: Vec<&Value> = audit
        .find(
            json!({"bottle": bottle, "layer": "kernel", "verdict": "allow",
                     "reason": "proxy_redirect", "dport": 443}),
        )
        .into_iter()
        .filter(|e| matches!(e["hook"].as_str(), Some("connect4" | "connect6")))
        .collect();
    (Audit::stood_for(&lines), lines.len())
}

#[test]
fn a_noisy_bottle_is_refused_while_a_quiet_one_is_served() -> Result<()> {
    let world = World::new("a_noisy_bottle_is_refused")?;
    let _dns = world.dns_server(
        &format!("{RESOLVER}:53"),
        Zone::new()
            .a(API, "198.51.100.10", 300)
            .aaaa(API, "2001:db8::10", 300),
    )?;
    let ca = TestCa::new()?;
    let ca_path = world.path("upstream-ca", "pem");
    ca.write_pem(&ca_path)?;
    let api = world.https_upstream(
        &ca,
        UpstreamConfig::new()
            .name(API)
            .tls("198.51.100.10:443".parse()?)
            .tls("[2001:db8::10]:443".parse()?),
    )?;
    let sock = world.path("cork", "sock").display().to_string();
    let log = world.path("daemon-audit", "jsonl");
    let _daemon = Daemon::start(&world, &sock, &log)?;

    let body = format!(
        "[[egress.allow]]\ndomain = \"{API}\"\nports = [443]\n\n\
         [dns]\nupstream = [\"{RESOLVER}\"]\n\n[tls]\nupstream_ca = [\"{}\"]\n",
        ca_path.display()
    );
    let (noisy, quiet) = (world.bottle_name("noisy"), world.bottle_name("quiet"));
    for label in ["noisy", "quiet"] {
        let manifest = world.manifest(label, &body)?;
        cork_integration::daemon::create_ok(&world, &sock, &manifest)?;
    }

    // The noisy bottle floods and fills its proxy, and holds what it was given.
    let go = world.path("noisy-go", "flag");
    let (n, bound, q) = (
        CONNECTIONS.to_string(),
        MAX_CONNECTIONS.to_string(),
        QUERIES.to_string(),
    );
    let go_arg = go.display().to_string();
    let mut noisy_run = Spawned::start(&mut exec(
        &world,
        &sock,
        &noisy,
        &[
            "python3", "-c", NOISY, &n, &bound, &q, &go_arg, API, RESOLVER,
        ],
    ))?;
    let seen = noisy_run.wait_line("ready", WAIT)?;
    let line = |prefix: &str| {
        seen.iter()
            .find(|l| l.starts_with(prefix))
            .cloned()
            .with_context(|| format!("no {prefix:?} line: {seen:?}"))
    };
    let dns_line = line("dns ")?;
    let conns_line = line("conns ")?;

    // Meanwhile the quiet bottle: DNS over UDP and TCP, both families, and HTTPS GETs
    // over IPv4 and IPv6 through its own proxy — every one answered.
    let mut ops = Vec::new();
    for _ in 0..3 {
        ops.extend(["udp", RESOLVER, API, "A", "udp", RESOLVER, API, "AAAA"]);
        ops.extend(["tcp", RESOLVER, API, "A"]);
    }
    let mut argv = vec!["python3", "-c", DNS_CLIENT];
    argv.extend(&ops);
    let out = ran(world.run(exec(&world, &sock, &quiet, &argv))?, "quiet DNS")?;
    let answers = out.lines();
    assert_eq!(answers.len(), 9, "{out}");
    for a in &answers {
        assert!(
            *a == "NOERROR 198.51.100.10 from=198.51.100.53"
                || *a == "NOERROR 2001:db8::10 from=198.51.100.53",
            "a quiet query not answered: {out}"
        );
    }
    let script = (0..3)
        .flat_map(|i| {
            ["-4", "-6"].map(|fam| {
                format!(
                    "curl -sS --max-time 20 {fam} -o /dev/null -w 'status=%{{http_code}}\\n' \
                     https://{API}/quiet{i}{fam}"
                )
            })
        })
        .collect::<Vec<_>>()
        .join("\n");
    let out = ran(
        world.run(exec(&world, &sock, &quiet, &["sh", "-c", &script]))?,
        "quiet HTTPS",
    )?;
    assert_eq!(out.lines(), vec!["status=200"; 6], "{out}");

    std::fs::write(&go, b"go")?;
    let noisy_out = ran(noisy_run.finish(WAIT)?, "the noisy bottle")?;
    assert!(noisy_out.stdout.contains("done"), "{noisy_out}");
    println!("noisy: {dns_line}; {conns_line}");

    // The quiet bottle's requests reached the upstream; the noisy bottle's never did.
    let paths: Vec<String> = api
        .log()
        .wait_settled(6, Duration::from_secs(10))?
        .iter()
        .map(|r| r.path().to_owned())
        .collect();
    assert!(paths.iter().all(|p| p.starts_with("/quiet")), "{paths:?}");

    // Every refusal the noisy bottle met is audited with its bound's reason.
    let refused_dns = field(&dns_line, "refused")?;
    assert!(refused_dns > 0, "{QUERIES} queries at 50/s: {dns_line}");
    let closed = field(&conns_line, "closed")?;
    assert!(closed > 0, "{CONNECTIONS} connections: {conns_line}");
    let audit = wait_for_audit(&log, |a| {
        let limited = a
            .find(json!({"bottle": noisy, "layer": "proxy", "reason": "connection_limit"}))
            .len();
        let rate = a
            .find(json!({"bottle": noisy, "layer": "dns", "reason": "rate_limited"}))
            .len();
        // All of them when every connect arrived before the first held one's ClientHello
        // wait ran out (10 s); half is enough to know the bound held.
        limited >= (CONNECTIONS - MAX_CONNECTIONS) / 2 && rate >= refused_dns
    })?;
    let limited = audit.find(
        json!({"bottle": noisy, "layer": "proxy", "event": "connection",
                                    "reason": "connection_limit"}),
    );
    assert!(
        limited.iter().all(|e| e["verdict"] == "deny"
            && matches!(
                e["dst"].as_str(),
                Some("198.51.100.10:443" | "[2001:db8::10]:443")
            )
            && e["pid"].as_u64().is_some()),
        "{limited:?}"
    );
    let rate_limited = audit.find(json!({"bottle": noisy, "layer": "dns",
                                         "reason": "rate_limited", "verdict": "deny"}));
    // The quiet bottle met no bound.
    for reason in ["connection_limit", "rate_limited", "overloaded"] {
        audit.expect_none(json!({"bottle": quiet, "reason": reason}))?;
    }

    // The kernel reported each of the noisy bottle's connects once: as its own line or
    // counted in a summary (when none was lost on the way).
    let noisy_lost: u64 = audit
        .find(json!({"bottle": noisy, "layer": "audit", "event": "loss"}))
        .iter()
        .map(|e| e["lost"].as_u64().unwrap_or(0))
        .sum();
    let audit = wait_for_audit(&log, |a| {
        redirected_connects(a, &noisy).0 + noisy_lost >= CONNECTIONS as u64
    })?;
    let (connects, lines) = redirected_connects(&audit, &noisy);
    if noisy_lost == 0 {
        assert_eq!(connects, CONNECTIONS as u64, "{lines} lines");
    }
    let summaries = audit
        .find(json!({"bottle": noisy, "layer": "kernel"}))
        .into_iter()
        .filter(|e| e["count"].is_u64())
        .count();
    assert!(summaries > 0, "repeated allows are summarised");
    assert!(
        !audit
            .find(json!({"layer": "kernel", "verdict": "deny"}))
            .iter()
            .any(|e| e.get("count").is_some()),
        "a deny is never summarised"
    );
    let kernel = audit.find(json!({"bottle": noisy, "layer": "kernel"}));
    let decisions = Audit::stood_for(&kernel);
    println!(
        "noisy audit: {} lines; {} connection_limit, {} rate_limited; {connects} redirected \
         connects in {lines} kernel lines; all kernel: {decisions} decisions in {} lines \
         ({summaries} summaries), {noisy_lost} lost",
        audit.find(json!({"bottle": noisy})).len(),
        limited.len(),
        rate_limited.len(),
        kernel.len(),
    );
    Ok(())
}

/// Re-reads the audit log until `done` holds of it.
fn wait_for_audit(path: &Path, done: impl Fn(&Audit) -> bool) -> Result<Audit> {
    let deadline = Instant::now() + WAIT;
    loop {
        let audit = Audit::read(path)?;
        if done(&audit) {
            return Ok(audit);
        }
        if Instant::now() >= deadline {
            bail!("the audit log never got there:\n{}", audit.dump());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
