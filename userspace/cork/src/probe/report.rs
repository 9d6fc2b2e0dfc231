//! What a probe found and how it is shown: the evidence a probe gathers while it runs
//! ([`Trace`]), its outcome, and the two outputs — a human table and JSON lines (one object
//! per probe: id, severity, passed, expected, observed, evidence, and a cause when it
//! failed).
//!
//! A failure always carries a cause: [`Outcome::fail`] takes one, and a probe whose check
//! could not say why fails with a cause saying exactly that.

use std::io::{self, Write};

use serde::Serialize;

use super::catalogue::{Probe, Severity};

/// The steps a probe took. Evidence lines are always kept; detail lines only when the
/// probe runs again under `--diag`.
#[derive(Debug, Default)]
pub struct Trace {
    pub evidence: Vec<String>,
    pub detail: Vec<String>,
    full: bool,
}

impl Trace {
    pub fn new(full: bool) -> Self {
        Trace {
            full,
            ..Trace::default()
        }
    }

    /// A step and what came back, for every run.
    pub fn step(&mut self, line: impl Into<String>) {
        self.evidence.push(line.into());
    }

    /// Context only `--diag` shows; `f` runs only then.
    pub fn detail(&mut self, f: impl FnOnce() -> String) {
        if self.full {
            self.detail.push(f());
        }
    }
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub passed: bool,
    pub observed: String,
    /// Why it failed (always set on a failure).
    pub cause: Option<String>,
}

impl Outcome {
    pub fn pass(observed: impl Into<String>) -> Self {
        Outcome {
            passed: true,
            observed: observed.into(),
            cause: None,
        }
    }

    pub fn fail(observed: impl Into<String>, cause: impl Into<String>) -> Self {
        let cause = cause.into();
        Outcome {
            passed: false,
            observed: observed.into(),
            cause: Some(if cause.is_empty() {
                "the probe could not say why (a probe that cannot explain itself fails)".to_owned()
            } else {
                cause
            }),
        }
    }
}

/// One probe's line of the report.
#[derive(Debug, Serialize)]
pub struct ProbeReport {
    pub id: String,
    pub severity: &'static str,
    pub passed: bool,
    pub proves: String,
    pub expected: String,
    pub observed: String,
    pub evidence: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// `--diag`: the failed probe run again with every detail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diag: Option<Vec<String>>,
}

impl ProbeReport {
    pub fn new(probe: &Probe, outcome: Outcome, trace: Trace) -> Self {
        ProbeReport {
            id: probe.id.clone(),
            severity: probe.severity.as_str(),
            passed: outcome.passed,
            proves: probe.proves.clone(),
            expected: probe.expected.clone(),
            observed: outcome.observed,
            evidence: trace.evidence,
            cause: outcome.cause,
            diag: None,
        }
    }

    pub fn hard_failure(&self) -> bool {
        !self.passed && self.severity == Severity::Hard.as_str()
    }
}

/// One JSON object per line, one line per probe.
pub fn write_json(out: &mut impl Write, reports: &[ProbeReport]) -> io::Result<()> {
    for r in reports {
        serde_json::to_writer(&mut *out, r)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// A table of every probe, then each failure's expectation, cause and evidence.
pub fn write_table(out: &mut impl Write, reports: &[ProbeReport], header: &str) -> io::Result<()> {
    writeln!(out, "{header}")?;
    let width = reports.iter().map(|r| r.id.len()).max().unwrap_or(2).max(2);
    writeln!(
        out,
        "{:<6} {:<width$} {:<4} OBSERVED",
        "RESULT", "ID", "SEV"
    )?;
    for r in reports {
        let result = match (r.passed, r.severity) {
            (true, _) => "pass",
            (false, "soft") => "warn",
            (false, _) => "FAIL",
        };
        writeln!(
            out,
            "{result:<6} {:<width$} {:<4} {}",
            r.id, r.severity, r.observed
        )?;
    }
    for r in reports.iter().filter(|r| !r.passed) {
        writeln!(out, "\n{} ({}): {}", r.id, r.severity, r.proves)?;
        writeln!(out, "  expected: {}", r.expected)?;
        writeln!(out, "  observed: {}", r.observed)?;
        if let Some(cause) = &r.cause {
            writeln!(out, "  cause:    {cause}")?;
        }
        for e in &r.evidence {
            writeln!(out, "  evidence: {e}")?;
        }
        for d in r.diag.iter().flatten() {
            writeln!(out, "  diag:     {d}")?;
        }
    }
    let failed = reports.iter().filter(|r| r.hard_failure()).count();
    let soft = reports
        .iter()
        .filter(|r| !r.passed && !r.hard_failure())
        .count();
    writeln!(
        out,
        "\n{} probes: {} passed, {failed} hard failures, {soft} soft failures",
        reports.len(),
        reports.iter().filter(|r| r.passed).count()
    )?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_without_a_cause_says_so() {
        let o = Outcome::fail("timeout", "");
        assert!(!o.passed);
        assert!(o.cause.unwrap().contains("could not say why"));
    }

    #[test]
    fn detail_is_kept_only_in_full_traces() {
        let mut t = Trace::new(false);
        t.step("connect = EPERM");
        t.detail(|| "local address".into());
        assert_eq!(t.evidence.len(), 1);
        assert!(t.detail.is_empty());
        let mut t = Trace::new(true);
        t.detail(|| "local address".into());
        assert_eq!(t.detail, ["local address"]);
    }
}
