//! A bottle's TCP socket handed out over an allowed unix socket to a process outside the
//! bottle (in the bottle's netns), which connects it only once told to — after the
//! bottle has ended. A socket runs the programs of the cgroup that made it, wherever it
//! goes; the ended bottle's seal (`cork_bpf::seal`) must drop its SYN.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::process::Spawned;
use crate::{Side, World};

/// Where the receiver connects the handed socket (a server there should see nothing).
pub const TARGET: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 10)),
    7200,
);

/// The bottle's side: hands a fresh TCP socket over the unix socket `argv[1]`, says
/// `handed`, then exits — or, with a third argument, waits to be killed.
const HAND_OUT: &str = r#"
import array, signal, socket, sys
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
u.connect(sys.argv[1])
u.sendmsg([b"s"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [t.fileno()]))])
u.recv(1)
print("handed", flush=True)
if len(sys.argv) > 2:
    signal.pause()
"#;

/// Outside the bottle: receives the socket, and once told (a line on stdin) connects it.
const RECEIVE_AND_CONNECT: &str = r#"
import array, select, socket, sys
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(sys.argv[1])
srv.listen(1)
print("listening", flush=True)
c, _ = srv.accept()
_, anc, _, _ = c.recvmsg(1, socket.CMSG_LEN(4))
fds = array.array("i")
fds.frombytes(anc[0][2][:4])
s = socket.socket(fileno=fds[0])
c.send(b"k")
print("received", flush=True)
sys.stdin.readline()
s.setblocking(False)
try:
    s.connect((sys.argv[2], int(sys.argv[3])))
except BlockingIOError:
    pass
print("connecting", flush=True)
select.select([], [s], [])
err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
print("connected" if err == 0 else "error %d" % err, flush=True)
"#;

/// `cork run`'s command for the bottle's side; `stay`: wait to be killed after handing.
pub fn bottle_argv(path: &str, stay: bool) -> Vec<String> {
    let mut v = vec!["python3".into(), "-c".into(), HAND_OUT.into(), path.into()];
    if stay {
        v.push("stay".into());
    }
    v
}

/// The receiving process, listening on its unix socket in the world's directory.
pub struct Receiver {
    pub path: String,
    process: Spawned,
    received: bool,
}

impl Receiver {
    pub fn start(world: &World) -> Result<Self> {
        let path = world.dir().join("hand-out.sock").display().to_string();
        let mut process = Spawned::start(
            world
                .command(Side::Bottle, "python3")
                .args(["-c", RECEIVE_AND_CONNECT, &path])
                .arg(TARGET.ip().to_string())
                .arg(TARGET.port().to_string())
                .stdin(std::process::Stdio::piped()),
        )?;
        process.wait_line("listening", Duration::from_secs(60))?;
        Ok(Receiver {
            path,
            process,
            received: false,
        })
    }

    /// A manifest that lets the bottle reach the receiver's unix socket, and nothing else.
    pub fn manifest(&self, world: &World) -> Result<std::path::PathBuf> {
        world.manifest("a", &format!("[unix]\nallow = [{:?}]\n", self.path))
    }

    /// Waits until the socket arrived (returns at once if it was seen already).
    pub fn wait_received(&mut self, timeout: Duration) -> Result<()> {
        if !self.received {
            self.process.wait_line("received", timeout)?;
            self.received = true;
        }
        Ok(())
    }

    /// Tells the receiver to connect, then waits until the kernel has retried the SYN
    /// twice without an answer; fails the moment the connect completes or errs.
    pub fn assert_connect_stopped(&mut self, world: &World, timeout: Duration) -> Result<()> {
        self.wait_received(timeout)?;
        let mut go = self.process.take_stdin().context("the receiver's stdin")?;
        go.write_all(b"go\n")?;
        self.process.wait_line("connecting", timeout)?;
        let deadline = Instant::now() + timeout;
        while syn_retries(world)? < 2 {
            let outcome =
                self.process
                    .wait_line_where("the outcome", Duration::from_millis(50), |l| {
                        l.starts_with("connected") || l.starts_with("error")
                    });
            if let Ok(line) = outcome {
                bail!("the handed-out socket's connect was not stopped: {line}");
            }
            ensure!(
                Instant::now() < deadline,
                "the kernel did not retry the SYN within {timeout:?}"
            );
        }
        self.process.kill()?;
        Ok(())
    }
}

/// How many times the bottle namespace's socket connecting to [`TARGET`] has retried its
/// SYN (the count in `ss`'s `timer:(on,…,N)`).
fn syn_retries(world: &World) -> Result<u64> {
    let target = TARGET.to_string();
    let fields = world
        .bottle()
        .ss_fields(&["-tnoH", "state", "syn-sent", "dst", &target])?;
    let Some(timer) = fields.iter().find(|f| f.starts_with("timer:(")) else {
        return Ok(0);
    };
    let n = timer
        .trim_end_matches(')')
        .rsplit(',')
        .next()
        .unwrap_or("0");
    Ok(n.parse()?)
}
