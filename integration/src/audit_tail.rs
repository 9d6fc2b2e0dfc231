//! Audit delivery latency: follows an audit log while cork writes it (inotify on its
//! directory) and, for each kernel verdict line, takes the time from the kernel's decision
//! (the line's `ts`, the program's boot-time stamp placed on the wall clock) to the moment
//! the line could be read from the file. That is what a reader of the log waits.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};

/// A running follower; [`AuditTail::finish`] returns the latencies seen.
pub struct AuditTail {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<Vec<Duration>>>,
}

impl AuditTail {
    /// Starts following `path`, which need not exist yet (cork creates it).
    pub fn start(path: &Path) -> Result<Self> {
        let dir = path.parent().context("audit log path has no directory")?;
        // SAFETY: plain syscall; the returned fd is checked and then owned.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error()).context("inotify_init1");
        }
        // SAFETY: raw is a fresh fd nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let c_dir = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())?;
        // SAFETY: fd is an inotify fd, c_dir a NUL-terminated path that outlives the call.
        let wd = unsafe {
            libc::inotify_add_watch(
                fd.as_raw_fd(),
                c_dir.as_ptr(),
                libc::IN_MODIFY | libc::IN_CREATE,
            )
        };
        if wd < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("inotify_add_watch {}", dir.display()));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let path = path.to_path_buf();
        let thread = std::thread::spawn(move || follow(fd, path, flag));
        Ok(Self { stop, thread })
    }

    /// Stops following (after one last read) and returns one latency per verdict line.
    pub fn finish(self) -> Result<Vec<Duration>> {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.join() {
            Ok(r) => r,
            Err(_) => bail!("the audit follower panicked"),
        }
    }
}

fn follow(inotify: OwnedFd, path: PathBuf, stop: Arc<AtomicBool>) -> Result<Vec<Duration>> {
    let mut file: Option<File> = None;
    let mut pending = Vec::new();
    let mut latencies = Vec::new();
    let mut events = [0u8; 4096];
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let mut pfd = libc::pollfd {
            fd: inotify.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 20) };
        // Drain the notifications; which file changed does not matter, the log is read.
        // SAFETY: reading into a buffer we own, at most its length.
        while unsafe {
            libc::read(
                inotify.as_raw_fd(),
                events.as_mut_ptr().cast(),
                events.len(),
            )
        } > 0
        {}
        if file.is_none() {
            file = File::open(&path).ok();
        }
        if let Some(f) = file.as_mut() {
            let mut chunk = Vec::new();
            f.read_to_end(&mut chunk)
                .with_context(|| format!("read {}", path.display()))?;
            let seen = SystemTime::now();
            pending.extend_from_slice(&chunk);
            while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=nl).collect();
                if let Some(ts) = verdict_ts(&line) {
                    latencies.push(seen.duration_since(ts).unwrap_or_default());
                }
            }
        }
        if stopping {
            return Ok(latencies);
        }
    }
}

/// The `ts` of a kernel verdict line.
fn verdict_ts(line: &[u8]) -> Option<SystemTime> {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    if v["layer"] != "kernel" || v["event"] != "verdict" {
        return None;
    }
    humantime::parse_rfc3339(v["ts"].as_str()?).ok()
}

/// `(p50, p99, max)` of `v` (sorted in place); zeros when empty.
pub fn percentiles(v: &mut [Duration]) -> (Duration, Duration, Duration) {
    if v.is_empty() {
        return Default::default();
    }
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.50), at(0.99), v[v.len() - 1])
}
