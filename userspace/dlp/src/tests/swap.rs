//! Credential swapping: leftmost-longest, streaming equals whole, values never shown.

use proptest::prelude::*;

use crate::swap::{SwapError, Swapper};

fn swapper(pairs: &[(&str, &str)]) -> Swapper {
    Swapper::new(
        pairs
            .iter()
            .map(|(f, t)| (f.as_bytes().to_vec(), t.as_bytes().to_vec()))
            .collect(),
    )
    .expect("swapper builds")
}

fn streamed(sw: &Swapper, input: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut s = sw.stream();
    let mut out = Vec::new();
    let mut from = 0;
    for &at in cuts.iter().chain(std::iter::once(&input.len())) {
        let at = at.clamp(from, input.len());
        out.extend(s.feed(&input[from..at]));
        assert!(s.held() <= sw.max_held());
        from = at;
    }
    out.extend(s.finish());
    out
}

#[test]
fn placeholders_become_real_values_and_back() {
    let sw = swapper(&[("CORK_PLACEHOLDER_GH", "ghp_fakeRealValue1")]);
    let req = b"Authorization: token CORK_PLACEHOLDER_GH";
    let real = sw.swap_all(req).unwrap();
    assert_eq!(real, b"Authorization: token ghp_fakeRealValue1");
    assert_eq!(sw.reverse().unwrap().swap_all(&real).unwrap(), req);
    assert_eq!(sw.swap_all(b"nothing to see"), None);
}

#[test]
fn leftmost_longest_and_non_overlapping() {
    let sw = swapper(&[("ab", "1"), ("abc", "2"), ("bcd", "3"), ("d", "4")]);
    // `abc` is longer than `ab` at 0; `bcd` overlaps it and loses; `d` stays free.
    assert_eq!(sw.swap_all(b"xabcdx").unwrap(), b"x24x");
    assert_eq!(sw.swap_all(b"abab").unwrap(), b"11");
    for at in 0..=6 {
        assert_eq!(streamed(&sw, b"xabcdx", &[at]), b"x24x", "cut at {at}");
    }
}

#[test]
fn a_value_straddling_chunks_is_replaced() {
    let sw = swapper(&[("PLACEHOLDER-0123456789", "real")]);
    let input = b"a=PLACEHOLDER-0123456789&b=PLACEHOLDER-0123456789";
    let whole = sw.swap_all(input).unwrap();
    assert_eq!(whole, b"a=real&b=real");
    let cuts: Vec<usize> = (1..input.len()).collect();
    assert_eq!(streamed(&sw, input, &cuts), whole);
}

#[test]
fn bad_pairs_are_refused_without_values() {
    let e = Swapper::new(vec![
        (b"x".to_vec(), b"y".to_vec()),
        (Vec::new(), b"z".to_vec()),
    ]);
    assert!(matches!(e, Err(SwapError::EmptyFrom { index: 1 })));
    let e = Swapper::new(vec![
        (b"SECRET_A".to_vec(), b"1".to_vec()),
        (b"SECRET_A".to_vec(), b"2".to_vec()),
    ])
    .unwrap_err();
    assert!(matches!(e, SwapError::DuplicateFrom { first: 0, index: 1 }));
    assert!(!e.to_string().contains("SECRET_A"));
}

#[test]
fn debug_never_shows_values() {
    let sw = swapper(&[("CORK_PLACEHOLDER_X", "real-secret-value")]);
    let mut s = sw.stream();
    s.feed(b"CORK_PLACEHOLDER");
    let shown = format!("{sw:?} {s:?}");
    assert!(!shown.contains("CORK_PLACEHOLDER"), "{shown}");
    assert!(!shown.contains("real-secret"), "{shown}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn streaming_equals_whole(
        pairs in proptest::collection::btree_map("[abc]{1,5}", "[xyz]{0,4}", 1..6),
        input in "[abc]{0,80}",
        cuts in proptest::collection::vec(0usize..80, 0..10),
    ) {
        let sw = Swapper::new(
            pairs.into_iter().map(|(f, t)| (f.into_bytes(), t.into_bytes())).collect(),
        ).unwrap();
        let mut cuts = cuts;
        cuts.sort_unstable();
        let whole = sw.swap_all(input.as_bytes()).unwrap_or_else(|| input.clone().into_bytes());
        prop_assert_eq!(streamed(&sw, input.as_bytes(), &cuts), whole);
    }
}
