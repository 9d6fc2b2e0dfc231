//! The test-seam gate of every long-lived entry point (`cork vm`, `cork daemon`; `cork
//! run` has its own reader of the seams it honours, `run::test_seams`): a `CORK_TEST_*`
//! variable weakens a gate, so without the harness's marker `CORK_TEST_HARNESS=1` it
//! refuses the boot, naming the variable; a seam the entry point does not honour is
//! refused too; the active ones are returned for a lifecycle event.

/// The harness's marker.
pub const MARKER: &str = "CORK_TEST_HARNESS";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeamGateError {
    #[error("{var} is set but {MARKER}=1 is not: test seams only work under the test harness")]
    WithoutHarness { var: String },
    #[error("unknown test seam {var} (this command honours {known:?})")]
    Unknown {
        var: String,
        known: &'static [&'static str],
    },
}

/// The process environment as text pairs.
pub fn env() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().map(|(k, v)| {
        (
            k.to_string_lossy().into_owned(),
            v.to_string_lossy().into_owned(),
        )
    })
}

/// The seams set in `vars` that the command honours (`known`), or why the boot is refused.
pub fn active(
    vars: impl Iterator<Item = (String, String)>,
    known: &'static [&'static str],
) -> Result<Vec<String>, SeamGateError> {
    let set: Vec<(String, String)> = vars.filter(|(k, _)| k.starts_with("CORK_TEST_")).collect();
    let harness = set.iter().any(|(k, v)| k == MARKER && v == "1");
    let mut seams = Vec::new();
    for (var, _) in set.into_iter().filter(|(k, _)| k != MARKER) {
        if !harness {
            return Err(SeamGateError::WithoutHarness { var });
        }
        if !known.contains(&var.as_str()) {
            return Err(SeamGateError::Unknown { var, known });
        }
        seams.push(var);
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

    const KNOWN: &[&str] = &["CORK_TEST_KVM_DEVICE"];

    #[test]
    fn a_lone_seam_refuses_a_seam_with_the_marker_is_named() {
        let e = active(vars(&[("CORK_TEST_KVM_DEVICE", "/x")]), KNOWN).unwrap_err();
        assert!(e.to_string().contains("CORK_TEST_KVM_DEVICE"), "{e}");
        let ok = active(
            vars(&[
                ("CORK_TEST_KVM_DEVICE", "/x"),
                (MARKER, "1"),
                ("PATH", "/bin"),
            ]),
            KNOWN,
        )
        .expect("with the marker");
        assert_eq!(ok, ["CORK_TEST_KVM_DEVICE"]);
        assert!(
            active(vars(&[(MARKER, "1")]), &[])
                .expect("marker alone")
                .is_empty()
        );
        let e = active(vars(&[("CORK_TEST_OPEN_DOOR", "1"), (MARKER, "1")]), KNOWN).unwrap_err();
        assert!(matches!(e, SeamGateError::Unknown { .. }), "{e}");
        let e = active(vars(&[("CORK_TEST_QEMU", "/q"), (MARKER, "yes")]), KNOWN).unwrap_err();
        assert!(matches!(e, SeamGateError::WithoutHarness { .. }), "{e}");
    }
}
