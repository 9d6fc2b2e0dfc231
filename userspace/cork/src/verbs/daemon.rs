//! `cork daemon`: its flags turned into the daemon's configuration (the one test seam,
//! the OCSF mirror), then the daemon until SIGINT/SIGTERM.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn daemon(
    socket: Option<PathBuf>,
    audit_log: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    ocsf_log: Option<PathBuf>,
) -> ExitCode {
    // One seam: CORK_TEST_DAEMON_LOCK, a lock of the test's own, so that a test's daemon
    // does not take the host's one-daemon lock from other tests running at the same time.
    // Any other CORK_TEST_*, or this one without the marker, refuses the boot.
    const LOCK_SEAM: &str = "CORK_TEST_DAEMON_LOCK";
    if let Err(e) = crate::seams::active(crate::seams::env(), &[LOCK_SEAM]) {
        eprintln!("cork daemon: {e}");
        return ExitCode::from(125);
    }
    let socket = crate::control::socket(socket);
    let lock = std::env::var_os(LOCK_SEAM)
        .map_or_else(|| PathBuf::from(cork_daemon::LOCK_PATH), PathBuf::from);
    let audit_mirror = match ocsf_log.as_deref().map(crate::ocsf::OcsfLog::open) {
        None => None,
        Some(Ok(log)) => Some(Box::new(log) as Box<dyn cork_audit::LineMirror>),
        Some(Err(e)) => {
            eprintln!("cork daemon: --ocsf-log: {}", cork_audit::error_chain(&e));
            return ExitCode::from(125);
        }
    };
    let cfg = cork_daemon::server::DaemonConfig {
        socket,
        lock,
        audit_log,
        audit_mirror,
        state_dir: state_dir
            .unwrap_or_else(|| PathBuf::from(cork_daemon::state_dir::DEFAULT_STATE_DIR)),
    };
    let ready = |path: &Path| {
        println!("cork daemon: serving on {}", path.display());
        cork_daemon::notify::ready();
    };
    match cork_daemon::server::run(cfg, ready) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cork daemon: {}", cork_audit::error_chain(&e));
            ExitCode::from(125)
        }
    }
}
