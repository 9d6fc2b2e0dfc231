//! `cork-proxy-bench`: keep-alive HTTPS requests per second and latency through
//! intercepting proxies, each peer measured the same way in one run.
//!
//! ```text
//! cork-proxy-bench compare [--peers direct,mitmproxy,squid] [-c 16] [--warmup 1]
//!                          [--duration 10] [--path /bytes?n=1024] [--post BYTES]
//! cork-proxy-bench load --url https://bench.test/bytes?n=1024 [--connect-to ADDR]
//!                       [--proxy ADDR] [--cacert FILE] [-c 16] [--warmup 1]
//!                       [--duration 10] [--rate R] [--post BYTES] [--threads 1]
//! ```
//! `cargo xtask bench-proxy [compare options]` builds in release mode and runs
//! `compare`; `cargo xtask bench-deps` installs the peers (squid-openssl, mitmproxy in a
//! virtualenv under /var/cache/cork-bench).
//!
//! `compare` creates one network namespace (only `lo` up) and runs everything in it: the
//! test upstream on 127.0.0.1:8443 with a `bench.test` certificate, one peer proxy at a
//! time, and `load` as a child process. Each peer gets two runs: closed loop for the
//! maximum rate, then open loop at half that rate for p50/p99 latency (counted from when
//! each request was due). The namespace is removed on every exit path (its Drop; a
//! killed run leaves a world-named netns that `cargo xtask clean` removes).
//!
//! `load` is the client alone. It connects to `--connect-to` (or the URL's host,
//! resolved) and speaks TLS to it directly, or sends `CONNECT` to `--proxy` first; it
//! trusts `--cacert`, else the file `SSL_CERT_FILE` names. It prints one line,
//! `rate=…/s requests=… errors=… p50=…us p99=…us`.
//!
//! Adding cork as a peer: `Peer::Cork` in `proxy_bench::peers`, whose `start` adds
//! 198.51.100.2 on a dummy link in the bench namespace (cork leaves loopback alone, so
//! the upstream must be reached on a routed address; `UpstreamConfig::tls` gets that
//! address too), writes a manifest allowing `198.51.100.2/32` port 443 with inspection
//! and the upstream CA as the proxy's upstream trust, and returns no `proxy`: the
//! client connects transparently and cork's eBPF redirects it to the agent's proxy.
//! Its arm of `RunningPeer::load_command` runs `cork run --manifest M -- <this binary>
//! load --url https://bench.test/… --connect-to 198.51.100.2:443` with `SSL_CERT_FILE`
//! set to the bottle's CA; nothing else in the comparison changes.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cork_integration::proxy_bench::{self, CompareOpts, LoadSpec, Peer, PeerResult};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("load") => {
            let (spec, threads) = LoadSpec::from_args(&args[1..])?;
            let result = proxy_bench::load::run(spec, threads)?;
            println!("{result}");
            Ok(())
        }
        Some("compare") => compare(&args[1..]),
        _ => bail!("usage: cork-proxy-bench compare [OPTIONS] | load --url URL [OPTIONS]"),
    }
}

fn compare(args: &[String]) -> Result<()> {
    let mut opts = CompareOpts {
        peers: Peer::ALL.to_vec(),
        concurrency: 16,
        warmup: Duration::from_secs(1),
        duration: Duration::from_secs(10),
        path: "/bytes?n=1024".to_owned(),
        body: None,
        load_bin: std::env::current_exe().context("own path")?,
        venv: std::env::var_os("CORK_BENCH_VENV").map_or_else(
            || PathBuf::from("/var/cache/cork-bench/venv"),
            PathBuf::from,
        ),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--peers" => {
                opts.peers = value()?
                    .split(',')
                    .map(Peer::parse)
                    .collect::<Result<_>>()?
            }
            "--concurrency" | "-c" => opts.concurrency = value()?.parse()?,
            "--warmup" => opts.warmup = Duration::from_secs_f64(value()?.parse()?),
            "--duration" => opts.duration = Duration::from_secs_f64(value()?.parse()?),
            "--path" => opts.path = value()?.clone(),
            "--post" => opts.body = Some(value()?.parse()?),
            other => bail!("unknown compare option {other:?}"),
        }
    }
    let what = match opts.body {
        Some(n) => format!("POST {} with {n} B", opts.path),
        None => format!("GET {}", opts.path),
    };
    println!(
        "HTTPS keep-alive, HTTP/1.1, {what}, {} connections, {:?} per run after {:?} warm-up",
        opts.concurrency, opts.duration, opts.warmup
    );
    println!(
        "{:<10} {:>10} {:>7} {:>9} {:>9} {:>8} {:>8} {:>7}",
        "peer", "max req/s", "ratio", "p50 us", "p99 us", "p50 x", "p99 x", "errors"
    );
    let mut direct: Option<PeerResult> = None;
    proxy_bench::compare(&opts, |r| {
        if r.peer == Peer::Direct {
            direct = Some(r.clone());
        }
        let ratio = |a: f64, b: Option<f64>| b.map_or("-".to_owned(), |b| format!("{:.2}", a / b));
        let base = direct.as_ref();
        println!(
            "{:<10} {:>10.0} {:>7} {:>9} {:>9} {:>8} {:>8} {:>7}",
            r.peer.name(),
            r.max.rate,
            ratio(r.max.rate, base.map(|d| d.max.rate)),
            r.paced.p50_us,
            r.paced.p99_us,
            ratio(r.paced.p50_us as f64, base.map(|d| d.paced.p50_us as f64)),
            ratio(r.paced.p99_us as f64, base.map(|d| d.paced.p99_us as f64)),
            r.max.errors + r.paced.errors,
        );
    })?;
    println!("(latency at half of each peer's own maximum rate; ratios against direct)");
    Ok(())
}
