//! `cork daemon --ocsf-log FILE`: beside its own log, the daemon writes every audit event
//! as an OCSF event — a standing bottle's lifecycle, an allowed IPv4 and a denied IPv6
//! connect made with the python probe under `cork exec` — one line per line of its log,
//! in order, each naming its line's chain value, equal to what `cork audit --format ocsf`
//! makes of that log, created 0600, and valid against the pinned OCSF schema. A file it
//! cannot open stops the daemon before it serves, naming the flag.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use anyhow::Result;
use cork_integration::daemon::{TestDaemon, exec_probe};
use cork_integration::ocsf::{parse_lines, validate};
use cork_integration::{Audit, Probe, Side, World};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(15);

#[test]
fn a_daemon_writes_ocsf_beside_its_own_log() -> Result<()> {
    let world = World::new("a_daemon_writes_ocsf_beside_its_own_log")?;
    let allowed = world.tcp_server(Side::Internet, "198.51.100.10:8080")?;
    let denied = world.tcp_server(Side::Internet, "[2001:db8::11]:8080")?;
    let sock = world.path("cork", "sock").display().to_string();
    let log = world.path("daemon-audit", "jsonl");
    let ocsf = world.path("daemon-audit", "ocsf.jsonl");

    // A file the daemon cannot open: refused before it serves, naming the flag.
    let out = world.run({
        let mut cmd = world.cork(["daemon", "--socket", sock.as_str()]);
        cmd.arg("--ocsf-log")
            .arg(world.path("no-such-dir", "d").join("ocsf.jsonl"))
            .env("CORK_TEST_HARNESS", "1")
            .env("CORK_TEST_DAEMON_LOCK", world.path("daemon", "lock"));
        cmd
    })?;
    assert_eq!(out.code(), 125, "{out}");
    assert!(out.stderr.contains("--ocsf-log"), "{out}");

    let daemon = TestDaemon::start_with(&world, &sock, &log, |cmd| {
        cmd.arg("--ocsf-log").arg(&ocsf);
    })?;
    let name = world.bottle_name("o");
    let manifest = world.manifest(
        "o",
        "[[egress.allow]]\ncidr = \"198.51.100.10/32\"\nports = [8080]\n",
    )?;
    cork_integration::daemon::create_ok(&world, &sock, &manifest)?;
    let probe = Probe::new()
        .tcp("198.51.100.10", 8080)?
        .tcp("2001:db8::11", 8080)?;
    assert_eq!(exec_probe(&world, &sock, &name, &probe)?, ["ok", "EPERM"]);
    assert_eq!(allowed.peers().len(), 1);
    assert!(denied.peers().is_empty());
    Audit::wait_for(
        &log,
        json!({"bottle": name, "verdict": "deny", "dst": "2001:db8::11", "dport": 8080}),
        WAIT,
    )?;
    // Stopping flushes both files.
    let out = daemon.stop()?;
    assert_eq!(out.code(), 0, "{out}");

    let lines = parse_lines(&std::fs::read_to_string(&log)?)?;
    let ocsf_text = std::fs::read_to_string(&ocsf)?;
    let events = parse_lines(&ocsf_text)?;
    assert!(lines.len() >= 3, "lifecycle and both verdicts: {lines:#?}");
    assert_eq!(events.len(), lines.len(), "one OCSF event per line");
    for (line, event) in lines.iter().zip(&events) {
        assert_eq!(event["metadata"]["uid"], line["chain"], "{line}\n{event:#}");
        assert_eq!(event["metadata"]["original_time"], line["ts"], "{event:#}");
    }
    // The same mapping `cork audit --format ocsf` makes of the log.
    let log_s = log.display().to_string();
    let converted = world.run(world.cork(["audit", "--file", &log_s, "--format", "ocsf"]))?;
    assert_eq!(converted.code(), 0, "{converted}");
    assert_eq!(parse_lines(&converted.stdout)?, events);

    let deny = events
        .iter()
        .find(|e| e["dst_endpoint"]["ip"] == "2001:db8::11")
        .expect("the IPv6 deny");
    assert_eq!(
        (
            &deny["class_uid"],
            &deny["disposition_id"],
            &deny["activity_id"]
        ),
        (&json!(4001), &json!(2), &json!(5)),
        "{deny:#}"
    );
    let allow = events
        .iter()
        .find(|e| e["dst_endpoint"]["ip"] == "198.51.100.10")
        .expect("the IPv4 allow");
    assert_eq!(allow["disposition_id"], 1, "{allow:#}");
    assert!(
        events.iter().any(|e| e["class_uid"] == 6002),
        "a lifecycle event"
    );

    let mode = std::fs::metadata(&ocsf)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    let report = validate(&ocsf)?;
    assert!(report.contains("network_activity"), "{report}");
    Ok(())
}
