//! IP forwarding for VM bottles, turned on without breaking the host and turned back off
//! when the last VM bottle of the network namespace ends.
//!
//! A guest's packets are routed by the host, so `net.ipv4.ip_forward` and
//! `net.ipv6.conf.all.forwarding` must be 1. Turning IPv6 forwarding on makes Linux ignore
//! router advertisements on every interface with `accept_ra=1` — a host would lose its
//! IPv6 default route when it expires — so those interfaces get `accept_ra=2` (accept even
//! when forwarding) first. What cork changed is written down, with the pids of the agents
//! that need it, in `/run/cork/forwarding/netns-<netns cookie>` under an `flock`; the last agent
//! to let go (dead agents are pruned, so a SIGKILLed one does not pin it forever) puts
//! every value back and removes the record. Values cork did not change are never touched.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// Where the records live, one file per network namespace.
pub const STATE_DIR: &str = "/run/cork/forwarding";

const IPV4_FORWARD: &str = "net/ipv4/ip_forward";
const IPV6_FORWARD: &str = "net/ipv6/conf/all/forwarding";

#[derive(Debug, thiserror::Error)]
pub enum ForwardingError {
    #[error("{path}")]
    State {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("setting sysctl {key}")]
    Sysctl {
        key: String,
        #[source]
        source: io::Error,
    },
}

/// Held while a VM bottle needs forwarding; dropping it lets go (and restores the host's
/// values if this was the last holder).
#[derive(Debug)]
pub struct ForwardingLease {
    state: PathBuf,
    sysctl_root: PathBuf,
    pid: u32,
}

/// The recorded state: which sysctls cork changed (with their values before) and who
/// holds the lease.
#[derive(Debug, Default, PartialEq, Eq)]
struct State {
    saved: Vec<(String, String)>,
    holders: Vec<u32>,
}

impl State {
    fn parse(text: &str) -> Self {
        let mut st = State::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some("saved"), Some(key), Some(value)) => {
                    st.saved.push((key.to_owned(), value.to_owned()));
                }
                (Some("holder"), Some(pid), None) => {
                    if let Ok(pid) = pid.parse() {
                        st.holders.push(pid);
                    }
                }
                _ => {}
            }
        }
        st
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.saved {
            out.push_str(&format!("saved {k} {v}\n"));
        }
        for p in &self.holders {
            out.push_str(&format!("holder {p}\n"));
        }
        out
    }
}

impl ForwardingLease {
    /// Turns forwarding on in this thread's network namespace (if it is not already) and
    /// records this process as a holder.
    pub fn acquire() -> Result<Self, ForwardingError> {
        let cookie = netns_cookie().map_err(|source| ForwardingError::State {
            path: PathBuf::from("SO_NETNS_COOKIE"),
            source,
        })?;
        Self::acquire_in(
            &Path::new(STATE_DIR).join(format!("netns-{cookie}")),
            Path::new("/proc/sys"),
            std::process::id(),
        )
    }

    /// [`ForwardingLease::acquire`] with its files elsewhere (tests).
    pub fn acquire_in(state: &Path, sysctl_root: &Path, pid: u32) -> Result<Self, ForwardingError> {
        let lease = ForwardingLease {
            state: state.to_path_buf(),
            sysctl_root: sysctl_root.to_path_buf(),
            pid,
        };
        lease.update(|st, root| {
            st.holders.retain(|p| alive(*p));
            if st.holders.is_empty() {
                // First holder — or a killed agent's record: its originals stay the ones
                // to restore, and forwarding is made sure of now, whatever changed since.
                for (key, old) in enable(root)? {
                    if !st.saved.iter().any(|(k, _)| *k == key) {
                        st.saved.push((key, old));
                    }
                }
            }
            st.holders.push(pid);
            Ok(())
        })?;
        Ok(lease)
    }

    /// Reads, changes and writes the record under its lock.
    fn update(
        &self,
        change: impl FnOnce(&mut State, &Path) -> Result<(), ForwardingError>,
    ) -> Result<(), ForwardingError> {
        update_state(&self.state, &self.sysctl_root, change)
    }
}

/// Reads, changes and writes the record `state` under its lock. A record left with no
/// holder and nothing to put back is removed, still under the lock — every user
/// re-checks, once it holds the lock, that the path still names the file it locked (the
/// usual lock-file dance), so a removed record is never written to by someone who
/// opened it first.
fn update_state(
    state: &Path,
    root: &Path,
    change: impl FnOnce(&mut State, &Path) -> Result<(), ForwardingError>,
) -> Result<(), ForwardingError> {
    let err = |source| ForwardingError::State {
        path: state.to_path_buf(),
        source,
    };
    if let Some(dir) = state.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut file = locked(state).map_err(err)?;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(err)?;
    let mut st = State::parse(&text);
    change(&mut st, root)?;
    let rendered = st.render();
    if rendered.trim().is_empty() {
        return std::fs::remove_file(state).map_err(err);
    }
    file.set_len(0).map_err(err)?;
    file.rewind().map_err(err)?;
    file.write_all(rendered.as_bytes()).map_err(err)?;
    Ok(())
}

/// `state` opened (created when missing) and locked, once the path is known to still
/// name the locked file.
fn locked(state: &Path) -> io::Result<Flock<File>> {
    use std::os::unix::fs::MetadataExt;
    loop {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(state)?;
        let file =
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| io::Error::from(e))?;
        let ours = file.metadata()?.ino();
        if std::fs::metadata(state).is_ok_and(|m| m.ino() == ours) {
            return Ok(file);
        }
        // Removed (emptied by its last holder) between our open and our lock: again.
    }
}

/// `cork clean`: if this network namespace's record has no live holder left (its agents
/// were killed), puts back what they changed and removes the record. Returns the
/// sysctls restored.
pub fn restore_after_dead_agents() -> Result<Vec<String>, ForwardingError> {
    let cookie = netns_cookie().map_err(|source| ForwardingError::State {
        path: PathBuf::from("SO_NETNS_COOKIE"),
        source,
    })?;
    restore_after_dead_agents_in(
        &Path::new(STATE_DIR).join(format!("netns-{cookie}")),
        Path::new("/proc/sys"),
    )
}

fn restore_after_dead_agents_in(state: &Path, root: &Path) -> Result<Vec<String>, ForwardingError> {
    if !state.exists() {
        return Ok(Vec::new());
    }
    let mut restored = Vec::new();
    // Nobody holds it and nothing is left to restore: the record goes (update_state).
    update_state(state, root, |st, root| {
        st.holders.retain(|p| alive(*p));
        if st.holders.is_empty() {
            restored = restore(st, root)?;
        }
        Ok(())
    })?;
    Ok(restored)
}

impl Drop for ForwardingLease {
    fn drop(&mut self) {
        let pid = self.pid;
        let res = self.update(|st, root| {
            // One entry per lease: a process holding several (a daemon with several VM
            // bottles) lets go of one at a time.
            if let Some(i) = st.holders.iter().position(|p| *p == pid) {
                st.holders.remove(i);
            }
            st.holders.retain(|p| alive(*p));
            if st.holders.is_empty() {
                restore(st, root)?;
            }
            Ok(())
        });
        if let Err(e) = res {
            tracing::warn!(
                "restoring forwarding settings: {}",
                cork_audit::error_chain(&e)
            );
        }
    }
}

/// The calling thread's network namespace's cookie (`SO_NETNS_COOKIE`, Linux 5.14): unlike
/// the nsfs inode, never reused for another namespace while the host runs, so a record
/// left by a killed agent can never be taken for a new namespace's.
fn netns_cookie() -> std::io::Result<u64> {
    const SO_NETNS_COOKIE: libc::c_int = 71;
    // SAFETY: socket(2) with constant arguments; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: socket(2) returned a new descriptor that nothing else owns.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: `cookie` is a writable u64 of `len` bytes, alive across the call.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cookie)
}

/// Puts back every value the record saved (last changed first) and forgets them; the keys
/// restored.
fn restore(st: &mut State, root: &Path) -> Result<Vec<String>, ForwardingError> {
    let mut restored = Vec::new();
    for (key, value) in std::mem::take(&mut st.saved).into_iter().rev() {
        write_sysctl(root, &key, &value)?;
        restored.push(key);
    }
    Ok(restored)
}

fn alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

fn read_sysctl(root: &Path, key: &str) -> Option<String> {
    std::fs::read_to_string(root.join(key))
        .ok()
        .map(|v| v.trim().to_owned())
}

fn write_sysctl(root: &Path, key: &str, value: &str) -> Result<(), ForwardingError> {
    std::fs::write(root.join(key), value).map_err(|source| ForwardingError::Sysctl {
        key: key.to_owned(),
        source,
    })
}

/// Turns forwarding on; returns what it changed (key, previous value), in order.
fn enable(root: &Path) -> Result<Vec<(String, String)>, ForwardingError> {
    let mut saved = Vec::new();
    let mut set = |key: String, value: &str| -> Result<(), ForwardingError> {
        if let Some(old) = read_sysctl(root, &key)
            && old != value
        {
            write_sysctl(root, &key, value)?;
            saved.push((key, old));
        }
        Ok(())
    };
    // Uplinks keep their router advertisements before forwarding would make them stop.
    if let Ok(entries) = std::fs::read_dir(root.join("net/ipv6/conf")) {
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "all" && n != "default")
            .collect();
        names.sort();
        for name in names {
            let key = format!("net/ipv6/conf/{name}/accept_ra");
            if read_sysctl(root, &key).as_deref() == Some("1") {
                set(key, "2")?;
            }
        }
    }
    set(IPV4_FORWARD.to_owned(), "1")?;
    if read_sysctl(root, IPV6_FORWARD).is_some() {
        set(IPV6_FORWARD.to_owned(), "1")?;
    }
    Ok(saved)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake /proc/sys: forwarding off, one uplink that accepts RAs, one that does not.
    fn fake_sysctls(dir: &Path) {
        for (key, value) in [
            (IPV4_FORWARD, "0"),
            (IPV6_FORWARD, "0"),
            ("net/ipv6/conf/eth0/accept_ra", "1"),
            ("net/ipv6/conf/eth1/accept_ra", "0"),
            ("net/ipv6/conf/all/accept_ra", "1"),
        ] {
            let path = dir.join(key);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, format!("{value}\n")).expect("write");
        }
    }

    fn value(dir: &Path, key: &str) -> String {
        read_sysctl(dir, key).expect("sysctl exists")
    }

    #[test]
    fn the_last_holder_restores_exactly_what_cork_changed() {
        let base = std::env::temp_dir().join(format!("cork-fwd-test-{}", std::process::id()));
        let sys = base.join("sys");
        let state = base.join("state");
        fake_sysctls(&sys);
        let me = std::process::id();
        let a = ForwardingLease::acquire_in(&state, &sys, me).expect("first");
        assert_eq!(value(&sys, IPV4_FORWARD), "1");
        assert_eq!(value(&sys, IPV6_FORWARD), "1");
        assert_eq!(value(&sys, "net/ipv6/conf/eth0/accept_ra"), "2");
        assert_eq!(value(&sys, "net/ipv6/conf/eth1/accept_ra"), "0");
        assert_eq!(value(&sys, "net/ipv6/conf/all/accept_ra"), "1");
        // A second holder (the same live pid stands in for another agent) keeps it on.
        let b = ForwardingLease::acquire_in(&state, &sys, me).expect("second");
        drop(a);
        assert_eq!(value(&sys, IPV4_FORWARD), "1", "one holder is left");
        drop(b);
        assert_eq!(value(&sys, IPV4_FORWARD), "0");
        assert_eq!(value(&sys, IPV6_FORWARD), "0");
        assert_eq!(value(&sys, "net/ipv6/conf/eth0/accept_ra"), "1");
        assert!(!state.exists(), "the last holder removes the record");
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn a_dead_holder_does_not_keep_forwarding_on() {
        let base = std::env::temp_dir().join(format!("cork-fwd-dead-{}", std::process::id()));
        let sys = base.join("sys");
        let state = base.join("state");
        fake_sysctls(&sys);
        std::fs::create_dir_all(&base).expect("mkdir");
        // A record left by an agent that was SIGKILLed: pid 0 never names a process dir.
        std::fs::write(
            &state,
            "saved net/ipv4/ip_forward 0\nsaved net/ipv6/conf/all/forwarding 0\nholder 0\n",
        )
        .expect("write");
        std::fs::write(sys.join(IPV4_FORWARD), "1").expect("write");
        std::fs::write(sys.join(IPV6_FORWARD), "1").expect("write");
        let lease = ForwardingLease::acquire_in(&state, &sys, std::process::id()).expect("lease");
        drop(lease);
        assert_eq!(value(&sys, IPV4_FORWARD), "0");
        assert_eq!(value(&sys, IPV6_FORWARD), "0");
        assert!(!state.exists(), "the record goes with its last holder");
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn a_dead_holders_record_does_not_stop_forwarding_being_turned_on() {
        let base = std::env::temp_dir().join(format!("cork-fwd-stale-{}", std::process::id()));
        let sys = base.join("sys");
        let state = base.join("state");
        fake_sysctls(&sys);
        std::fs::create_dir_all(&base).expect("mkdir");
        // A killed agent's record, while forwarding is off (someone turned it off, or the
        // record outlived its namespace): the new holder must still turn it on.
        std::fs::write(&state, "saved net/ipv4/ip_forward 0\nholder 0\n").expect("write");
        let lease = ForwardingLease::acquire_in(&state, &sys, std::process::id()).expect("lease");
        assert_eq!(value(&sys, IPV4_FORWARD), "1");
        assert_eq!(value(&sys, IPV6_FORWARD), "1");
        drop(lease);
        assert_eq!(value(&sys, IPV4_FORWARD), "0");
        assert_eq!(value(&sys, IPV6_FORWARD), "0");
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn clean_restores_what_killed_agents_changed_and_removes_the_record() {
        let base = std::env::temp_dir().join(format!("cork-fwd-clean-{}", std::process::id()));
        let sys = base.join("sys");
        let state = base.join("state");
        fake_sysctls(&sys);
        std::fs::write(sys.join(IPV4_FORWARD), "1").expect("write");
        std::fs::write(&state, "saved net/ipv4/ip_forward 0\nholder 0\n").expect("write");
        let restored = restore_after_dead_agents_in(&state, &sys).expect("clean");
        assert_eq!(restored, ["net/ipv4/ip_forward"]);
        assert_eq!(value(&sys, IPV4_FORWARD), "0");
        assert!(!state.exists());
        // A live holder's record is left alone.
        std::fs::write(sys.join(IPV4_FORWARD), "1").expect("write");
        let me = std::process::id();
        std::fs::write(
            &state,
            format!("saved net/ipv4/ip_forward 0\nholder {me}\n"),
        )
        .expect("write");
        assert!(
            restore_after_dead_agents_in(&state, &sys)
                .expect("clean")
                .is_empty()
        );
        assert_eq!(value(&sys, IPV4_FORWARD), "1");
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn the_namespace_cookie_is_stable_within_a_namespace() {
        let a = netns_cookie().expect("cookie");
        assert_eq!(a, netns_cookie().expect("cookie"));
        assert_ne!(a, 0);
    }

    #[test]
    fn state_round_trips() {
        let st = State {
            saved: vec![("net/ipv4/ip_forward".into(), "0".into())],
            holders: vec![12, 34],
        };
        assert_eq!(State::parse(&st.render()), st);
        assert_eq!(State::parse("garbage\nholder x\n"), State::default());
    }
}
