//! DLP tests. Every token here is an obviously fake value built from a repeating pattern.

mod blob;
mod blob_stream;
mod builtin;
mod config;
mod construction;
mod corpus;
mod decode;
mod escapes;
mod kernels;
mod known;
mod reference;
mod stream;
mod swap;
mod throughput;

use super::{Config, Finding, KnownSecret, Scanner};

/// `n` characters from `alphabet`, cycling: a fake token body.
fn fake(alphabet: &str, n: usize) -> String {
    alphabet.chars().cycle().take(n).collect()
}

/// Alphanumerics in a fixed, visibly fake order.
const ALNUM: &str = "aB3dE5gH7jK9mN1pQ2sT4vW6yZ8";

fn scanner(config: Config) -> Scanner {
    Scanner::new(&config).expect("scanner builds")
}

/// The known secret of [`full`].
const KNOWN: &[u8] = b"cork-known-secret-Hq7Wz3Kd9Vb2";

/// Every built-in detector and the known secret [`KNOWN`], built once for all the test
/// modules: hundreds of detectors take a while to compile in a debug build.
fn full() -> &'static Scanner {
    static FULL: std::sync::OnceLock<Scanner> = std::sync::OnceLock::new();
    FULL.get_or_init(|| {
        scanner(Config {
            known_secrets: vec![secret("REAL", KNOWN)],
            ..Config::default()
        })
    })
}

/// Feeds `input` split at `splits` (sorted offsets) and returns every finding.
fn scan_split(sc: &Scanner, input: &[u8], splits: &[usize]) -> Vec<Finding> {
    let mut s = sc.stream();
    let mut out = Vec::new();
    let mut from = 0;
    for &at in splits.iter().chain(std::iter::once(&input.len())) {
        let at = at.clamp(from, input.len());
        out.extend(s.feed(&input[from..at]));
        from = at;
    }
    out.extend(s.finish());
    out.sort();
    out
}

fn scan(sc: &Scanner, input: &[u8]) -> Vec<Finding> {
    scan_split(sc, input, &[])
}

fn detectors_of(findings: &[Finding]) -> Vec<&str> {
    findings.iter().map(|f| f.detector.as_str()).collect()
}

fn secret(name: &str, value: &[u8]) -> KnownSecret {
    KnownSecret {
        name: name.to_string(),
        value: value.to_vec(),
    }
}
