//! `cork exec NAME -- true` against `true` run bare, for `cork-bench --only daemon`: the
//! cost of joining a daemon's standing bottle, as repeated whole-process runs in turn
//! (bare, then into a small bottle, then into one with 10 000 domain rules), medians of
//! wall clock and of the client's CPU time (its own and its children's: the bottle's
//! init and `true`). The daemon's share of the work is in the wall clock only. Then
//! `cork exec` after a second of quiet, as an agent calls it: a process that moves into
//! a cgroup waits for an RCU grace period when no move happened lately, which
//! back-to-back runs never see.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use cork_bench_report::{Report, median};

use crate::scale_bench::DOMAIN_RULES;
use crate::world::{Side, World};

/// The quiet before each of the paused runs.
const PAUSE: Duration = Duration::from_secs(1);

/// One finished run: wall clock and the CPU time of the process and its descendants.
struct Run {
    wall: Duration,
    cpu: Duration,
}

/// CPU time of every child of this process reaped so far (user + system).
fn children_cpu() -> Duration {
    // SAFETY: getrusage only writes the rusage it is given, which lives on this stack.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut u);
        u
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.unsigned_abs())
            + Duration::from_micros(t.tv_usec.unsigned_abs())
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn once(mut cmd: Command) -> Result<Run> {
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let cpu = children_cpu();
    let t = Instant::now();
    let out = cmd.output()?;
    let wall = t.elapsed();
    if !out.status.success() {
        bail!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(Run {
        wall,
        cpu: children_cpu().saturating_sub(cpu),
    })
}

/// Creates two standing bottles on the daemon at `sock` (10 CIDR rules per family and one
/// domain rule, so the bottle inspects; and the same with [`DOMAIN_RULES`] domain rules),
/// runs `runs` rounds of bare `true` and `cork exec` into each, adds the rows to `rep`
/// and removes the bottles.
pub fn report(world: &World, sock: &str, runs: usize, rep: &mut Report) -> Result<()> {
    let small = format!(
        "{}[[egress.allow]]\ndomain = \"api.exec.test\"\nports = [443]\n",
        crate::scale_bench::data_rules_on(10, 443)
    );
    let mut big = small.clone();
    for i in 0..DOMAIN_RULES {
        big.push_str(&format!(
            "[[egress.allow]]\ndomain = \"d{i}.scale.test\"\nports = [443]\n"
        ));
    }
    let bottles = [("exec-small", small), ("exec-big", big)];
    let mut names = Vec::new();
    for (label, body) in &bottles {
        crate::daemon::create_ok(world, sock, &world.manifest(label, body)?)?;
        names.push(world.bottle_name(label));
    }
    let exec = |name: &str| world.cork(["exec", name, "--socket", sock, "--", "true"]);
    // One warm-up of each, not counted (page cache, the daemon's first request).
    once(world.command(Side::Bottle, "true"))?;
    for name in &names {
        once(exec(name))?;
    }
    let (mut bare, mut small_runs, mut big_runs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        bare.push(once(world.command(Side::Bottle, "true"))?);
        small_runs.push(once(exec(&names[0]))?);
        big_runs.push(once(exec(&names[1]))?);
    }
    let mut paused = Vec::new();
    for _ in 0..runs.div_ceil(3) {
        std::thread::sleep(PAUSE);
        paused.push(once(exec(&names[0]))?);
    }
    for name in &names {
        world.run(world.cork(["bottle", "rm", name, "--socket", sock]))?;
    }
    let ms = |v: &[Run], f: fn(&Run) -> Duration| -> Vec<f64> {
        v.iter().map(|r| f(r).as_secs_f64() * 1e3).collect()
    };
    let wall = |r: &Run| r.wall;
    let cpu = |r: &Run| r.cpu;
    println!("\ncork exec -- true vs true bare ({runs} rounds in turn; medians)");
    println!("  {:<44} {:>9} {:>9}", "", "wall ms", "CPU ms");
    for (key, what, v) in [
        ("bare", "true, bare (in the bottle netns)".to_owned(), &bare),
        (
            "exec_small",
            "cork exec -- true, 10 CIDR rules + 1 domain".to_owned(),
            &small_runs,
        ),
        (
            "exec_big",
            format!("cork exec -- true, 10 CIDR + {DOMAIN_RULES} domains"),
            &big_runs,
        ),
        (
            "exec_paused",
            format!("cork exec -- true, small, after {PAUSE:?} quiet"),
            &paused,
        ),
    ] {
        let (w, c) = (ms(v, wall), ms(v, cpu));
        println!("  {what:<44} {:>9.2} {:>9.2}", median(&w), median(&c));
        rep.row(&format!("exec_wall.{key}"), &what, "ms", &w);
        rep.row(
            &format!("exec_cpu.{key}"),
            &format!("{what}: client CPU"),
            "ms",
            &c,
        );
    }
    let added: Vec<f64> = bare
        .iter()
        .zip(&small_runs)
        .map(|(b, e)| (e.wall.as_secs_f64() - b.wall.as_secs_f64()) * 1e3)
        .collect();
    println!(
        "  cork exec over bare (small bottle, pair by pair): {:.2} ms",
        median(&added)
    );
    rep.row(
        "exec_added.small",
        "cork exec -- true over true bare, small bottle (wall, pair by pair)",
        "ms",
        &added,
    );
    Ok(())
}
