//! A `cork daemon` for one test: in the World's bottle netns, on a socket, audit log, state
//! directory and lock of the World's own (`CORK_TEST_DAEMON_LOCK`, so daemon tests never
//! contend for the host's one-daemon lock), started when its socket serves, and stopped
//! with SIGTERM however the test ends — so it tears its bottles down the way a real stop
//! does, before the World's drop SIGKILLs what is left.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::probe::Probe;
use crate::process::{RunOutput, Spawned};
use crate::world::World;

const START: Duration = Duration::from_secs(30);
const STOP: Duration = Duration::from_secs(30);

/// A running test daemon; SIGTERMed on drop.
pub struct TestDaemon {
    process: Option<Spawned>,
    pub socket: String,
    pub audit_log: PathBuf,
    pub state_dir: PathBuf,
}

impl TestDaemon {
    /// Starts `cork daemon` on `socket`, writing `audit_log`, with a fresh state directory.
    pub fn start(world: &World, socket: &str, audit_log: &Path) -> Result<Self> {
        Self::start_with(world, socket, audit_log, |_| {})
    }

    /// [`TestDaemon::start`], letting `adjust` add arguments or environment first.
    pub fn start_with(
        world: &World,
        socket: &str,
        audit_log: &Path,
        adjust: impl FnOnce(&mut std::process::Command),
    ) -> Result<Self> {
        Self::start_in(
            world,
            socket,
            audit_log,
            &world.path("daemon-state", "d"),
            adjust,
        )
    }

    /// [`TestDaemon::start_with`] on state directory `state_dir` (another daemon's, to
    /// see a restart).
    pub fn start_in(
        world: &World,
        socket: &str,
        audit_log: &Path,
        state_dir: &Path,
        adjust: impl FnOnce(&mut std::process::Command),
    ) -> Result<Self> {
        let socket = socket.to_owned();
        let audit_log = audit_log.to_path_buf();
        let state_dir = state_dir.to_path_buf();
        let mut cmd = world.cork(["daemon", "--socket", socket.as_str()]);
        cmd.arg("--audit-log")
            .arg(&audit_log)
            .arg("--state-dir")
            .arg(&state_dir)
            .env("CORK_TEST_HARNESS", "1")
            .env("CORK_TEST_DAEMON_LOCK", world.path("daemon", "lock"));
        adjust(&mut cmd);
        let mut process = Spawned::start(&mut cmd)?;
        // Stopped on drop from here on, also when it never serves.
        let mut daemon = TestDaemon {
            process: None,
            socket,
            audit_log,
            state_dir,
        };
        let serving =
            process.wait_line(&format!("cork daemon: serving on {}", daemon.socket), START);
        daemon.process = Some(process);
        serving?;
        Ok(daemon)
    }

    /// The daemon's pid.
    pub fn pid(&self) -> Option<nix::unistd::Pid> {
        self.process.as_ref().map(Spawned::pid)
    }

    /// The audit log it writes.
    pub fn audit_log(&self) -> &Path {
        &self.audit_log
    }

    /// SIGKILL: the daemon dies without any teardown, as in a crash (its bottles stay,
    /// fenced, for the next daemon on the same state directory).
    pub fn kill9(mut self) -> Result<()> {
        if let Some(mut d) = self.process.take() {
            d.kill()?;
        }
        Ok(())
    }

    /// SIGTERM, then its exit.
    pub fn stop(mut self) -> Result<RunOutput> {
        let d = self.process.take().context("daemon already stopped")?;
        nix::sys::signal::kill(d.pid(), nix::sys::signal::Signal::SIGTERM)?;
        d.finish(STOP)
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(d) = self.process.take() {
            let _ = nix::sys::signal::kill(d.pid(), nix::sys::signal::Signal::SIGTERM);
            if let Err(e) = d.finish(STOP) {
                eprintln!("stopping the daemon: {e:#}");
            }
        }
    }
}

/// `cork bottle create --socket SOCK -m MANIFEST`, run to its end (any exit status).
pub fn create(world: &World, sock: &str, manifest: &Path) -> Result<RunOutput> {
    world.run(world.cork([
        "bottle".as_ref(),
        "create".as_ref(),
        "--socket".as_ref(),
        sock.as_ref(),
        "-m".as_ref(),
        manifest.as_os_str(),
    ]))
}

/// [`create`], which must succeed (an error with its output otherwise).
pub fn create_ok(world: &World, sock: &str, manifest: &Path) -> Result<()> {
    let out = create(world, sock, manifest)?;
    if out.code() != 0 {
        bail!("cork bottle create {} failed:\n{out}", manifest.display());
    }
    Ok(())
}

/// `cork exec NAME --socket SOCK --audit-log <fresh> -- ARGV...` as a command (not started).
pub fn exec(world: &World, sock: &str, name: &str, argv: &[&str]) -> std::process::Command {
    let exec_audit = world.path("exec-audit", "jsonl");
    let mut cmd = world.cork([
        "exec".as_ref(),
        name.as_ref(),
        "--socket".as_ref(),
        sock.as_ref(),
        "--audit-log".as_ref(),
        exec_audit.as_os_str(),
        "--".as_ref(),
    ]);
    cmd.args(argv);
    cmd
}

/// Runs `probe` under `cork exec` in bottle `name`; its lines (an error if it fails).
pub fn exec_probe(world: &World, sock: &str, name: &str, probe: &Probe) -> Result<Vec<String>> {
    let argv = probe.argv();
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = world.run(exec(world, sock, name, &argv))?;
    if out.code() != 0 {
        bail!("cork exec {name} failed:\n{out}");
    }
    Ok(out.lines().iter().map(|l| l.to_string()).collect())
}
