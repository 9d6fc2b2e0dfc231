//! Test seams of the launcher: paths the integration harness may swap to simulate a host
//! without KVM or without QEMU. Like cork's own seams (`userspace/cork/src/run/test_seams.rs`)
//! they refuse to work unless `CORK_TEST_HARNESS=1` is also set, so a stray variable can
//! never point a real VM bottle at something else.
//!
//! Only the variables named here are read; other `CORK_TEST_*` variables belong to other
//! crates' seams and are left to them.

use std::ffi::OsString;
use std::path::PathBuf;

const MARKER: &str = "CORK_TEST_HARNESS";
/// Path used instead of `/dev/kvm` (a missing path simulates a host without KVM).
pub const KVM_DEVICE: &str = "CORK_TEST_KVM_DEVICE";
/// Path used instead of looking `qemu-system-x86_64` up in `PATH`.
pub const QEMU_BINARY: &str = "CORK_TEST_QEMU";
/// Every seam this crate reads, for a caller that refuses unknown `CORK_TEST_*` names.
pub const NAMES: &[&str] = &[KVM_DEVICE, QEMU_BINARY];

#[derive(Debug, thiserror::Error)]
pub enum SeamError {
    #[error("{var} is set but {MARKER}=1 is not: test seams only work under the test harness")]
    NoHarness { var: &'static str },
}

/// The launcher's seams, all unset outside the harness.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Seams {
    pub kvm_device: Option<PathBuf>,
    pub qemu: Option<PathBuf>,
}

/// Reads the seams from the environment.
pub fn from_env() -> Result<Seams, SeamError> {
    from_vars(std::env::vars_os())
}

fn from_vars(vars: impl Iterator<Item = (OsString, OsString)>) -> Result<Seams, SeamError> {
    let mut harness = false;
    let mut seams = Seams::default();
    let mut seen: Vec<&'static str> = Vec::new();
    for (key, value) in vars {
        if key == MARKER {
            harness = value == "1";
        } else if key == KVM_DEVICE {
            seams.kvm_device = Some(value.into());
            seen.push(KVM_DEVICE);
        } else if key == QEMU_BINARY {
            seams.qemu = Some(value.into());
            seen.push(QEMU_BINARY);
        }
    }
    match seen.first() {
        Some(&var) if !harness => Err(SeamError::NoHarness { var }),
        _ => Ok(seams),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(v: &[(&str, &str)]) -> impl Iterator<Item = (OsString, OsString)> {
        v.iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn seams_need_the_harness_marker() {
        let e = from_vars(vars(&[(KVM_DEVICE, "/nonexistent")])).unwrap_err();
        assert!(e.to_string().contains("CORK_TEST_HARNESS=1"), "{e}");
        let e = from_vars(vars(&[(QEMU_BINARY, "/x"), (MARKER, "0")])).unwrap_err();
        assert!(matches!(e, SeamError::NoHarness { var: QEMU_BINARY }));
        let s = from_vars(vars(&[(MARKER, "1"), (KVM_DEVICE, "/nonexistent")])).unwrap();
        assert_eq!(s.kvm_device, Some(PathBuf::from("/nonexistent")));
        assert_eq!(s.qemu, None);
    }

    #[test]
    fn other_crates_seams_are_not_ours_to_judge() {
        let s = from_vars(vars(&[("CORK_TEST_READER_DELAY_MS", "5")])).unwrap();
        assert_eq!(s, Seams::default());
    }
}
