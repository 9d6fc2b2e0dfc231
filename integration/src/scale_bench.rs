//! Policy scale for `cork-bench`: manifests of N CIDR rules per address family plus
//! 10 000 domain rules, and for each N how long `cork check` takes, how long `cork run`
//! takes to start the command (everything up to enforced) and to finish after it, the
//! kernel memory of the two prefix tries, what connect4 costs per run, and the
//! connect()+close rate in the bottle.
//!
//! The generated prefixes are policy data only: they are loaded into the bottle's maps and
//! never contacted. IPv4 ones are host routes in 10.0.0.0/8, IPv6 ones /64s in
//! 2001:db8:8000::/33 (clear of the world's 2001:db8::/64); the one destination the bottle
//! uses is the bench server at 198.51.100.10:9000, in the world's own namespaces.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cork_bench_report::{Report, Series, SeriesKind};

use crate::kernel_bench::{self, PORT, TARGET};
use crate::kernel_stats;
use crate::process::Spawned;
use crate::world::{RUN_TIMEOUT, World};

/// Domain rules in every scale manifest (the "+ 10 000 domain rules").
pub const DOMAIN_RULES: usize = 10_000;

/// The body (after `[bottle]`) of a manifest with `per_family` CIDR rules in each family,
/// `domains` domain rules, and the rule that lets the bench reach its server.
pub fn manifest_body(per_family: usize, domains: usize) -> String {
    let mut s = format!("[[egress.allow]]\ncidr = \"{TARGET}/32\"\nports = [{PORT}]\n");
    s.push_str(&data_rules(per_family));
    for i in 0..domains {
        let _ = write!(
            s,
            "[[egress.allow]]\ndomain = \"d{i}.scale.test\"\nports = [443]\n"
        );
    }
    s
}

/// `per_family` distinct allow rules (port 443) in each family, IPv4 then IPv6 alternating:
/// `egress.allow[k]` for k from the first index given to them on, in manifest order.
pub fn data_rules(per_family: usize) -> String {
    data_rules_on(per_family, 443)
}

/// [`data_rules`] for `port`: the same prefixes, every kernel entry different.
pub fn data_rules_on(per_family: usize, port: u16) -> String {
    let mut s = String::new();
    for i in 0..per_family {
        let _ = write!(
            s,
            "[[egress.allow]]\ncidr = \"10.{}.{}.{}\"\nports = [{port}]\n\
             [[egress.allow]]\ncidr = \"2001:db8:{:x}:{:x}::/64\"\nports = [{port}]\n",
            (i >> 16) & 0xff,
            (i >> 8) & 0xff,
            i & 0xff,
            0x8000 + (i >> 16),
            i & 0xffff
        );
    }
    s
}

/// One manifest size's figures.
pub struct ScaleRow {
    pub per_family: usize,
    pub rules: usize,
    pub check: Duration,
    pub to_command: Duration,
    pub after_command: Duration,
    pub memlock_v4: u64,
    pub memlock_v6: u64,
}

/// `cork check`, then a `cork run` whose command reports its cgroup and waits, timed from
/// spawn to that report (setup to enforced) and from release to exit (teardown).
pub fn measure(world: &World, label: &str, per_family: usize) -> Result<ScaleRow> {
    let manifest = world.manifest(label, &manifest_body(per_family, DOMAIN_RULES))?;
    let t = Instant::now();
    let checked = world.run(world.cork(["check".as_ref(), manifest.as_os_str()]))?;
    let check = t.elapsed();
    if checked.code() != 0 {
        bail!("cork check failed:\n{checked}");
    }

    let argv = [
        "sh".to_string(),
        "-c".into(),
        "cat /proc/self/cgroup && echo cork-bench-gate && { read gate; exit 0; }".into(),
    ];
    let mut cmd = world.cork_run(&manifest, label, &argv);
    cmd.stdin(std::process::Stdio::piped());
    let t = Instant::now();
    let mut run = Spawned::start(&mut cmd)?;
    let lines = run.wait_line("cork-bench-gate", RUN_TIMEOUT)?;
    let to_command = t.elapsed();
    let key = lines
        .iter()
        .find_map(|l| l.strip_prefix("0::/"))
        .and_then(|p| p.split('/').next())
        .with_context(|| format!("no cgroup line in {lines:?}"))?
        .to_owned();
    let pins = std::path::Path::new(crate::host::BPFFS).join(&key);
    let memlock_v4 = kernel_stats::map_memlock(&pins.join("cork_rules_v4"))?;
    let memlock_v6 = kernel_stats::map_memlock(&pins.join("cork_rules_v6"))?;
    let t = Instant::now();
    drop(run.take_stdin());
    let out = run.finish(RUN_TIMEOUT)?;
    let after_command = t.elapsed();
    if out.code() != 0 {
        bail!("cork run exited {}:\n{out}", out.code());
    }
    Ok(ScaleRow {
        per_family,
        rules: 1 + 2 * per_family + DOMAIN_RULES,
        check,
        to_command,
        after_command,
        memlock_v4,
        memlock_v6,
    })
}

/// The scale section of `cork-bench`: for each size, the figures above, connect4's
/// nanoseconds per run and the client's connect()+close rate over `connects` allowed
/// connects. Prints as it goes and returns the `scale` report.
pub fn report(world: &World, client: &str, sizes: &[usize], connects: u64) -> Result<Report> {
    let mut rep = Report::new(
        "scale",
        format!("policy scale: N CIDR rules per family + {DOMAIN_RULES} domain rules"),
    );
    println!(
        "\npolicy scale: N CIDR rules per family + {DOMAIN_RULES} domain rules \
         (release cork; times are wall clock)"
    );
    println!(
        "  {:>7} {:>7} {:>10} {:>12} {:>10} {:>11} {:>11} {:>12} {:>11}",
        "N",
        "rules",
        "check",
        "run→command",
        "teardown",
        "v4 memlock",
        "v6 memlock",
        "connect4 ns",
        "connects/s"
    );
    let mut points = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        let row = measure(world, &format!("scale{i}"), n)?;
        let body = manifest_body(n, DOMAIN_RULES);
        let label = format!("scalec{i}");
        let cost = kernel_bench::program_cost(
            world,
            client,
            &kernel_bench::Load::repeated(&label, &body, connects),
        )?;
        let connect4 = cost
            .programs
            .iter()
            .find(|p| p.name == "cork_connect4")
            .map_or(0.0, kernel_stats::ProgStat::ns_per_run);
        println!(
            "  {:>7} {:>7} {:>8.0}ms {:>10.0}ms {:>8.0}ms {:>9.1}MiB {:>9.1}MiB {:>12.0} {:>11.0}",
            row.per_family,
            row.rules,
            ms(row.check),
            ms(row.to_command),
            ms(row.after_command),
            mib(row.memlock_v4),
            mib(row.memlock_v6),
            connect4,
            cost.rate
        );
        let figures = [
            ("check_ms", "cork check", "ms", ms(row.check)),
            (
                "start_ms",
                "cork run to the command",
                "ms",
                ms(row.to_command),
            ),
            (
                "teardown_ms",
                "cork run teardown",
                "ms",
                ms(row.after_command),
            ),
            ("memlock_v4", "v4 trie memlock", "MiB", mib(row.memlock_v4)),
            ("memlock_v6", "v6 trie memlock", "MiB", mib(row.memlock_v6)),
            ("connect4_ns", "cork_connect4 per run", "ns", connect4),
            ("connects", "connect()+close in a bottle", "1/s", cost.rate),
        ];
        for (key, what, unit, v) in figures {
            rep.row(&format!("{key}.{n}"), &format!("{what}, N={n}"), unit, &[v]);
        }
        points.push((n as f64, cost.rate));
    }
    rep.series(Series {
        key: "connects".into(),
        name: format!("in a bottle, N rules per family + {DOMAIN_RULES} domains"),
        kind: SeriesKind::Xy,
        x_unit: "rules per family".into(),
        y_unit: "1/s".into(),
        points,
    });
    Ok(rep)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}
