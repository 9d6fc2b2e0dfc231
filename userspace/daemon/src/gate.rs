//! The host-only gate: the control socket is the keys to every fence, so a caller is let
//! in only when the kernel says it is root (`SO_PEERCRED`, taken by the kernel at
//! `connect()`, not claimed by the caller) and its process is in no bottle's cgroup (the
//! peer's `/proc/<pid>/cgroup`, every hierarchy). No heuristics about containers: a CI
//! runner in Docker is root on its host as far as this socket is concerned; a process in
//! a bottle is refused whatever its uid.
//!
//! (Bottles cannot even reach the socket: cork's unix-socket rules always deny its path.
//! This gate is the second line.)

use cork_agent::BottleKey;

/// What the kernel says about a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub pid: Option<i32>,
}

/// Why a peer is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the control socket is for root (the caller is uid {uid})")]
    NotRoot { uid: u32 },
    #[error("the caller (pid {pid}) runs inside bottle {key}: bottles may not drive cork")]
    InBottle { pid: i32, key: String },
    #[error("the caller's pid is unknown, so its cgroup cannot be checked")]
    NoPid,
    #[error("the caller (pid {pid}) is gone or its cgroups are unreadable: {why}")]
    Cgroup { pid: i32, why: String },
}

/// The bottle key among the components of `/proc/<pid>/cgroup` text, if any.
pub fn bottle_in(cgroup_text: &str) -> Option<String> {
    cgroup_text
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .flat_map(|path| path.split('/'))
        .find(|c| BottleKey::parse(c).is_some())
        .map(str::to_owned)
}

/// Lets `peer` in, or says why not.
pub fn admit(peer: Peer) -> Result<(), Refusal> {
    if peer.uid != 0 {
        return Err(Refusal::NotRoot { uid: peer.uid });
    }
    let pid = peer.pid.filter(|p| *p > 0).ok_or(Refusal::NoPid)?;
    let text =
        std::fs::read_to_string(format!("/proc/{pid}/cgroup")).map_err(|e| Refusal::Cgroup {
            pid,
            why: e.to_string(),
        })?;
    match bottle_in(&text) {
        Some(key) => Err(Refusal::InBottle { pid, key }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_in_a_bottle_cgroup_is_found_in_any_hierarchy() {
        let host = "12:pids:/user.slice\n0::/user.slice/user-0.slice/session-3.scope\n";
        assert_eq!(bottle_in(host), None);
        let bottled = "0::/cork-web-4242_3\n";
        assert_eq!(bottle_in(bottled).as_deref(), Some("cork-web-4242_3"));
        let nested = "1:name=systemd:/\n0::/system.slice/cork-agent-17_2/sub\n";
        assert_eq!(bottle_in(nested).as_deref(), Some("cork-agent-17_2"));
    }

    #[test]
    fn only_root_is_admitted() {
        assert_eq!(
            admit(Peer {
                uid: 1000,
                pid: Some(1)
            }),
            Err(Refusal::NotRoot { uid: 1000 })
        );
        assert_eq!(admit(Peer { uid: 0, pid: None }), Err(Refusal::NoPid));
    }
}
