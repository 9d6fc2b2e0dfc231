//! `cork dlp scan` (the proxy's detectors over a file, offline) and `cork dlp detectors`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::dlp_scan;

#[derive(clap::Subcommand)]
pub enum DlpCmd {
    /// Scan FILE (`-` for standard input) with the proxy's detectors and print the
    /// findings as JSON: exit 0 if none, 1 if any, 2 if the scan could not run.
    Scan {
        /// What to scan; `-` reads standard input.
        file: PathBuf,
        /// Use this manifest's `[dlp]` settings (its detectors and actions).
        #[arg(long, short = 'm')]
        manifest: Option<PathBuf>,
    },
    /// List the built-in detectors (id, family, severity, title) as JSON lines.
    Detectors,
}

pub fn scan(file: &Path, manifest: Option<&Path>) -> ExitCode {
    let fail = |msg: String| {
        eprintln!("cork dlp scan: {msg}");
        ExitCode::from(2)
    };
    let policy = match manifest {
        None => None,
        Some(path) => {
            let src = match std::fs::read_to_string(path) {
                Ok(s) => s,
                Err(e) => return fail(format!("reading {}: {e}", path.display())),
            };
            match cork_policy::compile(&src, &path.display().to_string()) {
                Ok(p) => Some(p),
                Err(e) => return fail(e.to_string()),
            }
        }
    };
    let scanner = match &policy {
        Some(p) => cork_agent::web::offline_scanner(p),
        None => cork_dlp::Scanner::new(&cork_dlp::Config::default()).map_err(Into::into),
    };
    let scanner = match scanner {
        Ok(s) => s,
        Err(e) => return fail(cork_audit::error_chain(&e)),
    };
    let input = match dlp_scan::open(file) {
        Ok(r) => r,
        Err(e) => return fail(format!("reading {}: {e}", file.display())),
    };
    let action = |detector: &str| match &policy {
        None => "block",
        Some(p) => p.dlp.resolve(None, detector).map_or("off", |a| a.as_str()),
    };
    let source = file.display().to_string();
    let report = match dlp_scan::scan(&source, input, &scanner, action) {
        Ok(r) => r,
        Err(e) => return fail(format!("reading {}: {e}", file.display())),
    };
    let json = match serde_json::to_string_pretty(&report) {
        Ok(json) => json,
        Err(e) => return fail(e.to_string()),
    };
    // A closed pipe (`| head`) is the reader's choice, not a crash: write, don't println!.
    if let Err(e) = writeln!(std::io::stdout().lock(), "{json}")
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return fail(format!("writing the report: {e}"));
    }
    if report.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `cork dlp detectors`: the built-in detectors as JSON lines.
pub fn detectors() -> ExitCode {
    for d in cork_dlp::builtin_detectors() {
        let line = serde_json::json!({
            "id": d.name,
            "family": d.family.as_str(),
            "severity": d.severity.as_str(),
            "title": d.title,
        });
        println!("{line}");
    }
    ExitCode::SUCCESS
}
