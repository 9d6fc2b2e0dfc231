//! `cork audit [--bottle NAME] [--verdict allow|deny] [--since 10m|RFC3339] [--follow]`:
//! the daemon's audit history (`GET /v1/audit`), printed line by line as it arrives —
//! each line one JSON event, flushed at once, so that `| jq` and `| grep` see events
//! live. Exit status as the other client verbs ([`crate::control`]); following ends with
//! 0 on SIGINT/SIGTERM and with 3 when the daemon goes away.

use std::io::Write;
use std::path::Path;

use cork_daemon::audit_query::AuditQuery;
use cork_daemon::client::{self, ClientError, StreamEnd};

/// Runs the verb; the exit status.
pub fn audit(socket: &Path, query: &AuditQuery) -> u8 {
    let mut stdout_error = None;
    let mut out = std::io::stdout().lock();
    let ended = client::lines(socket, &query.to_path(), |line| {
        let written = out
            .write_all(line)
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
        Ok(_) => 0,
        Err(e) => crate::control::fail("audit", &e),
    }
}
