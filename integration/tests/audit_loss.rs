//! Audit delivery: loss is counted and reported, never silent — with the agent's reader
//! held back (a test seam), a burst of denied datagrams overflows the kernel ring buffer;
//! every attempt must then be either a deny event or counted in a loss event. And events
//! reach the log while the bottle runs, though the programs do not wake the reader.

use std::time::Duration;

use anyhow::Result;
use cork_integration::cork::run_args;
use cork_integration::process::Spawned;
use cork_integration::world::RUN_TIMEOUT;
use cork_integration::{Audit, Probe, World};
use serde_json::json;

const SENDS: usize = 40_000;

#[test]
fn ring_buffer_overflow_is_reported_as_loss() -> Result<()> {
    let world = World::new("ring_buffer_overflow_is_reported_as_loss")?;
    let manifest = world.manifest("a", "")?;
    let burst = format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         refused = 0\n\
         for _ in range({SENDS}):\n    \
             try:\n        s.sendto(b'x', ('198.51.100.10', 9))\n    \
             except PermissionError:\n        refused += 1\n\
         print(refused)\n"
    );
    let argv = ["python3".to_string(), "-c".into(), burst];
    let mut cmd = world.cork(run_args(&manifest, &world.audit_path(), &argv));
    cmd.env("CORK_TEST_HARNESS", "1")
        .env("CORK_TEST_READER_DELAY_MS", "3000");
    let out = world.run(&mut cmd)?;
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(
        out.lines(),
        [SENDS.to_string()],
        "every datagram refused: {out}"
    );

    let audit = Audit::read(&world.audit_path())?;
    let denies = audit
        .find(json!({"hook": "sendmsg4", "verdict": "deny", "dst": "198.51.100.10"}))
        .len();
    let lost = audit.lost();
    assert!(
        lost > 0,
        "the ring buffer should have overflowed ({denies} events)"
    );
    audit.expect(json!({"layer": "audit", "event": "loss"}))?;
    assert_eq!(
        denies as u64 + lost,
        SENDS as u64,
        "each attempt is an event or counted lost"
    );
    Ok(())
}

#[test]
fn test_seams_are_refused_outside_the_harness() -> Result<()> {
    let world = World::new("test_seams_are_refused_outside_the_harness")?;
    let manifest = world.manifest("a", "")?;
    let argv = ["true".to_string()];
    let mut cmd = world.cork(run_args(&manifest, &world.audit_path(), &argv));
    cmd.env_remove("CORK_TEST_HARNESS")
        .env("CORK_TEST_READER_DELAY_MS", "1");
    let out = world.run(&mut cmd)?;
    assert_eq!(out.code(), 125, "{out}");
    assert!(out.stderr.contains("CORK_TEST_READER_DELAY_MS"), "{out}");
    Ok(())
}

/// The programs submit without waking the agent's reader (the wake-up cost the bottle's
/// connect() ~10 us); its poll timer must still bring every event to the log while the
/// bottle runs, not only in the final drain when the command ends.
#[test]
fn events_reach_the_log_while_the_bottle_runs() -> Result<()> {
    let world = World::new("events_reach_the_log_while_the_bottle_runs")?;
    let go = world.dir().join("go");
    let manifest = world.manifest("a", "")?;
    let probe = Probe::new()
        .tcp("198.51.100.10", 9)?
        .tcp("2001:db8::10", 9)?
        .say("tried")
        .wait_file(&go.display().to_string());
    let mut bottle = Spawned::start(&mut world.cork_run(&manifest, "a", &probe.argv()))?;
    let tried = bottle.wait_line("tried", Duration::from_secs(30))?;
    assert_eq!(tried, ["EPERM", "EPERM", "tried"]);
    for dst in ["198.51.100.10", "2001:db8::10"] {
        Audit::wait_for(
            &world.audit_path_for("a"),
            json!({"layer": "kernel", "verdict": "deny", "dst": dst, "dport": 9}),
            Duration::from_secs(10),
        )?;
    }
    std::fs::write(&go, "")?;
    let out = bottle.finish(RUN_TIMEOUT)?;
    assert_eq!(out.code(), 0, "{out}");
    Ok(())
}
