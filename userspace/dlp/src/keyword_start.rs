//! Whether every match of a detector's regex starts with one of its keywords: then the
//! scanner tries the regex only where a keyword starts (anchored, or in a window from
//! there), instead of in windows reaching back a whole match length before each keyword.

use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::{
    Capture, Class, ClassBytes, ClassBytesRange, ClassUnicode, ClassUnicodeRange, Hir, HirKind,
    Repetition,
};

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum KeywordStart {
    Exact,
    FoldedCase,
}

/// Whether every match of `hir` provably starts with one of `keywords`, exactly or ASCII
/// case-insensitively. Prefix literal extraction gives a finite set every match starts
/// with; the limits are raised so that short case-insensitive keywords (2^n variants each)
/// are spelled out in full. Longer ones (`session_secret`: 2^13 variants) overflow any
/// limit, so the case-insensitive question is also asked of the regex with its ASCII
/// letters lowercased (see [`fold`]), where such a keyword is one literal.
pub(super) fn keyword_start(hir: &Hir, keywords: &[String]) -> Option<KeywordStart> {
    let extract = |hir: &Hir| {
        Extractor::new()
            .kind(ExtractKind::Prefix)
            .limit_literal_len(64)
            .limit_total(8192)
            .extract(hir)
    };
    let all = |seq: &regex_syntax::hir::literal::Seq, same: fn(&[u8], &[u8]) -> bool| {
        seq.literals()
            .filter(|l| !l.is_empty())
            .is_some_and(|lits| {
                lits.iter().all(|lit| {
                    let lit = lit.as_bytes();
                    keywords
                        .iter()
                        .any(|k| lit.len() >= k.len() && same(&lit[..k.len()], k.as_bytes()))
                })
            })
    };
    let seq = extract(hir);
    if all(&seq, |a, b| a == b) {
        Some(KeywordStart::Exact)
    } else if all(&seq, |a, b| a.eq_ignore_ascii_case(b))
        || all(&extract(&fold(hir)), |a, b| a.eq_ignore_ascii_case(b))
    {
        Some(KeywordStart::FoldedCase)
    } else {
        None
    }
}

/// `hir` with every ASCII upper-case letter it could match replaced by its lower case.
/// Whatever `hir` matches, lowercased (ASCII only), `fold(hir)` matches: so a prefix every
/// match of the folded regex starts with is, ASCII case-insensitively, a prefix of every
/// match of `hir`.
pub(super) fn fold(hir: &Hir) -> Hir {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => hir.clone(),
        HirKind::Literal(lit) => Hir::literal(lit.0.to_ascii_lowercase()),
        HirKind::Class(Class::Bytes(c)) => {
            let bytes = c
                .ranges()
                .iter()
                .flat_map(|r| r.start()..=r.end())
                .map(|b| b.to_ascii_lowercase());
            Hir::class(Class::Bytes(ClassBytes::new(
                bytes.map(|b| ClassBytesRange::new(b, b)),
            )))
        }
        HirKind::Class(Class::Unicode(c)) => {
            let mut ranges = Vec::new();
            for r in c.ranges() {
                let (start, end) = (r.start(), r.end());
                // The ASCII part, lowercased; the rest as it is.
                if start.is_ascii() {
                    let top = end.min('\x7f');
                    for ch in start..=top {
                        let low = ch.to_ascii_lowercase();
                        ranges.push(ClassUnicodeRange::new(low, low));
                    }
                }
                if !end.is_ascii() {
                    ranges.push(ClassUnicodeRange::new(start.max('\u{80}'), end));
                }
            }
            Hir::class(Class::Unicode(ClassUnicode::new(ranges)))
        }
        HirKind::Repetition(rep) => Hir::repetition(Repetition {
            sub: Box::new(fold(&rep.sub)),
            ..rep.clone()
        }),
        HirKind::Capture(cap) => Hir::capture(Capture {
            sub: Box::new(fold(&cap.sub)),
            ..cap.clone()
        }),
        HirKind::Concat(subs) => Hir::concat(subs.iter().map(fold).collect()),
        HirKind::Alternation(subs) => Hir::alternation(subs.iter().map(fold).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::{KeywordStart, keyword_start};

    fn start(regex: &str, keywords: &[&str]) -> Option<KeywordStart> {
        let hir = regex_syntax::ParserBuilder::new()
            .utf8(false)
            .build()
            .parse(regex)
            .expect("test regex parses");
        let keywords: Vec<String> = keywords.iter().map(|k| k.to_string()).collect();
        keyword_start(&hir, &keywords)
    }

    #[test]
    fn long_case_insensitive_keywords_start_their_matches() {
        assert_eq!(
            start(
                r"(?-u)(?i:session_secret|cookie_secret)[A-Za-z0-9_.-]{0,32}=[a-z]{8}",
                &["session_secret", "cookie_secret"],
            ),
            Some(KeywordStart::FoldedCase)
        );
        assert_eq!(
            start(r"(?i)authorization:\s*\w{4}", &["AUTHORIZATION"]),
            Some(KeywordStart::FoldedCase)
        );
        assert_eq!(
            start(r"(?-u)ghp_[a-z]{36}", &["ghp_"]),
            Some(KeywordStart::Exact)
        );
    }

    #[test]
    fn a_keyword_inside_the_match_does_not_start_it() {
        assert_eq!(
            start(r"(?-u)[a-z]{0,8}(?i:session_secret)=x", &["session_secret"]),
            None
        );
        assert_eq!(start(r"(?-u)(?i:secret)|x[0-9]", &["secret"]), None);
        // A keyword that only a case-sensitive match would start.
        assert_eq!(start(r"(?-u)(?i:abc)def", &["abcdeg"]), None);
    }
}
