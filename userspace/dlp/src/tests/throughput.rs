//! The throughput report (ignored: informative, not a correctness check).
//!
//! `cargo test -p cork-dlp --lib --release throughput -- --ignored --nocapture`. The
//! machine may be shared, so each figure is the best of a few runs, counted per second of
//! this thread's own CPU time, and set beside a baseline measured in the same run over
//! the same bytes: a plain automaton walk (one table lookup per byte, no SIMD skipping)
//! for three token prefixes. The ratio to it moves far less with the machine's load and
//! clock than the absolute figure. `CORK_DLP_BENCH_MIB` sets the input size (default
//! 64; the bench smoke run uses 1); `cargo xtask bench` reads the `dlp throughput, …`
//! lines. `CORK_DLP_BENCH_ONLY=<text>` runs only the rows whose description holds it
//! (for profiling one case, e.g. `developer traffic`).

use aho_corasick::{AhoCorasick, AhoCorasickKind};

use super::corpus::benign;
use super::corpus::generate::Rng;
use super::secret;
use crate::scanner::Scanner;
use crate::teddy::Kernel;
use crate::{Config, Detector};

/// Runs per figure; the best counts.
const RUNS: usize = 3;

const MIB: usize = 1 << 20;

/// Built-ins, a custom detector and `secrets` known secrets, searching keyword roots
/// with `kernel` (`None`: aho-corasick).
fn full(secrets: usize, kernel: Option<Kernel>) -> Scanner {
    config(true, true, secrets, kernel)
}

fn config(builtin: bool, custom: bool, secrets: usize, kernel: Option<Kernel>) -> Scanner {
    let custom = custom.then(|| Detector::custom("acme-order-id", "ACME-[0-9]{12}", &["ACME-"]));
    let config = Config {
        builtin,
        custom: custom.into_iter().collect(),
        known_secrets: (0..secrets)
            .map(|i| {
                secret(
                    &format!("S{i}"),
                    format!("cork-bench-{i}-Hq7Wz3Kd9Vb2").as_bytes(),
                )
            })
            .collect(),
        ..Config::default()
    };
    Scanner::with_kernel(&config, kernel).expect("scanner builds")
}

#[test]
#[ignore = "throughput report, not a correctness check"]
fn throughput_on_mixed_text() {
    let best = Kernel::best();
    let name = |k: Option<Kernel>| match k {
        Some(Kernel::Avx512) => "AVX-512 VBMI",
        Some(Kernel::Avx2) => "AVX2",
        None => "aho-corasick",
    };
    let mib = std::env::var("CORK_DLP_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(64)
        .max(1);
    let mixed = mixed_text(mib * MIB);
    let traffic = developer_traffic(mib * MIB);
    println!(
        "dlp throughput over {mib} MiB, best of {RUNS}, per CPU second; baseline: a DFA walk \
         over every byte; keyword roots searched with {}",
        name(best)
    );
    let mut reports: Vec<(String, Scanner, &[u8], Vec<usize>)> = vec![
        (
            "builtin + 1 custom + 1 known secret".into(),
            full(1, best),
            &mixed,
            vec![16 << 10, 64 << 10],
        ),
        (
            "builtin + 1 custom + 4 known secrets".into(),
            full(4, best),
            &mixed,
            vec![16 << 10],
        ),
    ];
    // The kernels this CPU runs besides its best, for machines without them.
    for other in [Some(Kernel::Avx2), None]
        .into_iter()
        .filter(|&k| k != best)
    {
        let available = other.is_none_or(|k| best.is_some_and(|b| b <= k));
        if available {
            let what = format!("builtin + 1 custom + 1 known secret, {}", name(other));
            reports.push((what, full(1, other), &mixed, vec![16 << 10]));
        }
    }
    reports.extend([
        (
            "builtin + 1 known secret".into(),
            config(true, false, 1, best),
            &mixed[..],
            vec![16 << 10, 64 << 10],
        ),
        (
            "builtin only".into(),
            config(true, false, 0, best),
            &mixed,
            vec![16 << 10, 64 << 10],
        ),
        (
            "1 known secret only".into(),
            config(false, false, 1, best),
            &mixed,
            vec![16 << 10],
        ),
        (
            "builtin + 1 custom + 1 known secret, developer traffic".into(),
            full(1, best),
            &traffic,
            vec![16 << 10],
        ),
    ]);
    let baseline = AhoCorasick::builder()
        .kind(Some(AhoCorasickKind::DFA))
        .prefilter(false)
        .build(["AKIA", "ghp_", "sk-ant-"])
        .expect("baseline automaton");
    let only = std::env::var("CORK_DLP_BENCH_ONLY").unwrap_or_default();
    reports.retain(|(what, ..)| what.contains(only.as_str()));
    for (what, sc, data, chunks) in &reports {
        for &chunk in chunks {
            let (mut best, mut base, mut findings) = (0f64, 0f64, 0);
            for _ in 0..RUNS {
                base = base.max(rate(data, || baseline.find_iter(data).count()));
                best = best.max(rate(data, || {
                    findings = scan_all(sc, data, chunk);
                    findings
                }));
            }
            println!(
                "dlp throughput, {what}: {:.0} MB/s per CPU second, {:.3}x baseline \
                 ({:.0} MB/s) ({} KiB chunks, {findings} findings)",
                best / 1e6,
                best / base,
                base / 1e6,
                chunk >> 10
            );
        }
    }
}

/// Feeds `data` in `chunk`-byte pieces; the number of findings.
fn scan_all(sc: &Scanner, data: &[u8], chunk: usize) -> usize {
    let mut s = sc.stream();
    let mut n = 0;
    for piece in data.chunks(chunk) {
        n += s.feed(piece).len();
    }
    n + s.finish().len()
}

/// Bytes of `data` per second of this thread's CPU time spent in `f`.
fn rate(data: &[u8], f: impl FnOnce() -> usize) -> f64 {
    let cpu = thread_cpu();
    let start = std::time::Instant::now();
    std::hint::black_box(f());
    let wall = start.elapsed();
    let spent = cpu.zip(thread_cpu()).map_or(wall, |(a, b)| b - a);
    data.len() as f64 / spent.as_secs_f64()
}

/// This thread's CPU time so far, to the nanosecond (`CLOCK_THREAD_CPUTIME_ID` adds the
/// running slice; `/proc/thread-self/schedstat`, used before, moves only at the scheduler
/// tick — 4 ms here, which quantised a 64 MiB run's figure in steps of ~6 %).
fn thread_cpu() -> Option<std::time::Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is, for the call's duration.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// `len` bytes of prose, JSON, an HTTP header, code and a base64-like blob, repeated.
fn mixed_text(len: usize) -> Vec<u8> {
    let mut unit = Vec::new();
    unit.extend_from_slice(
        b"The agent asked for the weather. {\"city\": \"Lisbon\", \"units\": \"metric\", \
          \"api_version\": 3} Authorization: Bearer placeholder-token\n",
    );
    unit.extend_from_slice(b"fn main() { let key = map.get(&k); println!(\"{key}\"); }\n");
    unit.extend(
        (0u32..512)
            .map(|i| b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789+/="[(i * 31 % 49) as usize]),
    );
    unit.push(b'\n');
    repeat(&unit, len)
}

/// `len` bytes of the corpus's benign developer payloads (lockfiles, code, configs,
/// docs, logs, API payloads), repeated: denser in keywords than `mixed_text`.
fn developer_traffic(len: usize) -> Vec<u8> {
    let payloads = benign::payloads(3000, &mut Rng::new(7)).concat();
    repeat(payloads.as_bytes(), len)
}

fn repeat(unit: &[u8], len: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        data.extend_from_slice(unit);
    }
    data.truncate(len);
    data
}
