//! Known secrets in every encoding, alignment and as fragments.

use super::{scan, scanner, secret};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};

use crate::known::{ALPHABETS, base64_core};
use crate::{Config, Scanner};

const VALUE: &[u8] = b"cork-test-credential/Zq8+vX2 Lp9";
const NAME: &str = "known-secret:ACME_REAL_KEY";

fn known() -> Scanner {
    scanner(Config {
        builtin: false,
        known_secrets: vec![secret("ACME_REAL_KEY", VALUE)],
        ..Config::default()
    })
}

fn assert_found(sc: &Scanner, text: &[u8], what: &str) {
    let found = scan(sc, text);
    assert!(
        found.iter().any(|f| f.detector == NAME),
        "{what}: not found in {:?}",
        String::from_utf8_lossy(text)
    );
}

/// The `base64` crate's encoder for each of cork's alphabets, in `ALPHABETS` order.
const ENGINES: [&base64::engine::GeneralPurpose; 2] = [&STANDARD, &URL_SAFE];

/// `blob` in base64 by the `base64` crate (not by cork), with alphabet `i` of `ALPHABETS`.
fn encode(i: usize, blob: &[u8]) -> Vec<u8> {
    ENGINES[i].encode(blob).into_bytes()
}

#[test]
fn base64_core_matches_a_real_encoder() {
    for (i, alphabet) in ALPHABETS.into_iter().enumerate() {
        for align in 0..3 {
            for suffix in 0..3 {
                let mut blob = vec![0xA5u8; align];
                blob.extend_from_slice(VALUE);
                blob.extend(std::iter::repeat_n(0x5Au8, suffix));
                let encoded = encode(i, &blob);
                let core = base64_core(VALUE, align, alphabet);
                assert!(core.len() >= VALUE.len() * 4 / 3 - 3);
                assert!(
                    encoded.windows(core.len()).any(|w| w == core),
                    "align {align} suffix {suffix}"
                );
            }
        }
    }
}

#[test]
fn verbatim_hex_and_url_encodings_are_found() {
    let sc = known();
    let mut texts: Vec<(Vec<u8>, &str)> = vec![
        // Literals, written out independently of cork's own encoders.
        (VALUE.to_vec(), "verbatim"),
        (
            b"636f726b2d746573742d63726564656e7469616c2f5a71382b765832204c7039".to_vec(),
            "hex lower",
        ),
        (
            b"636F726B2D746573742D63726564656E7469616C2F5A71382B765832204C7039".to_vec(),
            "hex upper",
        ),
        (
            b"cork-test-credential%2FZq8%2BvX2%20Lp9".to_vec(),
            "url upper",
        ),
        (
            b"cork-test-credential%2fZq8%2bvX2%20Lp9".to_vec(),
            "url lower",
        ),
        (b"cork-test-credential%2FZq8%2BvX2+Lp9".to_vec(), "form"),
    ];
    for (t, _) in &mut texts {
        let mut wrapped = b"POST /x?q=".to_vec();
        wrapped.append(t);
        wrapped.extend_from_slice(b"&z=1");
        *t = wrapped;
    }
    for (t, what) in texts {
        assert_found(&sc, &t, what);
    }
}

#[test]
fn base64_in_every_alignment_and_alphabet_is_found() {
    let sc = known();
    for alphabet in 0..ALPHABETS.len() {
        for prefix in 0..6 {
            for suffix in 0..4 {
                let mut blob: Vec<u8> = (0..prefix).map(|i| b'a' + i as u8).collect();
                blob.extend_from_slice(VALUE);
                blob.extend((0..suffix).map(|i| b'0' + i as u8));
                let mut text = b"{\"data\": \"".to_vec();
                text.extend(encode(alphabet, &blob));
                text.extend_from_slice(b"\"}");
                assert_found(
                    &sc,
                    &text,
                    &format!("base64 prefix {prefix} suffix {suffix}"),
                );
            }
        }
    }
}

#[test]
fn fragments_of_min_len_are_found_and_extended() {
    let sc = known();
    let frag = &VALUE[5..25];
    let mut text = b"leak: ".to_vec();
    text.extend_from_slice(frag);
    text.extend_from_slice(b" end");
    let found = scan(&sc, &text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].start, found[0].len), (6, frag.len()));

    let mut text = b"leak: ".to_vec();
    text.extend_from_slice(&VALUE[3..14]); // 11 bytes: below the minimum
    text.extend_from_slice(b" end");
    assert!(scan(&sc, &text).is_empty());
}

#[test]
fn whole_value_is_one_finding() {
    let sc = known();
    let mut text = b"x ".to_vec();
    text.extend_from_slice(VALUE);
    text.extend_from_slice(VALUE);
    let found = scan(&sc, &text);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!((found[0].start, found[0].len), (2, VALUE.len()));
    assert_eq!(found[1].start, 2 + VALUE.len() as u64);
}

#[test]
fn a_secret_and_a_keyword_starting_at_one_place_are_both_found() {
    // Keywords and known-secret patterns share one automaton, which reports only the
    // longest needle at a position: the shorter one must still be found.
    use super::{fake, scan_split};
    let token =
        super::corpus::generate::expand("{crc:ghp}", &mut super::corpus::generate::Rng::new(5));
    let sc = scanner(Config {
        known_secrets: vec![
            // Longer than the `ghp_` keyword it starts with.
            secret("GH", token.as_bytes()),
            // Shorter than the `pypi-AgEIcHlwaS5vcmc` keyword that starts with it.
            secret("PYPI_PREFIX", b"pypi-AgEIcH"),
        ],
        ..Config::default()
    });
    // A different alphabet, so that it holds no fragment of `token`.
    let pypi = format!("pypi-AgEIcHlwaS5vcmc{}", fake("Zq8Xw2Rt5Yu7Io9Pl", 60));
    let text = format!("a {token} b {pypi} c");
    let mut want = vec![
        ("github-token", 2),
        ("known-secret:GH", 2),
        ("pypi-token", 2 + token.len() + 3),
        ("known-secret:PYPI_PREFIX", 2 + token.len() + 3),
    ];
    want.sort();
    for at in 0..=text.len() {
        let mut got: Vec<(&str, usize)> = Vec::new();
        let found = scan_split(&sc, text.as_bytes(), &[at]);
        for f in &found {
            got.push((f.detector.as_str(), f.start as usize));
        }
        got.sort();
        assert_eq!(got, want, "split at {at}");
    }
}

#[test]
fn known_secrets_split_anywhere_are_found_once_for_any_fragment_length() {
    // The needle pass finds a fragment through a block of the value up to
    // `fragment_min_len - 4` bytes after the fragment's start: a chunk boundary anywhere
    // in between must neither lose nor move a finding.
    use super::scan_split;
    use crate::known::hex;
    for fragment_min_len in [8, 12, 20] {
        let sc = scanner(Config {
            builtin: false,
            known_secrets: vec![secret("ACME_REAL_KEY", VALUE)],
            fragment_min_len,
            ..Config::default()
        });
        let mut text = b"a ".to_vec();
        text.extend_from_slice(&VALUE[3..5 + fragment_min_len]);
        text.extend_from_slice(b" b ");
        text.extend(hex(VALUE, b"0123456789abcdef"));
        text.extend_from_slice(b" c ");
        text.extend(encode(0, VALUE));
        text.extend_from_slice(b" d ");
        text.extend_from_slice(&VALUE[VALUE.len() - fragment_min_len..]);
        let whole = scan(&sc, &text);
        assert_eq!(whole.len(), 4, "fragments of {fragment_min_len}: {whole:?}");
        for at in 0..=text.len() {
            assert_eq!(
                scan_split(&sc, &text, &[at, at + 5]),
                whole,
                "fragments of {fragment_min_len}, split at {at}"
            );
        }
    }
}
