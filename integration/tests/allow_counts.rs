//! Repeated allowed connects counted in the kernel (`cork_allows`): a bottle that
//! connects to one place over and over gets the flow's first connect as a line of its
//! own, the rest counted by its programs and written as summary lines with `count`. What
//! is checked is what a reader of the log relies on: the sum of `count or 1` over the
//! flow's lines is exactly the number of connects, over IPv4 and IPv6; the connects did
//! not each become a line; a summary names the same flow (process, command, rule) as the
//! line it follows; denies are never counted, one line each.

use anyhow::Result;
use cork_integration::{Side, World};
use serde_json::{Value, json};

/// Connects (and closes) N times to each address on port 9000 — half, a pause longer than
/// the kernel's one-second window, the other half, so the flow's window opens twice —
/// then N/10 times to an address no rule allows (refused in the kernel: nothing is sent).
const LOOP: &str = r#"
import errno, socket, sys, time
n = int(sys.argv[1])
for host in ("198.51.100.10", "2001:db8::10"):
    for half in range(2):
        for _ in range(n // 2):
            socket.create_connection((host, 9000), timeout=5).close()
        if half == 0:
            time.sleep(1.2)
refused = 0
for _ in range(n // 10):
    try:
        socket.create_connection(("198.51.100.11", 9000), timeout=5).close()
    except OSError as e:
        refused += e.errno == errno.EPERM
print("done", refused)
"#;

const CONNECTS: u64 = 300;

/// The allow lines of one flow and what they add up to.
fn allows<'a>(lines: &[&'a Value]) -> (u64, Vec<&'a Value>) {
    let total = lines.iter().map(|e| e["count"].as_u64().unwrap_or(1)).sum();
    (total, lines.to_vec())
}

#[test]
fn repeated_connects_are_counted_not_dropped() -> Result<()> {
    let world = World::new("repeated_connects_are_counted_not_dropped")?;
    let _s4 = world.tcp_server(Side::Internet, "198.51.100.10:9000")?;
    let _s6 = world.tcp_server(Side::Internet, "[2001:db8::10]:9000")?;
    let manifest = r#"
[[egress.allow]]
cidr = "198.51.100.10/32"
ports = [9000]

[[egress.allow]]
cidr = "2001:db8::10/128"
ports = [9000]
"#;
    let argv = [
        cork_integration::probe::python3().to_string(),
        "-c".into(),
        LOOP.into(),
        CONNECTS.to_string(),
    ];
    let (out, audit) = world.run_argv("a", manifest, &argv)?;
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(out.lines(), [format!("done {}", CONNECTS / 10)], "{out}");
    assert_eq!(audit.lost(), 0, "no record was lost");

    for (hook, dst, rule) in [
        ("connect4", "198.51.100.10", "egress.allow[0]"),
        ("connect6", "2001:db8::10", "egress.allow[1]"),
    ] {
        let found = audit.find(json!({"hook": hook, "dst": dst, "dport": 9000,
                                      "verdict": "allow"}));
        let (total, lines) = allows(&found);
        assert_eq!(
            total, CONNECTS,
            "{hook}: every connect is a line or counted in one"
        );
        assert!(
            (lines.len() as u64) < CONNECTS / 2,
            "{hook}: {} lines for {CONNECTS} connects: repeats were not counted",
            lines.len()
        );
        let first = lines.first().expect("the flow's first connect is a line");
        assert!(first.get("count").is_none(), "{first}");
        let summaries: Vec<&&Value> = lines.iter().filter(|e| e["count"].is_u64()).collect();
        assert!(!summaries.is_empty(), "{hook}: no summary line");
        // Counted by the programs, not merely summarised by the agent: a summary of
        // kernel counts repeats the record it followed (its cookie and time), where one
        // of the agent's would show the last connect, never itself a line.
        let recorded: Vec<&Value> = lines
            .iter()
            .copied()
            .filter(|e| e.get("count").is_none())
            .collect();
        assert!(
            recorded.len() >= 2,
            "{hook}: the pause opens a second window: {recorded:?}"
        );
        for s in summaries {
            for field in ["pid", "comm", "rule", "reason", "proto", "cgroup_id"] {
                assert_eq!(s[field], first[field], "{hook}: {field} of {s}");
            }
            assert_eq!(s["rule"], rule);
            // ...and comes after it in the log.
            let at = lines.iter().position(|l| std::ptr::eq(*l, *s));
            let of = lines.iter().position(|r| {
                r.get("count").is_none() && r["cookie"] == s["cookie"] && r["ts"] == s["ts"]
            });
            assert!(
                matches!((of, at), (Some(of), Some(at)) if of < at),
                "{hook}: summary {s} does not follow a record it repeats"
            );
        }
    }
    let denied = audit.find(json!({"hook": "connect4", "dst": "198.51.100.11",
                                   "verdict": "deny"}));
    assert_eq!(denied.len() as u64, CONNECTS / 10, "a line per deny");
    assert!(
        denied.iter().all(|e| e.get("count").is_none()),
        "a deny is never counted"
    );
    Ok(())
}
