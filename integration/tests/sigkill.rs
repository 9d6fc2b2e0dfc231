//! Agent crash is not an open door: after `cork run` is SIGKILLed, its leftover bottle
//! processes stay denied; `cork clean` then kills them and removes cgroup, pins and CA
//! bundle.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use cork_integration::process::{Spawned, shell_quote};
use cork_integration::{Probe, Side, World, hand_out, host};

/// Lines of the loop's result file (bounded polling on a file is the readiness signal).
fn wait_lines(path: &Path, at_least: usize, timeout: Duration) -> Result<Vec<String>> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        // Only complete lines count: the writer may be mid-line.
        let lines: Vec<String> = text
            .split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .map(|l| l.trim().to_owned())
            .collect();
        if lines.len() >= at_least {
            return Ok(lines);
        }
        if Instant::now() > deadline {
            bail!(
                "{} has {} lines, wanted {at_least}: {lines:?}",
                path.display(),
                lines.len()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// `cork clean` removes every stale bottle on the host, the other test's too: the tests
/// of this file take turns.
static CLEANING: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn sigkilled_cork_leaves_bottle_denied_and_cork_clean_removes_it() -> Result<()> {
    let _turn = CLEANING.lock().unwrap_or_else(|p| p.into_inner());
    let world = World::new("sigkilled_cork_leaves_bottle_denied_and_cork_clean_removes_it")?;
    let srv = world.tcp_server(Side::Internet, "198.51.100.11:8002")?;
    let results = world.dir().join("loop.txt");
    let lp = Probe::new().connect_loop(&results.display().to_string(), &srv.ip(), 8002, 120)?;
    let line: Vec<String> = lp.argv().iter().map(|a| shell_quote(a)).collect();
    let argv = vec![
        "sh".into(),
        "-c".into(),
        format!("{} & echo started; wait", line.join(" ")),
    ];
    // A domain rule: the bottle gets an inspecting proxy and a CA bundle on disk too.
    let m = world.manifest(
        "a",
        "[[egress.allow]]\ndomain = \"api.example.test\"\n\n[dns]\nupstream = [\"198.51.100.53\"]\n",
    )?;
    let mut cork = Spawned::start(&mut world.cork_run(&m, "a", &argv))?;
    cork.wait_line("started", Duration::from_secs(30))?;
    wait_lines(&results, 2, Duration::from_secs(30))?;

    let prefix = format!("{}-", world.bottle_name("a"));
    let cgroups = host::cork_cgroups(&prefix);
    assert_eq!(cgroups.len(), 1, "{cgroups:?}");
    let members: Vec<i32> = std::fs::read_to_string(cgroups[0].join("cgroup.procs"))?
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert!(!members.is_empty());
    let bundle_dir = std::path::Path::new("/run/cork").join(cgroups[0].file_name().unwrap());
    assert!(bundle_dir.join("ca-bundle.pem").exists(), "{bundle_dir:?}");

    cork.kill()?;
    let before = wait_lines(&results, 1, Duration::from_secs(1))?.len();
    let after = wait_lines(&results, before + 5, Duration::from_secs(30))?;
    for l in &after[before..] {
        assert!(
            l.ends_with(" EPERM"),
            "denied after cork died: {l} (all: {after:?})"
        );
    }
    assert!(srv.peers().is_empty(), "{:?}", srv.peers());
    assert!(
        members.iter().any(|&p| alive(p)),
        "the leftover is still running before clean"
    );

    let clean = world.run(world.cork(["clean"]))?;
    assert_eq!(clean.code(), 0, "{clean}");
    assert!(
        clean.stdout.contains(&prefix) || clean.stderr.contains(&prefix),
        "reports what it removed: {clean}"
    );
    assert!(
        host::cork_cgroups(&prefix).is_empty(),
        "{:?}",
        host::cork_cgroups(&prefix)
    );
    assert!(
        host::cork_pins(&prefix).is_empty(),
        "{:?}",
        host::cork_pins(&prefix)
    );
    assert!(
        !bundle_dir.exists(),
        "cork clean removes the CA bundle: {bundle_dir:?}"
    );
    for p in members {
        assert!(!alive(p), "leftover {p} still alive after cork clean");
    }
    Ok(())
}

/// `cork clean` seals the cgroup it removes, as a normal teardown does: a socket the
/// SIGKILLed agent's bottle handed out cannot connect once the bottle is cleaned away.
#[test]
fn cork_clean_seals_what_it_removes() -> Result<()> {
    let _turn = CLEANING.lock().unwrap_or_else(|p| p.into_inner());
    let world = World::new("cork_clean_seals_what_it_removes")?;
    let server = world.tcp_server(Side::Internet, &hand_out::TARGET.to_string())?;
    let mut receiver = hand_out::Receiver::start(&world)?;
    let argv = hand_out::bottle_argv(&receiver.path, true);
    let mut cork = Spawned::start(&mut world.cork_run(&receiver.manifest(&world)?, "a", &argv))?;
    cork.wait_line("handed", Duration::from_secs(60))?;
    receiver.wait_received(Duration::from_secs(60))?;
    cork.kill()?;

    let clean = world.run(world.cork(["clean"]))?;
    assert_eq!(clean.code(), 0, "{clean}");
    let prefix = format!("{}-", world.bottle_name("a"));
    assert!(host::cork_cgroups(&prefix).is_empty(), "cleaned away");
    receiver.assert_connect_stopped(&world, Duration::from_secs(60))?;
    assert!(server.peers().is_empty(), "{:?}", server.peers());
    Ok(())
}
