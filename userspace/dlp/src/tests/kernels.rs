//! The SIMD root search and the anchored DFA against what they stand in for: each
//! root-search kernel finds exactly the roots a plain comparison finds, needle passes and
//! scanners with either kernel or with aho-corasick find the same, and the DFA ends a
//! match where the regex does.

use proptest::prelude::*;

use super::{scan_split, secret};
use crate::known::KnownSet;
use crate::needles::{Needles, Scratch};
use crate::scanner::Scanner;
use crate::teddy::{Kernel, Lowered, MAX_ROOT, RootFilter};
use crate::{Config, Detector};

const KERNELS: [Kernel; 2] = [Kernel::Avx512, Kernel::Avx2];

const SECRET: &[u8] = b"cork-kernel-secret-Hq7Wz3Kd9Vb2";

/// Every (position, root) with the root at a position before `end` of `data`, by plain
/// comparison.
fn plain(roots: &[Vec<u8>], data: &[u8], end: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for pos in 0..end.min(data.len()) {
        for (i, r) in roots.iter().enumerate() {
            if data[pos..].starts_with(r) {
                out.push((pos, i));
            }
        }
    }
    out
}

fn filtered(filter: &RootFilter, data: &[u8], end: usize) -> Vec<(usize, usize)> {
    let mut lowered = Lowered::default();
    lowered.fill(data);
    let mut out = Vec::new();
    filter.find(&lowered, end, |pos, root| out.push((pos, root)));
    out.sort_unstable();
    out
}

/// Distinct lowercase roots of one to four bytes from a small alphabet (so that they
/// occur), some with bytes from 0x80 (they share table entries with ASCII).
fn roots() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let byte = prop::sample::select(b"abkey_-.:0\x80\xe1".to_vec());
    proptest::collection::vec(proptest::collection::vec(byte, 1..=MAX_ROOT), 1..300).prop_map(
        |mut roots| {
            roots.sort();
            roots.dedup();
            roots
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn root_filter_finds_exactly_the_roots(
        roots in roots(),
        data in proptest::collection::vec(
            prop::sample::select(b"abkey_-.:0\x80\xe1AK ".to_vec()), 0..700),
        end in 0usize..800,
    ) {
        let lower = data.to_ascii_lowercase();
        let want = plain(&roots, &lower, end);
        for kernel in KERNELS {
            if let Some(filter) = RootFilter::new(&roots, kernel) {
                prop_assert_eq!(filtered(&filter, &data, end), want.clone(), "{:?}", kernel);
            }
        }
    }
}

/// A root at every offset around the 32- and 64-byte blocks and the end of the data.
#[test]
fn root_filter_at_block_edges() {
    let roots: Vec<Vec<u8>> = [&b"k"[..], b"ke", b"key", b"key_", b"y_"]
        .iter()
        .map(|r| r.to_vec())
        .collect();
    for kernel in KERNELS {
        let Some(filter) = RootFilter::new(&roots, kernel) else {
            continue;
        };
        // The AVX-512 kernel takes four blocks of 64 at a time where it can.
        for len in [
            1, 3, 4, 31, 32, 33, 63, 64, 65, 66, 127, 128, 129, 191, 192, 193, 256, 257,
        ] {
            for at in 0..len {
                let mut data = vec![b'.'; len];
                for (k, b) in b"KEY_".iter().enumerate().take(len - at) {
                    data[at + k] = *b;
                }
                for end in [len, len.saturating_sub(1), at, at + 1] {
                    let lower = data.to_ascii_lowercase();
                    assert_eq!(
                        filtered(&filter, &data, end),
                        plain(&roots, &lower, end),
                        "{kernel:?}, {len} bytes, root at {at}, end {end}"
                    );
                }
            }
        }
    }
}

/// Built-ins, a custom detector and a known secret, searching roots one way.
fn full_with(kernel: Option<Kernel>) -> Scanner {
    Scanner::with_kernel(
        &Config {
            custom: vec![Detector::custom(
                "acme-order-id",
                "ACME-[0-9]{12}",
                &["ACME-"],
            )],
            known_secrets: vec![secret("REAL", SECRET)],
            ..Config::default()
        },
        kernel,
    )
    .expect("scanner builds")
}

/// What a needle pass finds: keyword starts (position, entry) and known-secret starts
/// (position, pattern), in order.
type Found = (Vec<(usize, u32)>, Vec<(usize, usize)>);

fn needles_found(needles: &Needles, input: &[u8]) -> Found {
    let mut scratch = Scratch::default();
    let mut known = Vec::new();
    needles.scan(input, 0, input.len(), &mut scratch, |p, n| {
        known.push((p, n))
    });
    let mut found = scratch.found().to_vec();
    found.sort_unstable();
    found.dedup();
    (found, known)
}

#[test]
fn every_root_search_finds_the_same_needles() {
    let sc = full_with(None);
    let set = KnownSet::new(&[secret("REAL", SECRET)], crate::DEFAULT_FRAGMENT_MIN_LEN)
        .expect("known secrets")
        .expect("one secret");
    let text = format!(
        "{}\n{}",
        super::corpus::all_text(),
        String::from_utf8_lossy(SECRET)
    );
    let build = |kernel| {
        Needles::new(&sc.detectors, Some(&set), kernel)
            .expect("needles build")
            .expect("there are needles")
    };
    let plain = needles_found(&build(None), text.as_bytes());
    assert!(
        plain.0.len() > 1000 && !plain.1.is_empty(),
        "{} {}",
        plain.0.len(),
        plain.1.len()
    );
    for kernel in KERNELS {
        let found = needles_found(&build(Some(kernel)), text.as_bytes());
        assert!(found == plain, "{kernel:?}");
    }
}

#[test]
fn every_root_search_gives_the_same_findings() {
    let text = super::corpus::all_text();
    let input = format!(
        "{}\nACME-123456789012 {}",
        &text[..text.floor_char_boundary(60_000)],
        String::from_utf8_lossy(SECRET)
    );
    let input = input.as_bytes();
    let cuts: Vec<usize> = (1..input.len()).step_by(4093).collect();
    let plain = scan_split(&full_with(None), input, &cuts);
    assert!(plain.len() > 100, "{} findings", plain.len());
    for kernel in KERNELS {
        let sc = full_with(Some(kernel));
        assert_eq!(scan_split(&sc, input, &cuts), plain, "{kernel:?}");
    }
}

#[test]
fn anchored_dfa_ends_matches_where_the_regex_does() {
    let sc = full_with(None);
    let text = super::corpus::all_text();
    let (input, lower) = (text.as_bytes(), text.to_ascii_lowercase());
    let mut tried = 0;
    for d in &sc.detectors {
        if !d.has_anchored() {
            continue;
        }
        for k in &d.keywords {
            let k = k.to_ascii_lowercase();
            for (at, _) in lower.match_indices(&k) {
                let limit = (at + d.max_len).min(input.len());
                assert_eq!(
                    d.find_anchored(input, at, limit),
                    d.find_anchored_by_regex(input, at, limit),
                    "{} at {at}",
                    d.name
                );
                tried += 1;
            }
        }
    }
    assert!(tried > 1000, "{tried} searches");
}

/// A keyword hit the DFA rejects holds no match, whatever follows the bytes it saw: tried
/// with the data cut short after the keyword too (a stream's hit near the end of what
/// has come so far).
#[test]
fn rejected_keyword_hits_hold_no_match() {
    let sc = full_with(None);
    let text = super::corpus::all_text();
    let (input, lower) = (text.as_bytes(), text.to_ascii_lowercase());
    let (mut tried, mut rejected) = (0, 0);
    for d in &sc.detectors {
        for (n, written) in d.keywords.iter().enumerate() {
            let k = written.to_ascii_lowercase();
            for (at, _) in lower.match_indices(&k) {
                // The needle pass finds an exact keyword only as written.
                if d.starts_exact && !input[at..].starts_with(written.as_bytes()) {
                    continue;
                }
                let limit = (at + d.max_len + crate::search::LOOKAROUND).min(input.len());
                let matched = d
                    .find_at(input, at, limit)
                    .is_some_and(|(m, _)| m.start == at);
                for cut in [at + k.len(), at + k.len() + 3, at + 20, limit] {
                    let hay = &input[..cut.min(input.len())];
                    // Skipping the keyword, and walking it (no keyword index).
                    for keyword in [n, usize::MAX] {
                        if d.rejects(hay, at, keyword) {
                            assert!(!matched, "{} at {at}, cut at {cut}", d.name);
                            rejected += 1;
                        }
                        tried += 1;
                    }
                }
            }
        }
    }
    assert!(rejected > 5000, "{rejected} of {tried} rejected");
}

/// Every position where a known-secret pattern starts, with the longest one, by plain
/// comparison.
fn plain_known(set: &KnownSet, hay: &[u8]) -> Vec<(usize, usize)> {
    let patterns: Vec<&[u8]> = set.needles().collect();
    (0..hay.len())
        .filter_map(|p| {
            (patterns.iter().enumerate())
                .filter(|(_, n)| hay[p..].starts_with(n))
                .max_by_key(|(_, n)| n.len())
                .map(|(i, _)| (p, i))
        })
        .collect()
}

/// Known secrets, and text made of them: whole, in fragments, encoded, with the case of
/// some letters changed, between noise.
fn secrets_and_text() -> impl Strategy<Value = (Vec<Vec<u8>>, usize, Vec<u8>)> {
    let value = proptest::collection::vec(prop::sample::select(b"corkeyS3-7_".to_vec()), 8..60);
    (
        proptest::collection::vec(value, 1..4),
        prop::sample::select(vec![8usize, 12, 20]),
        proptest::collection::vec((0usize..6, any::<usize>(), any::<usize>()), 0..12),
    )
        .prop_map(|(values, fragment, pieces)| {
            let mut text = Vec::new();
            for (kind, a, b) in pieces {
                let v = &values[a % values.len()];
                let (s, e) = (a % v.len(), (a % v.len()) + b % (v.len() + 1 - a % v.len()));
                match kind {
                    0 => text.extend_from_slice(v),
                    1 => text.extend_from_slice(&v[s..e]),
                    2 => text.extend(crate::known::base64(
                        v,
                        crate::known::ALPHABETS[b % 2],
                        true,
                    )),
                    3 => text.extend(crate::known::hex(v, b"0123456789abcdef")),
                    4 => text.extend(v.iter().map(|c| {
                        if b % 3 == 0 {
                            c.to_ascii_uppercase()
                        } else {
                            *c
                        }
                    })),
                    _ => text.extend_from_slice(&b"cork key sk- noise 0123456789"[..b % 30]),
                }
            }
            (values, fragment, text)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn known_secret_starts_match_a_plain_search((values, fragment, text) in secrets_and_text()) {
        let secrets: Vec<_> = values.iter().enumerate()
            .map(|(i, v)| secret(&format!("S{i}"), v)).collect();
        let set = KnownSet::new(&secrets, fragment).expect("valid secrets").expect("secrets");
        // Keywords whose roots are anchors too.
        let detectors: Vec<_> = [("cork", r"cork[a-z]{2}"), ("sk-", r"sk-[0-9]{2}")]
            .iter()
            .map(|(k, re)| std::sync::Arc::new(crate::detectors::Compiled::new(&Detector::custom(k, re, &[k]))
                .expect("detector compiles")))
            .collect();
        let want = plain_known(&set, &text);
        for kernel in [Some(Kernel::Avx512), Some(Kernel::Avx2), None] {
            let needles = Needles::new(&detectors, Some(&set), kernel)
                .expect("needles build").expect("there are needles");
            prop_assert_eq!(&needles_found(&needles, &text).1, &want, "{:?}", kernel);
        }
    }
}
