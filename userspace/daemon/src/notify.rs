//! systemd readiness (`Type=notify`): `READY=1` to `$NOTIFY_SOCKET` once the control socket
//! serves. Without the variable (not started by systemd) this does nothing.

use std::os::unix::net::UnixDatagram;

/// Sends `READY=1` if systemd asked for it; a failure is logged, not fatal (the daemon
/// serves either way, and systemd's own timeout reports a unit that never got ready).
pub fn ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|sock| {
        let bytes = path.as_encoded_bytes();
        match bytes.strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                sock.send_to_addr(b"READY=1", &addr)
            }
            None => sock.send_to(b"READY=1", &path),
        }
    });
    if let Err(e) = sent {
        tracing::warn!("telling systemd the daemon is ready: {e}");
    }
}
