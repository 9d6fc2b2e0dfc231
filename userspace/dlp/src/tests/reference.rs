//! The scanner against its definition: per detector, a leftmost, non-overlapping regex
//! search over the whole input. The scanner only tries regexes near keywords (anchored
//! where it can), so this guards that shortcut on every kind of detector.

use proptest::prelude::*;

use super::{ALNUM, fake, scan_split, scanner};
use crate::{Config, Detector, Finding, Scanner};

/// Built-ins plus one custom detector per prefilter path.
fn mixed() -> &'static Scanner {
    static MIXED: std::sync::OnceLock<Scanner> = std::sync::OnceLock::new();
    MIXED.get_or_init(|| {
        scanner(Config {
            custom: vec![
                // Starts with its keyword, no look-around: anchored.
                Detector::custom("folded", r"(?i-u)tok_[a-z]{4}", &["TOK_"]),
                // Starts with its keyword but has look-around: windows.
                Detector::custom("bounded", r"(?-u)\bzz[0-9]{3,5}\b", &["zz"]),
                // Keyword in the middle: windows reaching back.
                Detector::custom("middle", r"(?-u)[0-9]{2}id=[a-z]{2,3}", &["ID="]),
                // No keywords: runs everywhere.
                Detector::custom("digits", r"(?-u)#[0-9]{5}", &[]),
            ],
            ..Config::default()
        })
    })
}

fn reference(sc: &Scanner, input: &[u8]) -> Vec<Finding> {
    let mut out = Vec::new();
    for d in &sc.detectors {
        let mut at = 0;
        while let Some((m, ok)) = d.find_at(input, at, input.len()) {
            at = m.end;
            if ok {
                out.push(Finding {
                    start: m.start as u64,
                    len: m.len(),
                    detector: d.name.clone(),
                });
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_path_finds_what_the_reference_finds() {
    let sc = mixed();
    let input = format!(
        "Tok_abcd TOK_ab zz123 xzz123 zz1234567 12id=ab 1ID=abc 12id=abcd #12345 \
         DB_PASSWORD=\"q7Xv2LmP9zRt4WkE8s\" {} token:{}",
        super::corpus::generate::expand("{crc:ghp}", &mut super::corpus::generate::Rng::new(3)),
        fake(ALNUM, 20)
    );
    let want = reference(sc, input.as_bytes());
    assert!(want.len() >= 8, "{want:?}");
    assert_eq!(scan_split(sc, input.as_bytes(), &[]), want);
}

#[test]
fn a_match_at_offset_zero_waits_for_more_data() {
    // A short first chunk once let a match at offset 0 be reported before it was final.
    let sc = mixed();
    let input = format!("zz1234 ghp_{}", fake(ALNUM, 40));
    for at in 0..input.len() {
        assert_eq!(
            scan_split(sc, input.as_bytes(), &[at]),
            reference(sc, input.as_bytes()),
            "split at {at}"
        );
    }
    let token = format!("ghp_{}", fake(ALNUM, 40));
    assert_eq!(
        scan_split(sc, token.as_bytes(), &[38]),
        reference(sc, token.as_bytes())
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn findings_match_the_reference(
        parts in proptest::collection::vec(
            prop::sample::select(vec![
                "tok_", "TOK_", "Tok_", "zz", "id=", "ID=", "#", "12", "345", "abcd", "ab",
                " ", "\n", "_", "-", "=", ":", "\"", "'", "key", "Secret", "token", "PASSWORD",
                "auth", "aB3dE5gH7jK9mN1pQ2", "ghp_", "sk-", "xoxb-", "eyJ", ".", "AKIA",
                "AB2CD3EF4GH5JK6L", "-----BEGIN RSA PRIVATE KEY-----",
            ]),
            0..80,
        ),
        cuts in proptest::collection::vec(0usize..600, 0..8),
    ) {
        let sc = mixed();
        let input = parts.concat().into_bytes();
        let mut cuts = cuts;
        cuts.sort_unstable();
        prop_assert_eq!(scan_split(sc, &input, &cuts), reference(sc, &input));
    }
}

/// The labelled corpus (every built-in's positives, the near misses, benign developer
/// payloads) as the scanner sees it, whole and in 4 KiB chunks, against the reference:
/// guards the shortcuts that skip regex runs (which detectors start at their keywords,
/// anchored searches, cheap rejections) on realistic text, where most keyword hits fail.
#[test]
fn the_corpus_gives_the_reference_findings() {
    let sc = mixed();
    let text = super::corpus::all_text();
    let input = text.as_bytes();
    let want = reference(sc, input);
    assert!(want.len() > 1000, "{} findings", want.len());
    assert_eq!(scan_split(sc, input, &[]), want, "whole");
    let cuts: Vec<usize> = (1..input.len() / 4096).map(|i| i * 4096).collect();
    assert_eq!(scan_split(sc, input, &cuts), want, "4 KiB chunks");
}
