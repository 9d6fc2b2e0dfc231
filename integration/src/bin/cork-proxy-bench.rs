//! `cork-proxy-bench`: keep-alive HTTPS requests per second and latency through
//! intercepting proxies, each peer measured the same way in one run.
//!
//! ```text
//! cork-proxy-bench compare [--smoke] [--peers direct,cork,cork-b,cork-relay,mitmproxy,squid]
//!                          [-c 16] [--warmup 1] [--duration 10] [--rounds 1]
//!                          [--path /bytes?n=1024] [--post BYTES] [--latency-rate R]
//!                          [--no-new-connections]
//! cork-proxy-bench load --url https://bench.test/bytes?n=1024 [--connect-to ADDR]
//!                       [--proxy ADDR] [--cacert FILE] [-c 16] [--warmup 1]
//!                       [--duration 10] [--rate R] [--post BYTES] [--threads 1]
//!                       [--new-connections]
//! ```
//! `cargo xtask bench-proxy [compare options]` builds in release mode and runs
//! `compare`; `cargo xtask bench-deps` installs the peers (squid-openssl, mitmproxy in a
//! virtualenv under /var/cache/cork-bench).
//!
//! `compare` creates one network namespace (only `lo` up) and runs everything in it: the
//! test upstream on 127.0.0.1:8443 with a `bench.test` certificate, one peer proxy at a
//! time, and `load` as a child process. Each peer gets two runs: closed loop for the
//! maximum rate, then open loop at half that rate for p50/p99 latency. A request counts
//! from when it fell due if its connection was still busy then, else from when the timer
//! woke the client: tokio's timer ticks in milliseconds, so above ~10k req/s requests
//! leave in per-tick bursts, which weighs on direct's latency most. With `--rounds N`
//! every round runs every peer in turn and the summary gives each figure's median. The
//! Then, unless `--no-new-connections`, a third closed-loop run opens a new TLS
//! connection for every request (full handshake, no resumption, reset after the
//! answer): new intercepted connections per second, against direct's plain rustls
//! server. Without `--peers`, peers that are not installed are skipped with a note.
//! `cork-b` is `cork` run by another build, `$CORK_BIN_B` (e.g. the release binary of the
//! commit before a change): `CORK_BIN_B=/tmp/cork-old cargo xtask bench-proxy --peers
//! direct,cork,cork-b --rounds 5` alternates the two builds in every round and reports
//! each round's cork / cork-b rate and CPU per request.
//! The results go to `$CORK_BENCH_OUT/proxy.json` (default `target/bench`) as well.
//! `--smoke` (the test suite's run) is 2 connections, 0.2 s warm-up, 0.5 s runs.
//! The namespace, its processes and the temp dir go on every exit path: `Drop`, and a
//! signal thread for SIGINT/SIGTERM/SIGHUP; after a SIGKILL, `cargo xtask clean` (or the
//! test suite's sweeper) removes the world-named leftovers.
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
//! `cork-relay` is the same bottle with `inspect = false` on the rule: the proxy checks
//! the SNI and relays the TLS bytes (the client trusts the upstream CA), which is what
//! two TCP legs through the agent cost before any interception work.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cork_bench_report::{Report, cdf_series};
use cork_integration::proxy_bench::{
    self, CompareOpts, LoadSpec, Peer, PeerResult, Pick, per_round_ratio, same_round_ratios,
};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("load") => {
            let (spec, threads) = LoadSpec::from_args(&args[1..])?;
            let result = proxy_bench::load::run(spec, threads)?;
            println!("{result}");
            Ok(())
        }
        Some("compare") => {
            proxy_bench::ns::cleanup_on_signal()?;
            compare(&args[1..])
        }
        _ => bail!("usage: cork-proxy-bench compare [OPTIONS] | load --url URL [OPTIONS]"),
    }
}

fn compare(args: &[String]) -> Result<()> {
    let mut opts = CompareOpts {
        peers: Peer::ALL.to_vec(),
        concurrency: 16,
        warmup: Duration::from_secs(1),
        duration: Duration::from_secs(10),
        rounds: 1,
        path: "/bytes?n=1024".to_owned(),
        body: None,
        load_bin: std::env::current_exe().context("own path")?,
        latency_rate: None,
        venv: std::env::var_os("CORK_BENCH_VENV").map_or_else(
            || PathBuf::from("/var/cache/cork-bench/venv"),
            PathBuf::from,
        ),
        new_connections: true,
    };
    let mut peers_given = false;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--smoke" => {
                opts.concurrency = 2;
                opts.warmup = Duration::from_millis(200);
                opts.duration = Duration::from_millis(500);
                opts.rounds = 1;
            }
            "--no-new-connections" => opts.new_connections = false,
            "--peers" => {
                peers_given = true;
                opts.peers = value()?
                    .split(',')
                    .map(Peer::parse)
                    .collect::<Result<_>>()?
            }
            "--concurrency" | "-c" => opts.concurrency = value()?.parse()?,
            "--warmup" => opts.warmup = Duration::from_secs_f64(value()?.parse()?),
            "--duration" => opts.duration = Duration::from_secs_f64(value()?.parse()?),
            "--rounds" => opts.rounds = value()?.parse()?,
            "--path" => opts.path = value()?.clone(),
            "--post" => opts.body = Some(value()?.parse()?),
            "--latency-rate" => opts.latency_rate = Some(value()?.parse()?),
            other => bail!("unknown compare option {other:?}"),
        }
    }
    if !peers_given {
        opts.peers.retain(|p| match p.missing(&opts.venv) {
            Some(why) => {
                println!("skipping {why}");
                false
            }
            None => true,
        });
    } else if let Some(why) = opts.peers.iter().find_map(|p| p.missing(&opts.venv)) {
        // Named on the command line: refused before anything is set up.
        bail!("{why}");
    }
    let what = match opts.body {
        Some(n) => format!("POST {} with {n} B", opts.path),
        None => format!("GET {}", opts.path),
    };
    let title = format!(
        "HTTPS keep-alive, HTTP/1.1, {what}, {} connections, {:?} per run after {:?} warm-up, \
         {} round(s)",
        opts.concurrency, opts.duration, opts.warmup, opts.rounds
    );
    println!("{title}");
    let latency_at = match opts.latency_rate {
        Some(r) => format!("latency at {r:.0} req/s, or half the max if lower"),
        None => "latency at half the max".to_owned(),
    };
    println!(
        "  round peer        max req/s   p50 us   p99 us  errors   new TLS conn/s  p50 us   ({latency_at})"
    );
    let results = proxy_bench::compare(&opts, |r| {
        let fresh = r.fresh.as_ref().map_or(String::new(), |f| {
            format!("{:>14.0} {:>7}", f.rate, f.p50_us)
        });
        println!(
            "  {:>5} {:<10} {:>10.0} {:>8} {:>8} {:>7}   {fresh}",
            r.round,
            r.peer.name(),
            r.max.rate,
            r.paced.p50_us,
            r.paced.p99_us,
            r.max.errors + r.paced.errors + r.fresh.as_ref().map_or(0, |f| f.errors)
        );
    })?;
    summary(&opts.peers, &results);
    let dir = std::env::var_os("CORK_BENCH_OUT")
        .map_or_else(|| PathBuf::from("target/bench"), PathBuf::from);
    let path = report(title, &opts.peers, &results).write(&dir)?;
    println!("(report: {})", path.display());
    Ok(())
}

/// The `proxy` report: per peer, the maximum keep-alive rate, open-loop p50/p99 and new
/// TLS connections per second (each against direct), and the latency CDF.
fn report(title: String, peers: &[Peer], results: &[PeerResult]) -> Report {
    let mut rep = Report::new("proxy", title);
    let has_direct = peers.contains(&Peer::Direct);
    let figures: [(&str, &str, &str, Pick); 6] = [
        ("max_rps", "keep-alive HTTPS max req/s", "1/s", |r| {
            Some(r.max.rate)
        }),
        ("p50", "keep-alive HTTPS p50 (open loop)", "us", |r| {
            Some(r.paced.p50_us as f64)
        }),
        ("p99", "keep-alive HTTPS p99 (open loop)", "us", |r| {
            Some(r.paced.p99_us as f64)
        }),
        ("tls_cps", "new TLS connections/s", "1/s", |r| {
            r.fresh.as_ref().map(|f| f.rate)
        }),
        ("tls_p50", "new TLS connection + request p50", "us", |r| {
            r.fresh.as_ref().map(|f| f.p50_us as f64)
        }),
        (
            "agent_cpu",
            "CPU per request at the max rate (cork: the agent; direct: client + server; squid, mitmproxy: their process)",
            "us",
            |r| r.agent_cpu_us,
        ),
    ];
    for (key, what, unit, pick) in figures {
        for &p in peers {
            let samples: Vec<f64> = results
                .iter()
                .filter(|r| r.peer == p)
                .filter_map(pick)
                .collect();
            if samples.is_empty() {
                continue;
            }
            rep.row(
                &format!("{key}.{}", p.name()),
                &format!("{what}, {}", p.name()),
                unit,
                &samples,
            );
            // For `agent_cpu` the ratio is the agent's cost over direct's client and
            // server together: half direct's rate needs it at most 1.
            if has_direct && p != Peer::Direct {
                rep.ratio_to(&format!("{key}.direct"));
            }
        }
    }
    for (key, what, of, pick) in same_round_ratios() {
        let each = per_round_ratio(results, Peer::Cork, of, pick);
        if !each.is_empty() {
            rep.row(&format!("{key}.cork"), what, "x", &each);
        }
    }
    for &p in peers {
        let runs: Vec<Vec<u64>> = results
            .iter()
            .filter(|r| r.peer == p)
            .map(|r| r.paced.cdf.clone())
            .collect();
        rep.series(cdf_series(
            &format!("latency.{}", p.name()),
            p.name(),
            "us",
            &runs,
        ));
    }
    rep
}

/// Medians per peer, with ratios against direct when it ran.
fn summary(peers: &[Peer], results: &[PeerResult]) {
    let median = |peer: Peer, f: &dyn Fn(&PeerResult) -> f64| -> f64 {
        let mut v: Vec<f64> = results.iter().filter(|r| r.peer == peer).map(f).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let figures = |p: Peer| {
        [
            median(p, &|r| r.max.rate),
            median(p, &|r| r.paced.p50_us as f64),
            median(p, &|r| r.paced.p99_us as f64),
        ]
    };
    let base = peers.contains(&Peer::Direct).then(|| figures(Peer::Direct));
    println!(
        "\n{:<10} {:>10} {:>7} {:>9} {:>9} {:>7} {:>7}",
        "median", "max req/s", "x", "p50 us", "p99 us", "p50 x", "p99 x"
    );
    for &p in peers {
        let f = figures(p);
        let ratio = |i: usize| base.map_or("-".to_owned(), |b| format!("{:.2}", f[i] / b[i]));
        println!(
            "{:<10} {:>10.0} {:>7} {:>9.0} {:>9.0} {:>7} {:>7}",
            p.name(),
            f[0],
            ratio(0),
            f[1],
            f[2],
            ratio(1),
            ratio(2)
        );
    }
    println!("(x: ratio to direct; latency measured open-loop, at the rate the header gives)");
    for (_, what, of, pick) in same_round_ratios() {
        let each: Vec<String> = per_round_ratio(results, Peer::Cork, of, pick)
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect();
        if !each.is_empty() {
            println!("{what}, per round: {}", each.join(" "));
        }
    }
    for &p in peers {
        let each: Vec<String> = results
            .iter()
            .filter(|r| r.peer == p)
            .filter_map(|r| r.agent_cpu_us)
            .map(|us| format!("{us:.1}"))
            .collect();
        if !each.is_empty() {
            println!(
                "CPU per request ({}: {}), per round: {} us",
                p.name(),
                p.cpu_whose(),
                each.join(" ")
            );
        }
    }
}
