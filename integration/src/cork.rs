//! Finding the cork binary under test and building its command lines.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// The cork binary: `$CORK_BIN`, else `$CARGO_TARGET_DIR/debug/cork`, else
/// `<workspace>/target/debug/cork`. Missing is an error naming every place looked at
/// (a privileged test that cannot run must fail, not skip).
pub fn cork_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("CORK_BIN") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("CORK_BIN={} does not exist", p.display());
    }
    let candidates = candidates();
    for c in &candidates {
        if c.is_file() {
            return Ok(c.clone());
        }
    }
    bail!(
        "cork binary not found (looked at {}); build it with `cargo build -p cork` or set CORK_BIN",
        candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn candidates() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        v.push(PathBuf::from(t).join("debug/cork"));
    }
    v.push(workspace_root().join("target/debug/cork"));
    v
}

/// The workspace root (this crate's parent directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `run --manifest M --audit-log A -- ARGV...`.
pub fn run_args(manifest: &Path, audit: &Path, argv: &[String]) -> Vec<String> {
    let mut v = vec![
        "run".to_owned(),
        "--manifest".to_owned(),
        manifest.display().to_string(),
        "--audit-log".to_owned(),
        audit.display().to_string(),
        "--".to_owned(),
    ];
    v.extend(argv.iter().cloned());
    v
}
