//! JSON-escaped bodies: tokens on the second and later escaped lines of a JSON string are
//! found, an escaped backslash before `n` is not a line break, and the view does not
//! depend on where the stream is cut.

use super::corpus::generate::{Rng, expand};
use super::{KNOWN, detectors_of, full, scan, scan_split, scanner, secret};
use crate::Config;

/// Two corpus positives in their issued form (valid checksums), deterministically.
fn tokens() -> (String, String) {
    let aws = expand("AKIA{B32:16}", &mut Rng::new(7));
    let gh = expand("{crc:ghp}", &mut Rng::new(9));
    (aws, gh)
}

/// A JSON request body whose `content` string is three lines joined by `sep` (as JSON
/// escapes them), the tokens starting the 2nd and 3rd lines.
fn body(sep: &str) -> Vec<u8> {
    let (aws, gh) = tokens();
    format!(r##"{{"path":".env","content":"# keys{sep}{aws}{sep}{gh}{sep}"}}"##).into_bytes()
}

#[test]
fn tokens_on_later_escaped_lines_are_found() {
    for sep in [r"\n", r"\r\n", r"\t"] {
        let found = scan(full(), &body(sep));
        let names = detectors_of(&found);
        assert!(
            names.contains(&"aws-access-key-id") && names.contains(&"github-token"),
            "separator {sep}: found only {names:?}"
        );
    }
}

#[test]
fn findings_point_at_the_original_bytes() {
    let (aws, gh) = tokens();
    let text = body(r"\n");
    for f in scan(full(), &text) {
        let start = usize::try_from(f.start).expect("offset fits");
        let matched = &text[start..start + f.len];
        match f.detector.as_str() {
            "aws-access-key-id" => assert_eq!(matched, aws.as_bytes()),
            "github-token" => assert_eq!(matched, gh.as_bytes()),
            _ => {}
        }
    }
}

#[test]
fn an_escaped_backslash_before_n_is_not_a_line_break() {
    let (aws, _) = tokens();
    // `\\n` is a backslash then the letter n: the token is glued to a word character.
    let text = format!(r##"{{"content":"# keys\\n{aws}"}}"##);
    let names: Vec<String> = scan(full(), text.as_bytes())
        .into_iter()
        .map(|f| f.detector)
        .collect();
    assert!(
        !names.iter().any(|n| n == "aws-access-key-id"),
        "found {names:?}"
    );
    // Three backslashes: an escaped backslash, then an escaped newline.
    let text = format!(r##"{{"content":"# keys\\\n{aws}"}}"##);
    assert!(
        detectors_of(&scan(full(), text.as_bytes())).contains(&"aws-access-key-id"),
        "a newline after an escaped backslash is missed"
    );
}

#[test]
fn chunked_streams_see_the_same_escapes_as_one_buffer() {
    for sep in [r"\n", r"\r\n", r"\t"] {
        let text = body(sep);
        let whole = scan(full(), &text);
        // Every cut, among them each between a backslash and its letter.
        for cut in 0..=text.len() {
            assert_eq!(
                scan_split(full(), &text, &[cut]),
                whole,
                "separator {sep}, cut at {cut}"
            );
        }
        // Byte by byte: every escape is cut.
        let every: Vec<usize> = (1..text.len()).collect();
        assert_eq!(scan_split(full(), &text, &every), whole, "separator {sep}");
    }
}

#[test]
fn known_secrets_are_found_as_before() {
    let sc = scanner(Config {
        builtin: false,
        known_secrets: vec![secret("REAL", KNOWN)],
        ..Config::default()
    });
    let value = std::str::from_utf8(KNOWN).expect("ascii");
    for text in [
        format!(r##"{{"content":"a\n{value}\nb"}}"##),
        format!(r##"{{"content":"a\\n{value}\\nb"}}"##),
        format!("a\n{value}\tb"),
    ] {
        let found = scan(&sc, text.as_bytes());
        assert_eq!(detectors_of(&found), ["known-secret:REAL"], "in {text}");
        let at = text.find(value).expect("value is in the text");
        assert_eq!(found[0].start, at as u64, "in {text}");
        assert_eq!(found[0].len, KNOWN.len(), "in {text}");
    }
}

#[test]
fn a_known_secret_holding_an_escape_is_found_sent_as_is() {
    let value = br"cork\nescape\tvalue-Hq7W";
    let sc = scanner(Config {
        builtin: false,
        known_secrets: vec![secret("ESC", value)],
        ..Config::default()
    });
    let mut text = b"X-Key: ".to_vec();
    text.extend_from_slice(value);
    text.extend_from_slice(b"\r\n");
    let found = scan(&sc, &text);
    assert_eq!(detectors_of(&found), ["known-secret:ESC"]);
    assert_eq!((found[0].start, found[0].len), (7, value.len()));
}
