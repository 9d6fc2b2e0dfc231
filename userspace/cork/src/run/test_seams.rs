//! Test seams: behaviour only the integration harness may ask for. Any `CORK_TEST_*`
//! variable without the harness's marker `CORK_TEST_HARNESS=1` makes `cork run` refuse to
//! start, so a seam can never weaken a real bottle by accident.

use std::time::Duration;

use crate::seams::{MARKER, SeamGateError};

const PREFIX: &str = "CORK_TEST_";
/// Delay before the audit reader starts, so a test can overflow the ring buffer and see
/// the loss reported.
const READER_DELAY_MS: &str = "CORK_TEST_READER_DELAY_MS";
/// `VAR=HOST`: the provider key in VAR goes to HOST instead of the provider's real API,
/// so that a test world (names under `.test`) can show the swap end to end.
const PROVIDER_HOST: &str = "CORK_TEST_PROVIDER_HOST";
/// `=1`: the command keeps every capability (no drop), so `cork probe` can be seen
/// failing `proc.capabilities`.
const KEEP_CAPS: &str = "CORK_TEST_KEEP_CAPS";
/// `=1`: no seccomp filter for the command (`proc.seccomp`, ICMP sockets).
const NO_SECCOMP: &str = "CORK_TEST_NO_SECCOMP";
/// `=1`: cgroup and bpf filesystems stay writable in the command's mount namespace
/// (`mount.*_ro`, `cgroup.escape`).
const RW_MOUNTS: &str = "CORK_TEST_RW_MOUNTS";
/// Every seam `cork run` (and `cork exec`) honours.
pub const NAMES: &[&str] = &[
    READER_DELAY_MS,
    PROVIDER_HOST,
    KEEP_CAPS,
    NO_SECCOMP,
    RW_MOUNTS,
];

#[derive(Debug, thiserror::Error)]
pub enum SeamError {
    /// A seam without the harness marker, or one `cork run` does not honour.
    #[error(transparent)]
    Gate(#[from] SeamGateError),
    #[error("{var}={value:?}: {expected}")]
    Bad {
        var: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// Hardening steps a seam skips for the bottled command. All `false` in a real bottle.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Weaken {
    pub keep_caps: bool,
    pub no_seccomp: bool,
    pub rw_mounts: bool,
}

#[derive(Debug, Default)]
pub struct Seams {
    pub reader_delay: Option<Duration>,
    /// (provider key variable, host) from [`PROVIDER_HOST`].
    pub provider_host: Option<(String, String)>,
    pub weaken: Weaken,
    /// The seams set, for the `test_seams` lifecycle event.
    pub active: Vec<String>,
}

fn flag(var: &'static str, value: &str) -> Result<bool, SeamError> {
    match value {
        "1" => Ok(true),
        _ => Err(SeamError::Bad {
            var,
            value: value.to_owned(),
            expected: "not 1",
        }),
    }
}

/// The `test_seams` lifecycle event's detail (and a warning in the log).
pub fn announce(seams: &Seams) -> String {
    let what = format!(
        "test seams active (harness marker set): {}",
        seams.active.join(", ")
    );
    tracing::warn!("{what}");
    what
}

/// Reads the seams from the environment (`std::env::vars` would panic on a variable
/// that is not UTF-8, which the caller's environment may well hold).
pub fn from_env() -> Result<Seams, SeamError> {
    from_vars(crate::seams::env())
}

fn from_vars(vars: impl Iterator<Item = (String, String)>) -> Result<Seams, SeamError> {
    let vars: Vec<(String, String)> = vars.filter(|(k, _)| k.starts_with(PREFIX)).collect();
    // The shared gate refuses a lone seam and one this command does not honour.
    let active = crate::seams::active(vars.iter().cloned(), NAMES)?;
    let mut seams = Seams {
        active,
        ..Seams::default()
    };
    for (var, value) in vars.into_iter().filter(|(k, _)| k != MARKER) {
        match var.as_str() {
            READER_DELAY_MS => {
                let ms = value.parse().map_err(|_| SeamError::Bad {
                    var: READER_DELAY_MS,
                    value: value.clone(),
                    expected: "not a number of milliseconds",
                })?;
                seams.reader_delay = Some(Duration::from_millis(ms));
            }
            PROVIDER_HOST => match value.split_once('=') {
                Some((v, h)) if !v.is_empty() && h.ends_with(".test") => {
                    seams.provider_host = Some((v.to_owned(), h.to_owned()));
                }
                _ => {
                    return Err(SeamError::Bad {
                        var: PROVIDER_HOST,
                        value,
                        expected: "not VAR=HOST with HOST under .test",
                    });
                }
            },
            KEEP_CAPS => seams.weaken.keep_caps = flag(KEEP_CAPS, &value)?,
            NO_SECCOMP => seams.weaken.no_seccomp = flag(NO_SECCOMP, &value)?,
            RW_MOUNTS => seams.weaken.rw_mounts = flag(RW_MOUNTS, &value)?,
            _ => return Err(SeamGateError::Unknown { var, known: NAMES }.into()),
        }
    }
    Ok(seams)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(v: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn seams_need_the_harness_marker() {
        let e = from_vars(vars(&[(READER_DELAY_MS, "10")])).unwrap_err();
        assert!(
            matches!(e, SeamError::Gate(SeamGateError::WithoutHarness { .. })),
            "{e}"
        );
        let s = from_vars(vars(&[(READER_DELAY_MS, "10"), (MARKER, "1")])).unwrap();
        assert_eq!(s.reader_delay, Some(Duration::from_millis(10)));
        assert!(
            from_vars(vars(&[(MARKER, "1")]))
                .unwrap()
                .reader_delay
                .is_none()
        );
    }

    #[test]
    fn provider_hosts_stay_in_the_test_world() {
        let s = from_vars(vars(&[
            (PROVIDER_HOST, "ANTHROPIC_API_KEY=api.example.test"),
            (MARKER, "1"),
        ]))
        .unwrap();
        assert_eq!(
            s.provider_host,
            Some(("ANTHROPIC_API_KEY".into(), "api.example.test".into()))
        );
        let e = from_vars(vars(&[(PROVIDER_HOST, "X=api.example.com"), (MARKER, "1")]));
        assert!(matches!(e, Err(SeamError::Bad { .. })));
    }

    #[test]
    fn weakening_seams_need_the_marker_and_a_one() {
        let e = from_vars(vars(&[(KEEP_CAPS, "1")])).unwrap_err();
        assert!(
            matches!(e, SeamError::Gate(SeamGateError::WithoutHarness { .. })),
            "{e}"
        );
        let s = from_vars(vars(&[(NO_SECCOMP, "1"), (RW_MOUNTS, "1"), (MARKER, "1")])).unwrap();
        assert_eq!(
            s.weaken,
            Weaken {
                keep_caps: false,
                no_seccomp: true,
                rw_mounts: true
            }
        );
        assert_eq!(s.active.len(), 2);
        let e = from_vars(vars(&[(KEEP_CAPS, "yes"), (MARKER, "1")])).unwrap_err();
        assert!(matches!(e, SeamError::Bad { .. }), "{e}");
    }

    #[test]
    fn unknown_or_bad_seams_are_refused() {
        let e = from_vars(vars(&[("CORK_TEST_OPEN_DOOR", "1"), (MARKER, "1")])).unwrap_err();
        assert!(matches!(e, SeamError::Gate(SeamGateError::Unknown { .. })));
        let e = from_vars(vars(&[(READER_DELAY_MS, "soon"), (MARKER, "1")])).unwrap_err();
        assert!(matches!(e, SeamError::Bad { .. }));
    }
}
