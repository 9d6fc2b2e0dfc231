//! Chance matches inside base64 blobs.
//!
//! A self-identifying token format is a short prefix and a run of alphanumerics (`LTAI`
//! and 12 to 20 more, `ATBB` and 32 or more, `cio` and 32). Base64 of random bytes (an
//! image in a JSON body, an attachment, a certificate) holds any given four-character
//! prefix about once per 16 MiB, and its `+` and `/` satisfy the `\b` and "no token
//! character follows" ends of those patterns. Of 200 to 300 random 8 MiB files per form
//! (one line, wrapped at 76, 64 or 60 columns, URL-safe), between one in 14 and one in
//! 50 matched a built-in format once encoded. Such a match is not a token someone wrote
//! there but a window of the blob.
//!
//! [`in_blob`] tells the two apart by the run of the base64 alphabet the match's subject
//! lies in. A token in text sits between characters base64 does not use (a space, a
//! quote, `=`, `.`, `&`, `:`), or in a short run (a URL path `/api/v1/<token>/items` is a
//! few dozen characters); a window of a blob has the rest of the blob around it. A
//! subject with at least [`MIN_OUTSIDE`] bytes of its run outside it is part of a blob.
//! A run is of one alphabet (standard, with `+` and `/`, or URL-safe, with `-` and `_`)
//! and goes on over the line breaks of wrapped base64 (MIME, PEM, most tools; raw or
//! escaped in a JSON string): lines of one width between 60 and 80 columns, the last one
//! possibly shorter. `=` is padding: it ends an encoding, and the run.
//!
//! Known secrets are not filtered: one *encoded* inside a blob is still found by its
//! base64 forms (see `known`). A built-in format pasted verbatim into the middle of a
//! blob is no longer found; no one writes a token there but to hide it, and whoever
//! hides it can as well encode it.

use std::ops::Range;

/// Run bytes outside the subject (both sides together) that make a match part of a blob.
///
/// What a real token has around it without a separator is a prefix or a path segment or
/// two: every positive of the corpus (in headers, JSON, URLs, env files, code) has at
/// most 4 bytes (the prefix outside its subject, `ABSK`), and a URL path of only
/// letters, digits and `/` past a few hundred bytes is rare. A chance match needs a
/// blob: unfiltered, random base64 held one per 150 to 550 MB depending on its form, so
/// the short runs under the threshold (a 300-byte value in a JSON document) almost never
/// hold one, and every chance match measured had megabytes of blob around it. 256
/// leaves a wide margin on both sides.
pub(super) const MIN_OUTSIDE: usize = 256;

/// Line widths of wrapped base64: 76 (MIME, GNU `base64`), 64 (PEM, OpenSSL), 60, with a
/// little margin. A line break goes on with a run only after a line this wide.
const MIN_WRAP: usize = 60;
const MAX_WRAP: usize = 80;

/// The longest line break: `\r\n` escaped in a JSON string.
const MAX_BREAK: usize = 4;

/// How far [`in_blob`] reads on each side of the subject: the run it counts, plus the
/// break and the line after it that decide whether the run goes on (a line's width is
/// known once a byte past [`MAX_WRAP`] is read), plus the break and byte after that line
/// that tell whether it is a blob's last. The scanner keeps and waits for this many
/// bytes around a match of a detector it filters, so a match near a chunk's edge is
/// judged as it would be in one buffer.
pub(super) const REACH: usize = MIN_OUTSIDE + 2 * MAX_BREAK + MAX_WRAP + 2;

/// The two base64 alphabets: they share the alphanumerics.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Alphabet {
    Standard,
    UrlSafe,
}

impl Alphabet {
    fn has(self, b: u8) -> bool {
        b.is_ascii_alphanumeric()
            || match self {
                Alphabet::Standard => matches!(b, b'+' | b'/'),
                Alphabet::UrlSafe => matches!(b, b'-' | b'_'),
            }
    }
}

/// The longest keyword a blob spells by chance often enough to matter: a given literal
/// of `n` base64 characters turns up once in about 64^n bytes, 16 MiB for four, 280 TB
/// for eight.
const MAX_CHANCE_KEYWORD: usize = 8;

/// Whether a blob can hold `keyword`, and so a match starting with it, by chance: it is
/// spelled in one of the base64 alphabets, and short.
pub(super) fn spelled_by_chance(keyword: &[u8]) -> bool {
    keyword.len() <= MAX_CHANCE_KEYWORD
        && [Alphabet::Standard, Alphabet::UrlSafe]
            .into_iter()
            .any(|a| keyword.iter().all(|&b| a.has(b)))
}

/// Whether `subject` (a range of `hay`) lies inside a base64 blob: a run of one base64
/// alphabet with at least [`MIN_OUTSIDE`] bytes outside the subject. Reads at most
/// [`REACH`] bytes each side of the subject; the ends of `hay` are taken for the ends of
/// the stream.
pub(super) fn in_blob(hay: &[u8], subject: Range<usize>) -> bool {
    if subject.is_empty() || subject.end > hay.len() {
        return false;
    }
    let (w, s) = window(hay, subject);
    [Alphabet::Standard, Alphabet::UrlSafe]
        .into_iter()
        .any(|a| outside(w, s.clone(), a) >= MIN_OUTSIDE)
}

/// The bytes [`in_blob`] may read, and the subject's place in them. Cutting here makes
/// the bound hold by construction.
fn window(hay: &[u8], subject: Range<usize>) -> (&[u8], Range<usize>) {
    let from = subject.start.saturating_sub(REACH);
    let to = subject.end.saturating_add(REACH).min(hay.len());
    (&hay[from..to], subject.start - from..subject.end - from)
}

/// Bytes of the `a` run around subject `s` outside it, counted until [`MIN_OUTSIDE`] is
/// reached (the result may pass it); 0 when the subject is not all in `a`.
///
/// Compared with [`MIN_OUTSIDE`], the result does not depend on where `w` was cut as
/// long as [`REACH`] bytes each side are there: counting stops at the threshold, and what
/// decides whether a run goes on lies within [`REACH`] of the subject.
fn outside(w: &[u8], s: Range<usize>, a: Alphabet) -> usize {
    if !w[s.clone()].iter().all(|&b| a.has(b)) {
        return 0;
    }
    let line = s.start - segment_back(w, s.start, a)..s.end + segment_ahead(w, s.end, a);
    if line == s && !wrapped_line(w, line.clone(), a) {
        return 0;
    }
    let mut n = line.len() - s.len();
    let mut first = line.clone();
    while n < MIN_OUTSIDE {
        match line_before(w, first.start, a) {
            Some(prev) if joins(w, prev.clone(), first.clone(), a) => {
                n += first.start - prev.start;
                first = prev;
            }
            _ => break,
        }
    }
    let mut last = line;
    while n < MIN_OUTSIDE {
        match line_after(w, last.end, a) {
            Some(next) if joins(w, last.clone(), next.clone(), a) => {
                n += next.end - last.end;
                last = next;
            }
            _ => break,
        }
    }
    n
}

/// Whether the line break between lines `first` and `second` is one of wrapped base64's:
/// `first` is as wide as wrapped lines are, and `second` as wide, or narrower and the
/// last (a blob's last line; a token on the line after a blob's, or a blob after a
/// line with a token on it, does not join it).
fn joins(w: &[u8], first: Range<usize>, second: Range<usize>, a: Alphabet) -> bool {
    let width = first.len();
    let last = || line_after(w, second.end, a).is_none_or(|l| l.is_empty());
    (MIN_WRAP..=MAX_WRAP).contains(&width)
        && (second.len() == width || (!second.is_empty() && second.len() < width && last()))
}

/// Whether `line`, a subject that is a whole line, is one of a wrapped blob's lines
/// rather than a token on a line of its own. A list of tokens, one per line, is common;
/// a token pattern ending exactly where a blob's line does is not, but happens (one
/// 8 MiB blob in a few hundred wrapped at 64 columns). A blob's line lies between line
/// breaks and has a neighbour of its width holding a `+` or `/`: five in six random
/// lines of that width do, and the alphanumeric tokens of a list do not. URL-safe base64
/// is rarely wrapped and its `-` and `_` are in many tokens: a whole line of it is taken
/// for a token.
fn wrapped_line(w: &[u8], line: Range<usize>, a: Alphabet) -> bool {
    let blob_like = |l: &Range<usize>| {
        l.len() == line.len() && w[l.clone()].iter().any(|b| matches!(b, b'+' | b'/'))
    };
    let (Some(prev), Some(next)) = (line_before(w, line.start, a), line_after(w, line.end, a))
    else {
        return false;
    };
    a == Alphabet::Standard
        && (MIN_WRAP..=MAX_WRAP).contains(&line.len())
        && (blob_like(&prev) || blob_like(&next))
}

/// The line of `a` before the line break that ends at `start`; `None` without a break.
fn line_before(w: &[u8], start: usize, a: Alphabet) -> Option<Range<usize>> {
    let k = break_before(w, start);
    let end = start - k;
    (k > 0).then(|| end - segment_back(w, end, a)..end)
}

/// The line of `a` after the line break that starts at `end`; `None` without a break.
fn line_after(w: &[u8], end: usize, a: Alphabet) -> Option<Range<usize>> {
    let k = break_at(w, end);
    let start = end + k;
    (k > 0).then(|| start..start + segment_ahead(w, start, a))
}

/// Characters of `a` just before `end`, back to a line break or anything else.
fn segment_back(w: &[u8], end: usize, a: Alphabet) -> usize {
    let mut i = end;
    while i > 0 && a.has(w[i - 1]) && break_before(w, i) == 0 {
        i -= 1;
    }
    end - i
}

/// Characters of `a` from `start` on, up to a line break or anything else.
fn segment_ahead(w: &[u8], start: usize, a: Alphabet) -> usize {
    let mut i = start;
    while i < w.len() && a.has(w[i]) && break_at(w, i) == 0 {
        i += 1;
    }
    i - start
}

/// Length of the line break ending at `end` (`\n`, `\r\n`, or either escaped as in a
/// JSON string, which the scanner's escape view shows as `\` then the control byte), 0 if
/// none.
fn break_before(w: &[u8], end: usize) -> usize {
    let head = &w[..end];
    if head.ends_with(b"\\\r\\\n") {
        4
    } else if head.ends_with(b"\r\n") || head.ends_with(b"\\\n") {
        2
    } else if head.ends_with(b"\n") {
        1
    } else {
        0
    }
}

/// Length of the line break starting at `start` (as [`break_before`]), 0 if none.
fn break_at(w: &[u8], start: usize) -> usize {
    let tail = &w[start..];
    if tail.starts_with(b"\\\r\\\n") {
        4
    } else if tail.starts_with(b"\r\n") || tail.starts_with(b"\\\n") {
        2
    } else if tail.starts_with(b"\n") {
        1
    } else {
        0
    }
}
