//! Streaming: chunk boundaries, bounded memory, no secrets in findings.

use proptest::prelude::*;

use super::corpus::generate::{Rng, expand};
use super::{ALNUM, KNOWN, fake, full, scan, scan_split};
use crate::known::base64;
use crate::{Finding, REDACTION_MARKER, redact};

/// A credential generated in its issued form (valid checksums), deterministically.
fn issued(template: &str) -> String {
    expand(template, &mut Rng::new(template.len() as u64))
}

/// Text holding one of everything, with neighbouring and overlapping matches.
fn corpus() -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(b"GET /v1?key=");
    t.extend_from_slice(KNOWN);
    t.extend_from_slice(format!(" {} AKIA{}", issued("{crc:ghp}"), "AB2CD3EF4GH5JK6L").as_bytes());
    t.extend_from_slice(b"\nbody: ");
    t.extend_from_slice(&base64(
        KNOWN,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        true,
    ));
    t.extend_from_slice(b"\n");
    t.extend_from_slice(issued("{pem:EC PRIVATE KEY}").as_bytes());
    t.extend_from_slice(
        format!(
            " {}{}",
            issued("sk-{a:20}T3BlbkFJ{a:20}"),
            "\napi_token = 'Zx9qL2vB7nM4kR8tW3yP'\n"
        )
        .as_bytes(),
    );
    t.extend_from_slice(&KNOWN[7..27]);
    t.extend_from_slice(format!(" {}", issued("{jwt}")).as_bytes());
    t
}

#[test]
fn corpus_findings_are_all_there() {
    let found = scan(full(), &corpus());
    let names: Vec<_> = found.iter().map(|f| f.detector.as_str()).collect();
    for want in [
        "known-secret:REAL",
        "github-token",
        "aws-access-key-id",
        "private-key-ec",
        "openai-legacy-api-key",
        "generic-secret-assignment",
        "jwt",
    ] {
        assert!(names.contains(&want), "{want} missing: {found:?}");
    }
    // Verbatim, base64 and fragment.
    assert_eq!(
        names.iter().filter(|n| **n == "known-secret:REAL").count(),
        3,
        "{found:?}"
    );
}

#[test]
fn every_two_way_split_gives_the_same_findings() {
    let sc = full();
    let input = corpus();
    let whole = scan(sc, &input);
    for at in 0..=input.len() {
        assert_eq!(scan_split(sc, &input, &[at]), whole, "split at {at}");
    }
}

#[test]
fn a_whole_scan_finds_what_feed_and_finish_find() {
    let sc = full();
    let input = corpus();
    assert_eq!(sc.stream().scan_whole(&input), scan(sc, &input));
    for n in [0, 1, 12, 40, input.len() / 2] {
        let part = &input[..n];
        assert_eq!(
            sc.stream().scan_whole(part),
            scan(sc, part),
            "first {n} bytes"
        );
    }
}

#[test]
fn byte_at_a_time_gives_the_same_findings() {
    let sc = full();
    let input = corpus();
    let splits: Vec<usize> = (1..input.len()).collect();
    assert_eq!(scan_split(sc, &input, &splits), scan(sc, &input));
}

#[test]
fn carry_over_stays_bounded_on_a_long_stream() {
    let sc = full();
    let mut s = sc.stream();
    let filler = b"key: value, token: none; the quick brown fox eyJ sk- ghp_ AKIA ".repeat(40);
    let mut found = Vec::new();
    for i in 0..2000 {
        let n = 1 + (i * 7919) % filler.len();
        found.extend(s.feed(&filler[..n]));
        assert!(
            s.carried() <= sc.max_carry(),
            "carried {} > {}",
            s.carried(),
            sc.max_carry()
        );
    }
    s.feed(b"\n");
    found.extend(s.feed(KNOWN));
    found.extend(s.finish());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].detector, "known-secret:REAL");
    assert!(sc.max_carry() <= crate::MAX_MATCH_LEN + 64);
}

#[test]
fn settled_offset_means_reported() {
    let sc = full();
    let input = corpus();
    let all = scan(sc, &input);
    let mut s = sc.stream();
    let mut seen: Vec<Finding> = Vec::new();
    for chunk in input.chunks(17) {
        seen.extend(s.feed(chunk));
        let settled = s.settled();
        for f in all.iter().filter(|f| f.start < settled) {
            assert!(
                seen.contains(f),
                "{f:?} starts before settled {settled} but not reported"
            );
        }
    }
}

#[test]
fn findings_never_reveal_the_secret() {
    let sc = full();
    let found = scan(sc, &corpus());
    let shown = format!("{found:?}");
    let value = String::from_utf8_lossy(KNOWN);
    assert!(!shown.contains(&*value));
    assert!(!shown.contains(&value[7..27]));
    assert!(!shown.contains(&fake(ALNUM, 36)));
}

#[test]
fn redact_replaces_findings_in_the_buffer() {
    let sc = full();
    let input = corpus();
    let found = scan(sc, &input);
    let out = redact(&input, 0, &found);
    let text = String::from_utf8_lossy(&out);
    assert!(!text.contains(&*String::from_utf8_lossy(KNOWN)));
    assert!(!text.contains(&fake(ALNUM, 36)));
    assert!(text.starts_with("GET /v1?[REDACTED] [REDACTED]"), "{text}");
    // Nothing left to find but the marker-adjacent leftovers of no detector.
    assert!(scan(sc, &out).is_empty(), "{:?}", scan(sc, &out));
}

#[test]
fn redact_clips_findings_to_the_buffer() {
    let f = |start, len| Finding {
        start,
        len,
        detector: "d".into(),
    };
    // Buffer is stream bytes 100..110.
    let buf = b"0123456789";
    assert_eq!(
        redact(buf, 100, &[f(95, 7)]),
        [REDACTION_MARKER, b"23456789"].concat()
    );
    assert_eq!(
        redact(buf, 100, &[f(108, 5)]),
        [b"01234567", REDACTION_MARKER].concat()
    );
    assert_eq!(
        redact(buf, 100, &[f(102, 2), f(103, 3)]),
        [b"01", REDACTION_MARKER, b"6789"].concat()
    );
    assert_eq!(redact(buf, 100, &[f(0, 5), f(200, 5)]), buf.to_vec());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_splits_never_change_findings(
        cuts in proptest::collection::vec(0usize..2000, 0..12),
        noise in proptest::collection::vec(
            prop::sample::select(b"ab3_-=:. \n'\"keytokenghp_AKIAeyJsk-".to_vec()), 0..300),
        at in 0usize..300,
    ) {
        let sc = full();
        let mut input = corpus();
        let at = at.min(noise.len());
        input.splice(0..0, noise[..at].iter().copied());
        input.extend_from_slice(&noise[at..]);
        let mut cuts = cuts;
        cuts.sort_unstable();
        prop_assert_eq!(scan_split(sc, &input, &cuts), scan(sc, &input));
    }
}
