//! `cork bottle create | ls | show | update | rm`: the daemon's standing bottles, through
//! its control socket, printed for a person.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum BottleCmd {
    /// Create a standing bottle from a manifest (enforced and verified when this returns).
    Create {
        #[arg(long, short = 'm')]
        manifest: PathBuf,
    },
    /// List the standing bottles.
    Ls,
    /// One bottle, as JSON.
    Show { name: String },
    /// Replace a running bottle's policy as one generation: the kernel switches from the
    /// old policy to the new one in one write (no connect sees a mix); open connections
    /// stay open. Only egress rules, domains, host ports and unix names may change.
    Update {
        name: String,
        #[arg(long, short = 'm')]
        manifest: PathBuf,
    },
    /// Remove a bottle (its processes are killed while still enforced).
    Rm { name: String },
}

pub fn bottle(socket: &Path, cmd: BottleCmd) -> ExitCode {
    use crate::control;
    let done = match cmd {
        BottleCmd::Create { manifest } => control::create(socket, &manifest).map(|b| {
            println!("{} {}", b.name, b.key);
            0
        }),
        BottleCmd::Ls => control::list(socket).map(|list| {
            println!(
                "{:<24} {:<40} {:<4} {:<24} STATE",
                "NAME", "KEY", "GEN", "CREATED"
            );
            for b in list {
                println!(
                    "{:<24} {:<40} {:<4} {:<24} {}",
                    b.name, b.key, b.generation, b.created, b.state
                );
            }
            0
        }),
        BottleCmd::Update { name, manifest } => {
            control::update(socket, &name, &manifest).map(|u| {
                println!(
                    "{} generation {} -> {} ({} learned addresses carried, manifest sha256 {})",
                    u.name,
                    u.old_generation,
                    u.new_generation,
                    u.learned_carried,
                    u.manifest_sha256
                );
                0
            })
        }
        BottleCmd::Show { name } => control::show(socket, &name).map(|b| {
            println!(
                "{}",
                serde_json::to_string_pretty(&b).unwrap_or_else(|e| e.to_string())
            );
            0
        }),
        BottleCmd::Rm { name } => control::remove(socket, &name).map(|r| {
            for p in &r.problems {
                eprintln!("cork bottle rm: {p}");
            }
            u8::from(!r.problems.is_empty())
        }),
    };
    match done {
        Ok(code) => ExitCode::from(code),
        Err(e) => ExitCode::from(control::fail("bottle", &e)),
    }
}
