//! Process probes: what the bottled process itself holds — capabilities, no_new_privs and
//! seccomp (from /proc/self/status), its cgroup (/proc/self/cgroup) and whether it can
//! leave it, and the read-only cgroup and bpf mounts (/proc/self/mountinfo).

use std::ffi::CString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::net::errno_name;
use super::report::{Outcome, Trace};

fn read(path: &str, trace: &mut Trace) -> Result<String, Outcome> {
    fs::read_to_string(path).map_err(|e| {
        trace.step(format!("read {path} = {}", errno_name(&e)));
        Outcome::fail(
            format!("cannot read {path}"),
            format!("reading {path} failed: {e}"),
        )
    })
}

/// The value of `field:` in /proc/self/status text.
pub fn status_field<'a>(status: &'a str, field: &str) -> Option<&'a str> {
    status.lines().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

const CAP_SETS: [&str; 5] = ["CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"];

/// Each dropped capability found, with the set it was found in.
pub fn held_dropped_caps(status: &str) -> Result<Vec<String>, String> {
    let mut held = Vec::new();
    for set in CAP_SETS {
        let hex = status_field(status, set).ok_or_else(|| format!("no {set} line"))?;
        let bits =
            u64::from_str_radix(hex, 16).map_err(|_| format!("{set}: {hex:?} is not hex"))?;
        for cap in crate::run::DROPPED_CAPABILITIES {
            if bits & (1u64 << cap.index()) != 0 {
                held.push(format!("{cap} in {set}"));
            }
        }
    }
    Ok(held)
}

pub fn capabilities(trace: &mut Trace) -> Outcome {
    let status = match read("/proc/self/status", trace) {
        Ok(s) => s,
        Err(o) => return o,
    };
    for set in CAP_SETS {
        trace.step(format!(
            "/proc/self/status {set}: {}",
            status_field(&status, set).unwrap_or("(missing)")
        ));
    }
    match held_dropped_caps(&status) {
        Ok(held) if held.is_empty() => Outcome::pass("none of the dropped capabilities held"),
        Ok(held) => Outcome::fail(
            held.join(", "),
            format!(
                "the capability drop did not happen: {} could undo enforcement (detach \
                 programs, open raw sockets, remount, trace the agent)",
                held.join(", ")
            ),
        ),
        Err(why) => Outcome::fail(
            "unreadable capability sets",
            format!("/proc/self/status: {why}"),
        ),
    }
}

pub fn no_new_privs(trace: &mut Trace) -> Outcome {
    let status = match read("/proc/self/status", trace) {
        Ok(s) => s,
        Err(o) => return o,
    };
    let v = status_field(&status, "NoNewPrivs").unwrap_or("(missing)");
    trace.step(format!("/proc/self/status NoNewPrivs: {v}"));
    if v == "1" {
        Outcome::pass("NoNewPrivs: 1")
    } else {
        Outcome::fail(
            format!("NoNewPrivs: {v}"),
            "no_new_privs is not set: a setuid binary could gain privileges in the bottle",
        )
    }
}

pub fn seccomp(trace: &mut Trace) -> Outcome {
    let status = match read("/proc/self/status", trace) {
        Ok(s) => s,
        Err(o) => return o,
    };
    let mode = status_field(&status, "Seccomp").unwrap_or("(missing)");
    let filters = status_field(&status, "Seccomp_filters").unwrap_or("(missing)");
    trace.step(format!(
        "/proc/self/status Seccomp: {mode}, Seccomp_filters: {filters}"
    ));
    if mode == "2" {
        Outcome::pass(format!("Seccomp: 2, {filters} filter(s)"))
    } else {
        Outcome::fail(
            format!("Seccomp: {mode}"),
            "no seccomp filter is installed: cork's filter, which refuses and audits raw, \
             ICMP and packet sockets, is missing",
        )
    }
}

/// The cgroup v2 path of this process (`0::/path` in /proc/self/cgroup).
pub fn cgroup_v2_path(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

pub fn cgroup_member(bottle: &str, trace: &mut Trace) -> Outcome {
    let text = match read("/proc/self/cgroup", trace) {
        Ok(s) => s,
        Err(o) => return o,
    };
    trace.detail(|| {
        format!(
            "/proc/self/cgroup: {}",
            text.trim_end().replace('\n', " | ")
        )
    });
    let Some(path) = cgroup_v2_path(&text) else {
        trace.step("/proc/self/cgroup has no 0:: line");
        return Outcome::fail(
            "no cgroup v2 membership",
            "this process is in no cgroup v2 group, so no cork program judges it",
        );
    };
    trace.step(format!("/proc/self/cgroup 0::{path}"));
    let last = path.rsplit('/').next().unwrap_or_default();
    match cork_agent::key::BottleKey::parse(last) {
        Some(key) if key.name() == bottle => Outcome::pass(path.to_owned()),
        Some(key) => Outcome::fail(
            path.to_owned(),
            format!(
                "this process is in bottle {:?}'s cgroup, not {bottle:?}'s: the manifest \
                 given does not describe this bottle",
                key.name()
            ),
        ),
        None => Outcome::fail(
            path.to_owned(),
            format!(
                "{path} is not a cork bottle's cgroup: the probe is not running in a \
                 bottle (or left it)"
            ),
        ),
    }
}

/// One line of /proc/self/mountinfo: mount point, per-mount options, fs type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountLine {
    pub target: String,
    pub options: String,
    pub fstype: String,
}

pub fn parse_mountinfo(text: &str) -> Vec<MountLine> {
    text.lines()
        .filter_map(|line| {
            let (head, tail) = line.split_once(" - ")?;
            let head: Vec<&str> = head.split(' ').collect();
            let fstype = tail.split(' ').next()?;
            Some(MountLine {
                target: cork_agent::mounts::unescape(head.get(4)?),
                options: (*head.get(5)?).to_owned(),
                fstype: fstype.to_owned(),
            })
        })
        .collect()
}

fn is_readonly(options: &str) -> bool {
    options.split(',').any(|o| o == "ro")
}

pub fn mounts_readonly(fstypes: &[&str], trace: &mut Trace) -> Outcome {
    let text = match read("/proc/self/mountinfo", trace) {
        Ok(s) => s,
        Err(o) => return o,
    };
    let mounts: Vec<MountLine> = parse_mountinfo(&text)
        .into_iter()
        .filter(|m| fstypes.contains(&m.fstype.as_str()))
        .collect();
    for m in &mounts {
        trace.step(format!("{} {} {}", m.fstype, m.target, m.options));
    }
    let writable: Vec<&str> = mounts
        .iter()
        .filter(|m| !is_readonly(&m.options))
        .map(|m| m.target.as_str())
        .collect();
    if mounts.is_empty() {
        return Outcome::pass(format!(
            "no {} mount in the bottle's view",
            fstypes.join("/")
        ));
    }
    if writable.is_empty() {
        Outcome::pass(format!("{} mount(s), all ro", mounts.len()))
    } else {
        Outcome::fail(
            format!("writable: {}", writable.join(", ")),
            format!(
                "{} {} mounted read-write in the bottle: root in the bottle could move itself \
                 to another cgroup or unlink the pins that keep enforcement attached",
                fstypes.join("/"),
                writable.join(", ")
            ),
        )
    }
}

/// Where writing a pid moves it out of the bottle: the parent of this process's cgroup.
fn parent_procs(trace: &mut Trace) -> Result<PathBuf, Outcome> {
    let cgroup = read("/proc/self/cgroup", trace)?;
    let path = cgroup_v2_path(&cgroup).ok_or_else(|| {
        Outcome::fail(
            "no cgroup v2 membership",
            "this process is in no cgroup v2 group: nothing to escape from",
        )
    })?;
    let info = read("/proc/self/mountinfo", trace)?;
    let root = parse_mountinfo(&info)
        .into_iter()
        .find(|m| m.fstype == "cgroup2")
        .map(|m| PathBuf::from(m.target))
        .ok_or_else(|| {
            Outcome::fail(
                "no cgroup2 mount",
                "no cgroup2 filesystem is mounted in the bottle's view",
            )
        })?;
    let parent = Path::new(path).parent().unwrap_or(Path::new("/"));
    Ok(root
        .join(parent.strip_prefix("/").unwrap_or(parent))
        .join("cgroup.procs"))
}

/// Forks a child that writes "0" (itself) to `procs` and exits with 0 or the errno: the
/// probe itself never leaves the bottle, whatever happens.
fn write_self_in_child(procs: &Path) -> io::Result<Result<(), i32>> {
    let path = CString::new(procs.as_os_str().as_encoded_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: the probe is single-threaded (it starts no thread), so the child may run
    // anything; it only makes raw system calls on the path prepared above, then _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: open/write/_exit with a valid C string and a static buffer.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                libc::_exit(*libc::__errno_location());
            }
            if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                libc::_exit(*libc::__errno_location());
            }
            libc::_exit(0);
        }
    }
    let mut status = 0;
    // SAFETY: waiting for the child forked above.
    if unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    if !libc::WIFEXITED(status) {
        return Err(io::Error::other(format!(
            "the child died abnormally (status {status:#x})"
        )));
    }
    Ok(match libc::WEXITSTATUS(status) {
        0 => Ok(()),
        errno => Err(errno),
    })
}

pub fn cgroup_escape(trace: &mut Trace) -> Outcome {
    let procs = match parent_procs(trace) {
        Ok(p) => p,
        Err(o) => return o,
    };
    trace.detail(|| format!("parent cgroup.procs: {}", procs.display()));
    match write_self_in_child(&procs) {
        Err(e) => {
            trace.step(format!("fork = {}", errno_name(&e)));
            Outcome::fail(
                "could not try",
                format!("forking the child that tries to leave failed: {e}"),
            )
        }
        Ok(Ok(())) => {
            trace.step(format!(
                "child: write(\"0\") to {} = ok (it left the bottle, then exited)",
                procs.display()
            ));
            Outcome::fail(
                "the child left the bottle's cgroup",
                format!(
                    "a process of the bottle moved itself to the parent cgroup through {}: \
                     the cgroup filesystem is writable here, so cork's programs stop \
                     judging whatever leaves",
                    procs.display()
                ),
            )
        }
        Ok(Err(errno)) => {
            let e = io::Error::from_raw_os_error(errno);
            let name = errno_name(&e);
            trace.step(format!(
                "child: write(\"0\") to {} = {name} ({e})",
                procs.display()
            ));
            Outcome::pass(name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tcork\nNoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n\
        CapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t0000000000000000\n\
        CapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\n";

    #[test]
    fn status_fields_and_caps() {
        assert_eq!(status_field(STATUS, "NoNewPrivs"), Some("1"));
        assert_eq!(status_field(STATUS, "Seccomp"), Some("2"));
        let held = held_dropped_caps(STATUS).unwrap();
        assert!(
            held.iter().any(|h| h == "CAP_SYS_ADMIN in CapPrm"),
            "{held:?}"
        );
        assert!(held.iter().all(|h| h.ends_with("in CapPrm")), "{held:?}");
        let clean = STATUS.replace("000001ffffffffff", "0000000000000000");
        assert!(held_dropped_caps(&clean).unwrap().is_empty());
    }

    #[test]
    fn mountinfo_lines() {
        let text = "36 25 0:31 / /sys/fs/cgroup/unified ro,nosuid shared:9 - cgroup2 cgroup2 rw\n\
                    40 25 0:35 / /sys/fs/bpf rw,relatime - bpf bpf rw,mode=700\n\
                    41 25 0:36 / /mnt/a\\040b rw - tmpfs t rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].fstype, "cgroup2");
        assert!(is_readonly(&m[0].options));
        assert!(!is_readonly(&m[1].options));
        assert_eq!(m[2].target, "/mnt/a b");
        assert_eq!(
            cgroup_v2_path("12:cpu:/x\n0::/cork-a-1_2\n"),
            Some("/cork-a-1_2")
        );
    }
}
