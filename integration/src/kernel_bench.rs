//! The kernel half of `cork-bench`: what each of a bottle's programs costs per run
//! (the kernel's `bpf_stats`), and how long an audit event takes from the kernel's
//! decision to the audit log. Both run `connect-loop` in a bottle against a server the
//! caller started at [`TARGET`]:[`PORT`] in the world's internet namespace.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cork_bench_report::Report;

use crate::audit_tail::AuditTail;
use crate::kernel_stats::{self, BottlePrograms, ProgStat};
use crate::noop_cgroup::NoopCgroup;
use crate::process::Spawned;
use crate::world::{RUN_TIMEOUT, Side, World};

/// Where the accept-only server listens (internet side).
pub const TARGET: &str = "198.51.100.10";
pub const PORT: &str = "9000";
/// What the delivery runs connect to: an address no rule allows, so every connect is a
/// deny and every deny a line of its own. Repeated allows of one flow are summarised (one
/// line a second), so timing allows would time the summary window, not the delivery.
/// Refused in the kernel (EPERM): nothing is sent.
const DENIED_TARGET: &str = "198.51.100.11";
const MANIFEST: &str = "[[egress.allow]]\ncidr = \"198.51.100.10/32\"\nports = [9000]\n";
/// What the bottled shell prints once it waits for the go-ahead on stdin.
const GATE: &str = "cork-bench-gate";
/// Connects that surely fit the audit ring buffer (1 MiB of 104-byte records) while the
/// reader is held back.
pub const HELD_BACK_MAX: u64 = 8000;
/// How long the held-back reader sleeps; the connect loop must finish within it.
const HELD_BACK_MS: &str = "3000";

/// One bottle's program counters over `count` allowed connects.
pub struct ProgramCost {
    pub connects: u64,
    /// connect()+close per second, as the client measured it.
    pub rate: f64,
    pub programs: Vec<ProgStat>,
    pub audit_lost: u64,
}

impl ProgramCost {
    /// Nanoseconds of all programs together, per connect.
    pub fn ns_per_connect(&self) -> f64 {
        let total: u64 = self.programs.iter().map(|p| p.run_time_ns).sum();
        total as f64 / self.connects.max(1) as f64
    }
}

/// One measured run of the connect loop in a bottle.
pub struct Load<'a> {
    pub label: &'a str,
    /// The manifest: it allows [`TARGET`]:[`PORT`] (and, for new flows, the ports above).
    pub body: &'a str,
    pub count: u64,
    /// The agent's audit reader starts only after the loop (the CORK_TEST_READER_DELAY_MS
    /// seam), so no wake-up ever finds it waiting.
    pub held_back: bool,
    /// Connect i goes to port [`PORT`] + i: every connect a flow of its own, so none finds
    /// a verdict kept in its counter slot (it asks the policy and is recorded, as a flow's
    /// first connect is).
    pub new_flows: bool,
}

impl<'a> Load<'a> {
    /// `count` connects to [`TARGET`]:[`PORT`] under `body`, the reader running.
    pub fn repeated(label: &'a str, body: &'a str, count: u64) -> Self {
        Load {
            label,
            body,
            count,
            held_back: false,
            new_flows: false,
        }
    }
}

/// Allows [`TARGET`] on every port from [`PORT`] up: the new-flows run's destinations.
const NEW_FLOWS_MANIFEST: &str =
    "[[egress.allow]]\ncidr = \"198.51.100.10/32\"\nports = [\"9000-65535\"]\n";

/// Runs `load` in a bottle with accounting on and returns each program's share.
pub fn program_cost(world: &World, client: &str, load: &Load) -> Result<ProgramCost> {
    let &Load {
        label,
        body,
        count,
        held_back,
        new_flows,
    } = load;
    let _stats = kernel_stats::enable()?;
    let manifest = world.manifest(label, body)?;
    // The shell reports its cgroup and waits, so the programs are found (and held open,
    // to be read after the bottle is gone) before the measured loop starts.
    let script = format!(
        "cat /proc/self/cgroup && echo {GATE} && read gate && exec {} {}{TARGET} {PORT} {count}",
        crate::process::shell_quote(client),
        if new_flows { "--new-flows " } else { "" }
    );
    let argv = ["sh".to_string(), "-c".into(), script];
    let mut cmd = world.cork_run(&manifest, label, &argv);
    cmd.stdin(Stdio::piped());
    if held_back {
        cmd.env("CORK_TEST_HARNESS", "1")
            .env("CORK_TEST_READER_DELAY_MS", HELD_BACK_MS);
    }
    let mut run = Spawned::start(&mut cmd)?;
    let lines = run.wait_line(GATE, Duration::from_secs(30))?;
    let cgroup = lines
        .iter()
        .find(|l| l.starts_with("0::"))
        .with_context(|| format!("no cgroup line in {lines:?}"))?;
    let progs = BottlePrograms::of_cgroup_line(cgroup)?;
    let before = progs.snapshot()?;
    {
        let mut go = run
            .take_stdin()
            .context("the bottle's stdin is not piped")?;
        go.write_all(b"go\n").context("release the bottle")?;
    }
    let out = run.finish(RUN_TIMEOUT)?;
    if out.code() != 0 {
        bail!("cork run exited {}:\n{out}", out.code());
    }
    let after = progs.snapshot()?;
    let audit = crate::Audit::read(&world.audit_path_for(label))?;
    Ok(ProgramCost {
        connects: count,
        rate: client_rate(&out.stdout)?,
        programs: kernel_stats::delta(&before, &after),
        audit_lost: audit.lost(),
    })
}

/// The floor: `count` connects from the world's no-op cgroup (the same client, the same
/// namespace, the same server; cork-bpf's no-op program on every hook cork uses).
pub fn noop_cost(world: &World, client: &str, count: u64) -> Result<ProgramCost> {
    let _stats = kernel_stats::enable()?;
    let cg = NoopCgroup::create(world)?;
    let progs = BottlePrograms::attached_to(cg.path())?;
    let before = progs.snapshot()?;
    let argv = [
        client.to_string(),
        TARGET.into(),
        PORT.into(),
        count.to_string(),
    ];
    let out = world.run(cg.command(world, Side::Bottle, &argv))?;
    if out.code() != 0 {
        bail!(
            "the client in the no-op cgroup exited {}:\n{out}",
            out.code()
        );
    }
    let after = progs.snapshot()?;
    Ok(ProgramCost {
        connects: count,
        rate: client_rate(&out.stdout)?,
        programs: kernel_stats::delta(&before, &after),
        audit_lost: 0,
    })
}

/// The `rate=N/s` the connect loop prints.
fn client_rate(stdout: &str) -> Result<f64> {
    stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("rate=")?.strip_suffix("/s")?.parse().ok())
        .with_context(|| format!("no rate in the client's output:\n{stdout}"))
}

/// Runs `count` connects in a bottle, one every `pace` (or back to back), and returns
/// one delivery latency per kernel verdict that reached the audit log. The connects go to
/// [`DENIED_TARGET`]: one line each.
pub fn delivery_latency(
    world: &World,
    client: &str,
    label: &str,
    count: u64,
    pace: Option<Duration>,
) -> Result<Vec<Duration>> {
    let tail = AuditTail::start(&world.audit_path_for(label))?;
    let mut argv = vec![
        client.to_string(),
        "--refused".into(),
        DENIED_TARGET.into(),
        PORT.into(),
        count.to_string(),
    ];
    if let Some(p) = pace {
        argv.push(p.as_micros().to_string());
    }
    let run = world.run_argv(label, MANIFEST, &argv);
    let latencies = tail.finish()?;
    let (_, audit) = run?;
    if audit.lost() > 0 {
        bail!("{} audit events lost", audit.lost());
    }
    Ok(latencies)
}

/// The kernel section of `cork-bench`: program cost with the reader running and held
/// back, then delivery latency for `paced` connects one every 2 ms and `count` back to
/// back. Prints as it goes and returns the `kernel` report.
pub fn report(world: &World, client: &str, count: u64, paced: u64) -> Result<Report> {
    let mut rep = Report::new(
        "kernel",
        format!("kernel programs over {count} allowed connects in a bottle (bpf_stats)"),
    );
    println!("\nkernel programs, {count} allowed connects in a bottle (bpf_stats)");
    let live = program_cost(world, client, &Load::repeated("kstats", MANIFEST, count))?;
    let held = program_cost(
        world,
        client,
        &Load {
            held_back: true,
            ..Load::repeated("kstats-held", MANIFEST, count.min(HELD_BACK_MAX))
        },
    )?;
    let noop = noop_cost(world, client, count)?;
    // PORT + count must stay a port: the smoke's counts are tiny, a full run's 20 000.
    let base: u64 = PORT.parse().context("PORT")?;
    let fresh = program_cost(
        world,
        client,
        &Load {
            new_flows: true,
            ..Load::repeated("kstats-new", NEW_FLOWS_MANIFEST, count.min(65536 - base))
        },
    )?;
    println!(
        "  {:<18} {:>10} {:>12}   {:>10} {:>12}",
        "program", "runs", "ns/run", "runs", "ns/run (reader held back)"
    );
    for (i, p) in live.programs.iter().enumerate() {
        let h = held.programs.iter().find(|h| h.name == p.name);
        println!(
            "  {:<18} {:>10} {:>12.0}   {:>10} {:>12.0}",
            p.name,
            p.run_cnt,
            p.ns_per_run(),
            h.map_or(0, |h| h.run_cnt),
            h.map_or(0.0, ProgStat::ns_per_run),
        );
        // Programs that never ran have no cost to report; names the kernel cut to 15
        // bytes (getpeername4/6) can repeat, and keys must not.
        let mut key = format!("ns.{}", p.name);
        if rep.get(&key).is_some() {
            key = format!("{key}.{i}");
        }
        if p.run_cnt == 0 {
            continue;
        }
        rep.row(
            &key,
            &format!("{} per run", p.name),
            "ns",
            &[p.ns_per_run()],
        );
    }
    println!(
        "  all programs per connect: {:.0} ns (reader held back: {:.0} ns); audit lost {} / {}",
        live.ns_per_connect(),
        held.ns_per_connect(),
        live.audit_lost,
        held.audit_lost
    );
    for p in noop.programs.iter().filter(|p| p.run_cnt > 0) {
        println!(
            "  {:<18} {:>10} {:>12.0}   (the floor: no-op program)",
            p.name,
            p.run_cnt,
            p.ns_per_run()
        );
        rep.row(
            &format!("noop_ns.{}", p.name),
            &format!("{} per run (no-op floor)", p.name),
            "ns",
            &[p.ns_per_run()],
        );
    }
    if let Some(p) = fresh.programs.iter().find(|p| p.name == "cork_connect4") {
        println!(
            "  cork_connect4 when every connect is a new flow (asks the policy, recorded): \
             {:.0} ns per run",
            p.ns_per_run()
        );
        rep.row(
            "ns.new_flow.cork_connect4",
            "cork_connect4 per run, every connect a new flow (asks the policy, recorded)",
            "ns",
            &[p.ns_per_run()],
        );
    }
    let over = live.ns_per_connect() - noop.ns_per_connect();
    println!(
        "  no-op programs per connect: {:.0} ns; cork over the no-op: {over:.0} ns per connect",
        noop.ns_per_connect()
    );
    println!(
        "  connects/s: no-op cgroup {:.0}, cork {:.0} (ratio {:.3})",
        noop.rate,
        live.rate,
        live.rate / noop.rate
    );
    rep.row(
        "ns_per_connect",
        "all programs per connect",
        "ns",
        &[live.ns_per_connect()],
    )
    .row(
        "ns_per_connect_held",
        "all programs per connect, audit reader held back",
        "ns",
        &[held.ns_per_connect()],
    )
    .ratio_to("ns_per_connect")
    .row(
        "noop_ns_per_connect",
        "no-op programs per connect (the floor)",
        "ns",
        &[noop.ns_per_connect()],
    )
    .row(
        "over_noop_ns_per_connect",
        "cork's programs over the no-op floor, per connect",
        "ns",
        &[over],
    );

    println!(
        "\naudit delivery latency (kernel decision -> line in the audit log, denied connects)"
    );
    let runs = [
        (
            "paced",
            "one connect every 2 ms",
            paced,
            Some(Duration::from_millis(2)),
        ),
        ("b2b", "back to back", count, None),
    ];
    for (i, (key, what, n, pace)) in runs.into_iter().enumerate() {
        let mut lat = delivery_latency(world, client, &format!("klat{i}"), n, pace)?;
        let (p50, p99, max) = crate::audit_tail::percentiles(&mut lat);
        println!(
            "  {what:<24} {:>6} events  p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms",
            lat.len(),
            ms(p50),
            ms(p99),
            ms(max)
        );
        rep.row(
            &format!("audit_p50.{key}"),
            &format!("audit delivery p50 (denies), {what}"),
            "ms",
            &[ms(p50)],
        )
        .row(
            &format!("audit_p99.{key}"),
            &format!("audit delivery p99 (denies), {what}"),
            "ms",
            &[ms(p99)],
        );
    }
    Ok(rep)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
