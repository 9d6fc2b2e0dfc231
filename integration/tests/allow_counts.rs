//! Repeated allowed connects counted in the kernel (`cork_allows`): a bottle that
//! connects to one place over and over gets the flow's first connect as a line of its
//! own, the rest counted by its programs and written as summary lines with `count`. What
//! is checked is what a reader of the log relies on: the sum of `count or 1` over the
//! flow's lines is exactly the number of connects, over IPv4 and IPv6; the connects did
//! not each become a line; a summary names the same flow (process, command, rule) as the
//! line it follows; denies are never counted, one line each.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use anyhow::{Context, Result, bail};
use aya::maps::MapData;
use cork_bpf::allow_slots::{AllowSlots, slots_of};
use cork_integration::{Audit, Side, World, host};
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
    let total = Audit::stood_for(lines);
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

/// Connects three times to each address, says so, and waits for stdin to close.
const HOLD: &str = r#"
import socket, sys
for host in ("198.51.100.10", "2001:db8::10"):
    for _ in range(3):
        socket.create_connection((host, 9000), timeout=5).close()
print("ready", flush=True)
sys.stdin.read()
"#;

/// The agent finds a flow where the programs count it: the slots the kernel claimed are
/// the ones the agent's hash names for their keys (a hash that differed would leave each
/// flow's counts to the sweep, never summed where its next record arrives), each counts
/// the connects after its flow's first, and the agent reads them through its mapping.
#[test]
fn the_agent_finds_each_flow_in_the_slots_the_kernel_counts_it_in() -> Result<()> {
    let world = World::new("the_agent_finds_each_flow_in_the_slots")?;
    let _s4 = world.tcp_server(Side::Internet, "198.51.100.10:9000")?;
    let _s6 = world.tcp_server(Side::Internet, "[2001:db8::10]:9000")?;
    let manifest = world.manifest(
        "a",
        "[[egress.allow]]\ncidr = \"198.51.100.10/32\"\nports = [9000]\n\n\
         [[egress.allow]]\ncidr = \"2001:db8::10/128\"\nports = [9000]\n",
    )?;
    let argv = [
        cork_integration::probe::python3().to_string(),
        "-c".into(),
        HOLD.into(),
    ];
    let mut child = world
        .cork_run(&manifest, "a", &argv)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting cork run")?;
    let checked = (|| -> Result<Vec<(usize, [u8; 32], u64)>> {
        let stdout = child.stdout.take().context("stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        if line.trim() != "ready" {
            bail!("the bottle did not get ready: {line:?}");
        }
        let pins = host::cork_pins(&format!("{}-", world.bottle_name("a")));
        let [pin] = pins.as_slice() else {
            bail!("one pin directory expected: {pins:?}");
        };
        let slots = AllowSlots::map(MapData::from_pin(pin.join("cork_allows"))?)?;
        Ok(slots
            .all_live()
            .into_iter()
            .map(|(at, l)| (at, l.key, l.counted))
            .collect())
    })();
    // Closing stdin ends the bottle's command.
    drop(child.stdin.take());
    let status = child.wait()?;
    let live = checked?;
    assert!(status.success(), "cork run: {status}");

    assert_eq!(live.len(), 2, "one slot per flow: {live:?}");
    for (at, key, counted) in &live {
        let (a, b) = slots_of(key);
        assert!(
            *at == a || *at == b,
            "the kernel counts a flow in slot {at}, the agent looks in {a} and {b}"
        );
        assert_eq!(*counted, 2, "three connects: one record, two counted");
    }
    let dsts: Vec<&[u8]> = live.iter().map(|(_, k, _)| &k[8..24]).collect();
    assert!(
        dsts.iter().any(|d| d[..4] == [198, 51, 100, 10]),
        "{dsts:?}"
    );
    assert!(
        dsts.iter().any(|d| d[..4] == [0x20, 0x01, 0x0d, 0xb8]),
        "{dsts:?}"
    );
    Ok(())
}
