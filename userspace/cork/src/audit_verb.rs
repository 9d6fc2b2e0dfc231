//! `cork audit [--bottle NAME] [--verdict allow|deny] [--since 10m|RFC3339] [--follow]`:
//! the daemon's audit history (`GET /v1/audit`), printed line by line as it arrives —
//! each line one JSON event, flushed at once, so that `| jq` and `| grep` see events
//! live. Exit status as the other client verbs ([`crate::control`]); following ends with
//! 0 on SIGINT/SIGTERM and with 3 when the daemon goes away.
//!
//! `--file FILE` reads a JSON-lines audit log (`--audit-log` of any entry point) instead,
//! with the same filters; `--flow COOKIE` prints the story of one socket
//! ([`crate::audit_flow`]) from either source; `--verify FILE` checks a log's hash chain
//! ([`cork_audit::chain`]): exit 0 intact, 1 broken (the line named), 2 unreadable.
//!
//! `--format ocsf` prints each event as an OCSF event instead ([`crate::ocsf`]), from any
//! source; a line that cannot be converted is named on stderr, the others still print,
//! and the exit status is then 2.

use std::borrow::Cow;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use cork_daemon::audit_query::AuditQuery;
use cork_daemon::client::{self, ClientError, StreamEnd};

/// How `cork audit` prints each event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// The audit line as written.
    #[default]
    Json,
    /// An OCSF event (schema version [`crate::ocsf::SCHEMA_VERSION`]), one JSON line each.
    Ocsf,
}

/// Turns audit lines into output lines, remembering whether one could not be.
struct Render {
    format: Format,
    failed: bool,
}

impl Render {
    fn new(format: Format) -> Self {
        Render {
            format,
            failed: false,
        }
    }

    /// `line` as printed; `None` (said on stderr) when it cannot be converted.
    fn line<'a>(&mut self, line: &'a [u8]) -> Option<Cow<'a, [u8]>> {
        match self.format {
            Format::Json => Some(Cow::Borrowed(line)),
            Format::Ocsf => match crate::ocsf::from_line(line) {
                Ok(event) => Some(Cow::Owned(event.to_string().into_bytes())),
                Err(e) => {
                    let text = String::from_utf8_lossy(line);
                    let shown: String = text.chars().take(120).collect();
                    eprintln!(
                        "cork audit: not converted to OCSF ({}): {shown}",
                        cork_audit::error_chain(&e)
                    );
                    self.failed = true;
                    None
                }
            },
        }
    }

    /// The exit status once every line was printed.
    fn status(&self) -> u8 {
        if self.failed { 2 } else { 0 }
    }
}

/// Runs the verb; the exit status.
pub fn audit(socket: &Path, query: &AuditQuery, format: Format) -> u8 {
    let mut stdout_error = None;
    let mut render = Render::new(format);
    let mut out = std::io::stdout().lock();
    let ended = client::lines(socket, &query.to_path(), |line| {
        let Some(line) = render.line(line) else {
            return true;
        };
        let written = out
            .write_all(&line)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush());
        match written {
            Ok(()) => true,
            Err(e) => {
                // A closed pipe (`| head`) is the reader's choice, not a failure.
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    stdout_error = Some(e);
                }
                false
            }
        }
    });
    if let Some(e) = stdout_error {
        eprintln!("cork audit: writing to standard output: {e}");
        return 125;
    }
    match ended {
        Ok(StreamEnd::Finished) if query.follow => crate::control::fail(
            "audit",
            &ClientError::NotRunning {
                socket: socket.to_owned(),
                why: "it ended the audit stream".into(),
            },
        ),
        Ok(_) => render.status(),
        Err(e) => crate::control::fail("audit", &e),
    }
}

/// Where `cork audit` reads events.
#[derive(Debug, Clone)]
pub enum Source {
    /// The daemon's history, through its control socket.
    Daemon(PathBuf),
    /// A JSON-lines audit log.
    File(PathBuf),
}

/// `cork audit` from `source`: the query's events, or with `flow` the story of that
/// socket (then only the query's bottle applies: the story needs the DNS answers that
/// came before it, whatever their verdict or age).
pub fn run(source: &Source, query: &AuditQuery, flow: Option<u64>, format: Format) -> u8 {
    match (source, flow) {
        (Source::Daemon(socket), None) => audit(socket, query, format),
        (source, flow) => {
            let mut query = query.clone();
            if flow.is_some() {
                query.verdict = None;
                query.since = None;
            }
            let lines = match collect(source, &query) {
                Ok(lines) => lines,
                Err(code) => return code,
            };
            let refs: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
            let shown = match flow {
                Some(cookie) => crate::audit_flow::story(&refs, cookie),
                None => refs,
            };
            print_lines(&shown, format)
        }
    }
}

/// Every line of `source` that `query` lets through (never following).
fn collect(source: &Source, query: &AuditQuery) -> Result<Vec<Vec<u8>>, u8> {
    let filter = query.filter(SystemTime::now());
    match source {
        Source::File(path) => {
            let file = std::fs::File::open(path).map_err(|e| {
                eprintln!("cork audit: reading {}: {e}", path.display());
                2u8
            })?;
            let mut out = Vec::new();
            for (i, line) in std::io::BufReader::new(file).split(b'\n').enumerate() {
                let line = line.map_err(|e| {
                    eprintln!("cork audit: {}:{}: {e}", path.display(), i + 1);
                    2u8
                })?;
                if !line.is_empty() && filter.matches(&line) {
                    out.push(line);
                }
            }
            Ok(out)
        }
        Source::Daemon(socket) => {
            let mut query = query.clone();
            query.follow = false;
            let mut out = Vec::new();
            client::lines(socket, &query.to_path(), |line| {
                out.push(line.to_vec());
                true
            })
            .map_err(|e| crate::control::fail("audit", &e))?;
            Ok(out)
        }
    }
}

fn print_lines(lines: &[&[u8]], format: Format) -> u8 {
    let mut render = Render::new(format);
    let mut out = std::io::stdout().lock();
    for line in lines {
        let Some(line) = render.line(line) else {
            continue;
        };
        let written = out.write_all(&line).and_then(|()| out.write_all(b"\n"));
        if let Err(e) = written {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return 0;
            }
            eprintln!("cork audit: writing to standard output: {e}");
            return 125;
        }
    }
    let _ = out.flush();
    render.status()
}

/// `cork audit --verify FILE`.
pub fn verify(path: &Path) -> u8 {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cork audit: reading {}: {e}", path.display());
            return 2;
        }
    };
    match cork_audit::chain::verify(std::io::BufReader::new(file)) {
        Ok(v) => {
            println!(
                "{}: {} lines, chain intact, head {}",
                path.display(),
                v.lines,
                cork_audit::chain::hex(&v.head)
            );
            0
        }
        Err(e) => {
            eprintln!("cork audit: {}: {e}", path.display());
            1
        }
    }
}
