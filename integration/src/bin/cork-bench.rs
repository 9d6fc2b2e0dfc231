//! `cork-bench [--smoke] [--only connect|dns|kernel|scale|daemon] [COUNT [ROUNDS]]`:
//! connect()+close per second against a TCP server in the internet netns, from the bottle
//! netns outside any bottle, then inside `cork run` (same `connect-loop` client both
//! times), in interleaved rounds; prints the rates, their medians and the ratio. Then DNS
//! through the proxy against direct, then the kernel programs: nanoseconds per run of each
//! (`bpf_stats`), and the latency of audit delivery (kernel decision to audit log line).
//! Then policy scale: 10, 1 000, 10 000 and 100 000 CIDR rules per family (+ 10 000
//! domain rules) — check and start-up time, trie memory, connect4's cost, connects/s. Then
//! standing bottles: `cork bottle create`, `cork bottle update` and `cork exec -- true` at
//! 10, 10 000 and 100 000 rules per family, then `cork exec -- true` against bare `true`
//! in 30 rounds.
//!
//! Each section also writes its report (`cork_bench_report::Report`) as
//! `$CORK_BENCH_OUT/<section>.json` (default `target/bench`). `--smoke` is the test
//! suite's run: the smallest sizes (10 rules), `COUNT` connects (default 300), one round,
//! 200 DNS queries — it proves every section runs and reports, and measures nothing.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use cork_bench_report::{Report, cdf_series, parse_list};
use cork_integration::dns_server::Zone;
use cork_integration::noop_cgroup::NoopCgroup;
use cork_integration::process::Spawned;
use cork_integration::{Side, World};

const SECTIONS: [&str; 5] = ["connect", "dns", "kernel", "scale", "daemon"];

fn rate(out: &cork_integration::RunOutput) -> Result<f64> {
    out.stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("rate=")?.strip_suffix("/s")?.parse().ok())
        .with_context(|| format!("no rate in output:\n{out}"))
}

/// Where the reports go.
fn out_dir() -> PathBuf {
    std::env::var_os("CORK_BENCH_OUT").map_or_else(|| PathBuf::from("target/bench"), PathBuf::from)
}

fn save(report: &Report) -> Result<()> {
    let path = report.write(&out_dir())?;
    println!("  (report: {})", path.display());
    Ok(())
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1).peekable();
    let smoke = args.peek().is_some_and(|a| a == "--smoke");
    if smoke {
        args.next();
    }
    let only = if args.peek().is_some_and(|a| a == "--only") {
        args.next();
        Some(
            args.next()
                .context("--only needs connect, dns, kernel, scale or daemon")?,
        )
    } else {
        None
    };
    if let Some(o) = &only
        && !SECTIONS.contains(&o.as_str())
    {
        bail!("--only {o}: expected connect, dns, kernel, scale or daemon");
    }
    let wants = |section: &str| only.as_deref().is_none_or(|o| o == section);
    let default_count = if smoke { 300 } else { 5000 };
    let count: u64 = args
        .next()
        .map(|c| c.parse())
        .transpose()?
        .unwrap_or(default_count);
    let rounds: usize = args
        .next()
        .map(|c| c.parse())
        .transpose()?
        .unwrap_or(if smoke { 1 } else { 5 });
    let client = std::env::current_exe()?.with_file_name("connect-loop");
    if !client.is_file() {
        bail!(
            "{} missing: cargo build -p cork-integration --bins",
            client.display()
        );
    }
    let client = client.display().to_string();
    let world = World::new("cork-bench")?;
    world.add_internet_ip("198.51.100.10".parse()?)?;
    let mut server = Spawned::start(world.command(Side::Internet, &client).args([
        "--serve",
        "198.51.100.10",
        "9000",
    ]))?;
    server.wait_line("ready", std::time::Duration::from_secs(5))?;
    if wants("connect") {
        save(&connect_bench(&world, &client, count, rounds)?)?;
    }
    if wants("kernel") {
        let (n, paced) = if smoke {
            (count, count.min(100))
        } else {
            (count.max(20_000), 1000)
        };
        save(&cork_integration::kernel_bench::report(
            &world, &client, n, paced,
        )?)?;
    }
    if wants("scale") {
        let sizes: &[usize] = if smoke {
            &[10]
        } else {
            &[10, 1000, 10_000, 100_000]
        };
        save(&cork_integration::scale_bench::report(
            &world, &client, sizes, count,
        )?)?;
    }
    if wants("daemon") {
        let sizes: &[usize] = if smoke { &[10] } else { &[10, 10_000, 100_000] };
        let exec_runs = if smoke { 3 } else { 30 };
        save(&cork_integration::update_bench::report(
            &world, sizes, exec_runs,
        )?)?;
    }
    server.kill()?;
    if wants("dns") {
        let queries = if smoke { 200 } else { 2000 };
        save(&dns_bench(&world, &client, queries, rounds)?)?;
    }
    Ok(())
}

fn connect_bench(world: &World, client: &str, count: u64, rounds: usize) -> Result<Report> {
    let args = [
        "198.51.100.10".to_string(),
        "9000".into(),
        count.to_string(),
    ];
    let manifest = "[[egress.allow]]\ncidr = \"198.51.100.10/32\"\nports = [9000]\n";
    let argv: Vec<String> = std::iter::once(client.to_string())
        .chain(args.iter().cloned())
        .collect();

    let title = format!(
        "connect()+close to 198.51.100.10:9000 (veth to another netns), {count} per run, \
         {rounds} interleaved rounds"
    );
    println!("{title}");
    // Interleaved rounds, so drift on the machine (other load, TIME_WAIT build-up) hits
    // both sides alike; medians reported.
    // The floor: the same client in a cgroup with a no-op program on each of cork's hooks.
    let noop_cg = NoopCgroup::create(world)?;
    let (mut outside, mut noop, mut inside, mut events, mut lost) =
        (Vec::new(), Vec::new(), Vec::new(), 0, 0);
    for round in 1..=rounds {
        let plain = world.run(world.command(Side::Bottle, client).args(&args))?;
        if plain.code() != 0 {
            bail!("outside a bottle: {plain}");
        }
        let floor = world.run(noop_cg.command(world, Side::Bottle, &argv))?;
        if floor.code() != 0 {
            bail!("in the no-op cgroup: {floor}");
        }
        let (bottled, audit) = world.run_argv(&format!("bench{round}"), manifest, &argv)?;
        let (a, n, b) = (rate(&plain)?, rate(&floor)?, rate(&bottled)?);
        println!(
            "  round {round}: outside {a:>9.1}/s   no-op {n:>9.1}/s   inside {b:>9.1}/s   \
             ratio {:.3} (to no-op {:.3})",
            b / a,
            b / n
        );
        outside.push(a);
        noop.push(n);
        inside.push(b);
        // A summary line stands for `count` allows of one flow.
        events += cork_integration::Audit::stood_for(&audit.verdicts());
        lost += audit.lost();
    }
    let mut rep = Report::new("connect", title);
    rep.row(
        "outside",
        "connect()+close outside a bottle",
        "1/s",
        &outside,
    )
    .row(
        "noop",
        "connect()+close in a cgroup with no-op programs (the floor)",
        "1/s",
        &noop,
    )
    .ratio_to("outside")
    .row("inside", "connect()+close inside cork run", "1/s", &inside)
    .ratio_to("outside")
    .row(
        "inside_vs_noop",
        "connect()+close inside cork run, against the no-op floor",
        "1/s",
        &inside,
    )
    .ratio_to("noop")
    .row(
        "audit_verdicts",
        "audit verdicts",
        "events",
        &[events as f64],
    )
    .row("audit_lost", "audit events lost", "events", &[lost as f64]);
    let (a, n, b) = (rep.rows[0].value, rep.rows[1].value, rep.rows[2].value);
    println!("  median outside a bottle : {a:>10.1}/s");
    println!(
        "  median no-op cgroup     : {n:>10.1}/s  (ratio {:.3})",
        n / a
    );
    println!("  median inside cork run  : {b:>10.1}/s");
    println!("  ratio inside/outside    : {:.3}", b / a);
    println!("  ratio inside/no-op      : {:.3}", b / n);
    println!("  audit verdicts: {events} (lost {lost})");
    Ok(rep)
}

/// One DNS run's figures.
struct DnsRun {
    rate: f64,
    p50: f64,
    p99: f64,
    /// Latency (µs) at each of `cdf_probabilities`.
    cdf: Vec<u64>,
}

/// Sequential UDP queries for an allowed name: straight to the test world's authoritative
/// server (outside a bottle), then from inside a bottle, where the kernel redirects them to
/// cork's DNS proxy, which checks, forwards, filters, learns the answer into the kernel and
/// replies. The difference is what the proxy adds.
fn dns_bench(world: &World, client: &str, queries: u32, rounds: usize) -> Result<Report> {
    let _upstream = world.dns_server(
        "198.51.100.53:53",
        Zone::new().a("bench.example.test", "198.51.100.10", 300),
    )?;
    let manifest = "[[egress.allow]]\ndomain = \"bench.example.test\"\nports = [443]\n\n\
                    [dns]\nupstream = [\"198.51.100.53\"]\nqueries_per_second = 10000\n";
    let queries = queries.to_string();
    let args = ["--dns", "198.51.100.53", "bench.example.test", &queries];
    let argv: Vec<String> = std::iter::once(client.to_string())
        .chain(args.iter().map(|a| a.to_string()))
        .collect();
    let title = format!("DNS A queries, {queries} sequential per run, {rounds} interleaved rounds");
    println!("\n{title}");
    let (mut direct, mut proxied) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let plain = world.run(world.command(Side::Bottle, client).args(args))?;
        if plain.code() != 0 {
            bail!("direct: {plain}");
        }
        let (bottled, _) = world.run_argv(&format!("dns{round}"), manifest, &argv)?;
        let (a, b) = (dns_stats(&plain)?, dns_stats(&bottled)?);
        println!(
            "  round {round}: direct {:>8.1}/s p50 {:>5}us p99 {:>5}us   via cork {:>8.1}/s p50 {:>5}us p99 {:>5}us",
            a.rate, a.p50, a.p99, b.rate, b.p50, b.p99
        );
        direct.push(a);
        proxied.push(b);
    }
    let col = |v: &[DnsRun], f: fn(&DnsRun) -> f64| -> Vec<f64> { v.iter().map(f).collect() };
    let mut rep = Report::new("dns", title);
    rep.row(
        "direct_rate",
        "DNS queries/s direct",
        "1/s",
        &col(&direct, |r| r.rate),
    )
    .row(
        "cork_rate",
        "DNS queries/s through cork",
        "1/s",
        &col(&proxied, |r| r.rate),
    )
    .ratio_to("direct_rate")
    .row(
        "direct_p50",
        "DNS p50 direct",
        "us",
        &col(&direct, |r| r.p50),
    )
    .row(
        "cork_p50",
        "DNS p50 through cork",
        "us",
        &col(&proxied, |r| r.p50),
    )
    .ratio_to("direct_p50")
    .row(
        "direct_p99",
        "DNS p99 direct",
        "us",
        &col(&direct, |r| r.p99),
    )
    .row(
        "cork_p99",
        "DNS p99 through cork",
        "us",
        &col(&proxied, |r| r.p99),
    )
    .ratio_to("direct_p99");
    let value = |r: &Report, k: &str| r.get(k).map_or(f64::NAN, |r| r.value);
    let (dr, dp50, dp99) = (
        value(&rep, "direct_rate"),
        value(&rep, "direct_p50"),
        value(&rep, "direct_p99"),
    );
    let (pr, pp50, pp99) = (
        value(&rep, "cork_rate"),
        value(&rep, "cork_p50"),
        value(&rep, "cork_p99"),
    );
    rep.row("p50_added", "DNS p50 added by cork", "us", &[pp50 - dp50])
        .row("p99_added", "DNS p99 added by cork", "us", &[pp99 - dp99]);
    let cdfs = |v: &[DnsRun]| -> Vec<Vec<u64>> { v.iter().map(|r| r.cdf.clone()).collect() };
    rep.series(cdf_series("direct", "direct", "us", &cdfs(&direct)))
        .series(cdf_series(
            "cork",
            "through cork's DNS proxy",
            "us",
            &cdfs(&proxied),
        ));
    println!("  median direct   : {dr:>9.1}/s  p50 {dp50:>6.0}us  p99 {dp99:>6.0}us");
    println!("  median via cork : {pr:>9.1}/s  p50 {pp50:>6.0}us  p99 {pp99:>6.0}us");
    println!(
        "  added by cork   : p50 {:+.0}us  p99 {:+.0}us  (rate ratio {:.3})",
        pp50 - dp50,
        pp99 - dp99,
        pr / dr
    );
    Ok(rep)
}

/// A `connect-loop --dns` line's figures.
fn dns_stats(out: &cork_integration::RunOutput) -> Result<DnsRun> {
    let field = |key: &str| -> Result<&str> {
        out.stdout
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .with_context(|| format!("no {key} in output:\n{out}"))
    };
    Ok(DnsRun {
        rate: field("rate=")?.trim_end_matches("/s").parse()?,
        p50: field("p50=")?.trim_end_matches("us").parse()?,
        p99: field("p99=")?.trim_end_matches("us").parse()?,
        cdf: parse_list(&out.stdout, "q").with_context(|| format!("no q= in output:\n{out}"))?,
    })
}
