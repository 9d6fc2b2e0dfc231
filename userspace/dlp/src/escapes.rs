//! The escape view: the bytes the detectors judge, with JSON/C-style `\n`, `\r` and `\t`
//! read as the separators they stand for.
//!
//! Coding agents send file contents inside JSON strings, where a line break is the two
//! bytes `\` `n`. The `n` is a word character, so a detector anchored with `\b` would miss
//! every token that starts a line after the first. The scanner therefore searches a copy of
//! the stream in which the letter of every unescaped `\n`, `\r` or `\t` (its backslash
//! preceded by an even number of backslashes) is replaced by the control byte it encodes.
//! The replacement has the same length, so findings' offsets and lengths still point at
//! the original bytes, which is what previews, redaction and the swapper work on.
//!
//! An escape can be cut by a chunk boundary: [`apply`] returns whether the chunk ended in
//! an open escape (an unescaped backslash), and the next call starts by completing it, so
//! a stream sees the same view however it is split.

/// Rewrites `bytes` in place into the escape view. `open` says whether the bytes before
/// them ended in an unescaped backslash; returns the same for the end of `bytes`.
pub(super) fn apply(bytes: &mut [u8], open: bool) -> bool {
    let mut i = 0;
    if open {
        match bytes.first_mut() {
            Some(b) => {
                *b = control(*b);
                i = 1;
            }
            None => return true,
        }
    }
    // Most bytes are not backslashes: memchr skips to the next one. The byte after an
    // unescaped backslash is the escaped character (a second backslash included), so the
    // search resumes past it, which keeps the parity of backslash runs.
    while let Some(p) = memchr::memchr(b'\\', &bytes[i..]) {
        let letter = i + p + 1;
        match bytes.get_mut(letter) {
            Some(b) => *b = control(*b),
            None => return true,
        }
        i = letter + 1;
    }
    false
}

/// The byte an escaped character stands for in the view: the control byte of `n`, `r`
/// and `t`, anything else unchanged.
fn control(b: u8) -> u8 {
    match b {
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::apply;

    fn view(s: &str) -> String {
        let mut b = s.as_bytes().to_vec();
        apply(&mut b, false);
        String::from_utf8(b).expect("the view of UTF-8 is UTF-8")
    }

    #[test]
    fn escapes_become_separators() {
        assert_eq!(view(r"a\nb\r\nc\td"), "a\\\nb\\\r\\\nc\\\td");
    }

    #[test]
    fn escaped_backslash_is_not_an_escape() {
        assert_eq!(view(r"a\\nb"), r"a\\nb");
        assert_eq!(view(r"a\\\nb"), "a\\\\\\\nb");
        assert_eq!(view(r"\q\n"), "\\q\\\n");
    }

    #[test]
    fn a_cut_escape_is_completed_by_the_next_chunk() {
        let whole = r"x\\\ny\\z\nq\";
        let mut expected = whole.as_bytes().to_vec();
        let end_open = apply(&mut expected, false);
        assert!(end_open, "a trailing lone backslash leaves the escape open");
        for cut in 0..=whole.len() {
            let (mut a, mut b) = (
                whole.as_bytes()[..cut].to_vec(),
                whole.as_bytes()[cut..].to_vec(),
            );
            let open = apply(&mut a, false);
            assert_eq!(apply(&mut b, open), end_open, "cut at {cut}");
            a.extend_from_slice(&b);
            assert_eq!(a, expected, "cut at {cut}");
        }
    }
}
