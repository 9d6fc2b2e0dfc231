//! The agent's side of a test: a list of network operations run by a real python3
//! client (`probe.py`), each printing one line ("ok", an errno name such as "EPERM",
//! "timeout", or what it reports). Addresses go through the test-range guard.

use anyhow::Result;

use crate::addr::parse_test_ip;
use crate::process::shell_quote;

/// The probe script, passed to `python3 -c`.
pub const SCRIPT: &str = include_str!("probe.py");

/// A list of operations, turned into a command line by [`Probe::argv`].
#[derive(Debug, Clone, Default)]
pub struct Probe {
    ops: Vec<String>,
}

impl Probe {
    /// An empty probe.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(mut self, words: &[&str]) -> Self {
        self.ops.push(words.join(" "));
        self
    }

    fn push_addr(self, op: &str, addr: &str, rest: &[&str]) -> Result<Self> {
        parse_test_ip(addr)?;
        let mut w = vec![op, addr];
        w.extend_from_slice(rest);
        Ok(self.push(&w))
    }

    /// TCP connect (family from the address) then close. Port "@" = last `listen` port.
    pub fn tcp(self, addr: &str, port: impl ToString) -> Result<Self> {
        self.push_addr("tcp", addr, &[&port.to_string()])
    }

    /// TCP Fast Open: `sendto(data, MSG_FASTOPEN, addr)` on a fresh stream socket.
    pub fn tcp_fastopen(self, addr: &str, port: u16) -> Result<Self> {
        self.push_addr("tcp-fastopen", addr, &[&port.to_string()])
    }

    /// Unconnected UDP `sendto`.
    pub fn udp_sendto(self, addr: &str, port: u16, payload: &str) -> Result<Self> {
        self.push_addr("udp-sendto", addr, &[&port.to_string(), payload])
    }

    /// Unconnected UDP `sendmsg` with a destination address.
    pub fn udp_sendmsg(self, addr: &str, port: u16, payload: &str) -> Result<Self> {
        self.push_addr("udp-sendmsg", addr, &[&port.to_string(), payload])
    }

    /// Connected UDP: `connect` then `send`.
    pub fn udp_connect(self, addr: &str, port: u16, payload: &str) -> Result<Self> {
        self.push_addr("udp-connect", addr, &[&port.to_string(), payload])
    }

    /// `socket(family, kind, proto)` then close; e.g. ("inet", "raw", "icmp"),
    /// ("inet6", "dgram", "icmpv6"), ("packet", "raw", "all").
    pub fn socket(self, family: &str, kind: &str, proto: &str) -> Self {
        self.push(&["socket", family, kind, proto])
    }

    /// Binds and listens (kept open until the probe exits); reports "ok PORT".
    pub fn listen(self, addr: &str, port: u16) -> Result<Self> {
        self.push_addr("listen", addr, &[&port.to_string()])
    }

    /// Prints the words (a marker the test can wait for).
    pub fn say(self, text: &str) -> Self {
        self.push(&["say", text])
    }

    /// Writes `text` (`$PID` = the probe's pid) to a file.
    pub fn write(self, path: &str, text: &str) -> Self {
        self.push(&["write", path, text])
    }

    /// Writes a file's content back unchanged ("ok", or the errno of the refusal): probes
    /// whether a host setting is writable without changing it.
    pub fn rewrite(self, path: &str) -> Self {
        self.push(&["rewrite", path])
    }

    /// Prints a file's content with newlines as ';'.
    pub fn read(self, path: &str) -> Self {
        self.push(&["read", path])
    }

    /// Waits (bounded, 30 s) until a file exists.
    pub fn wait_file(self, path: &str) -> Self {
        self.push(&["wait-file", path])
    }

    /// For `seconds`, one TCP connect every 50 ms, appending "N RESULT" lines to `out`.
    pub fn connect_loop(self, out: &str, addr: &str, port: u16, seconds: u32) -> Result<Self> {
        parse_test_ip(addr)?;
        Ok(self.push(&["loop", out, addr, &port.to_string(), &seconds.to_string()]))
    }

    /// Reports CapEff, CapBnd, CapPrm and NoNewPrivs of the probe process.
    pub fn status(self) -> Self {
        self.push(&["status"])
    }

    /// Appends the operations of `other`.
    pub fn extend(mut self, other: &Probe) -> Self {
        self.ops.extend(other.ops.iter().cloned());
        self
    }

    /// `python3 -c SCRIPT OPS...`, python3 being the interpreter itself (see [`python3`]).
    pub fn argv(&self) -> Vec<String> {
        let mut v = vec![python3().to_owned(), "-c".to_owned(), SCRIPT.to_owned()];
        v.extend(self.ops.iter().cloned());
        v
    }

    /// `sh -c '<python3 ...>; exit $?'`: the probe runs as a grandchild of CMD (the
    /// trailing command keeps dash from exec'ing python in place of the shell).
    pub fn argv_via_shell(&self) -> Vec<String> {
        let line: Vec<String> = self.argv().iter().map(|a| shell_quote(a)).collect();
        vec![
            "sh".into(),
            "-c".into(),
            format!("{}; exit $?", line.join(" ")),
        ]
    }
}

/// The interpreter `python3` on PATH runs, asked once (`sys.executable`): where PATH
/// leads to a shim (pyenv's is a bash script that runs several more), the probe would
/// otherwise start a chain of shells in the bottle before python — slower, and every
/// one of them a process the test did not mean to run. `python3` when it cannot tell.
pub fn python3() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        std::process::Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .stdin(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| s.starts_with('/'))
            .unwrap_or_else(|| "python3".to_owned())
    })
}
