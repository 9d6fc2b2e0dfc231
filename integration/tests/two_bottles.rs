//! Two bottles at once in one world, with different policies: each reaches only its own
//! allowed server, and neither reaches the other's loopback listener.

use std::time::Duration;

use anyhow::Result;
use cork_integration::process::Spawned;
use cork_integration::world::RUN_TIMEOUT;
use cork_integration::{Audit, Probe, Side, World};
use serde_json::json;

fn allow_only(cidr: &str, port: u16) -> String {
    format!("[[egress.allow]]\ncidr = \"{cidr}\"\nports = [{port}]\n")
}

#[test]
fn concurrent_bottles_are_isolated_from_each_other() -> Result<()> {
    let world = World::new("concurrent_bottles_are_isolated_from_each_other")?;
    let a4 = world.tcp_server(Side::Internet, "198.51.100.10:8001")?;
    let b4 = world.tcp_server(Side::Internet, "198.51.100.11:8002")?;
    let a6 = world.tcp_server(Side::Internet, "[2001:db8::10]:8001")?;
    let b6 = world.tcp_server(Side::Internet, "[2001:db8::11]:8002")?;
    let go = world.dir().join("go");

    // Bottle A: listens on its loopback, tries both servers, then holds the listener open
    // until the test says go.
    let manifest_a = world.manifest(
        "a",
        &(allow_only("198.51.100.10/32", 8001) + &allow_only("2001:db8::10/128", 8001)),
    )?;
    let probe_a = Probe::new()
        .listen("127.0.0.1", 9400)?
        .listen("::1", 9401)?
        .tcp(&a4.ip(), 8001)?
        .tcp(&b4.ip(), 8002)?
        .tcp(&a6.ip(), 8001)?
        .tcp(&b6.ip(), 8002)?
        .say("ready")
        .wait_file(&go.display().to_string());
    let mut bottle_a = Spawned::start(&mut world.cork_run(&manifest_a, "a", &probe_a.argv()))?;
    let first = bottle_a.wait_line("ready", Duration::from_secs(30))?;
    assert_eq!(
        first,
        ["ok 9400", "ok 9401", "ok", "EPERM", "ok", "EPERM", "ready"]
    );

    // Bottle B runs while A is alive.
    let probe_b = Probe::new()
        .tcp(&b4.ip(), 8002)?
        .tcp(&a4.ip(), 8001)?
        .tcp(&b6.ip(), 8002)?
        .tcp(&a6.ip(), 8001)?
        .tcp("127.0.0.1", 9400)?
        .tcp("::1", 9401)?;
    let body_b = allow_only("198.51.100.11/32", 8002) + &allow_only("2001:db8::11/128", 8002);
    let (out_b, audit_b) = world.run_probe("b", &body_b, &probe_b)?;
    assert_eq!(
        out_b.lines(),
        ["ok", "EPERM", "ok", "EPERM", "EPERM", "EPERM"],
        "{out_b}"
    );

    std::fs::write(&go, "")?;
    let out_a = bottle_a.finish(RUN_TIMEOUT)?;
    assert_eq!(out_a.code(), 0, "{out_a}");
    assert_eq!(out_a.lines().last().copied(), Some("ok"), "{out_a}");

    // Each server saw exactly one peer: its own bottle.
    for s in [&a4, &b4, &a6, &b6] {
        assert_eq!(
            s.wait_peers(1, Duration::from_secs(5))?.len(),
            1,
            "{}",
            s.addr
        );
        assert_eq!(s.peers().len(), 1, "{}", s.addr);
    }
    let audit_a = Audit::read(&world.audit_path_for("a"))?;
    let (name_a, name_b) = (world.bottle_name("a"), world.bottle_name("b"));
    audit_a.expect(json!({"bottle": name_a, "dst": "198.51.100.11", "verdict": "deny"}))?;
    audit_a.expect_none(json!({"bottle": name_b}))?;
    audit_b.expect(json!({"bottle": name_b, "dst": "198.51.100.10", "verdict": "deny"}))?;
    audit_b.expect(json!({"bottle": name_b, "hook": "connect4", "dport": 9400,
                          "verdict": "deny", "reason": "loopback_foreign"}))?;
    audit_b.expect(json!({"bottle": name_b, "hook": "connect6", "dport": 9401,
                          "verdict": "deny", "reason": "loopback_foreign"}))?;
    audit_b.expect_none(json!({"bottle": name_a}))?;
    Ok(())
}
