//! [`World`]: one test's bottle and internet namespaces, joined by a veth, with the
//! servers, files and cork runs it started; `Drop` takes all of it down.
//!
//! ```text
//!  bottle netns <id>b                      internet netns <id>i
//!  lo (127.0.0.1, ::1)                     lo
//!  <id>v 198.51.100.1/24 2001:db8::1/64 -- <id>p 198.51.100.2/24 2001:db8::2/64 (+ extras)
//! ```
//! The bottle netns plays "the host": `cork run` and the bottle's processes run there,
//! and a server a test starts there outside cork is a host service.

use std::borrow::BorrowMut;
use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::addr::{BOTTLE_V4, BOTTLE_V6, INTERNET_V4, INTERNET_V6, check_ip};
use crate::audit::Audit;
use crate::cork::{cork_bin, run_args};
use crate::netns::{self, Netns};
use crate::probe::Probe;
use crate::process::{RunOutput, run_with_timeout};
use crate::server::{self, ServerStop, TcpServer, UdpServer};
use crate::sweep::{self, TMP_DIR, WorldLock};

/// How long one `cork run` (or other command) may take before it is killed.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// Which namespace of the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Where cork and the bottle run ("the host").
    Bottle,
    /// The other end of the veth.
    Internet,
}

/// One test's network world. Build with [`World::new`]; dropping it tears it down.
#[derive(Debug)]
pub struct World {
    id: String,
    test: String,
    dir: PathBuf,
    bottle: Option<Netns>,
    internet: Option<Netns>,
    servers: Mutex<Vec<ServerStop>>,
    internet_ips: Mutex<HashSet<IpAddr>>,
    files: AtomicU32,
    lock: Option<WorldLock>,
}

impl World {
    /// Builds the world for `test_name`; a partial setup is rolled back.
    pub fn new(test_name: &str) -> Result<Self> {
        sweep::suite_guard();
        let (id, lock) = claim_id(test_name)?;
        let mut world = Self {
            dir: Path::new(TMP_DIR).join(&id),
            id,
            test: test_name.to_owned(),
            bottle: None,
            internet: None,
            servers: Mutex::new(Vec::new()),
            internet_ips: Mutex::new(HashSet::new()),
            files: AtomicU32::new(0),
            lock: Some(lock),
        };
        // On error `world` is dropped here, and Drop removes whatever exists already.
        world
            .setup()
            .with_context(|| format!("set up world {} for {test_name}", world.id))?;
        Ok(world)
    }

    fn setup(&mut self) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("create {}", self.dir.display()))?;
        let id = self.id.clone();
        let (veth_b, veth_i) = (format!("{id}v"), format!("{id}p"));
        self.bottle = Some(Netns::create(&format!("{id}b"))?);
        self.internet = Some(Netns::create(&format!("{id}i"))?);
        let (b, i) = (self.bottle(), self.internet());
        b.ip(&["link", "set", "lo", "up"])?;
        i.ip(&["link", "set", "lo", "up"])?;
        // Created inside the bottle netns with its peer placed straight into the internet
        // netns: no link ever exists in the host namespace.
        b.ip(&[
            "link",
            "add",
            &veth_b,
            "type",
            "veth",
            "peer",
            "name",
            &veth_i,
            "netns",
            i.name(),
        ])?;
        b.ip(&["addr", "add", &format!("{BOTTLE_V4}/24"), "dev", &veth_b])?;
        b.ip(&[
            "addr",
            "add",
            &format!("{BOTTLE_V6}/64"),
            "dev",
            &veth_b,
            "nodad",
        ])?;
        i.ip(&["addr", "add", &format!("{INTERNET_V4}/24"), "dev", &veth_i])?;
        i.ip(&[
            "addr",
            "add",
            &format!("{INTERNET_V6}/64"),
            "dev",
            &veth_i,
            "nodad",
        ])?;
        b.ip(&["link", "set", &veth_b, "up"])?;
        i.ip(&["link", "set", &veth_i, "up"])?;
        // ICMP datagram ("ping") sockets are refused by this sysctl before any cgroup hook
        // runs (ping_init_sock); open it so the only refusal a test sees is cork's.
        b.sysctl("net.ipv4.ping_group_range", "0 2147483647")?;
        Ok(())
    }

    /// The world id (`ck` + 6 hex digits); prefixes every name the world owns.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The bottle-side namespace.
    pub fn bottle(&self) -> &Netns {
        self.bottle
            .as_ref()
            .expect("bottle netns exists after setup")
    }

    /// The internet-side namespace.
    pub fn internet(&self) -> &Netns {
        self.internet
            .as_ref()
            .expect("internet netns exists after setup")
    }

    fn ns(&self, side: Side) -> &Netns {
        match side {
            Side::Bottle => self.bottle(),
            Side::Internet => self.internet(),
        }
    }

    /// The per-test temp dir (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A fresh path in the temp dir: `<stem>-<n>.<ext>`.
    pub fn path(&self, stem: &str, ext: &str) -> PathBuf {
        let n = self.files.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("{stem}-{n}.{ext}"))
    }

    /// Adds a host address on the internet side (idempotent): `/24` for IPv4, `/64
    /// nodad` for IPv6.
    pub fn add_internet_ip(&self, ip: IpAddr) -> Result<()> {
        check_ip(ip)?;
        let mut ips = self.internet_ips.lock().unwrap_or_else(|e| e.into_inner());
        if ip == IpAddr::V4(INTERNET_V4) || ip == IpAddr::V6(INTERNET_V6) || ips.contains(&ip) {
            return Ok(());
        }
        let dev = format!("{}p", self.id);
        match ip {
            IpAddr::V4(a) => {
                self.internet()
                    .ip(&["addr", "add", &format!("{a}/24"), "dev", &dev])?
            }
            IpAddr::V6(a) => {
                self.internet()
                    .ip(&["addr", "add", &format!("{a}/64"), "dev", &dev, "nodad"])?
            }
        };
        ips.insert(ip);
        Ok(())
    }

    fn prepare_bind(&self, side: Side, addr: &str) -> Result<SocketAddr> {
        let sa: SocketAddr = addr
            .parse()
            .with_context(|| format!("parse socket address {addr:?}"))?;
        check_ip(sa.ip())?;
        if side == Side::Internet && !sa.ip().is_unspecified() && !sa.ip().is_loopback() {
            self.add_internet_ip(sa.ip())?;
        }
        Ok(sa)
    }

    /// Starts a TCP server on `side` bound to `addr` ("198.51.100.10:443", "[::]:0", ...);
    /// returns once it is listening. Internet-side addresses are added on demand.
    pub fn tcp_server(&self, side: Side, addr: &str) -> Result<TcpServer> {
        let sa = self.prepare_bind(side, addr)?;
        let greeting = format!("hello from {side:?} {sa}\n");
        let (srv, stop) = server::start_tcp(self.ns(side), sa, greeting)?;
        self.servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(stop);
        Ok(srv)
    }

    /// Starts a UDP receiver on `side` bound to `addr`; returns once it is bound.
    pub fn udp_server(&self, side: Side, addr: &str) -> Result<UdpServer> {
        let sa = self.prepare_bind(side, addr)?;
        let (srv, stop) = server::start_udp(self.ns(side), sa)?;
        self.servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(stop);
        Ok(srv)
    }

    /// Sends a sentinel datagram to `srv` from the bottle netns, outside any bottle, and
    /// waits until it arrived: datagrams sent earlier on the same path have arrived too,
    /// so a test can then assert what did *not* arrive without sleeping.
    pub fn udp_sentinel(&self, srv: &UdpServer) -> Result<()> {
        let to = srv.addr;
        let payload = format!("sentinel-{}", self.files.fetch_add(1, Ordering::Relaxed));
        let p = payload.clone();
        self.bottle().run(move || {
            let bind: SocketAddr = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse()?;
            let s = std::net::UdpSocket::bind(bind)?;
            s.send_to(p.as_bytes(), to)
                .with_context(|| format!("send sentinel to {to}"))?;
            Ok(())
        })?;
        srv.wait_payload(&payload, Duration::from_secs(5))
            .context("the sentinel sent from the bottle netns")?;
        Ok(())
    }

    /// TCP connect from the bottle netns outside any bottle (the test's own baseline).
    pub fn connect_from_bottle(&self, to: SocketAddr) -> Result<()> {
        check_ip(to.ip())?;
        self.bottle().run(move || {
            std::net::TcpStream::connect_timeout(&to, Duration::from_secs(5))
                .with_context(|| format!("connect {to} from the bottle netns"))?;
            Ok(())
        })
    }

    /// A bottle name owned by this world: `<id>-<label>` (`label`: lowercase, digits, `-`).
    pub fn bottle_name(&self, label: &str) -> String {
        format!("{}-{label}", self.id)
    }

    /// Writes raw manifest text to a new file in the temp dir.
    pub fn write_manifest(&self, text: &str) -> Result<PathBuf> {
        let path = self.path("manifest", "toml");
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    }

    /// Writes `version = 1`, `[bottle] name = <id>-<label>`, then `body`.
    pub fn manifest(&self, label: &str, body: &str) -> Result<PathBuf> {
        let name = self.bottle_name(label);
        self.write_manifest(&format!(
            "version = 1\n\n[bottle]\nname = \"{name}\"\n\n{body}\n"
        ))
    }

    /// The audit log path for bottle `label` "a" (see [`World::audit_path_for`]).
    pub fn audit_path(&self) -> PathBuf {
        self.audit_path_for("a")
    }

    /// The audit log path for bottle `label`.
    pub fn audit_path_for(&self, label: &str) -> PathBuf {
        self.dir.join(format!("audit-{label}.jsonl"))
    }

    /// `cork ARGS...`, run in the bottle netns (host mount namespace kept). Panics when
    /// the cork binary is missing: a privileged test that cannot run fails.
    pub fn cork<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let bin = cork_bin().unwrap_or_else(|e| panic!("{e:#}"));
        let mut cmd = self.bottle().command(bin);
        cmd.args(args).stdin(std::process::Stdio::null());
        // One environment wherever the suite runs: CI has neither HOME nor SHELL, and a
        // python without HOME (or a bash without SHELL — a pyenv shim is a bash script)
        // asks the name service for the user — glibc first tries nscd's socket, which a
        // bottle is refused (and audited, rightly): a deny no test made.
        for (var, value) in [("HOME", "/root"), ("SHELL", "/bin/sh")] {
            if std::env::var_os(var).is_none() {
                cmd.env(var, value);
            }
        }
        cmd
    }

    /// `cork run --manifest M --audit-log <audit_path_for(label)> -- ARGV...`.
    pub fn cork_run(&self, manifest: &Path, label: &str, argv: &[String]) -> Command {
        self.cork(run_args(manifest, &self.audit_path_for(label), argv))
    }

    /// Any program, run in a namespace of the world (outside any bottle).
    pub fn command(&self, side: Side, program: &str) -> Command {
        let mut cmd = self.ns(side).command(program);
        cmd.stdin(std::process::Stdio::null());
        cmd
    }

    /// Runs a command with the default deadline, capturing its output.
    pub fn run(&self, mut cmd: impl BorrowMut<Command>) -> Result<RunOutput> {
        run_with_timeout(cmd.borrow_mut(), RUN_TIMEOUT)
    }

    /// Writes a manifest for bottle `label` from `body`, runs `probe` in it under
    /// `cork run`, and returns the output and the audit log.
    pub fn run_probe(&self, label: &str, body: &str, probe: &Probe) -> Result<(RunOutput, Audit)> {
        self.run_argv(label, body, &probe.argv())
    }

    /// Like [`World::run_probe`] with any command line.
    pub fn run_argv(&self, label: &str, body: &str, argv: &[String]) -> Result<(RunOutput, Audit)> {
        let manifest = self.manifest(label, body)?;
        let out = self.run(&mut self.cork_run(&manifest, label, argv))?;
        if out.code() != 0 {
            bail!("cork run exited {}:\n{out}", out.code());
        }
        let audit = Audit::read(&self.audit_path_for(label))
            .with_context(|| format!("after cork run:\n{out}"))?;
        Ok((out, audit))
    }

    fn teardown(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        for s in self
            .servers
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            if let Err(e) = s.stop() {
                errors.push(format!("{e:#}"));
            }
        }
        for ns in [&self.bottle, &self.internet].into_iter().flatten() {
            ns.kill_all();
        }
        errors.extend(remove_cork_state(&self.id));
        let namespaces = [self.bottle.take(), self.internet.take()];
        release(
            &self.id,
            namespaces.into_iter().flatten(),
            &self.dir,
            self.lock.take(),
            &mut errors,
        );
        errors
    }
}

/// The end of every world-named teardown (processes already killed): delete the
/// namespaces and the temp dir, then remove the lock file only if all of that worked, and
/// let the lock go — the sweeper takes whatever is left; the last world alive also
/// removes the host's unused shared program sets.
pub(crate) fn release(
    id: &str,
    namespaces: impl IntoIterator<Item = Netns>,
    dir: &Path,
    lock: Option<WorldLock>,
    errors: &mut Vec<String>,
) {
    for ns in namespaces {
        let name = ns.name().to_owned();
        if let Err(e) = ns.delete() {
            errors.push(format!("delete netns {name}: {e:#}"));
        }
    }
    if dir.exists()
        && let Err(e) = std::fs::remove_dir_all(dir)
    {
        errors.push(format!("remove {}: {e}", dir.display()));
    }
    if errors.is_empty() {
        let _ = std::fs::remove_file(sweep::lock_path(id));
    }
    drop(lock);
    // The last world to go takes the host's shared program set with it.
    if !sweep::any_world_alive()
        && let Err(e) = sweep::remove_unused_program_sets()
    {
        errors.push(format!("{e:#}"));
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for e in self.teardown() {
            eprintln!(
                "cork-integration: teardown of world {} ({}): {e}",
                self.id, self.test
            );
        }
    }
}

/// Removes cgroups and pins named after bottles of world `id` (a SIGKILLed `cork run`
/// leaves them).
fn remove_cork_state(id: &str) -> Vec<String> {
    let mut errors = Vec::new();
    for cg in crate::host::cork_cgroups(&format!("{id}-")) {
        if let Err(e) = crate::host::remove_cgroup(&cg) {
            errors.push(format!("{e:#}"));
        }
    }
    for pin in crate::host::cork_pins(&format!("{id}-")) {
        if let Err(e) = crate::host::remove_pins(&pin) {
            errors.push(format!("{e:#}"));
        }
    }
    errors
}

/// Picks an unused id from hash(test name, pid, counter) and locks it.
/// A free world id (`ck` + 6 hex digits) and its lock. Also used by the proxy benchmark's
/// namespace, so the sweeper and `cargo xtask clean` treat both alike.
pub(crate) fn claim_id(test_name: &str) -> Result<(String, WorldLock)> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let existing = netns::list();
    for _ in 0..64 {
        let mut h = DefaultHasher::new();
        (
            test_name,
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
        )
            .hash(&mut h);
        let id = format!("ck{:06x}", h.finish() & 0xff_ffff);
        if existing.iter().any(|n| n.starts_with(&id)) || sweep::lock_path(&id).exists() {
            continue;
        }
        if let Ok(lock) = sweep::lock(&id) {
            return Ok((id, lock));
        }
    }
    bail!("no free world id for {test_name}")
}

impl World {
    /// Starts an authoritative DNS server for `zone` on the internet side, listening on
    /// UDP and TCP at `addr` ("198.51.100.53:53", "[2001:db8::53]:53"); the address is
    /// added on demand, and the call returns once both sockets are bound. The server runs
    /// until the last [`crate::dns_server::DnsServer`] handle is dropped.
    pub fn dns_server(
        &self,
        addr: &str,
        zone: crate::dns_server::Zone,
    ) -> Result<crate::dns_server::DnsServer> {
        let sa = self.prepare_bind(Side::Internet, addr)?;
        crate::dns_server::start(self.internet(), sa, zone)
    }
}
