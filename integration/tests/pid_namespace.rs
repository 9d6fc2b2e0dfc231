//! A bottle is a PID namespace of its own: from inside, `/proc` lists only the bottle's
//! processes; `cork run` and everything else outside can be neither signalled nor traced,
//! and neither can cork's init (PID 1, a copy of the agent's memory); signals sent to
//! `cork run` still reach CMD, CMD's status is still cork's, and orphans are reaped.

use std::time::Duration;

use anyhow::Result;
use cork_integration::cork::{cork_bin, run_args};
use cork_integration::process::Spawned;
use cork_integration::{Audit, Side, World};
use nix::sys::signal::{Signal, kill};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn python(script: &str) -> Vec<String> {
    ["/usr/bin/python3", "-c", script]
        .map(String::from)
        .to_vec()
}

#[test]
fn the_bottle_sees_only_its_own_processes() -> Result<()> {
    let world = World::new("the_bottle_sees_only_its_own_processes")?;
    let script = "import os\n\
                  me = open('/proc/self/cgroup').read()\n\
                  for p in sorted(int(d) for d in os.listdir('/proc') if d.isdigit()):\n\
                  \x20   stat = open(f'/proc/{p}/stat').read()\n\
                  \x20   comm = stat[stat.index('(') + 1:stat.rindex(')')]\n\
                  \x20   same = open(f'/proc/{p}/cgroup').read() == me\n\
                  \x20   print(p, comm, 'bottle' if same else 'elsewhere')\n";
    let (out, _audit) = world.run_argv("a", "", &python(script))?;
    // PID 1 is cork's init, 2 is CMD; nothing of the host (not cork run, not the test).
    assert_eq!(
        out.lines(),
        ["1 cork-init bottle", "2 python3 bottle"],
        "{out}"
    );
    Ok(())
}

/// `cork run … -- ARGV` started by a shell that exports its own pid (which becomes cork's
/// by exec) as `CORK_PID`, so CMD knows what to aim at.
fn cork_run_telling_its_pid(
    world: &World,
    label: &str,
    user: Option<&str>,
    argv: &[String],
) -> Result<std::process::Command> {
    let manifest = world.manifest(label, "")?;
    let mut cork_argv = run_args(&manifest, &world.audit_path_for(label), argv);
    if let Some(u) = user {
        // `run --user U --manifest …`: the flag goes right after the verb.
        cork_argv.splice(1..1, ["--user".to_owned(), u.to_owned()]);
    }
    let mut cmd = world.command(Side::Bottle, "sh");
    cmd.args(["-c", "CORK_PID=$$ exec \"$@\"", "sh"])
        .arg(cork_bin()?)
        .args(cork_argv);
    Ok(cmd)
}

/// Tries, from inside the bottle, to kill, read and trace `cork run` and the init.
const REACH_OUT: &str = r#"
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
PTRACE_ATTACH = 16
cork = int(os.environ["CORK_PID"])

def attach(pid):
    if libc.ptrace(PTRACE_ATTACH, pid, None, None) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))

def attempt(what, f):
    try:
        f()
        print(what, "ok")
    except OSError as e:
        print(what, errno.errorcode[e.errno])

attempt("kill cork", lambda: os.kill(cork, 9))
attempt("environ cork", lambda: open(f"/proc/{cork}/environ", "rb").read())
attempt("ptrace cork", lambda: attach(cork))
print("parent", os.getppid())
attempt("kill parent", lambda: os.kill(os.getppid(), 9))
attempt("environ init", lambda: open("/proc/1/environ", "rb").read())
attempt("mem init", lambda: open("/proc/1/mem", "rb").read(1))
attempt("ptrace init", lambda: attach(1))
print("init", open("/proc/1/comm").read().strip())
raise SystemExit(7)
"#;

#[test]
fn the_bottle_can_neither_kill_nor_trace_cork_or_its_init() -> Result<()> {
    let world = World::new("the_bottle_can_neither_kill_nor_trace_cork_or_its_init")?;
    for (label, user) in [("root", None), ("nobody", Some("65534:65534"))] {
        let mut cmd = cork_run_telling_its_pid(&world, label, user, &python(REACH_OUT))?;
        // A secret cork removes from CMD's environment: the init, a copy of cork that
        // never execs, still holds it in its own environment block.
        cmd.env("GITHUB_TOKEN", "cork-test-not-a-real-token");
        let out = world.run(&mut cmd)?;
        // cork lived to report CMD's own status.
        assert_eq!(out.code(), 7, "{label}: {out}");
        assert_eq!(
            out.lines(),
            [
                // cork's pid names nothing in the bottle's namespace.
                "kill cork ESRCH",
                "environ cork ENOENT",
                "ptrace cork ESRCH",
                // The init is PID 1: the kernel drops a SIGKILL sent to it from inside.
                "parent 1",
                "kill parent ok",
                // Not dumpable, and CMD has no CAP_SYS_PTRACE.
                "environ init EACCES",
                "mem init EACCES",
                "ptrace init EPERM",
                "init cork-init",
            ],
            "{label}: {out}"
        );
        let audit = Audit::read(&world.audit_path_for(label))?;
        audit.expect(json!({"event": "finished", "detail": "command exited with status 7"}))?;
    }
    Ok(())
}

/// A CMD that reports each stop signal it gets and exits 3 on SIGTERM. It writes with
/// `os.write`, not `print`: a signal that arrives while a `print` still holds stdout's
/// buffer makes the handler's `print` a reentrant call, which python refuses.
const REPORTER: &str = r#"
import os, signal, sys
def report(sig, _):
    os.write(1, b"got %d\n" % sig)
    if sig == signal.SIGTERM:
        sys.exit(3)
for s in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM):
    signal.signal(s, report)
os.write(1, b"ready\n")
while True:
    signal.pause()
"#;

#[test]
fn signals_to_cork_reach_cmd_through_the_init() -> Result<()> {
    let world = World::new("signals_to_cork_reach_cmd_through_the_init")?;
    let m = world.manifest("a", "")?;
    let mut cork = Spawned::start(&mut world.cork_run(&m, "a", &python(REPORTER)))?;
    cork.wait_line("ready", WAIT)?;
    for sig in [Signal::SIGHUP, Signal::SIGINT, Signal::SIGQUIT] {
        kill(cork.pid(), sig)?;
        cork.wait_line(&format!("got {}", sig as i32), WAIT)?;
    }
    kill(cork.pid(), Signal::SIGTERM)?;
    let out = cork.finish(WAIT)?;
    assert_eq!(out.code(), 3, "{out}");

    // A CMD with no handler at all still dies of SIGTERM: it is not PID 1, which would
    // ignore it.
    let argv = ["sh", "-c", "echo ready; exec sleep 600"].map(String::from);
    let mut cork = Spawned::start(&mut world.cork_run(&m, "a", &argv))?;
    cork.wait_line("ready", WAIT)?;
    // `ready` comes before the exec: wait until sleep is what runs.
    wait_for_comm(&world, "a", "sleep")?;
    kill(cork.pid(), Signal::SIGTERM)?;
    let out = cork.finish(WAIT)?;
    assert_eq!(out.code(), 128 + 15, "{out}");
    Ok(())
}

/// Waits until a process of bottle `label` has the name `comm` (the host's view).
fn wait_for_comm(world: &World, label: &str, comm: &str) -> Result<()> {
    let prefix = format!("{}-", world.bottle_name(label));
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let found = cork_integration::host::cork_cgroups(&prefix)
            .iter()
            .filter_map(|cg| std::fs::read_to_string(cg.join("cgroup.procs")).ok())
            .flat_map(|procs| procs.lines().map(str::to_owned).collect::<Vec<_>>())
            .any(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
            });
        if found {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no {comm} in bottle {label}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn orphans_in_the_bottle_are_reaped() -> Result<()> {
    let world = World::new("orphans_in_the_bottle_are_reaped")?;
    // The middle process forks the orphan and exits at once: the orphan, a zombie or about
    // to be one, goes to the namespace's init, which must wait for it or it stays a zombie.
    let script = r#"
import os, time
r, w = os.pipe()
middle = os.fork()
if middle == 0:
    orphan = os.fork()
    if orphan == 0:
        os._exit(0)
    os.write(w, b"%d" % orphan)
    os._exit(0)
os.close(w)
orphan = int(os.read(r, 32))
os.waitpid(middle, 0)
deadline = time.monotonic() + 20
while os.path.exists(f"/proc/{orphan}"):
    if time.monotonic() > deadline:
        print("not reaped:", open(f"/proc/{orphan}/stat").read())
        raise SystemExit(1)
    time.sleep(0.02)
print("reaped")
"#;
    let (out, _audit) = world.run_argv("a", "", &python(script))?;
    assert_eq!(out.lines(), ["reaped"], "{out}");
    Ok(())
}
