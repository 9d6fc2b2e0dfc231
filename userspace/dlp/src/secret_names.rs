//! Which identifiers name a secret, for the generic `name = value` check (see
//! `precision`): split into segments, a name must end a segment in a secret's word
//! (`api_key`, `DB_PASSWORD`, `clientSecret`) and hold no segment that shows it names
//! something else (`csrf_token`, `foreign_key`, `token_count`, `keyboard`).

use std::collections::HashSet;
use std::sync::OnceLock;

/// Name segments that show a name holds something other than a secret, even though it
/// contains `key`, `token`, `auth`...
const NOT_SECRET_SEGMENTS: &[&str] = &[
    "csrf",
    "xsrf",
    "foreign",
    "primary",
    "sort",
    "partition",
    "cache",
    "idempotency",
    "public",
    "pub",
    "count",
    "counts",
    "limit",
    "max",
    "min",
    "length",
    "len",
    "size",
    "type",
    "types",
    "kind",
    "name",
    "names",
    "file",
    "path",
    "dir",
    "url",
    "uri",
    "endpoint",
    "header",
    "field",
    "column",
    "col",
    "expires",
    "expiry",
    "expiration",
    "ttl",
    "timeout",
    "format",
    "prefix",
    "suffix",
    "algorithm",
    "algo",
    "alg",
    "hash",
    "hashed",
    "sha",
    "sha1",
    "sha256",
    "md5",
    "checksum",
    "digest",
    "integrity",
    "fingerprint",
    "etag",
    "commit",
    "version",
    "index",
    "idx",
    "cursor",
    "page",
    "next",
    "prev",
    "event",
    "id",
    "ids",
    "uuid",
    "usage",
    "budget",
    "method",
    "mode",
    "provider",
    "policy",
    "ref",
    "reference",
    "label",
    "map",
    "lookup",
    "store",
    "range",
    "window",
    "rate",
    "interval",
    "schema",
    "mapping",
    "author",
    "authors",
    "authority",
    "authorize",
    "authorization_url",
    "tokenizer",
    "tokenize",
    "tokenized",
    "tokens",
    "keys",
    "keyboard",
    "keyword",
    "keywords",
    "keycode",
    "keystroke",
    "keyframe",
    "keyframes",
    "keypress",
    "keydown",
    "keyup",
    "monkey",
    "turkey",
    "donkey",
    "hockey",
    "jockey",
    "whiskey",
    "passwordless",
    "hint",
    "placeholder",
    "regex",
    "pattern",
    "validation",
    "strength",
    "policy",
    "reset",
    "salt",
    "nonce",
    "iv",
    "state",
    "code_verifier",
    "challenge",
    "template",
    "example",
    "sample",
    "test",
    "mock",
    "fake",
    "dummy",
    "enabled",
    "enable",
    "disabled",
    "required",
    "flag",
    "env",
    "var",
    "variable",
];

/// Name segments that name a secret: exactly, or as the end of a concatenation
/// (`apikey`, `clientsecret`, `authtoken`).
const SECRET_ENDINGS: &[&str] = &[
    "key",
    "secret",
    "token",
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "credential",
    "credentials",
    "auth",
];

/// Lowercase segments of an identifier: split at `_`, `-`, `.` and camelCase humps.
pub(super) fn segments(name: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for &b in name {
        if matches!(b, b'_' | b'-' | b'.') {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if b.is_ascii_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = b.is_ascii_lowercase() || b.is_ascii_digit();
        cur.push(char::from(b.to_ascii_lowercase()));
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Whether an identifier's segments name a secret (`api_key`, `clientSecret`) rather than
/// only contain the word (`csrf_token`, `token_count`).
pub(super) fn name_is_secret(segments: &[String]) -> bool {
    // A set, not the list: every generic candidate's name segments are looked up.
    static NOT_SECRET: OnceLock<HashSet<&str>> = OnceLock::new();
    let not_secret = NOT_SECRET.get_or_init(|| NOT_SECRET_SEGMENTS.iter().copied().collect());
    if segments
        .iter()
        .any(|s| not_secret.contains(s.as_str()) || s.contains("csrf") || s.contains("xsrf"))
    {
        return false;
    }
    segments
        .iter()
        .any(|s| SECRET_ENDINGS.iter().any(|e| s.ends_with(e)) || s.starts_with("passw"))
}
