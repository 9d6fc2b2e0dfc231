//! Where audit lines go: a file (appended, created 0600) or standard error, and, when the
//! sink was given one, an in-memory [`AuditHistory`] (the daemon's, for `cork audit`).
//! Lines written to a file carry the hash chain ([`crate::chain`]), continued from the
//! file's last line; the history gets the same bytes.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::history::AuditHistory;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("opening audit log {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing audit log {target}")]
    Write {
        target: String,
        #[source]
        source: io::Error,
    },
}

pub struct AuditSink {
    dest: Dest,
    history: Option<Arc<AuditHistory>>,
    /// The chain value of the last line written (file destinations only).
    chain: Option<[u8; 32]>,
}

enum Dest {
    File { path: PathBuf, out: BufWriter<File> },
    Stderr,
}

impl AuditSink {
    pub fn open(path: Option<&Path>) -> Result<Self, SinkError> {
        let chain = match path {
            Some(path) => Some(
                crate::chain::head_of(path).map_err(|source| SinkError::Open {
                    path: path.to_path_buf(),
                    source,
                })?,
            ),
            None => None,
        };
        Ok(AuditSink {
            dest: Dest::open(path)?,
            history: None,
            chain,
        })
    }

    /// The chain value of the last line written, as hex (file destinations only): the
    /// head to keep elsewhere to anchor the file's chain.
    pub fn chain_head(&self) -> Option<String> {
        self.chain.as_ref().map(|c| crate::chain::hex(c))
    }

    /// The same sink, also recording every line it writes in `history`.
    pub fn with_history(mut self, history: Arc<AuditHistory>) -> Self {
        self.history = Some(history);
        self
    }

    fn target(&self) -> String {
        match &self.dest {
            Dest::File { path, .. } => path.display().to_string(),
            Dest::Stderr => "stderr".into(),
        }
    }

    /// Writes one event as one line. Buffered for files: call [`AuditSink::flush`]. The
    /// history gets the line even when the file write fails: the event happened.
    pub fn write<E: Serialize>(&mut self, event: &E) -> Result<(), SinkError> {
        let mut line = serde_json::to_vec(event).expect("audit events serialize");
        if let Some(prev) = &mut self.chain {
            crate::chain::seal(prev, &mut line);
        }
        line.push(b'\n');
        let res = match &mut self.dest {
            Dest::File { out, .. } => out.write_all(&line),
            Dest::Stderr => io::stderr().lock().write_all(&line),
        };
        if let Some(history) = &self.history {
            history.push(line);
        }
        res.map_err(|source| SinkError::Write {
            target: self.target(),
            source,
        })
    }

    pub fn flush(&mut self) -> Result<(), SinkError> {
        let res = match &mut self.dest {
            Dest::File { out, .. } => out.flush(),
            Dest::Stderr => Ok(()),
        };
        res.map_err(|source| SinkError::Write {
            target: self.target(),
            source,
        })
    }
}

impl Dest {
    fn open(path: Option<&Path>) -> Result<Self, SinkError> {
        let Some(path) = path else {
            return Ok(Dest::Stderr);
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| SinkError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Dest::File {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }
}
