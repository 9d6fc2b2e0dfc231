//! Loader side of `ebpf/unix.bpf.c` (cgroup/connect_unix, cgroup/sendmsg_unix; Linux 6.7+):
//! judges every unix-domain connect and every unix datagram sent with an address against
//! the bottle's `cork_unix_names` map. aya 0.14 has no unix attach types, so this object is
//! loaded through [`crate::direct`] instead of the `cgroup_attach!` path of the others; it
//! loads after them and reuses their pinned maps.
//!
//! On a kernel without these hooks the bottle is refused: cork fails closed rather than
//! leave every unix socket of the host (a container runtime's, its own control socket)
//! within the bottle's reach.

use std::collections::HashMap;

use crate::BpfError;
use crate::direct::{self, DirectObject, DirectProgram};
use crate::query::AttachType;

/// aya-obj 0.3 parses only the section names it knows: it reads these two under the names
/// of the inet hooks of the same program type (the attach type is given at load, not read
/// from the section).
pub(crate) const OBJECT: DirectObject = DirectObject {
    name: "unix",
    bytes: aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/unix.bpf.o")),
    programs: &[
        DirectProgram {
            name: "cork_connect_unix",
            attach: AttachType::ConnectUnix,
            section: ("cgroup/connect_unix", "cgroup/connect4"),
        },
        DirectProgram {
            name: "cork_sendmsg_unix",
            attach: AttachType::SendmsgUnix,
            section: ("cgroup/sendmsg_unix", "cgroup/sendmsg4"),
        },
    ],
};

/// The kernel that brought the unix sock_addr hooks.
const FIRST_KERNEL: (u32, u32) = (6, 7);

/// The unix programs, verified and loaded, attached nowhere yet.
pub(crate) struct Loaded(Vec<direct::LoadedProgram>);

impl Loaded {
    pub(crate) fn programs(&self) -> &[direct::LoadedProgram] {
        &self.0
    }
}

/// Loads (verifies) the unix programs against the bottle's pinned maps in `pin_dir`,
/// refusing a kernel without the hooks. Attaches nothing.
pub(crate) fn load_all(btf: &aya::Btf, pin_dir: &std::path::Path) -> Result<Loaded, BpfError> {
    if let Some(release) = too_old() {
        return Err(BpfError::UnixHooksUnsupported { release });
    }
    // No load-time constants: the programs find their bottle in cork_cfg.
    let prepared = direct::prepare(&OBJECT, HashMap::new(), btf, pin_dir)?;
    let loaded = OBJECT
        .programs
        .iter()
        .map(|p| direct::load(&prepared, p.name, p.attach))
        .collect::<Result<_, _>>()?;
    Ok(Loaded(loaded))
}

/// The running kernel's release when it predates the unix hooks. A release that cannot
/// be read or parsed is not judged here: loading then fails on its own if the hooks are
/// missing.
fn too_old() -> Option<String> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let release = release.trim().to_owned();
    let version = parse_release(&release)?;
    (version < FIRST_KERNEL).then_some(release)
}

/// `6.18.44-fc-v657` → (6, 18).
fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::parse_release;

    #[test]
    fn releases() {
        assert_eq!(parse_release("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(parse_release("6.1.0-28-cloud-amd64"), Some((6, 1)));
        assert_eq!(parse_release("6.7"), Some((6, 7)));
        assert_eq!(parse_release("x"), None);
        assert!(parse_release("6.6.30").unwrap() < super::FIRST_KERNEL);
        assert!(parse_release("7.0.1").unwrap() >= super::FIRST_KERNEL);
    }
}
