//! Content decoding: round trips under every chunking, stacking, refusals, bombs.

use std::io::Write;

use flate2::Compression;
use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
use proptest::prelude::*;

use super::{scanner, secret};
use crate::Config;
use crate::decode::{
    BodyDecoder, ContentCoding, DecodeError, DecodeLimits, parse_content_encoding,
};

use ContentCoding::{Brotli, Deflate, Gzip, Identity};

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn raw_deflate(data: &[u8]) -> Vec<u8> {
    let mut e = DeflateEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        w.write_all(data).unwrap();
    }
    out
}

/// Text that compresses, with some variety.
fn sample() -> Vec<u8> {
    (0..3000u32)
        .flat_map(|i| format!("line {i}: the {} fox; ", i * 7919 % 1000).into_bytes())
        .collect()
}

/// Decodes `data` fed in pieces of the given sizes (cycled), then finishes.
fn decode(codings: &[ContentCoding], data: &[u8], sizes: &[usize]) -> Result<Vec<u8>, DecodeError> {
    decode_with(codings, data, sizes, DecodeLimits::default())
}

fn decode_with(
    codings: &[ContentCoding],
    data: &[u8],
    sizes: &[usize],
    limits: DecodeLimits,
) -> Result<Vec<u8>, DecodeError> {
    let mut d = BodyDecoder::new(codings, limits);
    let mut out = Vec::new();
    let mut rest = data;
    for &n in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(n.clamp(1, rest.len()));
        d.feed(chunk, &mut |b| out.extend_from_slice(b))?;
        rest = tail;
    }
    d.finish(&mut |b| out.extend_from_slice(b))?;
    Ok(out)
}

#[test]
fn content_encoding_headers_parse() {
    assert_eq!(parse_content_encoding("gzip").unwrap(), [Gzip]);
    assert_eq!(
        parse_content_encoding(" GZip , BR ").unwrap(),
        [Gzip, Brotli]
    );
    assert_eq!(parse_content_encoding("x-gzip").unwrap(), [Gzip]);
    assert_eq!(
        parse_content_encoding("identity, deflate,,").unwrap(),
        [Deflate]
    );
    assert_eq!(parse_content_encoding("").unwrap(), []);
    match parse_content_encoding("gzip, zstd") {
        Err(DecodeError::UnknownCoding { coding }) => assert_eq!(coding, "zstd"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        parse_content_encoding("gzip, br, deflate"),
        Err(DecodeError::TooManyLayers { count: 3, max: 2 })
    ));
}

#[test]
fn every_coding_round_trips_at_every_small_chunk_size() {
    let text = sample();
    let cases: Vec<(Vec<ContentCoding>, Vec<u8>)> = vec![
        (vec![Gzip], gzip(&text)),
        (vec![Deflate], zlib(&text)),
        (vec![Deflate], raw_deflate(&text)),
        (vec![Brotli], brotli(&text)),
        // Applied in header order: gzip first, then br.
        (vec![Gzip, Brotli], brotli(&gzip(&text))),
        (vec![Identity, Deflate, Identity], zlib(&text)),
        (vec![], text.clone()),
    ];
    for (codings, data) in &cases {
        for size in 1..=7 {
            assert_eq!(
                decode(codings, data, &[size]).unwrap(),
                text,
                "{codings:?} in pieces of {size}"
            );
        }
        assert_eq!(decode(codings, data, &[data.len()]).unwrap(), text);
    }
}

#[test]
fn gzip_header_fields_and_members_are_handled() {
    // FEXTRA, FNAME, FCOMMENT and FHCRC, built by hand: flate2 never writes FHCRC.
    let body = b"member one; ";
    let mut header = vec![0x1f, 0x8b, 8, 2 | 4 | 8 | 16, 0, 0, 0, 0, 0, 255];
    header.extend_from_slice(&[3, 0, b'a', b'b', b'c']);
    header.extend_from_slice(b"name.txt\0a comment\0");
    let mut crc = flate2::Crc::new();
    crc.update(&header);
    header.extend_from_slice(&((crc.sum() & 0xffff) as u16).to_le_bytes());
    let mut member = header.clone();
    member.extend(raw_deflate(body));
    let mut body_crc = flate2::Crc::new();
    body_crc.update(body);
    member.extend_from_slice(&body_crc.sum().to_le_bytes());
    member.extend_from_slice(&(body.len() as u32).to_le_bytes());
    // Then a second, plain member.
    let mut data = member.clone();
    data.extend(gzip(b"member two"));
    for size in 1..=7 {
        assert_eq!(
            decode(&[Gzip], &data, &[size]).unwrap(),
            b"member one; member two"
        );
    }
    // A wrong header CRC is refused.
    let mut bad = member;
    bad[header.len() - 1] ^= 1;
    assert!(matches!(
        decode(&[Gzip], &bad, &[5]),
        Err(DecodeError::Corrupt {
            reason: "header checksum mismatch",
            ..
        })
    ));
}

#[test]
fn truncated_streams_are_errors() {
    let text = sample();
    for (codings, data) in [
        (vec![Gzip], gzip(&text)),
        (vec![Deflate], zlib(&text)),
        (vec![Deflate], raw_deflate(&text)),
        (vec![Brotli], brotli(&text)),
        (vec![Gzip, Brotli], brotli(&gzip(&text))),
    ] {
        // Every prefix of the short ones, a sample of the long ones.
        let step = (data.len() / 200).max(1);
        for cut in (1..data.len()).step_by(step).chain([data.len() - 1]) {
            assert!(
                decode(&codings, &data[..cut], &[64]).is_err(),
                "{codings:?} cut at {cut} of {}",
                data.len()
            );
        }
    }
    // No body at all is fine whatever the coding (HEAD, 204, empty uploads).
    assert_eq!(decode(&[Gzip], b"", &[1]).unwrap(), b"");
}

#[test]
fn garbage_and_trailing_bytes_are_errors() {
    let junk: Vec<u8> = (0..500u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    for codings in [[Gzip], [Deflate], [Brotli]] {
        assert!(decode(&codings, &junk, &[7]).is_err(), "{codings:?}");
    }
    let cases = [
        (Gzip, gzip(b"hello")),
        (Deflate, zlib(b"hello")),
        (Brotli, brotli(b"hello")),
    ];
    for (coding, mut data) in cases {
        data.extend_from_slice(b"hidden");
        let err = decode(&[coding], &data, &[3]).unwrap_err();
        // gzip reads what follows as a next member, so it fails on the magic instead.
        assert!(
            matches!(
                err,
                DecodeError::TrailingData { .. }
                    | DecodeError::Corrupt {
                        reason: "bad magic",
                        ..
                    }
            ),
            "{coding}: {err:?}"
        );
    }
}

#[test]
fn decompression_bombs_stop_early() {
    let zeros = vec![0u8; 16 << 20];
    let limits = DecodeLimits {
        max_ratio: 100,
        max_total: 1 << 30,
    };
    for (codings, data) in [
        (vec![Gzip], gzip(&zeros)),
        (vec![Brotli], brotli(&zeros)),
        (vec![Gzip, Brotli], brotli(&gzip(&zeros))),
    ] {
        let mut d = BodyDecoder::new(&codings, limits);
        let mut seen = 0usize;
        let mut largest = 0usize;
        let mut result = Ok(());
        for chunk in data.chunks(1024) {
            result = d.feed(chunk, &mut |b| {
                seen += b.len();
                largest = largest.max(b.len());
            });
            if result.is_err() {
                break;
            }
        }
        assert!(
            matches!(result, Err(DecodeError::Bomb { .. })),
            "{codings:?}: {result:?}"
        );
        // Stopped soon after the grace allowance, in small pieces.
        assert!(seen <= (2 << 20), "{codings:?}: {seen} bytes out");
        assert!(largest <= 16 << 10);
        // And refuses further use.
        assert!(matches!(
            d.feed(b"", &mut |_| ()),
            Err(DecodeError::AfterError)
        ));
    }
    // The total limit on its own.
    let text = sample();
    let small = DecodeLimits {
        max_ratio: 1000,
        max_total: 10_000,
    };
    assert!(matches!(
        decode_with(&[Deflate], &zlib(&text), &[100], small),
        Err(DecodeError::Bomb { .. })
    ));
}

#[test]
fn a_secret_split_across_compressed_chunks_is_found() {
    const VALUE: &[u8] = b"cork-decode-secret-Rt5Yu7Io9Pl2";
    let sc = scanner(Config {
        known_secrets: vec![secret("REAL", VALUE)],
        ..Config::default()
    });
    let mut body = sample();
    body.splice(20_000..20_000, VALUE.iter().copied());
    let compressed = gzip(&body);
    assert!(!compressed.windows(VALUE.len()).any(|w| w == VALUE));
    let mut d = BodyDecoder::new(&[Gzip], DecodeLimits::default());
    let mut s = sc.stream();
    let mut found = Vec::new();
    for chunk in compressed.chunks(5) {
        d.feed(chunk, &mut |b| found.extend(s.feed(b))).unwrap();
    }
    d.finish(&mut |b| found.extend(s.feed(b))).unwrap();
    found.extend(s.finish());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].start, found[0].len), (20_000, VALUE.len()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn random_splits_round_trip(
        data in proptest::collection::vec(prop::sample::select(b"ab c\n{}0123".to_vec()), 0..3000),
        sizes in proptest::collection::vec(1usize..300, 1..10),
        which in 0usize..5,
    ) {
        let (codings, encoded) = match which {
            0 => (vec![Gzip], gzip(&data)),
            1 => (vec![Deflate], zlib(&data)),
            2 => (vec![Deflate], raw_deflate(&data)),
            3 => (vec![Brotli], brotli(&data)),
            _ => (vec![Gzip, Brotli], brotli(&gzip(&data))),
        };
        prop_assert_eq!(decode(&codings, &encoded, &sizes).unwrap(), data);
    }
}
