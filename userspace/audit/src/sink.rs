//! Where audit lines go: a file (appended, created 0600) or standard error.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

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

pub enum AuditSink {
    File { path: PathBuf, out: BufWriter<File> },
    Stderr,
}

impl AuditSink {
    pub fn open(path: Option<&Path>) -> Result<Self, SinkError> {
        let Some(path) = path else {
            return Ok(AuditSink::Stderr);
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
        Ok(AuditSink::File {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }

    fn target(&self) -> String {
        match self {
            AuditSink::File { path, .. } => path.display().to_string(),
            AuditSink::Stderr => "stderr".into(),
        }
    }

    /// Writes one event as one line. Buffered for files: call [`AuditSink::flush`].
    pub fn write<E: Serialize>(&mut self, event: &E) -> Result<(), SinkError> {
        let mut line = serde_json::to_vec(event).expect("audit events serialize");
        line.push(b'\n');
        let res = match self {
            AuditSink::File { out, .. } => out.write_all(&line),
            AuditSink::Stderr => io::stderr().lock().write_all(&line),
        };
        res.map_err(|source| SinkError::Write {
            target: self.target(),
            source,
        })
    }

    pub fn flush(&mut self) -> Result<(), SinkError> {
        let res = match self {
            AuditSink::File { out, .. } => out.flush(),
            AuditSink::Stderr => Ok(()),
        };
        res.map_err(|source| SinkError::Write {
            target: self.target(),
            source,
        })
    }
}
