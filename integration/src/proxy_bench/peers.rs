//! The peers a proxy benchmark compares: what each one is, how it is started inside the
//! bench namespace, and how the load generator reaches the upstream through it.
//!
//! Every peer ends in the same place: the [`HttpsUpstream`](crate::https_upstream) on
//! `UPSTREAM` (127.0.0.1:8443) presenting a `bench.test` certificate from the upstream
//! CA. What differs is the path (direct, or `CONNECT` through an explicit proxy) and
//! which CA the client must trust (the upstream's, or the one the proxy mints with).

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::netns::Netns;

/// Where the upstream listens.
pub const UPSTREAM: &str = "127.0.0.1:8443";
/// The host name the client asks for (SNI, certificate name, `Host`).
pub const HOST: &str = "bench.test";
const MITMPROXY_PORT: u16 = 8080;
const SQUID_PORT: u16 = 3128;

/// One way to reach the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// Client → upstream, no proxy: the baseline.
    Direct,
    /// mitmproxy (`mitmdump`, regular mode): explicit CONNECT proxy that terminates and
    /// re-originates TLS, verifying the upstream against the upstream CA.
    Mitmproxy,
    /// squid with ssl-bump: explicit CONNECT proxy, certificates minted per host name
    /// by `security_file_certgen`, upstream verified against the upstream CA.
    Squid,
    /// cork: the client runs in a bottle (`cork run`), resolves `bench.test` through the
    /// bottle's DNS proxy and connects to it on port 443 as if nothing were in between;
    /// the kernel redirects the connection to the bottle's inspecting proxy (DLP on, one
    /// audit line per request), which verifies the upstream against the upstream CA.
    Cork,
    /// cork with `inspect = false` on the rule: the same bottle and the same redirect to
    /// the bottle's proxy, which checks the SNI and relays the TLS bytes untouched (one
    /// audit line per connection, no interception; the client trusts the upstream CA).
    /// The floor of any design that puts the agent's proxy on the path: two TCP legs,
    /// none of the proxy's TLS, HTTP, DLP or per-request audit.
    CorkRelay,
    /// `cork` again, run by another build's binary (`CORK_BIN_B`): the same bottle in the
    /// same rounds, so two builds meet the same machine load and compare round by round
    /// (`max_rps_of_cork-b.cork`, `agent_cpu_of_cork-b.cork`) — the machine's own swing
    /// is larger than most changes worth measuring.
    CorkB,
}

/// The other build `cork-b` runs.
pub const CORK_BIN_B: &str = "CORK_BIN_B";

impl Peer {
    /// Every peer, in the order the comparison runs them.
    pub const ALL: [Peer; 6] = [
        Peer::Direct,
        Peer::Cork,
        Peer::CorkB,
        Peer::CorkRelay,
        Peer::Mitmproxy,
        Peer::Squid,
    ];

    /// The name on the command line and in the table.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Direct => "direct",
            Peer::Mitmproxy => "mitmproxy",
            Peer::Squid => "squid",
            Peer::Cork => "cork",
            Peer::CorkRelay => "cork-relay",
            Peer::CorkB => "cork-b",
        }
    }

    /// Parses [`Peer::name`].
    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .with_context(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|p| p.name()).collect();
                format!("unknown peer {s:?} ({})", names.join(", "))
            })
    }

    /// Whose CPU time the bench counts as this peer's per request
    /// ([`crate::proxy_bench::PeerResult::agent_cpu_us`]).
    pub fn cpu_whose(self) -> &'static str {
        match self {
            Peer::Direct => "client + server",
            Peer::Cork | Peer::CorkRelay | Peer::CorkB => "the agent",
            Peer::Squid | Peer::Mitmproxy => "its process",
        }
    }

    /// Why this peer cannot run here (its programs are not installed), if so.
    pub fn missing(self, venv: &Path) -> Option<String> {
        if self == Peer::CorkB {
            return cork_bin_b()
                .err()
                .map(|e| format!("{} not set up ({e:#})", self.name()));
        }
        let need: Vec<PathBuf> = match self {
            Peer::Direct | Peer::Cork | Peer::CorkRelay | Peer::CorkB => Vec::new(),
            Peer::Mitmproxy => vec![venv.join("bin/mitmdump")],
            Peer::Squid => vec![
                "/usr/sbin/squid".into(),
                "/usr/lib/squid/security_file_certgen".into(),
            ],
        };
        let absent: Vec<String> = need
            .iter()
            .filter(|p| !p.is_file())
            .map(|p| p.display().to_string())
            .collect();
        (!absent.is_empty()).then(|| {
            format!(
                "{} not installed ({} missing; `cargo xtask bench-deps` installs it)",
                self.name(),
                absent.join(", ")
            )
        })
    }

    /// Starts the peer in `env`'s namespace and returns once it accepts connections.
    pub fn start(self, env: &PeerEnv<'_>) -> Result<RunningPeer> {
        match self {
            Peer::Direct => Ok(RunningPeer {
                peer: self,
                child: None,
                proxy: None,
                connect_by_name: false,
                cacert: env.upstream_ca.clone(),
                logs: Vec::new(),
                cork: None,
                keeps_cacert: false,
            }),
            Peer::Cork | Peer::CorkRelay | Peer::CorkB => start_cork(env, self),
            Peer::Mitmproxy => start_mitmproxy(env),
            Peer::Squid => start_squid(env),
        }
    }
}

/// What the peers share: the namespace, a temp dir, and the CAs.
#[derive(Debug)]
pub struct PeerEnv<'a> {
    /// The bench namespace.
    pub ns: &'a Netns,
    /// A temp dir for the peers' configuration, state and logs.
    pub dir: PathBuf,
    /// PEM of the CA that issued the upstream's certificate.
    pub upstream_ca: PathBuf,
    /// PEM certificate of the CA the proxies mint client-facing certificates with.
    pub proxy_ca_cert: PathBuf,
    /// Its PEM private key.
    pub proxy_ca_key: PathBuf,
    /// The virtualenv mitmproxy was installed in (`cargo xtask bench-deps`).
    pub venv: PathBuf,
}

/// A started peer; dropping it kills the proxy process.
#[derive(Debug)]
pub struct RunningPeer {
    /// Which peer.
    pub peer: Peer,
    child: Option<Child>,
    /// The explicit proxy the client sends `CONNECT` to, if any.
    pub proxy: Option<SocketAddr>,
    /// Whether `CONNECT` names the host (the proxy resolves it) or the address.
    pub connect_by_name: bool,
    /// The CA file the client must trust on this path.
    pub cacert: PathBuf,
    /// The proxy's log files, shown when a run fails.
    pub logs: Vec<PathBuf>,
    /// For cork: how the load runs in its bottle.
    cork: Option<CorkRun>,
    /// Whether the client keeps trusting [`RunningPeer::cacert`] in the bottle (the
    /// relay: the TLS it sees is the upstream's) rather than the bundle `cork run` gives.
    keeps_cacert: bool,
}

impl RunningPeer {
    /// The last lines of the proxy's logs.
    pub fn log_tail(&self) -> String {
        let mut out = String::new();
        for p in &self.logs {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {} ---\n", p.display()));
            for l in &lines[lines.len().saturating_sub(30)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// The command that runs the load generator (`bin load ARGS...`) on this peer's path,
    /// in `ns`. Every peer so far runs it bare in the namespace; a peer that must run
    /// the client somewhere else (inside `cork run`) wraps it here.
    pub fn load_command(&self, ns: &Netns, bin: &Path, load_args: &[String]) -> Result<Command> {
        match &self.cork {
            Some(CorkRun {
                bin: cork,
                manifest,
                audit,
            }) => {
                // In the bottle the client resolves the name (cork's DNS proxy learns
                // it) and, when the proxy intercepts, trusts the bundle cork run gives
                // it (SSL_CERT_FILE).
                let mut argv = vec![bin.display().to_string(), "load".to_owned()];
                let mut it = load_args.iter();
                while let Some(a) = it.next() {
                    if a == "--connect-to" || (a == "--cacert" && !self.keeps_cacert) {
                        it.next();
                        continue;
                    }
                    argv.push(a.clone());
                }
                let mut cmd = ns.command(cork);
                cmd.args(crate::cork::run_args(manifest, audit, &argv));
                Ok(cmd)
            }
            None => {
                let mut cmd = ns.command(bin);
                cmd.arg("load").args(load_args);
                Ok(cmd)
            }
        }
    }

    /// Whether the client connects to the upstream's routed address on port 443 by name
    /// (cork: transparent), rather than to [`UPSTREAM`].
    pub fn transparent(&self) -> bool {
        self.cork.is_some()
    }

    /// The proxy's own process, for an explicit proxy (squid, mitmproxy); cork's agent is
    /// the load command's process itself (`cork run`), direct has none.
    pub fn proxy_pid(&self) -> Option<u32> {
        self.proxy?;
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for RunningPeer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The upstream's routed address, where cork's bottle reaches it (cork leaves loopback
/// alone: a bottle only reaches loopback services it owns).
pub const ROUTED_UPSTREAM: &str = "198.51.100.2:443";
/// The bench namespace's authoritative DNS server for `bench.test`.
pub const DNS: &str = "198.51.100.53:53";

/// `cork run` for a cork peer: which binary, the manifest, the audit log.
#[derive(Debug)]
struct CorkRun {
    bin: PathBuf,
    manifest: PathBuf,
    audit: PathBuf,
}

/// The binary [`Peer::CorkB`] runs: `$CORK_BIN_B`, which must exist.
fn cork_bin_b() -> Result<PathBuf> {
    let p = std::env::var_os(CORK_BIN_B)
        .map(PathBuf::from)
        .with_context(|| format!("{CORK_BIN_B} names no cork binary to compare with"))?;
    if !p.is_file() {
        bail!("{CORK_BIN_B}={} does not exist", p.display());
    }
    Ok(p)
}

/// Starts a cork peer: [`Peer::Cork`]; [`Peer::CorkRelay`], whose rule says
/// `inspect = false`; [`Peer::CorkB`], `Peer::Cork` run by `$CORK_BIN_B`.
fn start_cork(env: &PeerEnv<'_>, peer: Peer) -> Result<RunningPeer> {
    let relay = peer == Peer::CorkRelay;
    let bin = match peer {
        Peer::CorkB => cork_bin_b()?,
        _ => crate::cork::cork_bin()?,
    };
    let manifest = env.dir.join("cork-bench.toml");
    let audit = env.dir.join("cork-audit.jsonl");
    let dns: SocketAddr = DNS.parse()?;
    std::fs::write(
        &manifest,
        format!(
            "version = 1\n\n[bottle]\nname = \"proxy-bench\"\n\n[[egress.allow]]\n\
             domain = \"{HOST}\"\nports = [443]\n{}\n[dns]\nupstream = [\"{}\"]\n\
             queries_per_second = 1000\n\n[tls]\nupstream_ca = [\"{}\"]\n",
            if relay { "inspect = false\n" } else { "" },
            dns.ip(),
            env.upstream_ca.display()
        ),
    )?;
    Ok(RunningPeer {
        peer,
        child: None,
        proxy: None,
        connect_by_name: false,
        cacert: env.upstream_ca.clone(),
        logs: vec![audit.clone()],
        cork: Some(CorkRun {
            bin,
            manifest,
            audit,
        }),
        keeps_cacert: relay,
    })
}

fn start_mitmproxy(env: &PeerEnv<'_>) -> Result<RunningPeer> {
    let bin = env.venv.join("bin/mitmdump");
    if !bin.is_file() {
        bail!(
            "{} missing: run `cargo xtask bench-deps` first",
            bin.display()
        );
    }
    // mitmproxy takes its CA (key and certificate in one file) from its confdir.
    let confdir = env.dir.join("mitmproxy");
    std::fs::create_dir_all(&confdir)?;
    let mut ca = std::fs::read_to_string(&env.proxy_ca_key)?;
    ca.push_str(&std::fs::read_to_string(&env.proxy_ca_cert)?);
    std::fs::write(confdir.join("mitmproxy-ca.pem"), ca)?;
    let mut cmd = env.ns.command(&bin);
    cmd.args([
        "--mode",
        "regular",
        "--listen-host",
        "127.0.0.1",
        "--listen-port",
    ])
    .arg(MITMPROXY_PORT.to_string())
    .arg("--set")
    .arg(format!("confdir={}", confdir.display()))
    .args(["--set", "ssl_insecure=false", "--set"])
    .arg(format!(
        "ssl_verify_upstream_trusted_ca={}",
        env.upstream_ca.display()
    ))
    .args(["--set", "flow_detail=0", "-q"]);
    // mitmproxy resolves names with the system resolver, which knows no `bench.test`:
    // CONNECT names the address, and the upstream connection takes the client's SNI.
    spawn(env, Peer::Mitmproxy, cmd, MITMPROXY_PORT, Vec::new(), false)
}

fn start_squid(env: &PeerEnv<'_>) -> Result<RunningPeer> {
    const CERTGEN: &str = "/usr/lib/squid/security_file_certgen";
    for bin in ["/usr/sbin/squid", CERTGEN] {
        if !Path::new(bin).is_file() {
            bail!("{bin} missing: run `cargo xtask bench-deps` first");
        }
    }
    let dir = env.dir.join("squid");
    // A fresh state for every run (the certificate db must not exist yet).
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("ssl_db");
    let out = Command::new(CERTGEN)
        .args(["-c", "-s"])
        .arg(&db)
        .args(["-M", "16MB"])
        .output()
        .context("initialise squid's certificate db")?;
    if !out.status.success() {
        bail!(
            "{CERTGEN} -c failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let upstream: SocketAddr = UPSTREAM.parse()?;
    std::fs::write(dir.join("hosts"), format!("{} {HOST}\n", upstream.ip()))?;
    let conf = squid_conf(&dir, env);
    let conf_path = dir.join("squid.conf");
    std::fs::write(&conf_path, conf)?;
    // squid drops to the `proxy` user: its state must be that user's.
    chown_proxy(&dir)?;
    let mut cmd = env.ns.command("/usr/sbin/squid");
    cmd.args(["-N", "-f"]).arg(&conf_path);
    // squid serves a bumped request only on a server connection pinned for the same
    // host and port (`Host` carries the port), so CONNECT names `bench.test:8443`, which
    // squid finds in its own hosts file.
    spawn(
        env,
        Peer::Squid,
        cmd,
        SQUID_PORT,
        vec![dir.join("cache.log")],
        true,
    )
}

/// squid.conf: bump everything, mint certificates per SNI, verify the upstream against
/// the upstream CA, keep nothing and log only errors.
fn squid_conf(dir: &Path, env: &PeerEnv<'_>) -> String {
    let d = dir.display();
    format!(
        "http_port 127.0.0.1:{SQUID_PORT} ssl-bump tls-cert={cert} tls-key={key} \
         generate-host-certificates=on dynamic_cert_mem_cache_size=16MB\n\
         sslcrtd_program /usr/lib/squid/security_file_certgen -s {d}/ssl_db -M 16MB\n\
         sslcrtd_children 4 startup=1 idle=1\n\
         acl step1 at_step SslBump1\n\
         acl step2 at_step SslBump2\n\
         ssl_bump peek step1\n\
         ssl_bump stare step2\n\
         ssl_bump bump all\n\
         tls_outgoing_options cafile={upstream_ca}\n\
         http_access allow all\n\
         cache deny all\n\
         cache_mem 0 MB\n\
         access_log none\n\
         cache_store_log none\n\
         cache_log {d}/cache.log\n\
         pid_filename {d}/squid.pid\n\
         coredump_dir {d}\n\
         netdb_filename none\n\
         pinger_enable off\n\
         icp_port 0\n\
         htcp_port 0\n\
         visible_hostname {HOST}\n\
         shutdown_lifetime 0 seconds\n\
         hosts_file {d}/hosts\n\
         # Nothing to ask: names come from the hosts file above.\n\
         dns_nameservers 127.0.0.1\n",
        cert = env.proxy_ca_cert.display(),
        key = env.proxy_ca_key.display(),
        upstream_ca = env.upstream_ca.display(),
    )
}

fn chown_proxy(dir: &Path) -> Result<()> {
    let user = nix::unistd::User::from_name("proxy")
        .context("look up user proxy")?
        .context("user proxy missing (squid's package creates it)")?;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        nix::unistd::chown(&p, Some(user.uid), Some(user.gid))
            .with_context(|| format!("chown {}", p.display()))?;
        if p.is_dir() {
            for e in std::fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        }
    }
    Ok(())
}

/// Spawns a proxy with its output in `<dir>/<name>.log` and waits until its port
/// accepts connections (or it exits, which is an error carrying the log).
fn spawn(
    env: &PeerEnv<'_>,
    peer: Peer,
    mut cmd: Command,
    port: u16,
    mut logs: Vec<PathBuf>,
    connect_by_name: bool,
) -> Result<RunningPeer> {
    let log_path = env.dir.join(format!("{}.log", peer.name()));
    logs.insert(0, log_path.clone());
    let log = File::create(&log_path)?;
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let child = cmd
        .spawn()
        .with_context(|| format!("start {}", peer.name()))?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut running = RunningPeer {
        peer,
        child: Some(child),
        proxy: Some(addr),
        connect_by_name,
        cacert: env.proxy_ca_cert.clone(),
        logs,
        cork: None,
        keeps_cacert: false,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = env.ns.run(move || {
            Ok(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok())
        })?;
        if up {
            return Ok(running);
        }
        let exited = running
            .child
            .as_mut()
            .map(|c| c.try_wait())
            .transpose()?
            .flatten();
        if exited.is_some() || Instant::now() > deadline {
            bail!(
                "{} did not start listening on {addr} ({}):\n{}",
                peer.name(),
                exited.map_or("timed out".to_owned(), |s| s.to_string()),
                running.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
