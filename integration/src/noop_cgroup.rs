//! The floor the benches measure cork against: a cgroup of the bench's own with cork-bpf's
//! no-op programs attached (one per hook a bottle uses, each letting everything through),
//! in which the same client runs in the same network namespace as the bottle. Named after
//! its world (`cork-<world id>-noop`), so a world's sweep removes it if a run dies, and
//! removed on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use cork_bpf::noop::NoopPrograms;

use crate::process::shell_quote;
use crate::world::{Side, World};

/// A cgroup with the no-op programs on it.
pub struct NoopCgroup {
    path: PathBuf,
    programs: Option<NoopPrograms>,
}

impl NoopCgroup {
    /// Creates the world's no-op cgroup and attaches the programs.
    pub fn create(world: &World) -> Result<Self> {
        let path = crate::host::cgroup2_mount()?.join(format!("cork-{}-noop", world.id()));
        std::fs::create_dir(&path).with_context(|| format!("mkdir {}", path.display()))?;
        let mut cg = NoopCgroup {
            path,
            programs: None,
        };
        cg.programs = Some(
            NoopPrograms::attach(&cg.path)
                .with_context(|| format!("attach the no-op programs to {}", cg.path.display()))?,
        );
        Ok(cg)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `argv` on `side` of the world, inside this cgroup (the shell moves itself in, then
    /// execs: every socket of the command is created in the cgroup).
    pub fn command(&self, world: &World, side: Side, argv: &[String]) -> Command {
        let quoted: Vec<String> = argv.iter().map(|a| shell_quote(a)).collect();
        let script = format!(
            "echo $$ > {} && exec {}",
            shell_quote(&self.path.join("cgroup.procs").display().to_string()),
            quoted.join(" ")
        );
        let mut cmd = world.command(side, "sh");
        cmd.arg("-c").arg(script);
        cmd
    }
}

impl Drop for NoopCgroup {
    fn drop(&mut self) {
        self.programs = None;
        if let Err(e) = crate::host::remove_cgroup(&self.path) {
            eprintln!("removing {}: {e:#}", self.path.display());
        }
    }
}
