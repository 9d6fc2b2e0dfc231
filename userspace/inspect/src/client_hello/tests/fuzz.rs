//! The parser never panics and never gives up early: every prefix of a valid ClientHello
//! asks for more (linkerd's `check_all_prefixes`), `needed` leads straight to the answer,
//! and arbitrary or mutated bytes get an answer that more bytes do not change.

use proptest::prelude::*;

use super::*;
use crate::client_hello::MAX_PEEK_LEN;

fn valid_hellos() -> Vec<Vec<u8>> {
    let full = Hello::tls13()
        .sni("www.example.test")
        .alpn(&["h2", "http/1.1"])
        .ext(EXT_ECH, ech(0, 64))
        .ext(EXT_PRE_SHARED_KEY, vec![0; 16]);
    let hs = full.handshake();
    let legacy = Hello {
        extensions: None,
        ..Hello::tls13()
    };
    vec![
        full.wire(),
        records(&hs, &[hs.len() / 2]),
        records(&hs, &[1, 2, 3, 4, 5]),
        Hello::tls13().wire(),
        legacy.wire(),
    ]
}

#[test]
fn check_all_prefixes() {
    for wire in valid_hellos() {
        let info = parse(&wire);
        assert_eq!(info.records_len, wire.len());
        for len in 0..wire.len() {
            match peek_client_hello(&wire[..len]) {
                Err(HelloError::Incomplete { needed }) => {
                    let needed = needed.unwrap_or(len + 1);
                    assert!(needed > len && needed <= wire.len(), "{len}: {needed}");
                }
                other => panic!("prefix of {len} bytes: {other:?}"),
            }
        }
    }
}

/// A caller that reads exactly `needed` bytes each time gets the ClientHello having read
/// no byte past it.
#[test]
fn needed_leads_to_the_hello() {
    for wire in valid_hellos() {
        let mut have = 0;
        let info = loop {
            match peek_client_hello(&wire[..have]) {
                Ok(info) => break info,
                Err(HelloError::Incomplete { needed }) => have = needed.unwrap_or(have + 1),
                Err(e) => panic!("{e:?}"),
            }
        };
        assert_eq!(have, wire.len());
        assert_eq!(info, parse(&wire));
    }
}

/// The answer for `bytes`, and the promise that every prefix either asks for more (no
/// further than `MAX_PEEK_LEN`) or already gives that same answer.
fn consistent(bytes: &[u8]) -> Result<(), TestCaseError> {
    let full = peek_client_hello(bytes);
    for len in 0..bytes.len() {
        match peek_client_hello(&bytes[..len]) {
            Err(HelloError::Incomplete { needed }) => {
                let needed = needed.unwrap_or(len + 1);
                prop_assert!(needed > len && needed <= MAX_PEEK_LEN);
            }
            early => prop_assert_eq!(&early, &full, "prefix of {} bytes", len),
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        consistent(&bytes)?;
    }

    #[test]
    fn random_record_payloads_never_panic(
        version in prop_oneof![Just(0x0301u16), Just(0x0303), any::<u16>()],
        payload in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut bytes = record(22, version, &payload);
        // Often a ClientHello header too, so the body parser sees garbage.
        if payload.len() > 4 {
            let len = u32::try_from(payload.len() - 4).unwrap().to_be_bytes();
            bytes[5..9].copy_from_slice(&[1, len[1], len[2], len[3]]);
        }
        consistent(&bytes)?;
    }

    #[test]
    fn mutated_hellos_never_panic(
        which in 0..5usize,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut wire = valid_hellos().swap_remove(which);
        for (at, byte) in edits {
            let i = at.index(wire.len());
            wire[i] = byte;
        }
        let len = cut.index(wire.len() + 1);
        consistent(&wire[..len])?;
    }
}
