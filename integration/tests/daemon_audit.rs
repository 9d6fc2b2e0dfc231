//! `cork audit` end to end, against a real daemon in the World's bottle netns: standing
//! bottles make allowed and denied connects (IPv4 and IPv6) with the python probe under
//! `cork exec`; `cork audit` prints the daemon's history filtered by bottle, verdict and
//! time, byte for byte the lines of the audit log; `--follow` delivers an event made
//! after it started; bad flags (and a bad query sent straight to the socket) are refused
//! naming the parameter; a follower is told when the daemon goes away.
//!
//! The daemon runs with a lock of its own (`CORK_TEST_DAEMON_LOCK`), so this file does
//! not contend with `tests/daemon.rs` for the host's one-daemon lock.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use cork_integration::process::{RunOutput, Spawned};
use cork_integration::{Audit, Probe, Side, World};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);

use cork_integration::daemon::{TestDaemon as Daemon, exec_probe};

/// `cork audit --socket SOCK ARGS...`, run to its end.
fn audit(world: &World, sock: &str, args: &[&str]) -> Result<RunOutput> {
    let mut cmd = world.cork(["audit", "--socket", sock]);
    cmd.args(args);
    world.run(cmd)
}

/// The JSON events `cork audit` printed (every line must be one).
fn events(out: &RunOutput) -> Result<Vec<Value>> {
    if out.code() != 0 {
        bail!("cork audit failed:\n{out}");
    }
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l:?}\n{out}")))
        .collect()
}

/// (dst, dport) of each event.
fn destinations(evs: &[Value]) -> BTreeSet<(String, u64)> {
    evs.iter()
        .map(|e| {
            (
                e["dst"].as_str().unwrap_or("-").to_owned(),
                e["dport"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn dest(dst: &str, dport: u64) -> (String, u64) {
    (dst.to_owned(), dport)
}

#[test]
fn cork_audit_filters_and_follows_the_daemons_events() -> Result<()> {
    let world = World::new("cork_audit_filters_and_follows")?;
    let allowed4 = world.tcp_server(Side::Internet, "198.51.100.10:8080")?;
    let allowed6 = world.tcp_server(Side::Internet, "[2001:db8::10]:8080")?;
    let denied4 = world.tcp_server(Side::Internet, "198.51.100.11:8080")?;
    let denied6 = world.tcp_server(Side::Internet, "[2001:db8::11]:8080")?;
    let sock = world.path("cork", "sock").display().to_string();
    let log = world.path("daemon-audit", "jsonl");

    // Bad flags are refused before any daemon is asked, naming the flag and why.
    let out = audit(&world, &sock, &["--since", "yesterday"])?;
    assert_eq!(out.code(), 2, "{out}");
    assert!(
        out.stderr.contains("--since") && out.stderr.contains("\"yesterday\" is neither"),
        "{out}"
    );
    let out = audit(&world, &sock, &["--verdict", "maybe"])?;
    assert_eq!(out.code(), 2, "{out}");
    assert!(out.stderr.contains("--verdict"), "{out}");
    // No daemon: said at once.
    let out = audit(&world, &sock, &[])?;
    assert_eq!(out.code(), 3, "{out}");
    assert!(out.stderr.contains("not running"), "{out}");

    let daemon = Daemon::start(&world, &sock, &log)?;

    // The route refuses a bad query itself too (a client other than the CLI).
    let out = world.run(world.command(Side::Bottle, "curl").args([
        "-s",
        "-w",
        "\n%{http_code}",
        "--unix-socket",
        &sock,
        "http://cork/v1/audit?since=soon",
    ]))?;
    assert!(out.stdout.ends_with("\n400"), "{out}");
    assert!(
        out.stdout.contains(r#""kind":"bad_request""#) && out.stdout.contains("since:"),
        "{out}"
    );

    let body = "[[egress.allow]]\ncidr = \"198.51.100.10/32\"\nports = [8080]\n\
                [[egress.allow]]\ncidr = \"2001:db8::10/128\"\nports = [8080]\n";
    let (a, b) = (world.bottle_name("a"), world.bottle_name("b"));
    for label in ["a", "b"] {
        let manifest = world.manifest(label, body)?;
        cork_integration::daemon::create_ok(&world, &sock, &manifest)?;
    }

    let both = Probe::new()
        .tcp("198.51.100.10", 8080)?
        .tcp("2001:db8::10", 8080)?
        .tcp("198.51.100.11", 8080)?
        .tcp("2001:db8::11", 8080)?;
    assert_eq!(
        exec_probe(&world, &sock, &a, &both)?,
        ["ok", "ok", "EPERM", "EPERM"]
    );
    let b_probe = Probe::new().tcp("198.51.100.11", 8080)?;
    assert_eq!(exec_probe(&world, &sock, &b, &b_probe)?, ["EPERM"]);
    assert_eq!(allowed4.peers().len() + allowed6.peers().len(), 2);
    assert!(denied4.peers().is_empty() && denied6.peers().is_empty());
    // The daemon's reader drains the ring on a timer: wait until the log has them all.
    for (bottle, dst) in [
        (&a, "198.51.100.11"),
        (&a, "2001:db8::11"),
        (&b, "198.51.100.11"),
    ] {
        Audit::wait_for(
            &log,
            json!({"bottle": bottle, "verdict": "deny", "dst": dst, "dport": 8080}),
            WAIT,
        )?;
    }
    let file = std::fs::read_to_string(&log)?;

    // --bottle A --verdict deny: exactly the two denied connects, as the log has them.
    let out = audit(&world, &sock, &["--bottle", &a, "--verdict", "deny"])?;
    let denies = events(&out)?;
    assert_eq!(denies.len(), 2, "{out}");
    assert!(
        denies
            .iter()
            .all(|e| e["bottle"] == a.as_str() && e["verdict"] == "deny" && e["layer"] == "kernel"),
        "{out}"
    );
    assert_eq!(
        destinations(&denies),
        [dest("198.51.100.11", 8080), dest("2001:db8::11", 8080)].into(),
        "{out}"
    );
    for line in out.stdout.lines() {
        assert!(
            file.contains(&format!("{line}\n")),
            "not in the log: {line}"
        );
    }
    // --verdict allow: the allowed connects; lifecycle events (no verdict) only without
    // a verdict filter.
    let allows = events(&audit(
        &world,
        &sock,
        &["--bottle", &a, "--verdict", "allow"],
    )?)?;
    let allowed: BTreeSet<_> = destinations(&allows);
    assert!(
        allowed.contains(&dest("198.51.100.10", 8080))
            && allowed.contains(&dest("2001:db8::10", 8080)),
        "{allows:?}"
    );
    assert!(allows.iter().all(|e| e["verdict"] == "allow"), "{allows:?}");
    let all_a = events(&audit(&world, &sock, &["--bottle", &a])?)?;
    assert!(
        all_a.iter().any(|e| e["event"] == "enforced"),
        "the lifecycle event: {all_a:?}"
    );
    assert!(all_a.iter().all(|e| e["bottle"] == a.as_str()), "{all_a:?}");
    let all_denies = events(&audit(&world, &sock, &["--verdict", "deny"])?)?;
    assert!(
        all_denies.iter().any(|e| e["bottle"] == b.as_str()),
        "B's denial without --bottle: {all_denies:?}"
    );

    // --since: a time just after the denials so far (their own clock, so no host-clock
    // skew can blur it) keeps them out and lets a later one in.
    let last = denies
        .iter()
        .filter_map(|e| humantime::parse_rfc3339(e["ts"].as_str()?).ok())
        .max()
        .context("deny events have a ts")?;
    let after = humantime::format_rfc3339_nanos(last + Duration::from_nanos(1)).to_string();
    let later = Probe::new().tcp("198.51.100.11", 8081)?;
    assert_eq!(exec_probe(&world, &sock, &a, &later)?, ["EPERM"]);
    Audit::wait_for(
        &log,
        json!({"bottle": a, "verdict": "deny", "dport": 8081}),
        WAIT,
    )?;
    let out = audit(
        &world,
        &sock,
        &["--bottle", &a, "--verdict", "deny", "--since", &after],
    )?;
    let recent = events(&out)?;
    assert_eq!(
        destinations(&recent),
        [dest("198.51.100.11", 8081)].into(),
        "{out}"
    );
    assert_eq!(recent.len(), 1, "{out}");
    let out = audit(
        &world,
        &sock,
        &["--bottle", &a, "--verdict", "deny", "--since", "10m"],
    )?;
    assert_eq!(events(&out)?.len(), 3, "{out}");
    let future = humantime::format_rfc3339(SystemTime::now() + Duration::from_secs(3600));
    let out = audit(&world, &sock, &["--since", &future.to_string()])?;
    assert!(events(&out)?.is_empty(), "{out}");

    // --follow: the history first, then an event made after it, live.
    let mut follow = Spawned::start(&mut world.cork([
        "audit",
        "--socket",
        &sock,
        "--bottle",
        &a,
        "--verdict",
        "deny",
        "--follow",
    ]))?;
    follow.wait_line_where("with dport 8081 (the end of the history)", WAIT, |l| {
        l.contains("\"dport\":8081")
    })?;
    let live = Probe::new().tcp("2001:db8::11", 8082)?;
    assert_eq!(exec_probe(&world, &sock, &a, &live)?, ["EPERM"]);
    let line =
        follow.wait_line_where("with dport 8082 (made after following began)", WAIT, |l| {
            l.contains("\"dport\":8082")
        })?;
    let ev: Value = serde_json::from_str(&line)?;
    assert_eq!(ev["dst"], "2001:db8::11", "{line}");
    assert_eq!(ev["verdict"], "deny", "{line}");
    assert_eq!(
        follow.seen().len(),
        4,
        "three from history, one live: {:?}",
        follow.seen()
    );
    nix::sys::signal::kill(follow.pid(), nix::sys::signal::Signal::SIGTERM)?;
    let out = follow.finish(WAIT)?;
    assert_eq!(out.code(), 0, "SIGTERM ends following cleanly: {out}");

    // A follower whose daemon stops is told so, and fails.
    let mut follow = Spawned::start(&mut world.cork(["audit", "--socket", &sock, "--follow"]))?;
    follow.wait_line_where("with dport 8082 (history delivered)", WAIT, |l| {
        l.contains("\"dport\":8082")
    })?;
    let out = daemon.stop()?;
    assert_eq!(out.code(), 0, "{out}");
    let out = follow.finish(WAIT)?;
    assert_eq!(out.code(), 3, "{out}");
    assert!(out.stderr.contains("not running"), "{out}");
    Ok(())
}
