//! The throughput report (ignored: informative, not a correctness check).
//!
//! `cargo test -p cork-dlp --lib --release throughput -- --ignored --nocapture`. The
//! machine may be shared, so each figure is the best of a few runs, counted per second of
//! this thread's own CPU time, and set beside a baseline measured in the same run over
//! the same bytes: a plain automaton walk (one table lookup per byte, no SIMD skipping)
//! for three token prefixes. The ratio to it moves far less with the machine's load and
//! clock than the absolute figure.

use aho_corasick::{AhoCorasick, AhoCorasickKind};

use super::{scanner, secret};
use crate::{Config, Detector, Scanner};

/// Runs per figure; the best counts.
const RUNS: usize = 3;

const MIB: usize = 1 << 20;

#[test]
#[ignore = "throughput report, not a correctness check"]
fn throughput_on_mixed_text() {
    let data = mixed_text(64 * MIB);
    let value = b"cork-bench-secret-Hq7Wz3Kd9Vb2";
    let custom = || {
        vec![Detector::custom(
            "acme-order-id",
            "ACME-[0-9]{12}",
            &["ACME-"],
        )]
    };
    let full = scanner(Config {
        custom: custom(),
        known_secrets: vec![secret("REAL", value)],
        ..Config::default()
    });
    let builtin_known = scanner(Config {
        known_secrets: vec![secret("REAL", value)],
        ..Config::default()
    });
    let builtin = scanner(Config::default());
    let known = scanner(Config {
        builtin: false,
        known_secrets: vec![secret("REAL", value)],
        ..Config::default()
    });
    let baseline = AhoCorasick::builder()
        .kind(Some(AhoCorasickKind::DFA))
        .prefilter(false)
        .build(["AKIA", "ghp_", "sk-ant-"])
        .expect("baseline automaton");
    println!(
        "dlp throughput over {} MiB of mixed text, best of {RUNS}, per CPU second; \
         baseline: a DFA walk over every byte",
        data.len() / MIB
    );
    for (what, sc) in [
        ("builtin + 1 custom + 1 known secret", &full),
        ("builtin + 1 known secret", &builtin_known),
        ("builtin only", &builtin),
        ("1 known secret only", &known),
    ] {
        for chunk in [16 << 10, 64 << 10] {
            let (mut best, mut base, mut findings) = (0f64, 0f64, 0);
            for _ in 0..RUNS {
                base = base.max(rate(&data, || baseline.find_iter(&data).count()));
                best = best.max(rate(&data, || {
                    findings = scan_all(sc, &data, chunk);
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

/// This thread's CPU time so far (`/proc/thread-self/schedstat`, nanoseconds on CPU).
fn thread_cpu() -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = stat.split_whitespace().next()?.parse().ok()?;
    Some(std::time::Duration::from_nanos(ns))
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
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        data.extend_from_slice(&unit);
    }
    data.truncate(len);
    data
}
