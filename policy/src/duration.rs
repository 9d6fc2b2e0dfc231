//! Durations as people write them in a manifest or on a command line: a whole number and
//! one unit, `s`, `m` or `h` (`"90s"`, `"5m"`, `"1h"`). Nothing fancier: one spelling per
//! length keeps manifests easy to read and to diff.

use std::time::Duration;

/// `"<n>s"`, `"<n>m"` or `"<n>h"`; `None` for anything else (no sign, no fraction, no
/// space, no bare number — a number alone would leave the unit to guesswork).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let unit = match text.as_bytes().last()? {
        b's' => 1,
        b'm' => 60,
        b'h' => 60 * 60,
        _ => return None,
    };
    let digits = &text[..text.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(Duration::from_secs(n.checked_mul(unit)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_refusals() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        for bad in [
            "",
            "s",
            "5",
            "5 m",
            "-5m",
            "+5m",
            "1.5h",
            "5d",
            "m5",
            "99999999999999999999h",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }
}
