//! `cork-bench [COUNT [ROUNDS]]`: connect()+close per second against a TCP server in the
//! internet netns, from the bottle netns outside any bottle, then inside `cork run`
//! (same `connect-loop` client both times), in interleaved rounds; prints the rates, their
//! medians and the ratio.

use anyhow::{Context, Result, bail};
use cork_integration::process::Spawned;
use cork_integration::{Side, World};

fn rate(out: &cork_integration::RunOutput) -> Result<f64> {
    out.stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("rate=")?.strip_suffix("/s")?.parse().ok())
        .with_context(|| format!("no rate in output:\n{out}"))
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
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
    let args = [
        "198.51.100.10".to_string(),
        "9000".into(),
        count.to_string(),
    ];
    let manifest = "[[egress.allow]]\ncidr = \"198.51.100.10/32\"\nports = [9000]\n";
    let argv: Vec<String> = std::iter::once(client.clone())
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
        let plain = world.run(world.command(Side::Bottle, &client).args(&args))?;
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
        events += audit.verdicts().len();
        lost += audit.lost();
    }
    let (a, b) = (median(&mut outside), median(&mut inside));
    println!("  median outside a bottle : {a:>10.1}/s");
    println!("  median inside cork run  : {b:>10.1}/s");
    println!("  ratio inside/outside    : {:.3}", b / a);
    println!("  audit verdicts: {events} (lost {lost})");
    server.kill()?;
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
