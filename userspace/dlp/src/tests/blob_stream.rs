//! The blob filter across chunk boundaries: whether a match is part of a blob depends on
//! bytes up to `blob::REACH` either side of it, which may arrive in other chunks; the
//! findings must be those of one buffer however the stream is cut.

use proptest::prelude::*;

use super::blob::{MIME, PLAIN, binary, with_token_shapes, with_tokens};
use super::{full, scan_split};
use crate::{Finding, Scanner};

/// Text whose findings turn on bytes far from the match: a key with runs around it just
/// under and at the threshold, on either side, in one line and wrapped in each style,
/// with lines short of a wrapped line's width, as a whole line among blob lines and
/// among its like.
fn near_the_threshold() -> Vec<u8> {
    let key = "LTAI5tAbCdEfGhIjKlMn";
    let filler = PLAIN.encode(&binary(9000)[..2048]);
    let filler = String::from_utf8(filler).expect("base64 is ASCII");
    let mut out = String::new();
    for outside in [240, 254, 255, 256, 257, 300] {
        for before in [0, 1, outside / 3, outside - 2] {
            let after = outside - 2 - before;
            let run = format!("{}/{key}/{}", &filler[..before], &filler[600..600 + after]);
            out.push_str(&format!(" {run} ;"));
            for (width, brk) in [(64, "\n"), (76, "\r\n"), (60, "\\n"), (59, "\n")] {
                let lines: Vec<&str> = (0..run.len().div_ceil(width))
                    .map(|i| &run[i * width..((i + 1) * width).min(run.len())])
                    .collect();
                out.push_str(&format!("\"{}\"\n", lines.join(brk)));
            }
        }
    }
    let whole = format!("EAAA{}", super::fake(super::ALNUM, 60));
    for neighbours in [
        &filler[..64],
        &filler[64..127],
        &super::fake(super::ALNUM, 64),
    ] {
        out.push_str(&format!("{neighbours}\n{whole}\n{neighbours}\n;"));
    }
    out.into_bytes()
}

/// The offsets that cut `len` bytes into chunks of `size`.
fn cuts(len: usize, size: usize) -> Vec<usize> {
    (1..len.div_ceil(size)).map(|i| i * size).collect()
}

/// `input` streamed through `sc` in chunks of `size`, the findings sorted; the carry
/// stays within the scanner's bound all along.
fn in_chunks(sc: &Scanner, input: &[u8], size: usize) -> Vec<Finding> {
    let mut s = sc.stream();
    let mut found = Vec::new();
    for chunk in input.chunks(size) {
        found.extend(s.feed(chunk));
        assert!(
            s.carried() <= sc.max_carry(),
            "{} > {}",
            s.carried(),
            sc.max_carry()
        );
    }
    found.extend(s.finish());
    found.sort();
    found
}

fn one_buffer(input: &[u8]) -> Vec<Finding> {
    let mut found = full().stream().scan_whole(input);
    found.sort();
    found
}

#[test]
fn near_the_threshold_any_chunk_size_gives_one_buffers_findings() {
    let input = near_the_threshold();
    let want = one_buffer(&input);
    // Both outcomes are there: some keys are tokens, some parts of a blob.
    let keys = want
        .iter()
        .filter(|f| f.detector == "alibaba-access-key-id");
    assert!((40..190).contains(&keys.count()), "{want:?}");
    assert!(want.iter().any(|f| f.detector == "square-access-token"));
    let reach = crate::blob::REACH;
    for size in [
        1,
        2,
        3,
        7,
        64,
        255,
        256,
        reach - 1,
        reach,
        reach + 1,
        1000,
        4096,
    ] {
        assert_eq!(
            scan_split(full(), &input, &cuts(input.len(), size)),
            want,
            "chunks of {size}"
        );
    }
}

/// The same with a scanner of the filtered detectors alone: with the built-ins that
/// settle late (private keys reach 4 KiB) a shortfall of what the filter keeps would not
/// show.
#[test]
fn alone_the_filtered_detectors_keep_what_they_need() {
    let sc = Scanner::builtins_named(&["alibaba-access-key-id", "square-access-token"])
        .expect("scanner builds");
    let input = near_the_threshold();
    let mut want = sc.stream().scan_whole(&input);
    want.sort();
    assert_eq!(
        want,
        one_buffer(&input)
            .into_iter()
            .filter(|f| sc.detector(&f.detector).is_some())
            .collect::<Vec<_>>()
    );
    for size in [1, 64, 255, 256, crate::blob::REACH, 1000] {
        assert_eq!(in_chunks(&sc, &input, size), want, "chunks of {size}");
    }
}

#[test]
fn blobs_in_chunks_give_one_buffers_findings() {
    let sc = full();
    for form in [PLAIN, MIME] {
        let (shapes, _) = with_token_shapes(form, 9100);
        let (tokens, _, _) = with_tokens(form, 9200);
        for input in [shapes, tokens] {
            let want = one_buffer(&input);
            for size in [4093, 16 << 10, 65536] {
                let found = in_chunks(sc, &input, size);
                assert_eq!(found, want, "{form:?}, chunks of {size}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn near_the_threshold_any_cuts_give_one_buffers_findings(
        cuts in proptest::collection::vec(0usize..40_000, 0..24),
    ) {
        let input = near_the_threshold();
        let mut cuts = cuts;
        cuts.sort_unstable();
        prop_assert_eq!(scan_split(full(), &input, &cuts), one_buffer(&input));
    }
}
