//! `cork-bench [--only connect|dns|kernel|scale|daemon] [COUNT [ROUNDS]]`: connect()+close per second
//! against a TCP server in the internet netns, from the bottle netns outside any bottle,
//! then inside `cork run` (same `connect-loop` client both times), in interleaved rounds;
//! prints the rates, their medians and the ratio. Then DNS through the proxy against
//! direct, then the kernel programs: nanoseconds per run of each (`bpf_stats`), and the
//! latency of audit delivery (kernel decision to audit log line). Then policy scale: 10,
//! 1 000 and 100 000 CIDR rules per family (+ 10 000 domain rules) — check and start-up
//! time, trie memory, connect4's cost. Then standing bottles: `cork bottle create`,
//! `cork bottle update` and `cork exec -- true` at 10, 10 000 and 100 000 rules per family.

use anyhow::{Context, Result, bail};
use cork_integration::dns_server::Zone;
use cork_integration::process::Spawned;
use cork_integration::{Side, World};

fn rate(out: &cork_integration::RunOutput) -> Result<f64> {
    out.stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("rate=")?.strip_suffix("/s")?.parse().ok())
        .with_context(|| format!("no rate in output:\n{out}"))
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1).peekable();
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
        && !["connect", "dns", "kernel", "scale", "daemon"].contains(&o.as_str())
    {
        bail!("--only {o}: expected connect, dns, kernel, scale or daemon");
    }
    let wants = |section: &str| only.as_deref().is_none_or(|o| o == section);
    let count: u64 = args.next().map(|c| c.parse()).transpose()?.unwrap_or(5000);
    let rounds: usize = args.next().map(|c| c.parse()).transpose()?.unwrap_or(5);
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
        connect_bench(&world, &client, count, rounds)?;
    }
    if wants("kernel") {
        cork_integration::kernel_bench::report(&world, &client, count.max(20_000))?;
    }
    if wants("scale") {
        cork_integration::scale_bench::report(&world, &client, &[10, 1000, 100_000], count)?;
    }
    if wants("daemon") {
        cork_integration::update_bench::report(&world, &[10, 10_000, 100_000])?;
    }
    server.kill()?;
    if wants("dns") {
        dns_bench(&world, &client, rounds)?;
    }
    Ok(())
}

fn connect_bench(world: &World, client: &str, count: u64, rounds: usize) -> Result<()> {
    let args = [
        "198.51.100.10".to_string(),
        "9000".into(),
        count.to_string(),
    ];
    let manifest = "[[egress.allow]]\ncidr = \"198.51.100.10/32\"\nports = [9000]\n";
    let argv: Vec<String> = std::iter::once(client.to_string())
        .chain(args.iter().cloned())
        .collect();

    println!(
        "connect()+close to 198.51.100.10:9000 (veth to another netns), {count} per run, \
         {rounds} interleaved rounds"
    );
    // Interleaved rounds, so drift on the machine (other load, TIME_WAIT build-up) hits
    // both sides alike; medians reported.
    let (mut outside, mut inside, mut events, mut lost) = (Vec::new(), Vec::new(), 0, 0);
    for round in 1..=rounds {
        let plain = world.run(world.command(Side::Bottle, client).args(&args))?;
        if plain.code() != 0 {
            bail!("outside a bottle: {plain}");
        }
        let (bottled, audit) = world.run_argv(&format!("bench{round}"), manifest, &argv)?;
        let (a, b) = (rate(&plain)?, rate(&bottled)?);
        println!(
            "  round {round}: outside {a:>9.1}/s   inside {b:>9.1}/s   ratio {:.3}",
            b / a
        );
        outside.push(a);
        inside.push(b);
        // A summary line stands for `count` allows of one flow.
        events += audit
            .verdicts()
            .iter()
            .map(|v| v["count"].as_u64().unwrap_or(1))
            .sum::<u64>();
        lost += audit.lost();
    }
    let (a, b) = (median(&mut outside), median(&mut inside));
    println!("  median outside a bottle : {a:>10.1}/s");
    println!("  median inside cork run  : {b:>10.1}/s");
    println!("  ratio inside/outside    : {:.3}", b / a);
    println!("  audit verdicts: {events} (lost {lost})");
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Sequential UDP queries for an allowed name: straight to the test world's authoritative
/// server (outside a bottle), then from inside a bottle, where the kernel redirects them to
/// cork's DNS proxy, which checks, forwards, filters, learns the answer into the kernel and
/// replies. The difference is what the proxy adds.
fn dns_bench(world: &World, client: &str, rounds: usize) -> Result<()> {
    const QUERIES: &str = "2000";
    let _upstream = world.dns_server(
        "198.51.100.53:53",
        Zone::new().a("bench.example.test", "198.51.100.10", 300),
    )?;
    let manifest = "[[egress.allow]]\ndomain = \"bench.example.test\"\nports = [443]\n\n\
                    [dns]\nupstream = [\"198.51.100.53\"]\nqueries_per_second = 10000\n";
    let args = ["--dns", "198.51.100.53", "bench.example.test", QUERIES];
    let argv: Vec<String> = std::iter::once(client.to_string())
        .chain(args.iter().map(|a| a.to_string()))
        .collect();
    println!("\nDNS A queries, {QUERIES} sequential per run, {rounds} interleaved rounds");
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
            a.0, a.1, a.2, b.0, b.1, b.2
        );
        direct.push(a);
        proxied.push(b);
    }
    let med = |v: &mut Vec<(f64, u64, u64)>, i: usize| {
        let mut x: Vec<f64> = v.iter().map(|t| [t.0, t.1 as f64, t.2 as f64][i]).collect();
        median(&mut x)
    };
    let (dr, dp50, dp99) = (
        med(&mut direct, 0),
        med(&mut direct, 1),
        med(&mut direct, 2),
    );
    let (pr, pp50, pp99) = (
        med(&mut proxied, 0),
        med(&mut proxied, 1),
        med(&mut proxied, 2),
    );
    println!("  median direct   : {dr:>9.1}/s  p50 {dp50:>6.0}us  p99 {dp99:>6.0}us");
    println!("  median via cork : {pr:>9.1}/s  p50 {pp50:>6.0}us  p99 {pp99:>6.0}us");
    println!(
        "  added by cork   : p50 {:+.0}us  p99 {:+.0}us  (rate ratio {:.3})",
        pp50 - dp50,
        pp99 - dp99,
        pr / dr
    );
    Ok(())
}

/// (rate, p50 µs, p99 µs) from a `connect-loop --dns` line.
fn dns_stats(out: &cork_integration::RunOutput) -> Result<(f64, u64, u64)> {
    let field = |key: &str| -> Result<&str> {
        out.stdout
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .with_context(|| format!("no {key} in output:\n{out}"))
    };
    Ok((
        field("rate=")?.trim_end_matches("/s").parse()?,
        field("p50=")?.trim_end_matches("us").parse()?,
        field("p99=")?.trim_end_matches("us").parse()?,
    ))
}
