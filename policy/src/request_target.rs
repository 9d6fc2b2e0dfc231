//! Reading an HTTP request target the way route checks need it: one decoded path that
//! every server would agree on, or nothing.
//!
//! Servers and frameworks disagree about dot segments, `//`, backslashes, `;` parameters
//! and encoded separators (the source of many path-based access-control bypasses), so any
//! target where that disagreement could matter is refused instead of normalised.

/// A request target that passed the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestTarget {
    /// The path, percent-decoded. Decoding never creates a separator or a dot, because
    /// encoded `/`, `\` and `.` are refused.
    pub path: Vec<u8>,
    /// A git smart-HTTP push: the last path segment is `git-receive-pack`, or the query
    /// asks for `service=git-receive-pack` (the ref advertisement before a push).
    pub git_push: bool,
}

const RECEIVE_PACK: &[u8] = b"git-receive-pack";

impl RequestTarget {
    /// Reads an origin-form target (`/a/b?c=d`); `None` when it is ambiguous or malformed.
    pub(crate) fn parse(target: &str) -> Option<Self> {
        if target.bytes().any(|b| unsafe_byte(b) || b == b'#') {
            return None;
        }
        let (raw_path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        if !raw_path.starts_with('/') || raw_path.contains('\\') {
            return None;
        }
        let path = decode(raw_path, true)?;

        // Skip the empty segment before the leading `/`. Only the last segment may be
        // empty (a trailing `/`); an empty one elsewhere is a `//`.
        let segments: Vec<&[u8]> = path.split(|&b| b == b'/').skip(1).collect();
        let (last, inner) = segments.split_last()?;
        for segment in inner {
            let bare = without_params(segment);
            if bare.is_empty() || is_dot_segment(bare) {
                return None;
            }
        }
        if is_dot_segment(without_params(last)) {
            return None;
        }
        // `/repo.git/git-receive-pack/` is the same endpoint to a lenient server.
        let named = match (last.is_empty(), inner.last()) {
            (true, Some(before)) => before,
            _ => last,
        };
        let mut git_push = without_params(named).eq_ignore_ascii_case(RECEIVE_PACK);

        if let Some(query) = query {
            for pair in query.split(['&', ';']) {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                let (key, value) = (decode(key, false)?, decode(value, false)?);
                if key.eq_ignore_ascii_case(b"service") && value.eq_ignore_ascii_case(RECEIVE_PACK)
                {
                    git_push = true;
                }
            }
        }
        Some(Self { path, git_push })
    }
}

/// Control bytes and spaces: never valid in a request target.
fn unsafe_byte(b: u8) -> bool {
    b <= b' ' || b == 0x7f
}

/// `segment` without its `;parameters`, which some servers strip before routing (so
/// `..;` is `..` to them).
fn without_params(segment: &[u8]) -> &[u8] {
    segment.split(|&b| b == b';').next().unwrap_or(segment)
}

fn is_dot_segment(segment: &[u8]) -> bool {
    segment == b"." || segment == b".."
}

/// Percent-decodes `text`; `None` for a malformed escape, and in a path for an encoded
/// separator or dot or any encoded control byte or space.
fn decode(text: &str, path: bool) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let hex = bytes.get(i + 1..i + 3)?;
        let byte = (hex_value(hex[0])? << 4) | hex_value(hex[1])?;
        if path && (matches!(byte, b'/' | b'\\' | b'.') || unsafe_byte(byte)) {
            return None;
        }
        out.push(byte);
        i += 3;
    }
    Some(out)
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(target: &str) -> Option<String> {
        RequestTarget::parse(target).map(|t| String::from_utf8(t.path).unwrap())
    }

    fn push(target: &str) -> bool {
        RequestTarget::parse(target).unwrap().git_push
    }

    #[test]
    fn clean_targets_are_decoded() {
        let cases = [
            ("/", "/"),
            ("/v1/x?y=1", "/v1/x"),
            ("/v%31/x", "/v1/x"),
            ("/caf%C3%A9/", "/caf\u{e9}/"),
            ("/a.b/..c/.d", "/a.b/..c/.d"),
            ("/x;jsessionid=1", "/x;jsessionid=1"),
            ("/a/?q=%2F", "/a/"),
        ];
        for (target, want) in cases {
            assert_eq!(path(target).as_deref(), Some(want), "{target}");
        }
    }

    #[test]
    fn ambiguous_targets_are_refused() {
        for bad in [
            "",
            "*",
            "v1/x",
            "http://example.test/x",
            "/a/../b",
            "/a/./b",
            "/..",
            "/a/..;/b",
            "/a/.;x",
            "/a//b",
            "//a",
            "/a\\b",
            "/a%2fb",
            "/a%2F..",
            "/a%5cb",
            "/%2e%2e/b",
            "/%2E",
            "/a%00",
            "/a%20b",
            "/a b",
            "/a\tb",
            "/a#frag",
            "/a%",
            "/a%4",
            "/a%zz",
            "/a?x=%g0",
            "/;x/b",
        ] {
            assert_eq!(path(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn git_pushes_are_recognised() {
        for target in [
            "/o/r.git/git-receive-pack",
            "/o/r.git/git-receive-pack/",
            "/o/r/GIT-RECEIVE-PACK",
            "/o/r.git/git-receive-pac%6b",
            "/o/r.git/git-receive-pack;x=1",
            "/o/r.git/info/refs?service=git-receive-pack",
            "/o/r.git/info/refs?a=1&service=git%2Dreceive-pack",
            "/o/r.git/info/refs?%73ervice=git-receive-pack",
        ] {
            assert!(push(target), "{target}");
        }
        for target in [
            "/o/r.git/git-upload-pack",
            "/o/r.git/info/refs?service=git-upload-pack",
            "/git-receive-pack/docs",
            "/o/r.git/git-receive-packs",
        ] {
            assert!(!push(target), "{target}");
        }
    }
}
