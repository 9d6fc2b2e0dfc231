//! Property tests that may discard a generated case (a rule set the kernel's slots cannot
//! hold, a learned address that does not fit) run through [`check_counted`]: it counts what
//! was checked and what was discarded, and fails unless enough was checked. A generator
//! that drifts into producing mostly discards must fail, not pass on the few cases left.

use std::cell::Cell;

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};

/// The limits of one property.
pub struct Counted {
    /// The name in proptest's regression file and in the summary line.
    pub name: &'static str,
    /// `file!()` of the test: failing seeds go beside it, in `<test>.proptest-regressions`.
    pub source_file: &'static str,
    /// Cases that must be checked (discards are replaced by new cases).
    pub cases: u32,
    /// Discarded cases allowed in all before the test fails.
    pub max_discards: u32,
    /// Points (one evaluated destination, protocol and port, say) that must be checked in all.
    pub min_points: u64,
}

/// Runs `test` until `limits.cases` generated values were checked. `test` returns how
/// many points it checked; `0` discards the value (another is generated in its place).
/// Panics with proptest's minimal failing input when the property fails, when there were
/// more than `max_discards` discards, or when fewer than `min_points` points were checked.
pub fn check_counted<S: Strategy>(
    limits: Counted,
    strategy: S,
    test: impl Fn(S::Value) -> Result<u64, TestCaseError>,
) {
    let config = Config {
        cases: limits.cases,
        max_global_rejects: limits.max_discards,
        source_file: Some(limits.source_file),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        test_name: Some(limits.name),
        ..Config::default()
    };
    let (checked, discarded, points) = (Cell::new(0u32), Cell::new(0u32), Cell::new(0u64));
    let result = TestRunner::new(config).run(&strategy, |value| match test(value)? {
        0 => {
            discarded.set(discarded.get() + 1);
            Err(TestCaseError::reject("discarded: nothing to check"))
        }
        n => {
            checked.set(checked.get() + 1);
            points.set(points.get() + n);
            Ok(())
        }
    });
    let summary = format!(
        "{}: {} cases checked ({} points), {} discarded",
        limits.name,
        checked.get(),
        points.get(),
        discarded.get()
    );
    if let Err(e) = result {
        panic!("{e}\n{summary}");
    }
    eprintln!("{summary}");
    assert!(
        checked.get() >= limits.cases,
        "fewer cases checked than asked: {summary}"
    );
    assert!(
        points.get() >= limits.min_points,
        "fewer than {} points checked: {summary}",
        limits.min_points
    );
}
