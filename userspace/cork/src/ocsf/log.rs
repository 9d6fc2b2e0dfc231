//! `cork daemon --ocsf-log FILE`: every audit line the daemon writes, also appended to
//! FILE as its OCSF event (one JSON object per line), for a SIEM that reads OCSF. cork's
//! own log stays the record (`cork audit`, `--verify` and the history read it); each OCSF
//! event carries the line's chain value as `metadata.uid`, tying it to that line.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use cork_audit::{LineMirror, SinkError};

pub struct OcsfLog {
    path: PathBuf,
    out: BufWriter<File>,
}

impl OcsfLog {
    /// Opens (appends to, creates `0600`) `path`.
    pub fn open(path: &Path) -> Result<Self, SinkError> {
        Ok(OcsfLog {
            path: path.to_path_buf(),
            out: BufWriter::new(cork_audit::open_log(path)?),
        })
    }

    fn failed(&self, source: std::io::Error) -> SinkError {
        SinkError::Write {
            target: self.path.display().to_string(),
            source,
        }
    }
}

impl LineMirror for OcsfLog {
    fn mirror(&mut self, line: &[u8]) -> Result<(), SinkError> {
        // cork writes every line it maps (JSON, with a time); a line that is not is a
        // bug to hear about, not an event to drop silently.
        let event = super::from_line(line).map_err(|e| self.failed(std::io::Error::other(e)))?;
        let mut text = serde_json::to_vec(&event).map_err(|e| self.failed(e.into()))?;
        text.push(b'\n');
        self.out.write_all(&text).map_err(|e| self.failed(e))
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|e| self.failed(e))
    }
}
