//! What a bottle's proxy needs before the command starts: real credential values from
//! cork's own environment, the DLP scanner (built-ins, the manifest's detectors, and every
//! real credential as a known secret), and the CA bundle file the bottle trusts.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use cork_policy::Policy;

use super::server::LoadedCredential;
use super::upstream::SYSTEM_ROOTS;
use cork_dlp::{self as dlp, Detector, DlpError, KnownSecret, Scanner};

/// Environment variables that point common clients at the bundle: OpenSSL (and Python's
/// ssl, Ruby...), curl, Python requests, Node.js (adds to its own roots), git.
pub const CA_ENV_VARS: [&str; 5] = [
    "SSL_CERT_FILE",
    "CURL_CA_BUNDLE",
    "REQUESTS_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "GIT_SSL_CAINFO",
];

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(
        "credential {env} (line {line}): cork's environment has no {value_env}; export the \
         real value as {value_env} before `cork run`"
    )]
    MissingValue {
        env: String,
        value_env: String,
        line: usize,
    },
    #[error("credential {env} (line {line}): {value_env} is empty")]
    EmptyValue {
        env: String,
        value_env: String,
        line: usize,
    },
    #[error(transparent)]
    Dlp(#[from] DlpError),
    #[error(
        "{key}: unknown detector {id:?}; `cork dlp detectors` lists the built-in ids, and \
         [[dlp.detectors]] names the manifest's own"
    )]
    UnknownDetector {
        id: String,
        key: String,
        /// Manifest line and column of the id.
        line: usize,
        col: usize,
    },
    #[error("writing the bottle's CA bundle {path}")]
    Bundle {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Reads each credential's real value through `lookup` (cork's environment in `cork run`).
pub fn load_credentials(
    policy: &Policy,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Vec<LoadedCredential>, SetupError> {
    policy
        .credentials
        .iter()
        .map(|c| {
            let real = lookup(&c.value_env).ok_or_else(|| SetupError::MissingValue {
                env: c.env.clone(),
                value_env: c.value_env.clone(),
                line: c.line,
            })?;
            if real.is_empty() {
                return Err(SetupError::EmptyValue {
                    env: c.env.clone(),
                    value_env: c.value_env.clone(),
                    line: c.line,
                });
            }
            Ok(LoadedCredential {
                credential: c.clone(),
                real,
            })
        })
        .collect()
}

/// The scanner for `policy`, after checking that every detector id the manifest names
/// (`[dlp.actions]`, routes' `dlp_skip`) is one the scanner has. `cork check` builds it
/// with no credentials to validate the manifest's DLP settings.
pub fn scanner(policy: &Policy, creds: &[LoadedCredential]) -> Result<Scanner, SetupError> {
    let scanner = build_scanner(policy, creds)?;
    for r in policy.dlp_detector_refs() {
        if scanner.detector(&r.id).is_none() {
            return Err(SetupError::UnknownDetector {
                id: r.id.clone(),
                key: r.key.clone(),
                line: r.line,
                col: r.col,
            });
        }
    }
    Ok(scanner)
}

fn build_scanner(policy: &Policy, creds: &[LoadedCredential]) -> Result<Scanner, DlpError> {
    let custom = policy
        .dlp
        .detectors
        .iter()
        .map(|d| {
            let kw: Vec<&str> = d.keywords.iter().map(String::as_str).collect();
            Detector::custom(&d.name, &d.regex, &kw)
        })
        .collect();
    let known_secrets = creds
        .iter()
        .map(|c| KnownSecret {
            name: c.credential.env.clone(),
            value: c.real.as_bytes().to_vec(),
        })
        .collect();
    Scanner::new(&dlp::Config {
        custom,
        known_secrets,
        ..dlp::Config::default()
    })
}

/// The CA bundle a bottle trusts: the system roots plus the bottle's CA, in a directory of
/// its own, removed on drop.
#[derive(Debug)]
pub struct CaBundle {
    dir: PathBuf,
    path: PathBuf,
}

impl CaBundle {
    /// Writes `<dir>/ca-bundle.pem` (mode 0644, readable by a bottle running as any user).
    pub fn write(dir: &Path, ca_pem: &str) -> Result<Self, SetupError> {
        let path = dir.join("ca-bundle.pem");
        let err = |source| SetupError::Bundle {
            path: path.clone(),
            source,
        };
        fs::DirBuilder::new().mode(0o755).create(dir).map_err(err)?;
        Self::write_file(dir, ca_pem)
    }

    /// Writes the bundle file into `dir`, which exists.
    fn write_file(dir: &Path, ca_pem: &str) -> Result<Self, SetupError> {
        let path = dir.join("ca-bundle.pem");
        let err = |source| SetupError::Bundle {
            path: path.clone(),
            source,
        };
        let bundle = CaBundle {
            dir: dir.to_path_buf(),
            path: path.clone(),
        };
        let mut text = match fs::read_to_string(SYSTEM_ROOTS) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(err(e)),
        };
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(ca_pem);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
            .map_err(err)?;
        f.write_all(text.as_bytes()).map_err(err)?;
        Ok(bundle)
    }

    /// The bundle an earlier agent wrote in `dir` for the CA `ca_pem` (a restarted daemon
    /// taking its bottle back): kept as it is when it still ends with that certificate —
    /// the bottle's processes have it open or will — written again otherwise.
    pub fn adopt(dir: &Path, ca_pem: &str) -> Result<Self, SetupError> {
        let path = dir.join("ca-bundle.pem");
        match fs::read_to_string(&path) {
            Ok(text) if text.ends_with(ca_pem) => Ok(CaBundle {
                dir: dir.to_path_buf(),
                path,
            }),
            Ok(_) => {
                fs::remove_file(&path).map_err(|source| SetupError::Bundle {
                    path: path.clone(),
                    source,
                })?;
                Self::write_file(dir, ca_pem)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && dir.is_dir() => {
                Self::write_file(dir, ca_pem)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Self::write(dir, ca_pem),
            Err(source) => Err(SetupError::Bundle { path, source }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for CaBundle {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
        let _ = fs::remove_dir(&self.dir);
    }
}
