//! cork's end of QMP (QEMU's JSON machine protocol) over the inherited socketpair: the
//! capabilities handshake, `system_powerdown` when a stop is asked for, and the reason
//! in QEMU's `SHUTDOWN` event. Non-blocking: driven by [`crate::Vm::wait`]'s poll loop.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for QEMU's `{"QMP": ...}` greeting.
    Greeting,
    /// `qmp_capabilities` sent, waiting for its `return`.
    Negotiating,
    /// Commands may be sent.
    Ready,
}

#[derive(Debug)]
pub(crate) struct Qmp {
    sock: UnixStream,
    buf: Vec<u8>,
    state: State,
    powerdown_pending: bool,
    closed: bool,
    /// `data.reason` of the last `SHUTDOWN` event ("guest-shutdown", "guest-reset", ...).
    pub(crate) shutdown_reason: Option<String>,
}

impl Qmp {
    pub(crate) fn new(sock: UnixStream) -> io::Result<Self> {
        sock.set_nonblocking(true)?;
        Ok(Self {
            sock,
            buf: Vec::new(),
            state: State::Greeting,
            powerdown_pending: false,
            closed: false,
            shutdown_reason: None,
        })
    }

    pub(crate) fn socket(&self) -> &UnixStream {
        &self.sock
    }

    /// Whether QEMU closed its end (it exited).
    pub(crate) fn closed(&self) -> bool {
        self.closed
    }

    /// Asks the guest to power off (ACPI power button) now, or as soon as QMP is ready.
    pub(crate) fn request_powerdown(&mut self) {
        if self.state == State::Ready {
            self.send(r#"{"execute":"system_powerdown"}"#);
        } else {
            self.powerdown_pending = true;
        }
    }

    /// Reads what is there and acts on every complete message.
    pub(crate) fn on_readable(&mut self) {
        let mut chunk = [0u8; 4096];
        loop {
            match self.sock.read(&mut chunk) {
                Ok(0) => {
                    self.closed = true;
                    break;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.closed = true;
                    break;
                }
            }
        }
        while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            if let Ok(msg) = serde_json::from_slice::<serde_json::Value>(&line) {
                self.handle(&msg);
            }
        }
    }

    fn handle(&mut self, msg: &serde_json::Value) {
        if msg.get("QMP").is_some() && self.state == State::Greeting {
            self.state = State::Negotiating;
            self.send(r#"{"execute":"qmp_capabilities"}"#);
        } else if msg.get("return").is_some() && self.state == State::Negotiating {
            self.state = State::Ready;
            if std::mem::take(&mut self.powerdown_pending) {
                self.send(r#"{"execute":"system_powerdown"}"#);
            }
        } else if msg.get("event").and_then(|e| e.as_str()) == Some("SHUTDOWN") {
            self.shutdown_reason = msg
                .pointer("/data/reason")
                .and_then(|r| r.as_str())
                .map(str::to_owned);
        }
    }

    fn send(&mut self, command: &str) {
        // Commands are a few dozen bytes into an empty socket buffer; if QEMU is gone the
        // write fails and the exit is noticed through the pidfd instead.
        let mut line = command.as_bytes().to_vec();
        line.push(b'\n');
        if self.sock.write_all(&line).is_err() {
            self.closed = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU's side of the protocol, played by the test over a real socketpair.
    fn pair() -> (Qmp, UnixStream) {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        (Qmp::new(ours).expect("qmp"), theirs)
    }

    fn read_line(s: &mut UnixStream) -> String {
        let mut out = Vec::new();
        let mut b = [0u8; 1];
        while s.read(&mut b).expect("read") == 1 && b[0] != b'\n' {
            out.push(b[0]);
        }
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn handshake_then_a_queued_powerdown_then_the_shutdown_reason() {
        let (mut qmp, mut qemu) = pair();
        qmp.request_powerdown(); // before QMP is ready: queued
        qemu.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n")
            .expect("greet");
        qmp.on_readable();
        assert_eq!(read_line(&mut qemu), r#"{"execute":"qmp_capabilities"}"#);
        qemu.write_all(b"{\"return\": {}}\r\n").expect("return");
        qmp.on_readable();
        assert_eq!(read_line(&mut qemu), r#"{"execute":"system_powerdown"}"#);
        // An event split across reads.
        qemu.write_all(b"{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, ")
            .expect("event part");
        qmp.on_readable();
        assert_eq!(qmp.shutdown_reason, None);
        qemu.write_all(b"\"reason\": \"guest-shutdown\"}}\r\n")
            .expect("event rest");
        qmp.on_readable();
        assert_eq!(qmp.shutdown_reason.as_deref(), Some("guest-shutdown"));
        drop(qemu);
        qmp.on_readable();
        assert!(qmp.closed());
    }
}
