//! Precision: telling a credential from something shaped like one.
//!
//! Two filters. [`is_placeholder`] runs on the subject of every built-in detector: the
//! values people write where a credential would go (`EXAMPLE`, `xxxx`, `<your-token>`,
//! `${VAR}`, `changeme`, runs of one character, `0123456`). [`generic_assignment`] gates
//! the generic `name = value` check, where false blocks came from: the name must really
//! name a secret (`api_key`, `DB_PASSWORD`, `clientSecret`), not something that only
//! contains the word (`csrf_token`, `foreign_key`, `token_count`, `keyboard`; the words
//! are in `secret_names`), and the value must look generated: not a UUID, hash in a hash's place, path, dotted identifier,
//! environment variable name or word.

use std::sync::OnceLock;

use aho_corasick::AhoCorasick;

use super::checks::{looks_random, shannon_bits};
use super::secret_names::{name_is_secret, segments};

/// Words that mark a value as a stand-in (compared ASCII case-insensitively).
const PLACEHOLDER_WORDS: &[&str] = &[
    "example",
    "xxxx",
    "placeholder",
    "changeme",
    "change_me",
    "change-me",
    "redacted",
    "dummy",
    "your_",
    "your-",
    "yourapi",
    "yourkey",
    "yourtoken",
    "yoursecret",
    "insert",
    "replace",
    "sample",
    "notreal",
    "not_real",
    "not-real",
    "fake",
    "foobar",
    "secret123",
    "password123",
    "${",
    "{{",
    "%s",
    "...",
    "***",
    "<",
    ">",
];

/// Whether `v` is a placeholder rather than a value.
pub(super) fn is_placeholder(v: &[u8]) -> bool {
    if holds_placeholder_word(v) {
        return true;
    }
    if longest_run(v, |a, b| a == b) >= 6 || longest_run(v, |a, b| b == a.wrapping_add(1)) >= 6 {
        return true;
    }
    // Few distinct characters for its length: `abababab...`, `12341234...`.
    let distinct = distinct_count(v);
    v.len() >= 16 && distinct < 8 && distinct * 4 < v.len()
}

/// Whether `v` holds one of [`PLACEHOLDER_WORDS`], in any case: one automaton pass over
/// `v`. Every candidate match of the generic check (thousands per MiB of source code)
/// comes here, and comparing each word at each position was a tenth of the scan.
fn holds_placeholder_word(v: &[u8]) -> bool {
    static WORDS: OnceLock<Option<AhoCorasick>> = OnceLock::new();
    let words = WORDS.get_or_init(|| {
        AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(PLACEHOLDER_WORDS)
            .ok()
    });
    match words {
        Some(ac) => ac.is_match(v),
        // The words are fixed and a unit test builds them: never taken.
        None => PLACEHOLDER_WORDS
            .iter()
            .any(|w| contains_ignore_case(v, w.as_bytes())),
    }
}

fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len()
        && hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Length of the longest run of bytes where each follows the previous by `step`.
fn longest_run(v: &[u8], step: impl Fn(u8, u8) -> bool) -> usize {
    let mut best = usize::from(!v.is_empty());
    let mut run = 1;
    for w in v.windows(2) {
        if step(w[0], w[1]) && w[1].is_ascii_alphanumeric() {
            run += 1;
            best = best.max(run);
        } else {
            run = 1;
        }
    }
    best
}

fn distinct_count(v: &[u8]) -> usize {
    let mut seen = [false; 256];
    v.iter()
        .filter(|&&b| !std::mem::replace(&mut seen[usize::from(b)], true))
        .count()
}

/// Whether `v` (a password in a URL, a `.netrc`, a connection string) is a value rather
/// than a placeholder, mask or variable reference.
pub(super) fn is_password(v: &[u8]) -> bool {
    if v.len() < 3 || is_placeholder(v) {
        return false;
    }
    if matches!(v.first(), Some(b'$' | b'%' | b'{' | b'(' | b'[' | b'*')) {
        return false;
    }
    let lower = v.to_ascii_lowercase();
    const STAND_INS: &[&[u8]] = &[
        b"password",
        b"passwd",
        b"pass",
        b"pwd",
        b"secret",
        b"token",
        b"user",
        b"username",
        b"test",
        b"admin",
        b"root",
        b"guest",
        b"none",
        b"null",
        b"empty",
        b"default",
        b"mypassword",
        b"yourpassword",
        b"pw",
        b"xxx",
        b"tbd",
        b"todo",
        b"hunter2",
        b"letmein",
        b"qwerty",
        b"postgres",
        b"mysql",
        b"redis",
        b"rabbitmq",
        b"changeit",
        b"secret1",
        b"example",
        b"sample",
        b"demo",
        b"local",
        b"dev",
        b"development",
    ];
    !STAND_INS.contains(&lower.as_slice())
}

/// The gate of the generic assignment check. `before` ends where the match starts, `name`
/// is the matched part of the name (from the keyword on), `value` what is assigned.
pub(super) fn generic_assignment(before: &[u8], name: &[u8], value: &[u8]) -> bool {
    // The value's tests that do not depend on the name come first: most candidates fail
    // them (placeholders, UUIDs, hashes), and they cost no allocation.
    if !value_may_be_secret(value) {
        return false;
    }
    let lead = before
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        .count();
    let mut full = before[before.len() - lead..].to_vec();
    full.extend_from_slice(name);
    let segments = segments(&full);
    if !name_is_secret(&segments) {
        return false;
    }
    let bare_key = segments.len() == 1 && matches!(segments[0].as_str(), "key" | "auth");
    value_is_secret(value, bare_key)
}

/// The first tests of [`value_is_secret`], which do not depend on the name.
fn value_may_be_secret(v: &[u8]) -> bool {
    !(v.len() < 16 || is_placeholder(v) || is_uuid(v) || is_hash_literal(v))
}

/// Whether an assigned value looks generated. `bare_key`: the name is only `key` (lookup
/// keys in maps and caches are often hashes), so hex and digits alone do not count.
fn value_is_secret(v: &[u8], bare_key: bool) -> bool {
    if !value_may_be_secret(v) {
        return false;
    }
    let hex = v.iter().all(u8::is_ascii_hexdigit);
    if hex && (bare_key || v.len() < 24) {
        return false;
    }
    // ENV_VAR_NAMES and CONSTANT_NAMES.
    if v.iter()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
        && v.contains(&b'_')
    {
        return false;
    }
    if looks_structured(v) {
        return false;
    }
    let min_bits = if hex { 3.0 } else { 3.5 };
    looks_random(v, 16, min_bits) && (!hex || shannon_bits(v) >= 3.2)
}

/// 8-4-4-4-12 hex digits.
pub(super) fn is_uuid(v: &[u8]) -> bool {
    v.len() == 36
        && v.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// `sha512-...` (lockfile integrity), `sha256-...`, `md5-...`.
fn is_hash_literal(v: &[u8]) -> bool {
    [
        "sha1-", "sha256-", "sha384-", "sha512-", "md5-", "sha1=", "sha256=",
    ]
    .iter()
    .any(|p| {
        v.get(..p.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(p.as_bytes()))
    })
}

/// A path, domain or dotted identifier: parts split by `.`, `/`, `~`, `-` or `_` that are
/// each a word (lowercase letters, or an initial capital) or a number.
fn looks_structured(v: &[u8]) -> bool {
    let parts: Vec<&[u8]> = v
        .split(|b| matches!(b, b'.' | b'/' | b'~' | b'-' | b'_'))
        .filter(|p| !p.is_empty())
        .collect();
    if parts.len() < 2 {
        return false;
    }
    let wordish = |p: &[u8]| {
        let rest = if p[0].is_ascii_uppercase() {
            &p[1..]
        } else {
            p
        };
        rest.iter().all(u8::is_ascii_lowercase)
            || p.iter().all(u8::is_ascii_digit)
            || (p.len() <= 3 && p.iter().all(u8::is_ascii_alphanumeric))
    };
    parts.iter().all(|p| wordish(p))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{PLACEHOLDER_WORDS, contains_ignore_case, holds_placeholder_word};

    proptest! {
        /// The automaton finds a placeholder word exactly where comparing each word at
        /// each position does.
        #[test]
        fn placeholder_words_as_compared_one_by_one(
            parts in proptest::collection::vec(
                prop_oneof![
                    "[a-zA-Z0-9_.{}$<>%*-]{0,12}",
                    proptest::sample::select(PLACEHOLDER_WORDS).prop_map(str::to_uppercase),
                    proptest::sample::select(PLACEHOLDER_WORDS).prop_map(str::to_owned),
                ],
                0..5,
            )
        ) {
            let v = parts.concat();
            let slow = PLACEHOLDER_WORDS
                .iter()
                .any(|w| contains_ignore_case(v.as_bytes(), w.as_bytes()));
            prop_assert_eq!(holds_placeholder_word(v.as_bytes()), slow, "{:?}", v);
        }
    }
}
