//! The DLP scanner's findings do not depend on how the stream is chunked. The first two
//! bytes pick the chunk sizes; the rest is the stream.
#![no_main]

use std::sync::OnceLock;

use cork_dlp::{Config, Finding, KnownSecret, Scanner};
use libfuzzer_sys::fuzz_target;

fn scanner() -> &'static Scanner {
    static SCANNER: OnceLock<Scanner> = OnceLock::new();
    SCANNER.get_or_init(|| {
        Scanner::new(&Config {
            known_secrets: vec![KnownSecret {
                name: "FUZZ".into(),
                value: b"cork-fuzz-secret-Ab3Cd5Ef7".to_vec(),
            }],
            ..Config::default()
        })
        .expect("fuzz scanner builds")
    })
}

fn scan(data: &[u8], sizes: [usize; 2]) -> Vec<Finding> {
    let mut s = scanner().stream();
    let mut out = Vec::new();
    let mut rest = data;
    for n in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at((*n).clamp(1, rest.len()));
        out.extend(s.feed(chunk));
        assert!(s.carried() <= scanner().max_carry());
        rest = tail;
    }
    out.extend(s.finish());
    out.sort();
    out
}

fuzz_target!(|data: &[u8]| {
    let [a, b, stream @ ..] = data else {
        return;
    };
    let whole = scan(stream, [stream.len(), stream.len()]);
    let split = scan(stream, [usize::from(*a), usize::from(*b)]);
    assert_eq!(whole, split);
});
