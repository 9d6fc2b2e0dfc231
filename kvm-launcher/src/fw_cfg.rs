//! fw_cfg entries: how cork hands files to the guest without a shared filesystem. QEMU
//! exposes each as `/sys/firmware/qemu_fw_cfg/by_name/<name>/raw` in a Linux guest (module
//! `qemu_fw_cfg`).
//!
//! cork's names (a contract with guest images):
//! - `opt/cork/ca.pem` — the bottle's CA certificate (PEM), to trust for inspected TLS.
//! - `opt/cork/env` — `NAME=VALUE` lines (credential placeholders and the like), one per
//!   line, no quoting: a guest exports each line as it is.
//! - `opt/cork/manifest` — the bottle's manifest as cork read it, so that `cork probe
//!   --guest` inside the guest checks the promises its own bottle makes.
//! - `opt/cork/probe` — test guests only: the shell script their init runs.

use std::path::{Path, PathBuf};

/// QEMU's limit on a fw_cfg file name, terminating NUL included (FW_CFG_MAX_FILE_PATH).
const MAX_NAME: usize = 56;

pub const CA_PEM: &str = "opt/cork/ca.pem";
pub const ENV: &str = "opt/cork/env";
pub const MANIFEST: &str = "opt/cork/manifest";
pub const PROBE: &str = "opt/cork/probe";

#[derive(Debug, thiserror::Error)]
pub enum FwCfgError {
    #[error(
        "fw_cfg name {name:?} is invalid: it must start with \"opt/\", be at most {} bytes \
         and hold only printable ASCII without commas",
        MAX_NAME - 1
    )]
    BadName { name: String },
    #[error("env entry {key:?}: {why}")]
    BadEnv { key: String, why: &'static str },
}

/// One `-fw_cfg name=NAME,file=PATH` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwCfg {
    name: String,
    file: PathBuf,
}

impl FwCfg {
    /// An entry named `name` with the contents of `file` (read by QEMU at start).
    pub fn new(name: &str, file: impl Into<PathBuf>) -> Result<Self, FwCfgError> {
        let ok = name.starts_with("opt/")
            && name.len() < MAX_NAME
            && name.bytes().all(|b| b.is_ascii_graphic() && b != b',');
        if !ok {
            return Err(FwCfgError::BadName {
                name: name.to_owned(),
            });
        }
        Ok(Self {
            name: name.to_owned(),
            file: file.into(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn file(&self) -> &Path {
        &self.file
    }
}

/// The text of an `opt/cork/env` file: `NAME=VALUE\n` per pair. Names are shell-variable
/// names; values may not hold newlines (one line per entry) or NULs.
pub fn env_text(pairs: &[(&str, &str)]) -> Result<String, FwCfgError> {
    let mut out = String::new();
    for &(key, value) in pairs {
        let bad = |why| FwCfgError::BadEnv {
            key: key.to_owned(),
            why,
        };
        let mut chars = key.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(bad("not a variable name ([A-Za-z_][A-Za-z0-9_]*)"));
        }
        if value.contains(['\n', '\r', '\0']) {
            return Err(bad("the value holds a newline or NUL"));
        }
        out.push_str(key);
        out.push('=');
        out.push_str(value);
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_qemus_rules() {
        assert!(FwCfg::new(CA_PEM, "/x").is_ok());
        assert!(FwCfg::new(&format!("opt/{}", "a".repeat(51)), "/x").is_ok());
        for bad in [
            "cork/ca.pem",
            "opt/a,b",
            "opt/a b",
            &format!("opt/{}", "a".repeat(52)),
        ] {
            let e = FwCfg::new(bad, "/x").unwrap_err();
            assert!(e.to_string().contains("opt/"), "{e}");
        }
    }

    #[test]
    fn env_text_is_one_line_per_pair_and_refuses_what_would_break_lines() {
        let t = env_text(&[("API_KEY", "cork-placeholder-1"), ("_X", "a=b c")]).expect("ok");
        assert_eq!(t, "API_KEY=cork-placeholder-1\n_X=a=b c\n");
        assert!(env_text(&[("1X", "v")]).is_err());
        assert!(env_text(&[("A-B", "v")]).is_err());
        let e = env_text(&[("K", "two\nlines")]).unwrap_err();
        assert!(e.to_string().contains("newline"), "{e}");
    }
}
