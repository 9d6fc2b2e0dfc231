//! Standing bottles for `cork-bench --only daemon`: with a daemon in the bench world, for N
//! CIDR rules per family (plus the scale bench's domain rules), how long `cork bottle
//! create` takes to return (manifest compiled, programs loaded and verified, proxies
//! serving), how long `cork bottle update` takes to replace every kernel entry (the same
//! prefixes on another port: a full new generation staged, read back, switched, the old
//! one emptied), and how long `cork exec -- true` takes in a standing bottle. Wall clock
//! of the CLI, as a user sees it.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use cork_bench_report::Report;

use crate::daemon::TestDaemon;
use crate::scale_bench::{DOMAIN_RULES, data_rules_on};
use crate::world::World;

/// A manifest body: `per_family` rules per family on `port`, and the domain rules.
fn body(per_family: usize, port: u16) -> String {
    let mut s = data_rules_on(per_family, port);
    for i in 0..DOMAIN_RULES {
        let _ = write!(
            s,
            "[[egress.allow]]\ndomain = \"d{i}.scale.test\"\nports = [443]\n"
        );
    }
    s
}

fn timed(world: &World, args: &[&str]) -> Result<Duration> {
    let t = Instant::now();
    let out = world.run(world.cork(args))?;
    let took = t.elapsed();
    if out.code() != 0 {
        bail!("cork {}:\n{out}", args.join(" "));
    }
    Ok(took)
}

/// Prints one row per size, then `cork exec -- true` against bare `true` over
/// `exec_runs` rounds (see `exec_bench`), and returns the `daemon` report.
pub fn report(world: &World, sizes: &[usize], exec_runs: usize) -> Result<Report> {
    let mut rep = Report::new(
        "daemon",
        format!(
            "standing bottles (cork daemon): N CIDR rules per family + {DOMAIN_RULES} domain rules"
        ),
    );
    let sock = world.path("bench", "sock").display().to_string();
    let daemon = TestDaemon::start(world, &sock, &world.path("bench-audit", "jsonl"))?;
    println!(
        "\nstanding bottles (cork daemon): N CIDR rules per family + {DOMAIN_RULES} domain rules"
    );
    println!(
        "  {:>7} {:>14} {:>14} {:>16}",
        "N", "bottle create", "bottle update", "exec -- true"
    );
    let rows = sizes.iter().enumerate().try_for_each(|(i, &n)| {
        let label = format!("upd{i}");
        let name = world.bottle_name(&label);
        let first = world.manifest(&label, &body(n, 443))?;
        let second = world.manifest(&label, &body(n, 8443))?;
        let create = timed(
            world,
            &[
                "bottle",
                "create",
                "--socket",
                &sock,
                "-m",
                &first.display().to_string(),
            ],
        )?;
        let update = timed(
            world,
            &[
                "bottle",
                "update",
                &name,
                "--socket",
                &sock,
                "-m",
                &second.display().to_string(),
            ],
        )?;
        // The first exec after an update has the daemon read the manifest's origin and,
        // once the file has gone unchanged for the daemon's settling time (2 s; see
        // cork-daemon's origin.rs — a manifest written just now has not), remember it: the
        // next execs check it with a stat.
        std::thread::sleep(std::time::Duration::from_secs(2));
        let exec = timed(world, &["exec", &name, "--socket", &sock, "--", "true"])?;
        let again = timed(world, &["exec", &name, "--socket", &sock, "--", "true"])?;
        timed(world, &["bottle", "rm", &name, "--socket", &sock])?;
        println!(
            "  {:>7} {:>11.0} ms {:>11.0} ms {:>13.0} ms",
            n,
            create.as_secs_f64() * 1e3,
            update.as_secs_f64() * 1e3,
            exec.as_secs_f64() * 1e3
        );
        for (key, what, took) in [
            ("create_ms", "cork bottle create", create),
            ("update_ms", "cork bottle update (every entry)", update),
            ("exec_ms", "cork exec -- true", exec),
            ("exec_again_ms", "cork exec -- true, again", again),
        ] {
            rep.row(
                &format!("{key}.{n}"),
                &format!("{what}, N={n}"),
                "ms",
                &[took.as_secs_f64() * 1e3],
            );
        }
        Ok::<_, anyhow::Error>(())
    });
    let rows = rows.and_then(|()| crate::exec_bench::report(world, &sock, exec_runs, &mut rep));
    daemon.stop()?;
    rows.map(|()| rep)
}
