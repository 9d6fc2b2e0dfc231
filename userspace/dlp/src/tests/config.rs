//! Building a scanner: custom detectors and the errors that name what is wrong.

use super::{detectors_of, scan, scanner, secret};
use crate::{Config, Detector, DlpError, Scanner};

fn custom(d: Detector) -> Result<Scanner, DlpError> {
    Scanner::new(&Config {
        custom: vec![d],
        ..Config::default()
    })
}

#[test]
fn custom_detector_runs_with_its_keywords() {
    let sc = scanner(Config {
        builtin: false,
        custom: vec![Detector::custom(
            "acme-key",
            r"(?-u)acme_[0-9a-f]{16}",
            &["ACME_"],
        )],
        ..Config::default()
    });
    let found = scan(&sc, b"x=acme_0123456789abcdef;");
    assert_eq!(detectors_of(&found), ["acme-key"]);
    assert_eq!(found[0].start, 2);
    assert!(scan(&sc, b"x=acme_0123456789abcde;").is_empty());
}

#[test]
fn custom_detector_without_keywords_always_runs() {
    let sc = scanner(Config {
        builtin: false,
        custom: vec![Detector::custom("digits", r"[0-9]{6}", &[])],
        ..Config::default()
    });
    assert_eq!(scan(&sc, b"pin 123456").len(), 1);
}

#[test]
fn invalid_regex_names_the_detector() {
    let err = custom(Detector::custom("broken", r"(abc", &["abc"])).unwrap_err();
    assert!(matches!(&err, DlpError::InvalidRegex { detector, .. } if detector == "broken"));
    assert!(err.to_string().contains("broken"), "{err}");
}

#[test]
fn unbounded_regex_is_refused() {
    let err = custom(Detector::custom("greedy", r"tok_[a-z]+", &["tok_"])).unwrap_err();
    assert!(matches!(&err, DlpError::UnboundedRegex { detector, .. } if detector == "greedy"));
    assert!(err.to_string().contains("greedy"), "{err}");
    let err = custom(Detector::custom("huge", r"tok_[a-z]{1,5000}", &["tok_"])).unwrap_err();
    assert!(matches!(err, DlpError::UnboundedRegex { .. }));
}

#[test]
fn empty_matching_regex_is_refused() {
    let err = custom(Detector::custom("empty", r"x?", &[])).unwrap_err();
    assert!(matches!(&err, DlpError::EmptyMatch { detector } if detector == "empty"));
}

#[test]
fn empty_keyword_and_duplicates_are_refused() {
    let err = custom(Detector::custom("kw", r"abc", &[""])).unwrap_err();
    assert!(matches!(err, DlpError::EmptyKeyword { .. }));
    let err = custom(Detector::custom("jwt", r"abc", &["abc"])).unwrap_err();
    assert!(matches!(&err, DlpError::DuplicateDetector { detector } if detector == "jwt"));
}

#[test]
fn known_secret_bounds_name_the_secret_not_the_value() {
    let err = Scanner::new(&Config {
        known_secrets: vec![secret("SHORT_KEY", b"abc123")],
        ..Config::default()
    })
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("SHORT_KEY") && !msg.contains("abc123"),
        "{msg}"
    );
    let err = Scanner::new(&Config {
        known_secrets: vec![secret("LONG_KEY", &[b'x'; 2000])],
        ..Config::default()
    })
    .unwrap_err();
    assert!(matches!(err, DlpError::KnownSecretTooLong { .. }));
}

#[test]
fn known_secret_debug_hides_the_value() {
    let s = secret("ACME_REAL_KEY", b"real-value-Zq8vX2");
    let shown = format!(
        "{s:?} {:?}",
        Config {
            known_secrets: vec![s.clone()],
            ..Config::default()
        }
    );
    assert!(shown.contains("ACME_REAL_KEY"));
    assert!(!shown.contains("real-value-Zq8vX2"), "{shown}");
}

#[test]
fn scanners_share_the_builtins_and_keep_their_own_custom_detectors() {
    let a = custom(Detector::custom("acme", "ACME-[0-9]{12}", &["ACME-"])).expect("builds");
    let b = custom(Detector::custom("other", "OTHER-[0-9]{12}", &["OTHER-"])).expect("builds");
    let builtins = crate::builtin_detectors().len();
    assert_eq!(a.detectors.len(), builtins + 1);
    assert!(
        a.detectors[..builtins]
            .iter()
            .zip(&b.detectors[..builtins])
            .all(|(x, y)| std::sync::Arc::ptr_eq(x, y)),
        "the built-ins' analysis is one per process"
    );
    assert_eq!(a.detector_names().last(), Some("acme"));
    assert_eq!(b.detector_names().last(), Some("other"));
    assert!(
        b.detector("acme").is_none(),
        "a manifest's detector is its scanner's own"
    );
}
