//! The blob filter (see `blob`): base64 of random data is not a secret, however it is
//! wrapped, and a token pattern that turns up inside it by chance is not a finding;
//! tokens in text, in URLs, on lines of their own and right next to a blob still are, and
//! so is a known secret encoded inside one.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};

use super::corpus::generate::{Rng, expand};
use super::corpus::positives::TEMPLATES;
use super::{KNOWN, full, scan};
use crate::Finding;

/// Blobs per form of the full check; the rarer forms get a few.
const BLOBS: u64 = 64;
const RARE_FORM_BLOBS: u64 = 8;
const BLOB_BYTES: usize = 1 << 20;

/// `BLOB_BYTES` pseudo-random bytes, the same for a seed on every run.
pub(super) fn binary(seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..BLOB_BYTES / 8)
        .flat_map(|_| rng.next().to_le_bytes())
        .collect()
}

/// How a blob is written out.
#[derive(Debug, Clone, Copy)]
pub(super) struct Form {
    pub url_safe: bool,
    /// Line width; 0: one line.
    pub width: usize,
    pub line_break: &'static str,
}

pub(super) const PLAIN: Form = Form {
    url_safe: false,
    width: 0,
    line_break: "",
};
/// MIME: 76 columns, CRLF.
pub(super) const MIME: Form = Form {
    url_safe: false,
    width: 76,
    line_break: "\r\n",
};
const RARE_FORMS: [Form; 3] = [
    // PEM and OpenSSL.
    Form {
        url_safe: false,
        width: 64,
        line_break: "\n",
    },
    // Wrapped, inside a JSON string.
    Form {
        url_safe: false,
        width: 60,
        line_break: "\\n",
    },
    Form {
        url_safe: true,
        width: 0,
        line_break: "",
    },
];

impl Form {
    pub fn encode(self, bytes: &[u8]) -> Vec<u8> {
        let engine = if self.url_safe { &URL_SAFE } else { &STANDARD };
        self.wrap(&engine.encode(bytes).into_bytes())
    }

    pub fn wrap(self, text: &[u8]) -> Vec<u8> {
        if self.width == 0 {
            return text.to_vec();
        }
        let mut out = Vec::with_capacity(text.len() + text.len() / self.width * 4 + 4);
        for line in text.chunks(self.width) {
            out.extend_from_slice(line);
            out.extend_from_slice(self.line_break.as_bytes());
        }
        out
    }

    /// Whether every byte of `token` is in this form's alphabet.
    fn holds(self, token: &[u8]) -> bool {
        let symbols: &[u8] = if self.url_safe { b"-_" } else { b"+/" };
        token
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || symbols.contains(b))
    }
}

/// Each built-in the blob filter applies to, with a credential in its issued form.
pub(super) fn filtered_positives() -> Vec<(String, String)> {
    let mut rng = Rng::new(7);
    full()
        .detectors
        .iter()
        .filter(|d| d.blob_filter)
        .map(|d| {
            let template = TEMPLATES
                .iter()
                .find(|(id, _)| *id == d.name)
                .map(|(_, t)| t.trim_start_matches('!'))
                .unwrap_or_else(|| panic!("no corpus template for {}", d.name));
            (d.name.clone(), expand(template, &mut rng))
        })
        .collect()
}

fn excerpt(text: &[u8], f: &Finding) -> String {
    let from = (f.start as usize).saturating_sub(40);
    let to = (f.end() as usize + 40).min(text.len());
    String::from_utf8_lossy(&text[from..to]).into_owned()
}

fn assert_nothing(text: &[u8], what: &str) {
    let found = scan(full(), text);
    assert!(
        found.is_empty(),
        "{what}: {:?}",
        found
            .iter()
            .map(|f| (&f.detector, excerpt(text, f)))
            .collect::<Vec<_>>()
    );
}

/// Seeds whose blob holds a token pattern by chance (found by scanning seeds 0..2500
/// without the filter): crates.io and Facebook tokens and a Bedrock key in one line, a
/// crates.io token, an Alibaba key id and a Google refresh token wrapped as MIME.
/// 64 MiB of random blobs hold a chance match only about half the time: without these,
/// the 64 seeds above might prove nothing.
const CHANCE_SEEDS: [(u64, Form); 6] = [
    (115, PLAIN),
    (140, PLAIN),
    (431, PLAIN),
    (748, MIME),
    (1118, MIME),
    (1405, MIME),
];

#[test]
fn random_base64_blobs_are_not_secrets() {
    for seed in 0..BLOBS {
        let bytes = binary(seed);
        for form in [PLAIN, MIME] {
            assert_nothing(&form.encode(&bytes), &format!("blob {seed}, {form:?}"));
        }
    }
    for (seed, form) in CHANCE_SEEDS {
        assert_nothing(
            &form.encode(&binary(seed)),
            &format!("blob {seed}, {form:?}"),
        );
    }
    for seed in 0..RARE_FORM_BLOBS {
        let bytes = binary(1000 + seed);
        for form in RARE_FORMS {
            assert_nothing(&form.encode(&bytes), &format!("blob {seed}, {form:?}"));
        }
    }
}

/// A blob of `form` from `seed` with every filtered format that can be spelled in its
/// alphabet written into it between two of the alphabet's symbols (which satisfy `\b`
/// and the formats' end conditions): what chance does about once per 200 MB, done on
/// purpose. Returns the text and how many were planted.
pub(super) fn with_token_shapes(form: Form, seed: u64) -> (Vec<u8>, usize) {
    let one_line = Form { width: 0, ..form };
    let mut text = one_line.encode(&binary(seed));
    let (open, close) = if form.url_safe {
        ('-', '-')
    } else {
        ('+', '/')
    };
    let mut rng = Rng::new(seed);
    let mut planted = 0;
    for (_, token) in filtered_positives() {
        if form.holds(token.as_bytes()) {
            let shape = format!("{open}{token}{close}");
            let at = rng.below(text.len() - shape.len());
            text[at..at + shape.len()].copy_from_slice(shape.as_bytes());
            planted += 1;
        }
    }
    (form.wrap(&text), planted)
}

#[test]
fn token_shapes_inside_blobs_are_not_findings() {
    let mut planted = 0;
    for (i, form) in [PLAIN, MIME].into_iter().chain(RARE_FORMS).enumerate() {
        let (text, n) = with_token_shapes(form, 2000 + i as u64);
        assert_nothing(&text, &format!("{form:?}"));
        planted += n;
    }
    assert!(planted >= 5 * 20, "only {planted} token shapes planted");
}

/// A blob of `form` from `seed` with every filtered format's credential set between
/// spaces and line breaks at random places; the findings each gives on its own, moved
/// to where it is; and how many of those are of the credential's own detector.
pub(super) fn with_tokens(form: Form, seed: u64) -> (Vec<u8>, Vec<Finding>, usize) {
    let positives = filtered_positives();
    let separators = [
        (" ", " "),
        (" ", "\n"),
        ("\n", " "),
        (" ", "\r\n"),
        ("\r\n", " "),
    ];
    let blob = form.encode(&binary(seed));
    let mut rng = Rng::new(seed);
    let step = blob.len() / (positives.len() + 1);
    let (mut text, mut want, mut from, mut own) = (Vec::new(), Vec::new(), 0, 0);
    for (k, (name, token)) in positives.iter().enumerate() {
        let (open, close) = separators[k % separators.len()];
        let piece = format!("{open}{token}{close}");
        let alone = scan(full(), piece.as_bytes());
        own += usize::from(alone.iter().any(|f| f.detector == *name));
        let at = step * (k + 1) + rng.below(step / 2);
        text.extend_from_slice(&blob[from..at]);
        from = at;
        want.extend(shifted(alone, text.len()));
        text.extend_from_slice(piece.as_bytes());
    }
    text.extend_from_slice(&blob[from..]);
    (text, want, own)
}

/// Every filtered format's credential, set between spaces and line breaks at random
/// places in a blob, is found exactly as it is on its own.
#[test]
fn tokens_between_spaces_inside_blobs_are_found() {
    let mut own = 0;
    for (i, form) in [PLAIN, MIME].into_iter().enumerate() {
        let (text, want, n) = with_tokens(form, 3000 + i as u64);
        own += n;
        let found = scan(full(), &text);
        let lost: Vec<_> = want.iter().filter(|f| !found.contains(f)).collect();
        let extra: Vec<_> = found.iter().filter(|f| !want.contains(f)).collect();
        assert!(
            lost.is_empty() && extra.is_empty(),
            "{form:?}: lost {:?}, extra {:?}",
            lost.iter()
                .map(|f| (&f.detector, excerpt(&text, f)))
                .collect::<Vec<_>>(),
            extra
                .iter()
                .map(|f| (&f.detector, excerpt(&text, f)))
                .collect::<Vec<_>>()
        );
    }
    // Almost every credential is found on its own (the corpus's recall).
    let all = 2 * filtered_positives().len();
    assert!(own * 100 >= all * 95, "{own} of {all}");
}

/// A list of credentials, one per line, is a list of credentials even where their lines
/// are as long as a blob's, and even right after or before a blob.
#[test]
fn tokens_on_lines_of_their_own_are_found() {
    let mut rng = Rng::new(60);
    let mut listed = 0;
    for d in full().detectors.iter().filter(|d| d.blob_filter) {
        let template = TEMPLATES
            .iter()
            .find(|(id, _)| *id == d.name)
            .map(|(_, t)| t.trim_start_matches('!'))
            .expect("a template per detector");
        let tokens: Vec<String> = (0..8).map(|_| expand(template, &mut rng)).collect();
        let alone: usize = tokens
            .iter()
            .map(|t| scan(full(), t.as_bytes()).len())
            .sum();
        // (Escaped in a JSON string, `\n` puts an `n` before the next token, which then
        // fails its own `\b`: a matter for the patterns, not the filter.)
        for line_break in ["\n", "\r\n"] {
            let list = tokens.join(line_break);
            let found = scan(full(), list.as_bytes());
            assert_eq!(found.len(), alone, "{}: {list}", d.name);
            // Right after and before a blob's lines.
            let blob = MIME.encode(&binary(4000)[..4096]);
            let text = [&blob, list.as_bytes(), b"\r\n", &blob].concat();
            assert_eq!(scan(full(), &text).len(), alone, "{} after a blob", d.name);
        }
        listed += 1;
    }
    assert!(listed >= 90, "{listed}");
}

/// Every format seen matching random blobs by chance (300 of 8 MiB each, in one line,
/// wrapped and URL-safe) is one the filter applies to.
#[test]
fn the_formats_chance_matched_are_filtered() {
    for name in [
        "alibaba-access-key-id",
        "aws-bedrock-api-key",
        "bitbucket-app-password",
        "crates-io-token",
        "facebook-access-token",
        "google-oauth-refresh-token",
        "replicate-api-token",
        "square-access-token",
        "typeform-token",
    ] {
        let d = full().detectors.iter().find(|d| d.name == name);
        assert!(d.is_some_and(|d| d.blob_filter), "{name}");
    }
}

/// Where real tokens sit: a URL path, a query, an assignment, JSON; each next to a blob
/// as well.
#[test]
fn tokens_in_paths_and_assignments_are_found() {
    let key = "LTAI5tAbCdEfGhIjKlMn";
    let atbb = format!("ATBB{}", super::fake(super::ALNUM, 32));
    let blob = PLAIN.encode(&binary(5000)[..64 << 10]);
    let blob = String::from_utf8(blob).expect("base64 is ASCII");
    for text in [
        format!("GET /api/v1/{key}/items/{atbb} HTTP/1.1"),
        format!("/api/v1/{key}/items\n/api/v1/{atbb}/items"),
        format!("https://api.example.test/v2/accounts/{key}/keys/{atbb}/rotate"),
        format!("key={key}&other={atbb}"),
        format!("ALIBABA_CLOUD_ACCESS_KEY_ID={key}\nBITBUCKET={atbb}\n"),
        format!("{{\"image\":\"{blob}\",\"url\":\"/api/v1/{key}/items\",\"p\":\"{atbb}\"}}"),
        format!("{blob}\n/api/v1/{key}/items\n{atbb}\n{blob}"),
        format!("{blob} {key} {atbb} {blob}"),
    ] {
        let found = scan(full(), text.as_bytes());
        // (`key=` is also the generic assignment check's.)
        let names: Vec<&str> = found
            .iter()
            .map(|f| f.detector.as_str())
            .filter(|&d| d != "generic-secret-assignment")
            .collect();
        assert_eq!(
            names,
            ["alibaba-access-key-id", "bitbucket-app-password"],
            "{}",
            text.chars().take(200).collect::<String>()
        );
    }
}

/// The threshold: a match with 255 bytes of its run outside it is a token, with 256 part
/// of a blob; line breaks after full lines count, after short ones end the run.
#[test]
fn the_run_around_a_match_decides() {
    let key = "LTAI5tAbCdEfGhIjKlMn";
    let filler = String::from_utf8(PLAIN.encode(&binary(6000)[..1024])).expect("ASCII");
    let found = |text: &str| !scan(full(), text.as_bytes()).is_empty();
    for before in [0, 1, 100, 253] {
        let after = 253 - before;
        // `/` each side of the key, in the run: 255 bytes outside the key.
        let text = format!(
            "x {}/{key}/{} x",
            &filler[..before],
            &filler[300..300 + after]
        );
        assert!(found(&text), "{before} + {after} + 2: {text}");
        let text = format!(
            "x {}/{key}/{} x",
            &filler[..before + 1],
            &filler[300..300 + after]
        );
        assert!(!found(&text), "{} + {after} + 2: {text}", before + 1);
    }
    // Wrapped at 64, the key's line among four before and one after: the breaks
    // continue the run; `.` instead, or a line of 59 before the key's, ends it.
    let line = |i: usize| &filler[i * 64..(i + 1) * 64];
    let key_line = format!("{}/{key}/{}", &line(4)[..21], &line(4)[..21]);
    assert_eq!(key_line.len(), 64);
    let wrapped =
        |sep: &str, fourth: &str| [line(0), line(1), line(2), fourth, &key_line, line(5)].join(sep);
    for sep in ["\n", "\r\n", "\\n", "\\r\\n"] {
        assert!(!found(&wrapped(sep, line(3))), "{sep:?}");
        assert!(found(&wrapped(sep, &line(3)[..59])), "{sep:?}");
    }
    assert!(found(&wrapped(".", line(3))));
}

/// A token pattern that is a whole line of a wrapped blob (it ends where the line does)
/// is part of the blob; the same line among tokens is a token.
#[test]
fn a_whole_line_is_judged_by_its_neighbours() {
    let token = format!("EAAA{}", super::fake(super::ALNUM, 60));
    let mut blob = PLAIN.encode(&binary(7000)[..6 << 10]);
    // The line before it holds a `/`, as five in six random lines do.
    blob[64 * 9 + 10] = b'/';
    blob[64 * 10..64 * 11].copy_from_slice(token.as_bytes());
    let wrapped = Form {
        url_safe: false,
        width: 64,
        line_break: "\n",
    }
    .wrap(&blob);
    assert!(scan(full(), &wrapped).is_empty());
    // Neighbours of another width, or without `+` and `/`, are not a blob's.
    let list = [
        super::fake(super::ALNUM, 64),
        token.clone(),
        super::fake(super::ALNUM, 64),
    ]
    .join("\n");
    assert_eq!(
        super::detectors_of(&scan(full(), list.as_bytes())),
        ["square-access-token"]
    );
    let ragged = [
        &filler_line(&blob, 0, 63),
        token.as_str(),
        &filler_line(&blob, 1, 65),
    ]
    .join("\n");
    assert_eq!(
        super::detectors_of(&scan(full(), ragged.as_bytes())),
        ["square-access-token"]
    );
}

fn filler_line(blob: &[u8], i: usize, width: usize) -> String {
    String::from_utf8(blob[i * 100..i * 100 + width].to_vec()).expect("ASCII")
}

/// Known secrets are found by their encodings, which the filter leaves alone: one
/// encoded inside a blob is found.
#[test]
fn a_known_secret_encoded_inside_a_blob_is_found() {
    for (align, form) in [(0, PLAIN), (1, PLAIN), (2, PLAIN), (0, RARE_FORMS[2])] {
        let mut bytes = binary(8000 + align as u64);
        let at = BLOB_BYTES / 2 + align;
        bytes[at..at + KNOWN.len()].copy_from_slice(KNOWN);
        let found = scan(full(), &form.encode(&bytes));
        assert_eq!(
            super::detectors_of(&found),
            ["known-secret:REAL"],
            "{align} {form:?}"
        );
    }
}

/// `found`, moved `by` bytes on in the stream.
fn shifted(found: Vec<Finding>, by: usize) -> Vec<Finding> {
    found
        .into_iter()
        .map(|f| Finding {
            start: f.start + by as u64,
            ..f
        })
        .collect()
}
