//! Crash safety of `cork daemon`: SIGKILLed, its bottles stay fenced (default deny, DNS
//! and inspected flows fail closed, allowed flows still judged and their audit records
//! kept in the pinned ring buffer); started again on the same state directory, it takes
//! them back — same key, created time and generation in `cork bottle ls`, the records
//! written while it was down in its audit log, learned addresses still reachable without
//! asking DNS again, DNS and the inspecting proxy (with the CA the bottle already
//! trusts) serving again. A bottle whose state cannot be re-verified (its state file
//! truncated; its DNS port taken by someone else) is listed as fenced, with a `fenced`
//! event, never opened, and `cork bottle rm` still removes it.
//!
//! One test function; the daemon runs on a lock of its own (`CORK_TEST_DAEMON_LOCK`) and
//! a state directory in the world's temp dir.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cork_integration::dns_server::Zone;
use cork_integration::https_upstream::{TestCa, UpstreamConfig};
use cork_integration::process::{RunOutput, Spawned};
use cork_integration::{Audit, Side, World};
use nix::sys::signal::{Signal, kill};
use serde_json::{Value, json};

const CLIENT: &str = include_str!("../src/dns_client.py");
const WAIT: Duration = Duration::from_secs(30);

/// Holds a UDP port on 127.0.0.1 (argv[1]) until stdin closes.
const HOLD_PORT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
print("bound", flush=True)
sys.stdin.read()
"#;

/// The daemon of this test; SIGTERMed (then SIGKILLed) if the test ends early.
struct Daemon {
    proc: Option<Spawned>,
}

impl Daemon {
    fn start(world: &World, sock: &str, state: &Path, audit: &Path) -> Result<(Self, Duration)> {
        let mut cmd = world.cork([
            "daemon",
            "--socket",
            sock,
            "--state-dir",
            &state.display().to_string(),
            "--audit-log",
            &audit.display().to_string(),
        ]);
        cmd.env("CORK_TEST_DAEMON_LOCK", world.path("daemon", "lock"))
            .env("CORK_LOG", "info");
        let began = Instant::now();
        let mut proc = Spawned::start(&mut cmd)?;
        proc.wait_line(&format!("cork daemon: serving on {sock}"), WAIT)?;
        Ok((Daemon { proc: Some(proc) }, began.elapsed()))
    }

    /// SIGKILL: no teardown of any kind.
    fn kill9(&mut self) -> Result<()> {
        if let Some(mut p) = self.proc.take() {
            p.kill()?;
        }
        Ok(())
    }

    /// SIGTERM, and the daemon's exit.
    fn stop(&mut self) -> Result<RunOutput> {
        let p = self.proc.take().context("daemon already gone")?;
        kill(p.pid(), Signal::SIGTERM)?;
        p.finish(WAIT)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(p) = self.proc.take() {
            // The test ended early: what the daemon said helps to see why.
            let _ = kill(p.pid(), Signal::SIGTERM);
            match p.finish(WAIT) {
                Ok(out) => eprintln!("daemon_restart: the daemon's output:\n{out}"),
                Err(e) => eprintln!("daemon_restart: stopping the daemon: {e:#}"),
            }
        }
    }
}

fn cork(world: &World, args: &[&str]) -> Result<RunOutput> {
    world.run(world.cork(args))
}

/// `cork bottle ls` as rows of (name, key, generation, created, state).
fn ls(world: &World, sock: &str) -> Result<Vec<[String; 5]>> {
    let out = cork(world, &["bottle", "ls", "--socket", sock])?;
    anyhow::ensure!(out.code() == 0, "{out}");
    out.stdout
        .lines()
        .skip(1)
        .map(|l| {
            let mut cols = l.split_whitespace();
            let mut next = || cols.next().map(str::to_owned).context("column");
            let row = [next()?, next()?, next()?, next()?, String::new()];
            let state = cols.collect::<Vec<_>>().join(" ");
            Ok([
                row[0].clone(),
                row[1].clone(),
                row[2].clone(),
                row[3].clone(),
                state,
            ])
        })
        .collect()
}

fn row<'a>(rows: &'a [[String; 5]], name: &str) -> Result<&'a [String; 5]> {
    rows.iter()
        .find(|r| r[0] == name)
        .with_context(|| format!("{name} not listed: {rows:?}"))
}

/// `cork exec NAME -- python3 dns_client.py OPS...`: one output line per op.
fn exec_client(world: &World, sock: &str, name: &str, ops: &[&str]) -> Result<RunOutput> {
    let mut argv = vec![
        "exec", name, "--socket", sock, "--", "python3", "-c", CLIENT,
    ];
    argv.extend(ops.iter().flat_map(|op| op.split_whitespace()));
    world.run(world.cork(argv))
}

/// A shell that joins the cgroup `procs` (as a process the bottle forked would be in it),
/// then runs the DNS client with `ops`.
fn joined_client(world: &World, procs: &str, ops: &[&str]) -> Result<RunOutput> {
    let script = format!(
        "echo $$ > {procs} && exec python3 -c \"$CLIENT\" {}",
        ops.join(" ")
    );
    let mut cmd = world.command(Side::Bottle, "sh");
    cmd.args(["-c", &script]).env("CLIENT", CLIENT);
    world.run(cmd)
}

fn saved(state: &Path, name: &str) -> PathBuf {
    state.join("bottles").join(format!("{name}.json"))
}

#[test]
fn a_restarted_daemon_takes_its_bottles_back() -> Result<()> {
    let world = World::new("a_restarted_daemon_takes_its_bottles_back")?;
    let zone = Zone::new().a("svc.restart.test", "198.51.100.13", 300).a(
        "api.restart.test",
        "198.51.100.14",
        300,
    );
    let _dns = world.dns_server("198.51.100.53:53", zone)?;
    let allowed = world.tcp_server(Side::Internet, "198.51.100.10:8080")?;
    let gap = world.tcp_server(Side::Internet, "198.51.100.10:8081")?;
    let denied = world.tcp_server(Side::Internet, "198.51.100.11:8080")?;
    let svc = world.tcp_server(Side::Internet, "198.51.100.13:8080")?;
    let ca = TestCa::new()?;
    let ca_path = world.path("upstream-ca", "pem");
    ca.write_pem(&ca_path)?;
    let api = world.https_upstream(
        &ca,
        UpstreamConfig::new()
            .name("api.restart.test")
            .tls("198.51.100.14:443".parse()?),
    )?;

    let sock = world.path("cork", "sock").display().to_string();
    let state = world.dir().join("state");
    let audit1 = world.path("audit-first", "jsonl");
    let audit2 = world.path("audit-second", "jsonl");
    let (mut daemon, first_start) = Daemon::start(&world, &sock, &state, &audit1)?;
    eprintln!("daemon_restart: first start to serving: {first_start:?}");

    // The bottle that comes back, and two that will not.
    let manifest = world.manifest(
        "rs",
        &format!(
            "[[egress.allow]]\ncidr = \"198.51.100.10/32\"\nports = [8080, 8081]\n\n\
             [[egress.allow]]\ndomain = \"svc.restart.test\"\nports = [8080]\n\n\
             [[egress.allow]]\ndomain = \"api.restart.test\"\nports = [443]\n\n\
             [dns]\nupstream = [\"198.51.100.53\"]\n\n[tls]\nupstream_ca = [\"{}\"]\n",
            ca_path.display()
        ),
    )?;
    let plain = "[[egress.allow]]\ncidr = \"198.51.100.10/32\"\nports = [8080]\n";
    let (name, corrupt, taken) = (
        world.bottle_name("rs"),
        world.bottle_name("corrupt"),
        world.bottle_name("taken"),
    );
    for m in [
        manifest,
        world.manifest("corrupt", plain)?,
        world.manifest("taken", plain)?,
    ] {
        let out = cork(
            &world,
            &[
                "bottle",
                "create",
                "--socket",
                &sock,
                "-m",
                &m.display().to_string(),
            ],
        )?;
        assert_eq!(out.code(), 0, "{out}");
    }
    let before = ls(&world, &sock)?;
    let listed = row(&before, &name)?.clone();
    assert_eq!(listed[4], "serving", "{before:?}");
    let show = cork(&world, &["bottle", "show", &name, "--socket", &sock])?;
    let info: Value = serde_json::from_str(&show.stdout)?;
    let procs = info["cgroup_procs"].as_str().context("procs")?.to_owned();
    let show = cork(&world, &["bottle", "show", &taken, "--socket", &sock])?;
    let taken_info: Value = serde_json::from_str(&show.stdout)?;
    let taken_procs = taken_info["cgroup_procs"]
        .as_str()
        .context("procs")?
        .to_owned();
    let taken_cgroup = Path::new(&taken_procs)
        .parent()
        .context("cgroup dir")?
        .to_owned();

    // Root-only state, one file per bottle.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| -> Result<u32> { Ok(std::fs::metadata(p)?.permissions().mode() & 0o777) };
    assert_eq!(mode(&state)?, 0o700);
    assert_eq!(mode(&saved(&state, &name))?, 0o600);
    let saved_text = std::fs::read_to_string(saved(&state, &name))?;
    assert!(saved_text.contains("PRIVATE KEY"), "the CA key is kept");

    // Before the crash: the name resolves, everything judged as the manifest says, and
    // the inspected HTTPS flow trusts the bottle CA.
    let out = exec_client(
        &world,
        &sock,
        &name,
        &[
            "udp 198.51.100.53 svc.restart.test A",
            "connect 198.51.100.13 8080",
            "connect 198.51.100.10 8080",
            "connect 198.51.100.11 8080",
        ],
    )?;
    assert_eq!(
        out.lines(),
        [
            "NOERROR 198.51.100.13 from=198.51.100.53",
            "ok",
            "ok",
            "EPERM"
        ],
        "{out}"
    );
    let curl = |path: &str| {
        let script = format!(
            "curl -sS --max-time 10 -o /dev/null -w 'status=%{{http_code}}\\n' \
             https://api.restart.test/{path}; echo rc=$?"
        );
        cork(
            &world,
            &["exec", &name, "--socket", &sock, "--", "sh", "-c", &script],
        )
    };
    let out = curl("before")?;
    assert!(out.stdout.contains("status=200"), "{out}");

    // kill -9. Meanwhile: the state of one bottle is truncated, another's DNS port is
    // taken by someone else.
    let taken_port = {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(saved(&state, &taken))?)?;
        v["dns_port"].as_u64().context("dns_port")?.to_string()
    };
    daemon.kill9()?;
    let whole = std::fs::read(saved(&state, &corrupt))?;
    std::fs::write(saved(&state, &corrupt), &whole[..whole.len() / 2])?;
    let mut holder_cmd = world.command(Side::Bottle, "python3");
    holder_cmd
        .args(["-c", HOLD_PORT, &taken_port])
        .stdin(std::process::Stdio::piped());
    let mut holder = Spawned::start(&mut holder_cmd)?;
    holder.wait_line("bound", WAIT)?;

    // While no daemon runs: still fenced. Denied stays denied, DNS and the inspected flow
    // fail closed, and an allowed connect is judged — its record waits in the ring.
    let out = joined_client(
        &world,
        &procs,
        &[
            "connect 198.51.100.10 8081",
            "connect 198.51.100.11 8080",
            "udp 198.51.100.53 svc.restart.test A",
            "connect 198.51.100.14 443",
        ],
    )?;
    let lines = out.lines();
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(lines[..2], ["ok", "EPERM"], "{out}");
    assert!(!lines[2].starts_with("NOERROR"), "DNS answered: {out}");
    assert_ne!(lines[3], "ok", "the inspected flow got through: {out}");
    assert_eq!(gap.peers().len(), 1, "{out}");
    assert!(denied.peers().is_empty(), "{out}");

    // Started again on the same state.
    let (mut daemon, restart) = Daemon::start(&world, &sock, &state, &audit2)?;
    eprintln!("daemon_restart: restart to serving, 1 bottle taken back, 2 fenced: {restart:?}");
    let after = ls(&world, &sock)?;
    let back = row(&after, &name)?;
    assert_eq!(
        back[..4],
        listed[..4],
        "same key, generation, created: {after:?}"
    );
    assert_eq!(back[4], "serving", "{after:?}");
    Audit::wait_for(
        &audit2,
        json!({"layer": "cork", "event": "adopted", "bottle": name}),
        WAIT,
    )?;
    // The record written while no daemon ran, read by the new one.
    Audit::wait_for(
        &audit2,
        json!({"layer": "kernel", "hook": "connect4", "verdict": "allow",
            "dst": "198.51.100.10", "dport": 8081, "bottle": name}),
        WAIT,
    )?;

    // Serving as before: verdicts, the learned address without asking DNS again, DNS,
    // and inspected HTTPS with the CA the bottle was given at creation.
    let out = exec_client(
        &world,
        &sock,
        &name,
        &[
            "connect 198.51.100.13 8080",
            "connect 198.51.100.10 8080",
            "connect 198.51.100.11 8080",
            "udp 198.51.100.53 svc.restart.test A",
        ],
    )?;
    assert_eq!(
        out.lines(),
        [
            "ok",
            "ok",
            "EPERM",
            "NOERROR 198.51.100.13 from=198.51.100.53"
        ],
        "{out}"
    );
    assert_eq!(svc.peers().len(), 2, "learned address reachable again");
    assert_eq!(allowed.peers().len(), 2);
    assert!(denied.peers().is_empty());
    let out = curl("after")?;
    assert!(out.stdout.contains("status=200"), "{out}");
    assert!(
        api.log().requests().iter().any(|r| r.path() == "/after"),
        "the upstream saw the request"
    );

    // The two that could not be verified: listed as fenced, reported, never opened.
    let fenced = row(&after, &corrupt)?;
    assert!(
        fenced[4].starts_with("fenced:") && fenced[4].contains("corrupt"),
        "{after:?}"
    );
    let fenced = row(&after, &taken)?;
    assert!(
        fenced[4].starts_with("fenced:")
            && fenced[4].contains(&format!("DNS proxy port {taken_port}")),
        "{after:?}"
    );
    for b in [&corrupt, &taken] {
        Audit::wait_for(
            &audit2,
            json!({"layer": "cork", "event": "fenced", "bottle": b}),
            WAIT,
        )?;
    }
    let out = joined_client(
        &world,
        &taken_procs,
        &["connect 198.51.100.11 8080", "connect 198.51.100.10 8080"],
    )?;
    assert_eq!(out.lines(), ["EPERM", "ok"], "{out}");
    assert!(denied.peers().is_empty());
    let out = cork(&world, &["exec", &taken, "--socket", &sock, "--", "true"])?;
    assert_ne!(out.code(), 0, "exec into a fenced bottle: {out}");
    assert!(out.stderr.contains("fenced"), "{out}");
    drop(holder.take_stdin());
    holder.finish(WAIT)?;

    // Removal still works on fenced bottles, and on the one taken back.
    for b in [&corrupt, &taken, &name] {
        let out = cork(&world, &["bottle", "rm", b, "--socket", &sock])?;
        assert_eq!(out.code(), 0, "{out}");
        assert!(!saved(&state, b).exists(), "state of {b} removed");
    }
    assert!(!taken_cgroup.exists(), "the fenced bottle's cgroup is gone");
    assert!(ls(&world, &sock)?.is_empty());
    let out = daemon.stop()?;
    assert_eq!(out.code(), 0, "{out}");
    if std::fs::read_dir(state.join("bottles"))?.next().is_some() {
        bail!("state left behind");
    }
    Ok(())
}
