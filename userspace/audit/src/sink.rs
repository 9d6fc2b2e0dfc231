//! Where audit lines go: a file (appended, created 0600) or standard error, and, when the
//! sink was given one, an in-memory [`AuditHistory`] (the daemon's, for `cork audit`) and
//! a [`LineMirror`] (the daemon's OCSF log).
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

/// A second destination for every line a sink writes, in a shape of its own (the daemon's
/// OCSF log, `cork daemon --ocsf-log`). It gets each line as the sink wrote it — chain
/// value included, without the newline — after the main destination.
pub trait LineMirror: Send {
    fn mirror(&mut self, line: &[u8]) -> Result<(), SinkError>;
    fn flush(&mut self) -> Result<(), SinkError>;
}

pub struct AuditSink {
    dest: Dest,
    history: Option<Arc<AuditHistory>>,
    mirror: Option<Box<dyn LineMirror>>,
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
            mirror: None,
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

    /// The same sink, also handing every line it writes to `mirror`.
    pub fn with_mirror(mut self, mirror: Box<dyn LineMirror>) -> Self {
        self.mirror = Some(mirror);
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
        self.write_encoded(encode(event))
    }

    /// [`AuditSink::write`] of an event already [`encode`]d: a sink shared behind a lock
    /// is then held only to seal and write the line, not to serialize the event.
    pub fn write_encoded(&mut self, mut line: Vec<u8>) -> Result<(), SinkError> {
        if let Some(prev) = &mut self.chain {
            crate::chain::seal(prev, &mut line);
        }
        line.push(b'\n');
        let res = match &mut self.dest {
            Dest::File { out, .. } => out.write_all(&line),
            Dest::Stderr => io::stderr().lock().write_all(&line),
        };
        // The mirror too gets the line when the main write failed: the event happened.
        let mirrored = match &mut self.mirror {
            Some(mirror) => mirror.mirror(&line[..line.len() - 1]),
            None => Ok(()),
        };
        if let Some(history) = &self.history {
            history.push(line);
        }
        res.map_err(|source| SinkError::Write {
            target: self.target(),
            source,
        })?;
        mirrored
    }

    pub fn flush(&mut self) -> Result<(), SinkError> {
        let res = match &mut self.dest {
            Dest::File { out, .. } => out.flush(),
            Dest::Stderr => Ok(()),
        };
        let mirrored = match &mut self.mirror {
            Some(mirror) => mirror.flush(),
            None => Ok(()),
        };
        res.map_err(|source| SinkError::Write {
            target: self.target(),
            source,
        })?;
        mirrored
    }
}

/// One event's line as [`AuditSink::write_encoded`] takes it (no chain value, no newline).
pub fn encode<E: Serialize>(event: &E) -> Vec<u8> {
    serde_json::to_vec(event).expect("audit events serialize")
}

impl Dest {
    fn open(path: Option<&Path>) -> Result<Self, SinkError> {
        let Some(path) = path else {
            return Ok(Dest::Stderr);
        };
        Ok(Dest::File {
            path: path.to_path_buf(),
            out: BufWriter::new(open_log(path)?),
        })
    }
}

/// Opens an audit log the way every one is opened: appended to, created `0600` (audit
/// lines name what a bottle tried, which is not everyone's to read).
pub fn open_log(path: &Path) -> Result<File, SinkError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| SinkError::Open {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event encoded before the lock and written with `write_encoded` is the same line,
    /// in the same chain, as one written with `write`.
    #[test]
    fn an_encoded_event_is_the_line_write_makes() {
        let dir = std::env::temp_dir().join(format!("cork-sink-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (a, b) = (dir.join("a.jsonl"), dir.join("b.jsonl"));
        let events = [serde_json::json!({"n": 1}), serde_json::json!({"n": "two"})];
        let mut direct = AuditSink::open(Some(&a)).expect("open a");
        let mut encoded = AuditSink::open(Some(&b)).expect("open b");
        for ev in &events {
            direct.write(ev).expect("write");
            encoded.write_encoded(encode(ev)).expect("write encoded");
        }
        direct.flush().expect("flush a");
        encoded.flush().expect("flush b");
        let read = |p: &Path| std::fs::read(p).expect("read");
        assert_eq!(read(&a), read(&b));
        let ok = crate::chain::verify(&read(&b)[..]).expect("chain intact");
        assert_eq!(ok.lines, 2);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
