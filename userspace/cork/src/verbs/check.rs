//! `cork check` (a manifest, compiled and planned, its warnings and a one-line summary)
//! and `cork clean` (what killed agents left).

use std::path::Path;
use std::process::ExitCode;

pub fn check(path: &Path, for_vm: bool) -> ExitCode {
    let src = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cork check: reading {}: {e}", path.display());
            return ExitCode::from(1);
        }
    };
    let origin = path.display().to_string();
    let checked = cork_policy::compile(&src, &origin).and_then(|p| {
        if for_vm {
            cork_policy::check_for_vm(&src, &origin)?;
        }
        Ok(p)
    });
    match checked {
        Ok(policy) => {
            // Located like errors, on stderr, but the manifest is still valid.
            for w in &policy.warnings {
                eprintln!("warning: {w}");
            }
            let plan = policy.plan();
            println!(
                "{}: ok — bottle {:?}, {} rules, {} IPv4 and {} IPv6 prefixes, {} domain rules, \
                 {} host loopback ports, {} credentials",
                path.display(),
                policy.name,
                policy.rules.len(),
                plan.v4.len(),
                plan.v6.len(),
                policy.domains.len(),
                plan.host_ports.len(),
                policy.credentials.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

pub fn clean() -> ExitCode {
    match cork_agent::clean::clean() {
        Ok(report) => {
            for p in &report.removed {
                println!("removed {}", p.display());
            }
            for p in &report.kept_live {
                println!("kept {} (its agent is running)", p.display());
            }
            for p in &report.problems {
                eprintln!("cork clean: {p}");
            }
            if report.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("cork clean: {}", cork_audit::error_chain(&e));
            ExitCode::from(1)
        }
    }
}
