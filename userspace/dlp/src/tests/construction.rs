//! What building a scanner costs (ignored: informative, not a correctness check).
//!
//! `cargo test -p cork-dlp --lib --release construction -- --ignored --nocapture`;
//! `cargo xtask bench` runs it with the throughput report and reads its
//! `dlp construction, …` lines. The built-in detectors' analysis is done once per
//! process (`detectors::builtins`); every scanner before that paid it. Each figure is the
//! best of a few runs, wall clock.

use std::time::{Duration, Instant};

use super::secret;
use crate::detectors::analyse_builtins;
use crate::{Config, Detector, Scanner};

const RUNS: usize = 5;

fn best(mut f: impl FnMut()) -> Duration {
    (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

#[test]
#[ignore = "construction timing, not a correctness check"]
fn construction_of_a_scanner() {
    let config = Config {
        custom: vec![Detector::custom(
            "acme-order-id",
            "ACME-[0-9]{12}",
            &["ACME-"],
        )],
        known_secrets: vec![secret("S0", b"cork-bench-0-Hq7Wz3Kd9Vb2")],
        ..Config::default()
    };
    // The first scanner of the process analyses the built-ins; the others share it.
    Scanner::new(&config).expect("scanner builds");
    let analysis = best(|| {
        std::hint::black_box(analyse_builtins().expect("built-ins are valid"));
    });
    let scanner = best(|| {
        std::hint::black_box(Scanner::new(&config).expect("scanner builds"));
    });
    println!(
        "dlp construction, built-in analysis (once per process): {:.2} ms",
        analysis.as_secs_f64() * 1e3
    );
    println!(
        "dlp construction, a scanner (built-ins + 1 custom + 1 known secret) after the first: \
         {:.2} ms",
        scanner.as_secs_f64() * 1e3
    );
}
