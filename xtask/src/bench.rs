//! `cargo xtask bench`, `bench-proxy` and `bench-smoke`: runs the benches, each of which
//! writes its report (`cork_bench_report::Report`) as JSON into one directory, then reads
//! them all back to print one summary table and, for a full run, draw the figures in
//! `docs/bench/` that the README links.
//!
//! `bench-smoke` is the test suite's guard against rot: every bench with tiny counts in
//! debug builds, and a check that each report holds every row it must. It asserts no
//! timing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use cork_bench_report::{Report, plot, table};

use crate::{BENCH_VENV, cargo, cork_bin, is_root, root, run};

/// `cork-bench`'s sections, which `--only` may name besides `proxy` and `dlp`.
const CORK_BENCH_SECTIONS: [&str; 5] = ["connect", "kernel", "scale", "daemon", "dns"];

/// Where a full run's reports go.
fn bench_dir() -> PathBuf {
    root().join("target/bench")
}

/// `cargo xtask bench [--only SECTION] [COUNT [ROUNDS]]`: every bench (or one section)
/// in release builds, then the table and the figures.
pub fn bench(extra: &[String]) -> Result<()> {
    if !is_root() {
        bail!("the benchmark runs bottles: run it as root");
    }
    let (only, rest) = match extra {
        [flag, section, rest @ ..] if flag == "--only" => (Some(section.as_str()), rest),
        _ => (None, extra),
    };
    if let Some(o) = only
        && !CORK_BENCH_SECTIONS.contains(&o)
        && o != "proxy"
        && o != "dlp"
    {
        bail!("--only {o}: expected one of {CORK_BENCH_SECTIONS:?}, proxy or dlp");
    }
    let wants = |s: &str| only.is_none_or(|o| o == s);
    let out = bench_dir();
    // The client loop is the same binary inside and outside the bottle.
    run(cargo()
        .args(["build", "--release", "-p", "cork", "--bin", "cork", "-p"])
        .args(["cork-integration", "--bins"]))?;
    if only.is_none_or(|o| CORK_BENCH_SECTIONS.contains(&o)) {
        let mut args: Vec<String> = only
            .map(|o| vec!["--only".to_owned(), o.to_owned()])
            .unwrap_or_default();
        args.extend(rest.iter().cloned());
        run(integration_bin("release", "cork-bench", &out).args(&args))?;
    }
    if wants("proxy") {
        run(integration_bin("release", "cork-proxy-bench", &out).args([
            "compare",
            "--rounds",
            "3",
            "--latency-rate",
            "10000",
        ]))?;
    }
    if wants("dlp") {
        dlp(&out, true)?;
    }
    // Only what this run measured is drawn: a partial run must not redraw the other
    // figures from whatever reports an earlier run (or a hand-run bench) left behind.
    summary(&out, Some((&root().join("docs/bench"), only)))
}

/// `cargo xtask bench-proxy [compare options]`: the proxy bench alone, then the table.
pub fn bench_proxy(extra: &[String]) -> Result<()> {
    if !is_root() {
        bail!("the proxy benchmark creates a network namespace: run it as root");
    }
    // The cork peer runs the release agent, like every other peer's release build.
    run(cargo()
        .args(["build", "--release", "-p", "cork", "--bin", "cork", "-p"])
        .args(["cork-integration", "--bin", "cork-proxy-bench"]))?;
    let out = bench_dir();
    run(integration_bin("release", "cork-proxy-bench", &out)
        .arg("compare")
        .args(extra))?;
    summary(&out, None)
}

/// `cargo xtask bench-report`: the table and every figure again from the last run's
/// reports, without running anything.
pub fn report() -> Result<()> {
    summary(&bench_dir(), Some((&root().join("docs/bench"), None)))
}

/// An integration binary of `profile`, run from the workspace root with the cork of the
/// same profile, mitmproxy's virtualenv, and `out` for its report.
fn integration_bin(profile: &str, bin: &str, out: &Path) -> Command {
    let mut c = Command::new(root().join("target").join(profile).join(bin));
    c.current_dir(root())
        .env("CORK_BIN", cork_bin(profile))
        .env("CORK_BENCH_VENV", BENCH_VENV)
        .env("CORK_BENCH_OUT", out);
    c
}

/// Prints the table of every report in `dir`; with `figures`, draws into its directory
/// the figures of the reports of its section (every report's when None).
fn summary(dir: &Path, figures: Option<(&Path, Option<&str>)>) -> Result<()> {
    let reports = Report::read_dir(dir)?;
    println!("\nsummary ({} reports in {})", reports.len(), dir.display());
    print!("{}", table::render(&reports));
    if let Some((fig, section)) = figures {
        let drawn: Vec<Report> = reports
            .into_iter()
            .filter(|r| section.is_none_or(|s| r.bench == s))
            .collect();
        for p in plot::write_figures(&drawn, fig)? {
            println!("figure: {}", p.display());
        }
    }
    Ok(())
}

/// The DLP throughput report (`cork-dlp`'s ignored test), parsed into `dlp.json`. A full
/// run is release over 64 MiB; the smoke run is the debug build over 1 MiB.
fn dlp(out: &Path, full: bool) -> Result<()> {
    let mut cmd = cargo();
    cmd.args(["test", "-p", "cork-dlp", "--lib"]);
    if full {
        cmd.arg("--release");
    }
    cmd.args([
        "throughput",
        "--",
        "construction",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    if !full {
        cmd.env("CORK_DLP_BENCH_MIB", "1");
    }
    eprintln!("+ {cmd:?}");
    let output = cmd.output().context("run the DLP throughput report")?;
    let text = String::from_utf8_lossy(&output.stdout);
    print!("{text}");
    if !output.status.success() {
        bail!(
            "DLP throughput report failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let mut rep = dlp_report(&text)?;
    rep.command = if full {
        "cargo test -p cork-dlp --lib --release throughput -- construction --ignored --nocapture"
            .into()
    } else {
        "CORK_DLP_BENCH_MIB=1 cargo test -p cork-dlp --lib throughput -- construction --ignored"
            .into()
    };
    rep.write(out)?;
    Ok(())
}

/// A row key from the report's description: lower case, runs of anything else `_`.
fn slug(what: &str) -> String {
    let mut s = String::new();
    for c in what.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('_') {
            s.push('_');
        }
    }
    s.trim_matches('_').to_owned()
}

/// The `dlp` report from the tests' output lines:
/// `dlp throughput, WHAT: N MB/s per CPU second, Rx baseline (B MB/s) (K KiB chunks, …)`
/// and `dlp construction, WHAT: N ms`.
pub fn dlp_report(text: &str) -> Result<Report> {
    let mut rep = Report::new(
        "dlp",
        text.lines()
            .find(|l| l.starts_with("dlp throughput over"))
            .unwrap_or("dlp throughput")
            .to_owned(),
    );
    for line in text.lines() {
        // libtest prints a test's first line after its name (`test ... ok` comes later).
        const CONSTRUCTION: &str = "dlp construction, ";
        if let Some(at) = line.find(CONSTRUCTION) {
            let rest = &line[at + CONSTRUCTION.len()..];
            let (what, ms) = rest
                .rsplit_once(": ")
                .and_then(|(what, figure)| {
                    Some((what, figure.strip_suffix(" ms")?.parse::<f64>().ok()?))
                })
                .with_context(|| format!("unreadable DLP construction line: {line}"))?;
            let key = format!(
                "construction.{}",
                slug(what.split(" (").next().unwrap_or(what))
            );
            rep.row(
                &key,
                &format!("DLP scanner construction: {what}"),
                "ms",
                &[ms],
            );
            continue;
        }
        let Some(rest) = line.strip_prefix("dlp throughput, ") else {
            continue;
        };
        let parse = || -> Option<(String, f64, f64, u64)> {
            let (what, figures) = rest.rsplit_once(": ")?;
            let mbps: f64 = figures.split_whitespace().next()?.parse().ok()?;
            let base: f64 = figures
                .split_once("baseline (")?
                .1
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            let kib: u64 = figures
                .split_once("MB/s) (")?
                .1
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            Some((what.to_owned(), mbps, base, kib))
        };
        let (what, mbps, base, kib) =
            parse().with_context(|| format!("unreadable DLP throughput line: {line}"))?;
        let key = format!("{}.{kib}k", slug(&what));
        rep.row(
            &format!("baseline.{key}"),
            &format!("DFA walk baseline ({what}, {kib} KiB chunks)"),
            "GB/s",
            &[base / 1000.0],
        )
        .row(
            &key,
            &format!("DLP scan: {what}, {kib} KiB chunks"),
            "GB/s",
            &[mbps / 1000.0],
        )
        .ratio_to(&format!("baseline.{key}"));
    }
    if rep.rows.is_empty() {
        bail!("the DLP throughput report printed no figures:\n{text}");
    }
    Ok(rep)
}

/// What every smoke report must hold: `(bench, rows, series)`.
const SMOKE_EXPECTED: &[(&str, &[&str], &[&str])] = &[
    (
        "connect",
        &[
            "outside",
            "noop",
            "inside",
            "inside_vs_noop",
            "audit_verdicts",
            "audit_lost",
        ],
        &[],
    ),
    (
        "kernel",
        &[
            "ns.cork_connect4",
            "ns.new_flow.cork_connect4",
            "ns_per_connect",
            "ns_per_connect_held",
            "noop_ns_per_connect",
            "over_noop_ns_per_connect",
            "audit_p50.paced",
            "audit_p99.paced",
            "audit_p50.b2b",
            "audit_p99.b2b",
        ],
        &[],
    ),
    (
        "scale",
        &[
            "check_ms.10",
            "start_ms.10",
            "teardown_ms.10",
            "memlock_v4.10",
            "memlock_v6.10",
            "connect4_ns.10",
            "connects.10",
        ],
        &["connects"],
    ),
    (
        "daemon",
        &[
            "create_ms.10",
            "update_ms.10",
            "exec_ms.10",
            "exec_again_ms.10",
            "exec_wall.bare",
            "exec_wall.exec_small",
            "exec_wall.exec_paused",
            "exec_added.small",
        ],
        &[],
    ),
    (
        "dns",
        &[
            "direct_rate",
            "cork_rate",
            "direct_p50",
            "cork_p50",
            "direct_p99",
            "cork_p99",
            "p50_added",
            "p99_added",
        ],
        &["direct", "cork"],
    ),
    (
        "proxy",
        &[
            "max_rps.direct",
            "max_rps.cork",
            "max_rps.cork-relay",
            "max_rps_of_relay.cork",
            "agent_cpu.direct",
            "agent_cpu.cork",
            "agent_cpu.cork-relay",
            "p50.direct",
            "p50.cork",
            "p99.direct",
            "p99.cork",
            "tls_cps.direct",
            "tls_cps.cork",
            "tls_p50.direct",
            "tls_p50.cork",
        ],
        &["latency.direct", "latency.cork"],
    ),
    (
        "dlp",
        &[
            "builtin_1_custom_1_known_secret.16k",
            "builtin_only.16k",
            "1_known_secret_only.16k",
            "construction.built_in_analysis",
            "construction.a_scanner",
        ],
        &[],
    ),
];

/// `cargo xtask bench-smoke`: every bench once with tiny counts on the debug builds
/// `cargo xtask test` already made (squid and mitmproxy only if installed; the VM bench
/// not at all: a TCG boot is slow), then a check of every report and the table. The
/// figures are drawn into the smoke directory, never over `docs/bench`.
pub fn smoke() -> Result<()> {
    if !is_root() {
        bail!("the bench smoke run starts bottles: run it as root");
    }
    run(cargo()
        .args(["build", "-p", "cork", "--bin", "cork", "-p"])
        .args(["cork-integration", "--bins"]))?;
    let out = root().join("target/bench-smoke");
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("remove {}", out.display()))?;
    }
    run(integration_bin("debug", "cork-bench", &out).arg("--smoke"))?;
    run(integration_bin("debug", "cork-proxy-bench", &out).args(["compare", "--smoke"]))?;
    dlp(&out, false)?;
    let reports = Report::read_dir(&out)?;
    for (bench, rows, series) in SMOKE_EXPECTED {
        let rep = reports
            .iter()
            .find(|r| r.bench == *bench)
            .with_context(|| format!("bench {bench} wrote no report in {}", out.display()))?;
        rep.check(rows, series)?;
    }
    summary(&out, Some((&out.join("figures"), None)))?;
    println!("bench smoke: {} reports complete", SMOKE_EXPECTED.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DLP_OUTPUT: &str = "\
running 1 test
dlp throughput over 1 MiB, best of 3, per CPU second; baseline: a DFA walk over every byte
dlp throughput, builtin + 1 custom + 1 known secret: 1612 MB/s per CPU second, 2.310x baseline (698 MB/s) (16 KiB chunks, 12 findings)
dlp throughput, builtin only: 1800 MB/s per CPU second, 2.500x baseline (720 MB/s) (64 KiB chunks, 0 findings)
test tests::throughput::throughput_on_mixed_text ... ok
test tests::construction::construction_of_a_scanner ... dlp construction, built-in analysis (once per process): 111.72 ms
dlp construction, a scanner (built-ins + 1 custom + 1 known secret) after the first: 2.91 ms
";

    #[test]
    fn dlp_lines_become_rows_with_their_baseline() {
        let rep = dlp_report(DLP_OUTPUT).expect("parses");
        assert!(rep.title.starts_with("dlp throughput over 1 MiB"));
        let row = rep
            .get("builtin_1_custom_1_known_secret.16k")
            .expect("full row");
        assert_eq!((row.value, row.unit.as_str()), (1.612, "GB/s"));
        let ratio = row.ratio.as_ref().expect("ratio to the baseline");
        assert_eq!(ratio.to, "baseline.builtin_1_custom_1_known_secret.16k");
        assert!((ratio.value - 1612.0 / 698.0).abs() < 1e-9);
        assert_eq!(rep.get("builtin_only.64k").map(|r| r.value), Some(1.8));
        let analysis = rep
            .get("construction.built_in_analysis")
            .expect("analysis row");
        assert_eq!((analysis.value, analysis.unit.as_str()), (111.72, "ms"));
        assert_eq!(
            rep.get("construction.a_scanner").map(|r| r.value),
            Some(2.91)
        );
    }

    #[test]
    fn dlp_output_without_figures_is_an_error() {
        assert!(dlp_report("running 0 tests\n").is_err());
        let garbled = "dlp throughput, x: fast MB/s per CPU second\n";
        let err = dlp_report(garbled).expect_err("garbled").to_string();
        assert!(err.contains("unreadable"), "{err}");
    }

    #[test]
    fn slugs_are_stable_keys() {
        assert_eq!(
            slug("builtin + 1 custom + 4 known secrets, AVX2"),
            "builtin_1_custom_4_known_secrets_avx2"
        );
    }

    #[test]
    fn smoke_expects_every_bench_the_table_lists() {
        for bench in cork_bench_report::BENCH_ORDER {
            let listed = SMOKE_EXPECTED.iter().any(|(b, ..)| b == bench);
            // The VM bench is left out of the smoke run on purpose (TCG boots are slow).
            assert_eq!(listed, *bench != "vm", "{bench}");
        }
    }
}
