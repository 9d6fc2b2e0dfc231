//! `cork daemon` and its client verbs end to end: standing bottles created, listed, shown
//! and removed over the control socket; a standing bottle enforces (a process moved into
//! its cgroup gets the manifest's verdicts); located manifest errors and typed exit
//! statuses; a second daemon refused by the lock; a client with no daemon told so at
//! once; a caller inside a bottle refused; SIGTERM tears the bottles down.
//!
//! One test function: the daemon lock is host-wide, so its steps run in order.

use std::time::Duration;

use anyhow::{Context, Result};
use cork_integration::daemon::create;
use cork_integration::process::Spawned;
use cork_integration::{Side, World};

/// The `cgroup.procs` of standing bottle `name`, from `cork bottle show`.
fn cgroup_procs(world: &World, sock: &str, name: &str) -> Result<String> {
    let out = world.run(world.cork(["bottle", "show", name, "--socket", sock]))?;
    let info: serde_json::Value = serde_json::from_str(&out.stdout)?;
    Ok(info["cgroup_procs"]
        .as_str()
        .context("cgroup_procs")?
        .to_owned())
}

#[test]
fn a_daemon_holds_standing_bottles_behind_its_control_socket() -> Result<()> {
    let world = World::new("a_daemon_holds_standing_bottles")?;
    let allowed = world.tcp_server(Side::Internet, "198.51.100.10:8080")?;
    let denied = world.tcp_server(Side::Internet, "198.51.100.11:8080")?;
    let socket = world.path("cork", "sock");
    let audit = world.path("daemon-audit", "jsonl");
    let sock = socket.display().to_string();

    // No daemon yet: said at once.
    let out = world.run(world.cork(["bottle", "ls", "--socket", &sock]))?;
    assert_eq!(out.code(), 3, "{out}");
    assert!(out.stderr.contains("not running"), "{out}");

    // Test seams refuse a production boot: a lone seam names itself; the daemon honours
    // none, so even with the harness marker one is refused.
    let mut lone = world.cork(["daemon", "--socket", &sock]);
    lone.env_remove("CORK_TEST_HARNESS")
        .env("CORK_TEST_READER_DELAY_MS", "5");
    let out = world.run(&mut lone)?;
    assert_eq!(out.code(), 125, "{out}");
    assert!(
        out.stderr.contains("CORK_TEST_READER_DELAY_MS is set but"),
        "{out}"
    );
    let mut unknown = world.cork(["daemon", "--socket", &sock]);
    unknown
        .env("CORK_TEST_HARNESS", "1")
        .env("CORK_TEST_READER_DELAY_MS", "5");
    let out = world.run(&mut unknown)?;
    assert_eq!(out.code(), 125, "{out}");
    assert!(out.stderr.contains("unknown test seam"), "{out}");

    // A state directory of its own: its kill -9 below leaves state there, and no other
    // test's daemon should find it.
    let state = world.dir().join("state").display().to_string();
    let mut daemon = Spawned::start(&mut world.cork([
        "daemon",
        "--socket",
        &sock,
        "--audit-log",
        &audit.display().to_string(),
        "--state-dir",
        &state,
    ]))?;
    daemon.wait_line(
        &format!("cork daemon: serving on {sock}"),
        Duration::from_secs(30),
    )?;

    // A second daemon: refused by the lock, naming the first.
    let out = world.run(world.cork([
        "daemon",
        "--socket",
        &world.path("other", "sock").display().to_string(),
    ]))?;
    assert_eq!(out.code(), 125, "{out}");
    assert!(out.stderr.contains("another cork daemon holds"), "{out}");
    assert!(
        out.stderr.contains(&format!("pid {}", daemon.pid())),
        "{out}"
    );

    let manifest = world.manifest(
        "web",
        "[[egress.allow]]\ncidr = \"198.51.100.10/32\"\nports = [8080]\n",
    )?;
    let name = world.bottle_name("web");
    let out = create(&world, &sock, &manifest)?;
    assert_eq!(out.code(), 0, "{out}");
    assert!(out.stdout.starts_with(&name), "{out}");
    // The same name again: exists.
    let out = create(&world, &sock, &manifest)?;
    assert_eq!(out.code(), 5, "{out}");
    // A bad manifest: located, nothing created.
    let bad = world.manifest("bad", "[[egress.allow]]\ncidr = \"198.51.100.300/32\"\n")?;
    let out = create(&world, &sock, &bad)?;
    assert_eq!(out.code(), 1, "{out}");
    assert!(out.stderr.contains(":7:"), "located: {out}");

    let out = world.run(world.cork(["bottle", "ls", "--socket", &sock]))?;
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(
        out.stdout.lines().count(),
        2,
        "header and one bottle: {out}"
    );
    let out = world.run(world.cork(["bottle", "show", &name, "--socket", &sock]))?;
    assert_eq!(out.code(), 0, "{out}");
    let info: serde_json::Value = serde_json::from_str(&out.stdout)?;
    let procs = info["cgroup_procs"]
        .as_str()
        .context("cgroup_procs")?
        .to_owned();
    let out = world.run(world.cork(["bottle", "show", "nope", "--socket", &sock]))?;
    assert_eq!(out.code(), 4, "{out}");

    // The standing bottle enforces: a shell joins its cgroup, then connects.
    let script = format!(
        "echo $$ > {procs} && busybox nc -w 3 198.51.100.10 8080 </dev/null; \
         busybox nc -w 3 198.51.100.11 8080 </dev/null; echo done; \
         {} bottle ls --socket {sock}; echo ls_rc=$?",
        cork_integration::cork::cork_bin()?.display()
    );
    let out = world.run(world.command(Side::Bottle, "sh").args(["-c", &script]))?;
    assert!(
        out.stdout
            .contains("hello from Internet 198.51.100.10:8080"),
        "{out}"
    );
    assert!(!out.stdout.contains("198.51.100.11:8080"), "{out}");
    assert_eq!(allowed.peers().len(), 1, "{out}");
    assert!(denied.peers().is_empty(), "{out}");
    // From inside the bottle the control socket is out of reach: the bottle's
    // connect_unix program refuses the connect (the gate behind it would refuse too),
    // and says so in the audit log.
    assert!(
        out.stdout.contains("ls_rc=125"),
        "a bottled process reached the daemon: {out}"
    );
    assert!(out.stderr.contains("Operation not permitted"), "{out}");
    // (The daemon's reader drains the ring on a timer: wait for the record.)
    cork_integration::Audit::wait_for(
        &audit,
        serde_json::json!({"layer": "kernel", "hook": "connect_unix", "verdict": "deny",
            "dst": sock}),
        Duration::from_secs(10),
    )?;

    // The second wall: a bottle whose manifest lets it reach the socket (a non-default
    // path can be listed) gets through the kernel, and the daemon's gate refuses it —
    // root, but in a bottle's cgroup — with exit 6 and a `control_refused` event.
    let open = world.manifest("gate", &format!("[unix]\nallow = [\"{sock}\"]\n"))?;
    let out = create(&world, &sock, &open)?;
    assert_eq!(out.code(), 0, "{out}");
    let gate_procs = cgroup_procs(&world, &sock, &world.bottle_name("gate"))?;
    let script = format!(
        "echo $$ > {gate_procs} && {} bottle ls --socket {sock}; echo ls_rc=$?",
        cork_integration::cork::cork_bin()?.display()
    );
    let out = world.run(world.command(Side::Bottle, "sh").args(["-c", &script]))?;
    assert!(
        out.stdout.contains("ls_rc=6"),
        "the gate let a bottle in: {out}"
    );
    assert!(out.stderr.contains("runs inside bottle"), "{out}");
    cork_integration::Audit::wait_for(
        &audit,
        serde_json::json!({"layer": "cork", "event": "control_refused"}),
        Duration::from_secs(10),
    )?;
    let out = world.run(world.cork([
        "bottle",
        "rm",
        &world.bottle_name("gate"),
        "--socket",
        &sock,
    ]))?;
    assert_eq!(out.code(), 0, "{out}");

    // cork exec: a command started in the standing bottle, hardened as cork run's.
    let key = info["key"].as_str().context("key")?.to_owned();
    let out = world.run(world.cork([
        "exec",
        &name,
        "--socket",
        &sock,
        "--",
        "sh",
        "-c",
        "busybox nc -w 3 198.51.100.10 8080 </dev/null; busybox nc -w 3 198.51.100.11 8080 \
         </dev/null; cat /proc/self/cgroup; ls /proc | grep -c '^[0-9]'; exit 7",
    ]))?;
    assert_eq!(out.code(), 7, "CMD's status: {out}");
    assert!(
        out.stdout
            .contains("hello from Internet 198.51.100.10:8080"),
        "{out}"
    );
    assert!(!out.stdout.contains("198.51.100.11:8080"), "{out}");
    assert!(out.stdout.contains(&key), "in the bottle's cgroup: {out}");
    assert_eq!(allowed.peers().len(), 2, "{out}");
    assert!(denied.peers().is_empty(), "{out}");
    let out = world.run(world.cork(["exec", "nope", "--socket", &sock, "--", "true"]))?;
    assert_eq!(out.code(), 125, "{out}");
    assert!(out.stderr.contains("no bottle named"), "{out}");

    let out = world.run(world.cork(["bottle", "rm", &name, "--socket", &sock]))?;
    assert_eq!(out.code(), 0, "{out}");
    assert!(!std::path::Path::new(&procs).exists(), "cgroup removed");
    let out = world.run(world.cork(["bottle", "rm", &name, "--socket", &sock]))?;
    assert_eq!(out.code(), 4, "{out}");

    // A bottle left standing goes down with the daemon.
    let out = create(&world, &sock, &manifest)?;
    assert_eq!(out.code(), 0, "{out}");
    let procs = cgroup_procs(&world, &sock, &name)?;
    nix::sys::signal::kill(daemon.pid(), nix::sys::signal::Signal::SIGTERM)?;
    let out = daemon.finish(Duration::from_secs(30))?;
    assert_eq!(out.code(), 0, "{out}");
    assert!(
        !std::path::Path::new(&procs).exists(),
        "cgroup removed at shutdown"
    );
    assert!(!socket.exists(), "socket removed");

    // kill -9 of the daemon: its bottle stays fenced (pinned programs, default deny)
    // until `cork clean` (or a restarted daemon takes it back: daemon_restart.rs).
    let mut daemon =
        Spawned::start(&mut world.cork(["daemon", "--socket", &sock, "--state-dir", &state]))?;
    daemon.wait_line(
        &format!("cork daemon: serving on {sock}"),
        Duration::from_secs(30),
    )?;
    let out = create(&world, &sock, &manifest)?;
    assert_eq!(out.code(), 0, "{out}");
    let procs = cgroup_procs(&world, &sock, &name)?;
    daemon.kill()?;
    let script =
        format!("echo $$ > {procs} && busybox nc -w 3 198.51.100.11 8080 </dev/null; echo rc=$?");
    let out = world.run(world.command(Side::Bottle, "sh").args(["-c", &script]))?;
    assert!(
        out.stdout.contains("rc=1"),
        "still fenced without its daemon: {out}"
    );
    assert!(denied.peers().is_empty(), "{out}");
    let out = world.run(world.cork(["clean"]))?;
    assert_eq!(out.code(), 0, "{out}");
    assert!(
        !std::path::Path::new(&procs).exists(),
        "cork clean removed it: {out}"
    );
    Ok(())
}
