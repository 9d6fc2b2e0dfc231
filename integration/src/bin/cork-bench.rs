//! `cork-bench [COUNT]`: connect()+close per second against a TCP server in the
//! internet netns, from the bottle netns outside any bottle, then inside `cork run`
//! (same `connect-loop` client both times); prints both rates and their ratio.

use anyhow::{Context, Result, bail};
use cork_integration::{Side, World};

fn rate(out: &cork_integration::RunOutput) -> Result<f64> {
    out.stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("rate=")?.strip_suffix("/s")?.parse().ok())
        .with_context(|| format!("no rate in output:\n{out}"))
}

fn main() -> Result<()> {
    let count: u64 = std::env::args()
        .nth(1)
        .map(|c| c.parse())
        .transpose()?
        .unwrap_or(5000);
    let client = std::env::current_exe()?.with_file_name("connect-loop");
    if !client.is_file() {
        bail!(
            "{} missing: cargo build -p cork-integration --bins",
            client.display()
        );
    }
    let client = client.display().to_string();
    let world = World::new("cork-bench")?;
    let srv = world.tcp_server(Side::Internet, "198.51.100.10:9000")?;
    let args = [srv.ip(), srv.port().to_string(), count.to_string()];

    let plain = world.run(world.command(Side::Bottle, &client).args(&args))?;
    if plain.code() != 0 {
        bail!("outside a bottle: {plain}");
    }
    let a = rate(&plain)?;
    println!("connect()+close, {count} iterations, 198.51.100.10:9000");
    println!("  outside a bottle : {a:>10.1}/s");
    let manifest = "[[egress.allow]]\ncidr = \"198.51.100.10/32\"\nports = [9000]\n";
    let argv: Vec<String> = std::iter::once(client.clone())
        .chain(args.iter().cloned())
        .collect();
    let (bottled, audit) = world.run_argv("bench", manifest, &argv)?;
    let b = rate(&bottled)?;
    println!("  inside cork run  : {b:>10.1}/s");
    println!("  ratio inside/outside: {:.3}", b / a);
    println!(
        "  audit events: {} (lost {})",
        audit.events.len(),
        audit.lost()
    );
    Ok(())
}
