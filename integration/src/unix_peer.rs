//! Unix-domain sockets on both sides of a bottle (`unix_peer.py`): host services bound to
//! paths and abstract names, and a bottle-side client whose operations print one line each
//! ("ok ...", or an errno name such as "EPERM").

use std::time::Duration;

use anyhow::Result;

use crate::process::Spawned;
use crate::world::{Side, World};

/// The script, passed to `python3 -c`.
pub const SCRIPT: &str = include_str!("unix_peer.py");

/// How long a host service may take to bind.
const READY: Duration = Duration::from_secs(10);

/// Starts host services in the bottle netns, outside any bottle (abstract names live in a
/// network namespace: the bottle's processes share this one). `specs` are `stream:ADDR` or
/// `dgram:ADDR`, ADDR a path or `@name`. Returns once every socket is bound.
pub fn serve(world: &World, specs: &[String]) -> Result<Spawned> {
    let mut cmd = world.command(Side::Bottle, "python3");
    cmd.arg("-c").arg(SCRIPT).arg("serve").args(specs);
    let mut server = Spawned::start(&mut cmd)?;
    server.wait_line("ready", READY)?;
    Ok(server)
}

/// `python3 -c SCRIPT OP...`: the client's command line, for `cork run` or outside it.
pub fn client_argv(ops: &[String]) -> Vec<String> {
    let mut argv = vec!["python3".to_owned(), "-c".to_owned(), SCRIPT.to_owned()];
    argv.extend(ops.iter().cloned());
    argv
}
