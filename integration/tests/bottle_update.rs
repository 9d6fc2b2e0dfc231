//! `cork bottle update`: a standing bottle's policy replaced as one generation, under
//! load. A client connecting alternately to an address only the old policy allows and one
//! only the new policy allows never sees the old policy after it has seen the new one (no
//! connect saw a mix); a connected UDP socket opened before the update keeps sending (open
//! flows stay open) while a new one to the same place is refused; an address learned from
//! DNS for a name the new policy still allows stays reachable without asking again, one
//! whose name it drops does not; kernel events name the rule of the generation that judged
//! them; the `policy_updated` event carries both generations and the manifest's SHA-256.
//! Refused updates (a section that cannot change, a bad manifest, no such bottle) change
//! nothing and say why.
//!
//! The daemon runs with a lock and state of its own ([`TestDaemon`]).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use cork_integration::daemon::{TestDaemon, exec};
use cork_integration::dns_server::Zone;
use cork_integration::process::{RunOutput, Spawned};
use cork_integration::{Audit, Side, World};
use serde_json::json;

const CLIENT: &str = include_str!("../src/dns_client.py");
const WAIT: Duration = Duration::from_secs(30);

/// Connects to X (old policy only) then Y (new policy only), over and over, one line per
/// connect ("X ok", "Y EPERM"...), until the file argv[1] exists.
const LOOP: &str = r#"
import errno, os, socket, sys
def one(ip):
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect((ip, 8080))
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    finally:
        s.close()
print("looping", flush=True)
while not os.path.exists(sys.argv[1]):
    for name, ip in (("X", "198.51.100.10"), ("Y", "198.51.100.11")):
        print(name, one(ip), flush=True)
"#;

const OLD: &str = r#"
[[egress.allow]]
cidr = "198.51.100.10/32"
ports = [8080]

[[egress.allow]]
cidr = "198.51.100.12/32"
ports = [9000]
proto = "udp"

[[egress.allow]]
domain = "svc.update.test"
ports = [8080]

[[egress.allow]]
domain = "gone.update.test"
ports = [8080]

[dns]
upstream = ["198.51.100.53"]
"#;

const NEW: &str = r#"
[[egress.allow]]
cidr = "198.51.100.11/32"
ports = [8080]

[[egress.allow]]
domain = "svc.update.test"
ports = [8080]

[dns]
upstream = ["198.51.100.53"]
"#;

/// Which generation a loop line shows: X reachable or Y refused is the old policy, X
/// refused or Y reachable the new one.
fn generation_of(line: &str) -> Result<u8> {
    Ok(match line {
        "X ok" | "Y EPERM" => 0,
        "X EPERM" | "Y ok" => 1,
        other => bail!("unexpected loop line {other:?}"),
    })
}

/// `cork bottle update NAME --socket SOCK -m MANIFEST`.
fn update(world: &World, sock: &str, name: &str, manifest: &std::path::Path) -> Result<RunOutput> {
    let m = manifest.display().to_string();
    cork_out(
        world,
        &["bottle", "update", name, "--socket", sock, "-m", &m],
    )
}

/// Entries in the pinned IPv4 trie `map` of the bottle named `name`.
fn trie_len(name: &str, map: &str) -> Result<usize> {
    let [pins] = <[_; 1]>::try_from(cork_integration::host::cork_pins(name))
        .map_err(|found| anyhow::anyhow!("pin directories of {name}: {found:?}"))?;
    let data = aya::maps::MapData::from_pin(pins.join(map))
        .with_context(|| format!("{map} in {}", pins.display()))?;
    let trie: aya::maps::LpmTrie<_, [u8; 4], cork_bpf::abi::cork_prefix_value> =
        aya::maps::LpmTrie::try_from(aya::maps::Map::LpmTrie(data))?;
    Ok(trie.keys().collect::<Result<Vec<_>, _>>()?.len())
}

fn cork_out(world: &World, args: &[&str]) -> Result<RunOutput> {
    world.run(world.cork(args))
}

fn sha256_hex(path: &std::path::Path) -> Result<String> {
    let out = std::process::Command::new("sha256sum").arg(path).output()?;
    let text = String::from_utf8(out.stdout)?;
    Ok(text
        .split_whitespace()
        .next()
        .context("sha256sum output")?
        .to_owned())
}

#[test]
fn a_policy_update_switches_every_decision_at_once() -> Result<()> {
    let world = World::new("a_policy_update_switches_every_decision_at_once")?;
    let zone = Zone::new().a("svc.update.test", "198.51.100.13", 300).a(
        "gone.update.test",
        "198.51.100.14",
        300,
    );
    let _dns = world.dns_server("198.51.100.53:53", zone)?;
    let x = world.tcp_server(Side::Internet, "198.51.100.10:8080")?;
    let y = world.tcp_server(Side::Internet, "198.51.100.11:8080")?;
    let udp = world.udp_server(Side::Internet, "198.51.100.12:9000")?;
    let svc = world.tcp_server(Side::Internet, "198.51.100.13:8080")?;
    let gone = world.tcp_server(Side::Internet, "198.51.100.14:8080")?;

    let sock = world.path("cork", "sock").display().to_string();
    let audit = world.path("daemon-audit", "jsonl");
    let daemon = TestDaemon::start(&world, &sock, &audit)?;

    let old = world.manifest("upd", OLD)?;
    let new = world.manifest("upd", NEW)?;
    let name = world.bottle_name("upd");
    let old_path = old.display().to_string();
    let out = cork_out(
        &world,
        &["bottle", "create", "--socket", &sock, "-m", &old_path],
    )?;
    assert_eq!(out.code(), 0, "{out}");

    // A client that learns two names, connects everywhere, opens a connected UDP socket,
    // then waits for the go-file and tries everything again under the new policy.
    let go = world.path("go", "file");
    let go_s = go.display().to_string();
    let ops = [
        "udp 198.51.100.53 svc.update.test A",
        "udp 198.51.100.53 gone.update.test A",
        "connect 198.51.100.13 8080",
        "connect 198.51.100.14 8080",
        "connect 198.51.100.10 8080",
        "connect 198.51.100.11 8080",
        "udpconn 198.51.100.12 9000",
        "udpsend before",
        &format!("waitfile {go_s}"),
        "udpsend after",
        "connect 198.51.100.13 8080",
        "connect 198.51.100.14 8080",
        "connect 198.51.100.10 8080",
        "connect 198.51.100.11 8080",
        "sendto 198.51.100.12 9000 fresh",
    ];
    let mut argv = vec!["python3", "-c", CLIENT];
    argv.extend(ops.iter().flat_map(|op| op.split_whitespace()));
    let held = Spawned::start(&mut exec(&world, &sock, &name, &argv))?;
    // Its datagram arrived: it holds the connected socket and waits on the go-file.
    if let Err(e) = udp.wait_payload("before", WAIT) {
        bail!("{e:#}\nthe client: {}", held.finish(WAIT)?);
    }

    // The loop runs before, during and after the update.
    let stop = world.path("stop", "file");
    let stop_s = stop.display().to_string();
    let mut looping = Spawned::start(&mut exec(
        &world,
        &sock,
        &name,
        &["python3", "-c", LOOP, &stop_s],
    ))?;
    looping.wait_line("Y EPERM", WAIT)?;

    // Refused updates change nothing.
    let dns_changed = world.manifest("upd", &format!("{NEW}min_ttl = 7\n"))?;
    let out = update(&world, &sock, &name, &dns_changed)?;
    assert_eq!(out.code(), 7, "{out}");
    assert!(
        out.stderr.contains("recreate the bottle to change [dns]"),
        "{out}"
    );
    let bad = world.manifest("upd", "[[egress.allow]]\ncidr = \"198.51.100.300/32\"\n")?;
    let out = update(&world, &sock, &name, &bad)?;
    assert_eq!(out.code(), 1, "{out}");
    assert!(out.stderr.contains(":7:"), "located: {out}");
    let out = update(&world, &sock, "nope", &new)?;
    assert_eq!(out.code(), 4, "{out}");
    looping.wait_line("Y EPERM", WAIT)?;

    // The update, while the loop connects.
    let out = update(&world, &sock, &name, &new)?;
    assert_eq!(out.code(), 0, "{out}");
    assert!(
        out.stdout.contains(&format!("{name} generation 0 -> 1")),
        "{out}"
    );
    assert!(out.stdout.contains("1 learned addresses carried"), "{out}");
    // The old generation's slot was emptied before the update answered; the new one holds
    // the new prefix and the carried address.
    assert_eq!(trie_len(&name, "cork_rules_v4")?, 0);
    assert_eq!(trie_len(&name, "cork_rules_v4_1")?, 2);
    looping.wait_line("Y ok", WAIT)?;
    looping.wait_line("X EPERM", WAIT)?;
    std::fs::write(&stop, "")?;
    let loop_out = looping.finish(WAIT)?;
    let gens: Vec<u8> = loop_out
        .stdout
        .lines()
        .skip(1)
        .map(generation_of)
        .collect::<Result<_>>()?;
    let first_new = gens
        .iter()
        .position(|&g| g == 1)
        .context("never switched")?;
    assert!(first_new > 0, "never saw the old policy: {loop_out}");
    assert!(
        gens[first_new..].iter().all(|&g| g == 1),
        "a connect saw the old policy after one saw the new: {loop_out}"
    );

    std::fs::write(&go, "")?;
    let out = held.finish(WAIT)?;
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        [
            "NOERROR 198.51.100.13 from=198.51.100.53",
            "NOERROR 198.51.100.14 from=198.51.100.53",
            "ok",
            "ok",
            "ok",
            "EPERM",
            "ok",
            "ok",
            "go",
            "ok",
            "ok",
            "EPERM",
            "EPERM",
            "ok",
            "EPERM",
        ],
        "{out}"
    );
    udp.wait_payload("after", WAIT)?;
    assert!(
        !udp.payloads().iter().any(|p| p == "fresh"),
        "{:?}",
        udp.payloads()
    );
    assert_eq!(svc.peers().len(), 2, "learned address kept");
    assert_eq!(gone.peers().len(), 1, "dropped name's address refused");
    assert!(!x.peers().is_empty() && !y.peers().is_empty());

    // Events name the rule of the generation that judged them.
    let digest = sha256_hex(&new)?;
    Audit::wait_for(
        &audit,
        json!({"layer": "cork", "event": "policy_updated", "old_generation": 0,
            "new_generation": 1, "learned_carried": 1, "manifest_sha256": digest}),
        WAIT,
    )?;
    Audit::wait_for(
        &audit,
        json!({"hook": "connect4", "dst": "198.51.100.11", "verdict": "allow",
            "rule": "egress.allow[0]"}),
        WAIT,
    )?;
    Audit::wait_for(
        &audit,
        json!({"hook": "connect4", "dst": "198.51.100.10", "verdict": "allow",
            "rule": "egress.allow[0]"}),
        WAIT,
    )?;
    Audit::wait_for(
        &audit,
        json!({"hook": "connect4", "dst": "198.51.100.13", "verdict": "allow",
            "rule": "egress.allow[2]", "domain": "svc.update.test"}),
        WAIT,
    )?;
    Audit::wait_for(
        &audit,
        json!({"hook": "connect4", "dst": "198.51.100.13", "verdict": "allow",
            "rule": "egress.allow[1]", "domain": "svc.update.test"}),
        WAIT,
    )?;

    let out = cork_out(&world, &["bottle", "ls", "--socket", &sock])?;
    assert_eq!(out.code(), 0, "{out}");
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with(&name))
        .context("bottle listed")?;
    assert_eq!(
        row.split_whitespace().nth(2),
        Some("1"),
        "generation: {out}"
    );

    let out = cork_out(&world, &["bottle", "rm", &name, "--socket", &sock])?;
    assert_eq!(out.code(), 0, "{out}");
    let out = daemon.stop()?;
    assert_eq!(out.code(), 0, "{out}");
    Ok(())
}
