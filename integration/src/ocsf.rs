//! The OCSF checks tests share: the pinned schema version cork claims, and the offline
//! validator (`ocsf_validate.py`, in the virtualenv `cargo xtask deps` makes — missing, a
//! test fails: it is a dependency, never a skip).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The OCSF version cork's events claim (`cork::ocsf::SCHEMA_VERSION`).
pub const OCSF_VERSION: &str = "1.8.0";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("integration/ is in the workspace")
        .to_path_buf()
}

/// Runs the validator on the JSON lines in `events`; its report (an error when any event
/// does not validate).
pub fn validate(events: &Path) -> Result<String> {
    let python = workspace().join("target/ocsf-venv/bin/python");
    if !python.exists() {
        bail!(
            "{} is missing: the OCSF validator's virtualenv is a dependency of this test; \
             run `cargo xtask deps`",
            python.display()
        );
    }
    let out = Command::new(&python)
        .arg(workspace().join("integration/src/ocsf_validate.py"))
        .arg(OCSF_VERSION)
        .arg(events)
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("OCSF validation failed ({}):\n{report}", out.status);
    }
    Ok(report)
}

/// Each line of `text` as JSON (an error naming the first that is not).
pub fn parse_lines(text: &str) -> Result<Vec<Value>> {
    text.lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
        .collect()
}
