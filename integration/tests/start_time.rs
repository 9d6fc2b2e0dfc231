//! Bottle start time, measured (issue 13): `cork run --manifest M -- true` against a bare
//! `sh -c true`, both in the test world's bottle namespace, in interleaved rounds; and
//! the same with two bottles starting at once. Prints medians; asserts nothing about time
//! (a busy machine must not fail a test). Ignored: run it on purpose with
//! `cargo test -p cork-integration --test start_time -- --ignored --nocapture`, optionally
//! with `CORK_BIN_BEFORE=<other cork>` to compare two builds in the same rounds and
//! `CORK_START_ROUNDS=N` (default 15).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use cork_integration::{Side, World};

const MANIFEST: &str = r#"
[[egress.allow]]
cidr = "198.51.100.0/28"
ports = [443]

[[egress.allow]]
cidr = "198.51.100.16/28"
ports = [80]

[[egress.allow]]
cidr = "198.51.100.32/28"
ports = [8443]

[[egress.allow]]
cidr = "198.51.100.48/28"
ports = [22]

[[egress.allow]]
cidr = "198.51.100.64/28"
ports = [5432]

[[egress.allow]]
cidr = "2001:db8::/64"
ports = [443]

[[egress.allow]]
cidr = "2001:db8:1::/64"
ports = [80]

[[egress.allow]]
cidr = "2001:db8:2::/64"
ports = [8443]

[[egress.allow]]
cidr = "2001:db8:3::/64"
ports = [22]

[[egress.allow]]
cidr = "2001:db8:4::/64"
ports = [5432]
"#;

/// CPU time (user + system) of every waited-for child so far.
fn children_cpu() -> Duration {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: ru is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Wall and CPU time of one run (this test runs one command at a time).
fn timed(cmd: &mut Command) -> Result<(Duration, Duration)> {
    let cpu = children_cpu();
    let t = Instant::now();
    let out = cmd.output()?;
    let took = (t.elapsed(), children_cpu().saturating_sub(cpu));
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}

/// Medians of wall and CPU time.
fn median(v: Vec<(Duration, Duration)>) -> (Duration, Duration) {
    let (mut wall, mut cpu): (Vec<_>, Vec<_>) = v.into_iter().unzip();
    wall.sort();
    cpu.sort();
    (wall[wall.len() / 2], cpu[cpu.len() / 2])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn start_time() -> Result<()> {
    let world = World::new("start_time")?;
    let m = world.manifest("a", MANIFEST)?;
    let rounds: usize = std::env::var("CORK_START_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let before = std::env::var_os("CORK_BIN_BEFORE");
    let argv = ["true".to_owned()];
    let run = |bin: Option<&std::ffi::OsStr>| -> Command {
        let mut cmd = world.cork_run(&m, "a", &argv);
        if let Some(b) = bin {
            // Same arguments and namespace, another binary.
            let mut other = world.bottle().command(b);
            other
                .args(cmd.get_args())
                .stdin(std::process::Stdio::null());
            other.envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))));
            cmd = other;
        }
        cmd
    };
    let (mut bare, mut after, mut old) = (Vec::new(), Vec::new(), Vec::new());
    // One run each first, unmeasured: page cache and the first bottle's shared state.
    timed(&mut run(None))?;
    if let Some(b) = &before {
        timed(&mut run(Some(b)))?;
    }
    for _ in 0..rounds {
        bare.push(timed(
            world.command(Side::Bottle, "sh").args(["-c", "true"]),
        )?);
        after.push(timed(&mut run(None))?);
        if let Some(b) = &before {
            old.push(timed(&mut run(Some(b)))?);
        }
    }
    let bare = median(bare);
    println!(
        "bare sh -c true: {:.1} ms wall, {:.1} ms CPU",
        ms(bare.0),
        ms(bare.1)
    );
    let report = |what: &str, t: (Duration, Duration)| {
        println!(
            "{what}: {:.1} ms wall (adds {:.1} ms), {:.1} ms CPU",
            ms(t.0),
            ms(t.0.saturating_sub(bare.0)),
            ms(t.1)
        );
    };
    report("cork run -- true", median(after));
    if !old.is_empty() {
        report("before (CORK_BIN_BEFORE)", median(old));
    }
    Ok(())
}
