//! The proxy benchmark: one namespace holding an [`HttpsUpstream`], the peer proxies,
//! and the load generator, run once per peer; see `src/bin/cork-proxy-bench.rs`.
//!
//! The load generator is a separate process (`cork-proxy-bench load ...`), started in
//! the namespace for each run, so the same command can run anywhere a real client runs,
//! inside a `cork run` bottle included. [`LoadSpec::to_args`] and [`LoadSpec::from_args`]
//! are its command line, written once.

pub mod load;
pub mod ns;
pub mod peers;
pub mod ratios;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

pub use load::{LoadResult, LoadSpec};
pub use ns::BenchNs;
pub use peers::{DNS, HOST, Peer, PeerEnv, ROUTED_UPSTREAM, RunningPeer, UPSTREAM};
pub use ratios::{Pick, per_round_ratio, same_round_ratios};

use crate::addr::check_ip;
use crate::https_upstream::{HttpsUpstream, TestCa, UpstreamConfig};
use crate::process::{cpu_time_of, own_threads_cpu_time, run_watched, run_with_timeout};

impl LoadSpec {
    /// The `load` subcommand's arguments for this spec (after `load`).
    pub fn to_args(&self) -> Vec<String> {
        let mut a = vec![
            "--url".to_owned(),
            format!("https://{}{}", self.authority(), self.path),
            "--connect-to".to_owned(),
            self.connect_to.to_string(),
            "--cacert".to_owned(),
            self.cacert.display().to_string(),
            "--concurrency".to_owned(),
            self.concurrency.to_string(),
            "--warmup".to_owned(),
            self.warmup.as_secs_f64().to_string(),
            "--duration".to_owned(),
            self.duration.as_secs_f64().to_string(),
        ];
        if let Some(p) = self.proxy {
            a.extend(["--proxy".to_owned(), p.to_string()]);
        }
        if self.connect_by_name {
            a.push("--connect-by-name".to_owned());
        }
        if let Some(r) = self.rate {
            a.extend(["--rate".to_owned(), format!("{r:.1}")]);
        }
        if let Some(b) = self.body {
            a.extend(["--post".to_owned(), b.to_string()]);
        }
        if self.fresh {
            a.push("--new-connections".to_owned());
        }
        a
    }

    /// Parses the `load` subcommand's arguments. Without `--connect-to` the URL's host
    /// is resolved (inside a bottle: through cork's DNS proxy); without `--cacert`,
    /// `SSL_CERT_FILE` names the CA file. Returns the spec and `--threads`.
    pub fn from_args(args: &[String]) -> Result<(Self, usize)> {
        let mut it = args.iter();
        let (mut url, mut connect_to, mut proxy, mut cacert) = (None, None, None, None);
        let (mut concurrency, mut warmup, mut duration) = (16, 1.0, 10.0);
        let (mut rate, mut body, mut threads, mut connect_by_name) = (None, None, 1, false);
        let mut fresh = false;
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .with_context(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--url" => url = Some(value()?),
                "--connect-to" => connect_to = Some(parse_addr(&value()?)?),
                "--proxy" => proxy = Some(parse_addr(&value()?)?),
                "--connect-by-name" => connect_by_name = true,
                "--new-connections" => fresh = true,
                "--cacert" => cacert = Some(PathBuf::from(value()?)),
                "--concurrency" | "-c" => concurrency = value()?.parse()?,
                "--warmup" => warmup = value()?.parse()?,
                "--duration" => duration = value()?.parse()?,
                "--rate" => rate = Some(value()?.parse()?),
                "--post" => body = Some(value()?.parse()?),
                "--threads" => threads = value()?.parse()?,
                other => bail!("unknown load option {other:?}"),
            }
        }
        let url: http::Uri = url
            .context("--url is required")?
            .parse()
            .context("parse --url")?;
        ensure!(url.scheme_str() == Some("https"), "--url must be https://");
        let host = url.host().context("--url has no host")?.to_owned();
        let port = url.port_u16().unwrap_or(443);
        let path = url
            .path_and_query()
            .map_or("/".to_owned(), |p| p.to_string());
        let connect_to = match connect_to {
            Some(a) => a,
            None => resolve(&host, port)?,
        };
        let cacert = match cacert.or_else(|| std::env::var_os("SSL_CERT_FILE").map(PathBuf::from)) {
            Some(c) => c,
            None => bail!("no CA: give --cacert or set SSL_CERT_FILE"),
        };
        let spec = Self {
            host,
            port,
            path,
            connect_to,
            proxy,
            connect_by_name,
            cacert,
            concurrency,
            warmup: Duration::from_secs_f64(warmup),
            duration: Duration::from_secs_f64(duration),
            rate,
            body,
            fresh,
        };
        Ok((spec, threads))
    }
}

/// Parses a socket address and refuses anything outside the test ranges.
fn parse_addr(s: &str) -> Result<SocketAddr> {
    let a: SocketAddr = s.parse().with_context(|| format!("parse address {s:?}"))?;
    check_ip(a.ip())?;
    Ok(a)
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    let a = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolve {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))?;
    check_ip(a.ip())?;
    Ok(a)
}

/// How a comparison is run.
#[derive(Debug, Clone)]
pub struct CompareOpts {
    /// The peers, in order.
    pub peers: Vec<Peer>,
    /// Concurrent keep-alive connections.
    pub concurrency: usize,
    /// Unmeasured time before each run.
    pub warmup: Duration,
    /// Measured time of each run.
    pub duration: Duration,
    /// Rounds; each runs every peer in turn, so drift on the machine hits all alike.
    pub rounds: usize,
    /// Path and query of every request.
    pub path: String,
    /// POST a body of this many bytes instead of a GET.
    pub body: Option<usize>,
    /// The `cork-proxy-bench` binary (run as `load`).
    pub load_bin: PathBuf,
    /// mitmproxy's virtualenv.
    pub venv: PathBuf,
    /// Measure latency at this rate (or half the peer's maximum if that is lower), so
    /// that peers which reach it are compared at the same load.
    pub latency_rate: Option<f64>,
    /// Also measure new TLS connections per second (one request each, full handshakes).
    pub new_connections: bool,
}

/// One peer's figures.
#[derive(Debug, Clone)]
pub struct PeerResult {
    /// Which peer.
    pub peer: Peer,
    /// Which round (from 1).
    pub round: usize,
    /// Closed loop: the maximum rate.
    pub max: LoadResult,
    /// Open loop at half that rate: the latency.
    pub paced: LoadResult,
    /// Closed loop, a new TLS connection per request (with `new_connections`).
    pub fresh: Option<LoadResult>,
    /// CPU time per request in the closed-loop run, µs, sampled over the middle half of
    /// the measured window. cork's peers: the agent's (the `cork run` process, every
    /// thread). `direct`: the load generator's and the upstream's together — what the
    /// same exchange costs without a proxy, so on a machine all of them share, the bound
    /// a proxy's own cost sets on its rate. squid and mitmproxy: their process's.
    pub agent_cpu_us: Option<f64>,
}

/// Builds the namespace, CAs and upstream, then measures each peer in turn; `report`
/// sees each result as it comes.
pub fn compare(opts: &CompareOpts, mut report: impl FnMut(&PeerResult)) -> Result<Vec<PeerResult>> {
    let bench = BenchNs::new()?;
    let dir = bench.dir().to_path_buf();
    let upstream_ca = TestCa::new()?;
    let proxy_ca = TestCa::named("cork bench proxy CA")?;
    let env = PeerEnv {
        ns: bench.ns(),
        dir: dir.clone(),
        upstream_ca: write(&dir, "upstream-ca.pem", &upstream_ca.pem())?,
        proxy_ca_cert: write(&dir, "proxy-ca.pem", &proxy_ca.pem())?,
        proxy_ca_key: write(&dir, "proxy-ca.key", &proxy_ca.key_pem())?,
        venv: opts.venv.clone(),
    };
    let upstream_addr: SocketAddr = UPSTREAM.parse()?;
    let routed: SocketAddr = ROUTED_UPSTREAM.parse()?;
    let dns_addr: SocketAddr = DNS.parse()?;
    // Addresses for the cork peer, on `lo` (this kernel has no dummy links): traffic to
    // them stays in the namespace, but to cork's hooks they are not loopback addresses.
    let ns = bench.ns();
    ns.ip(&["addr", "add", &format!("{}/32", routed.ip()), "dev", "lo"])?;
    // New connections at thousands a second leave TIME_WAIT on the side that closes
    // first: a proxy closing its upstream connection after the client's reset. Reusing
    // those ports is on by default only toward loopback addresses, and cork reaches the
    // upstream on a routed one. This namespace is the bench's own.
    let sysctl = run_with_timeout(
        ns.command("sysctl")
            .args(["-qw", "net.ipv4.tcp_tw_reuse=1"]),
        Duration::from_secs(10),
    )?;
    ensure!(sysctl.code() == 0, "sysctl tcp_tw_reuse: {sysctl}");
    ns.ip(&["addr", "add", &format!("{}/32", dns_addr.ip()), "dev", "lo"])?;
    let _dns = crate::dns_server::start(
        ns,
        dns_addr,
        crate::dns_server::Zone::new().a(HOST, &routed.ip().to_string(), 300),
    )?;
    let upstream = HttpsUpstream::start(
        bench.ns(),
        &upstream_ca,
        UpstreamConfig::new()
            .name(HOST)
            .tls(upstream_addr)
            .tls(routed)
            .http1_only(),
    )?;
    let upstream_report = || {
        let conns = upstream.log().conns();
        let failed: Vec<_> = conns
            .iter()
            .filter_map(|c| c.handshake_error.clone())
            .collect();
        format!(
            "upstream: {} connections, {} requests, handshake errors: {failed:?}",
            conns.len(),
            upstream.log().requests().len()
        )
    };
    let mut results = Vec::new();
    for (round, &peer) in
        (1..=opts.rounds.max(1)).flat_map(|r| opts.peers.iter().map(move |p| (r, p)))
    {
        let running = peer.start(&env)?;
        let mut spec = LoadSpec {
            host: HOST.to_owned(),
            port: if running.transparent() {
                routed.port()
            } else {
                upstream_addr.port()
            },
            path: opts.path.clone(),
            connect_to: upstream_addr,
            proxy: running.proxy,
            connect_by_name: running.connect_by_name,
            cacert: running.cacert.clone(),
            concurrency: opts.concurrency,
            warmup: opts.warmup,
            duration: opts.duration,
            rate: None,
            body: opts.body,
            fresh: false,
        };
        let (max, agent_cpu) = run_load(&bench, &running, &opts.load_bin, &spec, true)
            .with_context(|| format!("{}: maximum rate; {}", peer.name(), upstream_report()))?;
        let half = max.rate / 2.0;
        spec.rate = Some(opts.latency_rate.map_or(half, |r| r.min(half)));
        let (paced, _) = run_load(&bench, &running, &opts.load_bin, &spec, false)
            .with_context(|| format!("{}: latency at half the maximum", peer.name()))?;
        let fresh = if opts.new_connections {
            spec.rate = None;
            spec.fresh = true;
            Some(
                run_load(&bench, &running, &opts.load_bin, &spec, false)
                    .with_context(|| format!("{}: new TLS connections", peer.name()))?
                    .0,
            )
        } else {
            None
        };
        drop(running);
        let r = PeerResult {
            peer,
            round,
            agent_cpu_us: agent_cpu.map(|per_s| per_s * 1e6 / max.rate),
            max,
            paced,
            fresh,
        };
        report(&r);
        results.push(r);
    }
    upstream.stop()?;
    Ok(results)
}

fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf> {
    let p = dir.join(name);
    std::fs::write(&p, text).with_context(|| format!("write {}", p.display()))?;
    Ok(p)
}

/// The upstream's runtime threads (`HttpsUpstream`), in this process.
const UPSTREAM_THREADS: &str = "https-upstream";

/// CPU seconds per second `pid` (with this process's upstream threads when
/// `with_upstream`) used from `from` (after now) for `span`, sampled every 10 ms; when it
/// ends before that (a smoke run's short window), over the last part of its life that
/// was sampled. `None` when it lived for fewer than two samples.
fn cpu_rate(pid: u32, from: Duration, span: Duration, with_upstream: bool) -> Option<f64> {
    let upstream = || {
        if with_upstream {
            own_threads_cpu_time(UPSTREAM_THREADS)
        } else {
            Duration::ZERO
        }
    };
    let start = std::time::Instant::now();
    let mut samples = Vec::new();
    while let Some(cpu) = cpu_time_of(pid).map(|c| c + upstream()) {
        let at = start.elapsed();
        samples.push((at, cpu));
        if at >= from + span {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let in_window: Vec<_> = samples.iter().filter(|(at, _)| *at >= from).collect();
    let (first, last) = match in_window.as_slice() {
        [first, .., last] => (**first, **last),
        _ => (
            *samples.get(samples.len().checked_sub(2)?)?,
            *samples.last()?,
        ),
    };
    let secs = (last.0 - first.0).as_secs_f64();
    (secs > 0.0).then(|| last.1.saturating_sub(first.1).as_secs_f64() / secs)
}

/// How long `cork run` takes to start the command, at most, before the load's warm-up
/// begins (every peer's CPU is sampled after it, so all are sampled over the same part
/// of their runs).
const CORK_START: Duration = Duration::from_millis(300);

/// Runs the load; with `sample`, also CPU seconds per second over the middle half of the
/// measured window: for cork's peers the agent's (the load command's process is the
/// agent: `cork run`), for squid and mitmproxy their process's, for direct the load
/// generator's and the upstream's (this process's upstream threads).
fn run_load(
    bench: &BenchNs,
    peer: &RunningPeer,
    bin: &Path,
    spec: &LoadSpec,
    sample: bool,
) -> Result<(LoadResult, Option<f64>)> {
    let mut cmd = peer.load_command(bench.ns(), bin, &spec.to_args())?;
    let limit = spec.warmup + spec.duration + Duration::from_secs(60);
    let (from, span) = (
        CORK_START + spec.warmup + spec.duration / 4,
        spec.duration / 2,
    );
    let proxy_pid = peer.proxy_pid();
    let sampled = match (sample, peer.transparent(), proxy_pid) {
        (false, _, _) => None,
        (true, true, _) => Some((None, false)),
        (true, false, Some(proxy)) => Some((Some(proxy), false)),
        (true, false, None) => Some((None, true)),
    };
    let (out, agent_cpu) = run_watched(&mut cmd, limit, move |pid| {
        let (proxy, with_upstream) = sampled?;
        cpu_rate(proxy.unwrap_or(pid), from, span, with_upstream)
    })?;
    ensure!(
        out.code() == 0,
        "load generator: {out}\n{}",
        peer.log_tail()
    );
    let result = LoadResult::parse(&out.stdout)?;
    ensure!(
        result.requests > 0,
        "no request completed: {out}\n{}",
        peer.log_tail()
    );
    Ok((result, agent_cpu))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> LoadSpec {
        LoadSpec {
            host: "bench.test".into(),
            port: 8443,
            path: "/bytes?n=1024".into(),
            connect_to: "127.0.0.1:8443".parse().unwrap(),
            proxy: Some("127.0.0.1:3128".parse().unwrap()),
            connect_by_name: true,
            cacert: "/tmp/ca.pem".into(),
            concurrency: 8,
            warmup: Duration::from_millis(500),
            duration: Duration::from_secs(3),
            rate: Some(1234.5),
            body: Some(1024),
            fresh: true,
        }
    }

    #[test]
    fn load_args_round_trip() {
        let s = spec();
        let (back, threads) = LoadSpec::from_args(&s.to_args()).unwrap();
        assert_eq!(format!("{back:?}"), format!("{s:?}"));
        assert_eq!(threads, 1);
        assert_eq!(back.authority(), "bench.test:8443");
    }

    #[test]
    fn load_args_refuse_addresses_outside_the_test_ranges() {
        let mut a = spec().to_args();
        let i = a.iter().position(|x| x == "--connect-to").unwrap();
        a[i + 1] = "192.0.2.1:443".into();
        assert!(LoadSpec::from_args(&a).is_err());
    }

    #[test]
    fn load_result_line_round_trips() {
        let r = LoadResult {
            requests: 10,
            errors: 1,
            rate: 3.5,
            p50_us: 700,
            p99_us: 9000,
            cdf: vec![600, 700, 9000],
        };
        let back = LoadResult::parse(&format!("noise\n{r}\n")).unwrap();
        assert_eq!(format!("{back}"), format!("{r}"));
    }
}
