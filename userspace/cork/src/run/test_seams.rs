//! Test seams: behaviour only the integration harness may ask for. Any `CORK_TEST_*`
//! variable without the harness's marker `CORK_TEST_HARNESS=1` makes `cork run` refuse to
//! start, so a seam can never weaken a real bottle by accident.

use std::time::Duration;

const PREFIX: &str = "CORK_TEST_";
const MARKER: &str = "CORK_TEST_HARNESS";
/// Delay before the audit reader starts, so a test can overflow the ring buffer and see
/// the loss reported.
const READER_DELAY_MS: &str = "CORK_TEST_READER_DELAY_MS";

#[derive(Debug, thiserror::Error)]
pub enum SeamError {
    #[error("{var} is set but {MARKER}=1 is not: test seams only work under the test harness")]
    NoHarness { var: String },
    #[error("{var}={value:?} is not a number of milliseconds")]
    Bad { var: &'static str, value: String },
    #[error("unknown test seam {var}")]
    Unknown { var: String },
}

#[derive(Debug, Default)]
pub struct Seams {
    pub reader_delay: Option<Duration>,
}

/// Reads the seams from the environment.
pub fn from_env() -> Result<Seams, SeamError> {
    from_vars(std::env::vars())
}

fn from_vars(vars: impl Iterator<Item = (String, String)>) -> Result<Seams, SeamError> {
    let vars: Vec<(String, String)> = vars.filter(|(k, _)| k.starts_with(PREFIX)).collect();
    let harness = vars.iter().any(|(k, v)| k == MARKER && v == "1");
    let mut seams = Seams::default();
    for (var, value) in vars {
        if var == MARKER {
            continue;
        }
        if !harness {
            return Err(SeamError::NoHarness { var });
        }
        match var.as_str() {
            READER_DELAY_MS => {
                let ms = value.parse().map_err(|_| SeamError::Bad {
                    var: READER_DELAY_MS,
                    value,
                })?;
                seams.reader_delay = Some(Duration::from_millis(ms));
            }
            _ => return Err(SeamError::Unknown { var }),
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
        assert!(matches!(e, SeamError::NoHarness { .. }), "{e}");
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
    fn unknown_or_bad_seams_are_refused() {
        let e = from_vars(vars(&[("CORK_TEST_OPEN_DOOR", "1"), (MARKER, "1")])).unwrap_err();
        assert!(matches!(e, SeamError::Unknown { .. }));
        let e = from_vars(vars(&[(READER_DELAY_MS, "soon"), (MARKER, "1")])).unwrap_err();
        assert!(matches!(e, SeamError::Bad { .. }));
    }
}
