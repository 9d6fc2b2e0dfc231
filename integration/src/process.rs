//! Child processes: iproute2 invocations, running a command with a deadline and
//! collecting its output, and killing whatever runs in a given network namespace.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Runs `ip ARGS...` and returns its stdout; a non-zero exit is an error with stderr.
pub fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("spawn ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What a finished command did.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// Exit status.
    pub status: ExitStatus,
    /// Captured stdout.
    pub stdout: String,
    /// Captured stderr.
    pub stderr: String,
    /// Whether the deadline passed and the child was SIGKILLed.
    pub timed_out: bool,
}

impl RunOutput {
    /// The exit code, or `128 + signal` when killed by a signal (the shell convention).
    pub fn code(&self) -> i32 {
        use std::os::unix::process::ExitStatusExt;
        self.status
            .code()
            .or_else(|| self.status.signal().map(|s| 128 + s))
            .unwrap_or(-1)
    }

    /// The output, or an error when the deadline killed the command: a killed command's
    /// exit code and partial output must not pass for what it would have done.
    fn finished(self, program: &std::ffi::OsStr, timeout: Duration) -> Result<Self> {
        if self.timed_out {
            bail!(
                "{} did not finish within {timeout:?} and was killed:\n{self}",
                program.to_string_lossy()
            );
        }
        Ok(self)
    }

    /// Non-empty stdout lines, trimmed.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect()
    }
}

impl std::fmt::Display for RunOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}{}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code(),
            if self.timed_out {
                " (timed out, killed)"
            } else {
                ""
            },
            self.stdout,
            self.stderr
        )
    }
}

/// Runs `cmd` (stdin null unless the caller set it) with captured output; SIGKILLs it
/// when `timeout` passes, which is then an error holding what it printed.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<RunOutput> {
    run_watched(cmd, timeout, |_| ()).map(|(out, ())| out)
}

/// [`run_with_timeout`], with `watch` called on a thread of its own with the child's pid
/// while the child runs (it may sample `/proc/<pid>`); returns what `watch` returned.
pub fn run_watched<T: Send + 'static>(
    cmd: &mut Command,
    timeout: Duration,
    watch: impl FnOnce(u32) -> T + Send + 'static,
) -> Result<(RunOutput, T)> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("spawn {cmd:?}"))?;
    let child_id = child.id();
    let watcher = std::thread::spawn(move || watch(child_id));
    let pid = Pid::from_raw(i32::try_from(child_id).context("pid out of range")?);
    let mut out = child.stdout.take().context("stdout pipe")?;
    let mut err = child.stderr.take().context("stderr pipe")?;
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(timeout) == Err(mpsc::RecvTimeoutError::Timeout) {
            // The child is not reaped until wait() below returns, so the pid is still ours.
            let _ = kill(pid, Signal::SIGKILL);
            return true;
        }
        false
    });
    let status = child.wait().context("wait for child")?;
    let _ = done_tx.send(());
    let timed_out = watchdog.join().unwrap_or(false);
    let stdout = String::from_utf8_lossy(&out_t.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned();
    let watched = watcher
        .join()
        .map_err(|_| anyhow::anyhow!("the watcher of {cmd:?} panicked"))?;
    let out = RunOutput {
        status,
        stdout,
        stderr,
        timed_out,
    }
    .finished(cmd.get_program(), timeout)?;
    Ok((out, watched))
}

/// The CPU time (user + system, all threads, not children) a process has used so far,
/// from `/proc/<pid>/stat`; `None` once it is gone.
pub fn cpu_time_of(pid: u32) -> Option<Duration> {
    cpu_time_in(&format!("/proc/{pid}/stat"))
}

/// The CPU time this process's threads named `prefix…` have used so far (threads that
/// ended are not counted: meant for a runtime's long-lived workers).
pub fn own_threads_cpu_time(prefix: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|comm| comm.starts_with(prefix))
        })
        .filter_map(|t| cpu_time_in(&t.path().join("stat").to_string_lossy()))
        .sum()
}

/// utime + stime of a `/proc/…/stat` file.
fn cpu_time_in(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces), from field 3 (`state`) on:
    // utime is field 14, stime field 15, in clock ticks.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf reads a configuration value; it has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = u64::try_from(ticks).ok().filter(|&t| t > 0)?;
    Some(Duration::from_nanos(
        (utime + stime) * 1_000_000_000 / ticks,
    ))
}

/// The nsfs inode of a process's network namespace, if it still has one.
pub fn netns_inode_of(pid: i32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
    let text = link.to_string_lossy();
    text.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// Pids of processes (other than this one) whose main thread is in netns `inode`.
pub fn pids_in_netns(inode: u64) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me && netns_inode_of(pid) == Some(inode))
        .collect()
}

/// SIGKILLs every process in netns `inode` (repeating while new ones appear, as a dying
/// parent's children may still be forking) and returns the pids killed.
pub fn kill_in_netns(inode: u64) -> Vec<i32> {
    let mut killed = Vec::new();
    for _ in 0..20 {
        let pids = pids_in_netns(inode);
        let fresh: Vec<i32> = pids.into_iter().filter(|p| !killed.contains(p)).collect();
        if fresh.is_empty() {
            break;
        }
        for &p in &fresh {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        killed.extend(fresh);
    }
    killed
}

/// Quotes `s` for `sh -c`.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,%+".contains(&b))
    {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A running child whose stdout lines arrive on a channel (readiness markers), with its
/// stderr collected; [`Spawned::finish`] waits for it with a deadline.
#[derive(Debug)]
pub struct Spawned {
    child: std::process::Child,
    /// The program, for messages.
    program: std::ffi::OsString,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
    stderr_text: String,
}

impl Spawned {
    /// Spawns `cmd` with piped stdout and stderr.
    pub fn start(cmd: &mut Command) -> Result<Self> {
        use std::io::BufRead;
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("spawn {cmd:?}"))?;
        let out = child.stdout.take().context("stdout pipe")?;
        let mut err = child.stderr.take().context("stderr pipe")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = err.read_to_end(&mut s);
            s
        });
        Ok(Self {
            child,
            program: cmd.get_program().to_owned(),
            lines,
            seen: Vec::new(),
            stderr: Some(stderr),
            stderr_text: String::new(),
        })
    }

    /// The child's stdin, when the command was given a piped one (`Stdio::piped()`);
    /// dropping it closes the pipe.
    pub fn take_stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.child.stdin.take()
    }

    /// The child's pid.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Waits until a stdout line equals `marker`; returns the lines read so far.
    pub fn wait_line(&mut self, marker: &str, timeout: Duration) -> Result<Vec<String>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.trim() == marker;
                    self.seen.push(line);
                    if done {
                        return Ok(self.seen.clone());
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Stdout is closed: the child is gone, so its stderr ends too.
                    let err = self.collect_stderr();
                    bail!(
                        "no line {marker:?} before stdout closed; stdout: {:?}\nstderr:\n{err}",
                        self.seen
                    )
                }
                Err(e) => bail!("no line {marker:?} ({e}); stdout so far: {:?}", self.seen),
            }
        }
    }

    /// Waits until a stdout line satisfies `pred` (`what` names it in the error);
    /// returns that line.
    pub fn wait_line_where(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = pred(&line);
                    self.seen.push(line.clone());
                    if done {
                        return Ok(line);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let err = self.collect_stderr();
                    bail!(
                        "no line {what} before stdout closed; stdout: {:?}\nstderr:\n{err}",
                        self.seen
                    )
                }
                Err(e) => bail!("no line {what} ({e}); stdout so far: {:?}", self.seen),
            }
        }
    }

    /// The stdout lines read so far by the waits.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    /// SIGKILLs the child and reaps it.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        kill(self.pid(), Signal::SIGKILL).context("kill child")?;
        self.child.wait().context("reap child")
    }

    /// Waits and collects everything; SIGKILLs the child after `timeout` and then errs.
    pub fn finish(mut self, timeout: Duration) -> Result<RunOutput> {
        let pid = self.pid();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if done_rx.recv_timeout(timeout) == Err(mpsc::RecvTimeoutError::Timeout) {
                let _ = kill(pid, Signal::SIGKILL);
                return true;
            }
            false
        });
        let status = self.child.wait().context("wait for child")?;
        let _ = done_tx.send(());
        let timed_out = watchdog.join().unwrap_or(false);
        let mut stdout = self.seen.join("\n");
        if !stdout.is_empty() {
            stdout.push('\n');
        }
        // The reader thread ends at EOF, after the child and its heirs closed stdout.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            stdout.push_str(&line);
            stdout.push('\n');
        }
        let stderr = self.collect_stderr();
        RunOutput {
            status,
            stdout,
            stderr,
            timed_out,
        }
        .finished(self.program.as_os_str(), timeout)
    }

    fn collect_stderr(&mut self) -> String {
        if let Some(t) = self.stderr.take() {
            self.stderr_text = String::from_utf8_lossy(&t.join().unwrap_or_default()).into_owned();
        }
        self.stderr_text.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The thread's own CPU clock (`CLOCK_THREAD_CPUTIME_ID`): the independent measure
    /// the `/proc` figures are checked against.
    fn thread_cpu() -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: ts is a valid timespec to write to.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    /// Busy work on a named thread, counted by the thread's own CPU clock, shows in the
    /// process's `/proc` CPU time and in that thread's (less one clock tick of
    /// granularity), and a process that is gone has none.
    #[test]
    fn cpu_time_counts_the_work_done() {
        let before = cpu_time_of(std::process::id()).expect("own stat");
        let (done_tx, done_rx) = mpsc::channel::<Duration>();
        let (exit_tx, exit_rx) = mpsc::channel::<()>();
        let worker = std::thread::Builder::new()
            .name("cpu-probe-test".into())
            .spawn(move || {
                let mut x = 0u64;
                while thread_cpu() < Duration::from_millis(300) {
                    for _ in 0..100_000 {
                        x = std::hint::black_box(x.wrapping_add(1));
                    }
                }
                let _ = done_tx.send(thread_cpu());
                // Alive while it is measured.
                let _ = exit_rx.recv();
            })
            .expect("spawn");
        let spent = done_rx.recv().expect("busy work done");
        let named = own_threads_cpu_time("cpu-probe-test");
        let after = cpu_time_of(std::process::id()).expect("own stat");
        // /proc counts in clock ticks (10 ms at USER_HZ 100): allow two.
        let slack = Duration::from_millis(20);
        assert!(
            named + slack >= spent && named <= spent + slack,
            "named thread: /proc {named:?}, its own clock {spent:?}"
        );
        assert!(
            after - before + slack >= spent,
            "process: {:?}, the thread alone {spent:?}",
            after - before
        );
        assert_eq!(own_threads_cpu_time("no-such-thread-name"), Duration::ZERO);
        let _ = exit_tx.send(());
        worker.join().expect("join");
        let mut gone = Command::new("true").spawn().expect("spawn true");
        let pid = gone.id();
        gone.wait().expect("reap");
        assert_eq!(cpu_time_of(pid), None);
    }
}
