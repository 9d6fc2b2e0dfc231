//! Validity checks that need no network: what a regex match must also be to count as a
//! credential (a checksum that holds, a header that decodes, a key body that parses).
//!
//! A real credential passes its check by construction; a string that only has the shape
//! (an example in the docs, a made-up value in a test, a hash next to `key =`) usually
//! does not, which is where most false blocks came from.

use regex::bytes::Captures;

use super::detectors::Check;
use super::precision;

/// Whether a match passes `check`. `before` is up to `CONTEXT` bytes preceding it.
pub(super) fn passes(check: Check, before: &[u8], caps: &Captures<'_>) -> bool {
    let Some(whole) = caps.get(0) else {
        return false;
    };
    let subject = caps.name("s").unwrap_or(whole).as_bytes();
    // Structured bodies (keys, base64 blobs) have runs of `A` and the like; their own
    // checks decide.
    let textual = matches!(
        check,
        Check::Token
            | Check::Entropy { .. }
            | Check::Marker { .. }
            | Check::Crc32Base62
            | Check::Luhn
    );
    if textual && precision::is_placeholder(subject) {
        return false;
    }
    match check {
        Check::None | Check::Token => true,
        Check::Entropy { min_len, min_bits } => looks_random(subject, min_len, min_bits),
        Check::Marker { marker } => {
            looks_random(subject, 16, 3.0) && contains(subject, marker.as_bytes())
        }
        Check::Generic => {
            let name = caps.name("n").map_or(&[][..], |m| m.as_bytes());
            precision::generic_assignment(before, name, subject)
        }
        Check::Crc32Base62 => crc32_base62(subject),
        Check::Jwt => jwt(subject),
        Check::Pem => {
            let label = |g: &str| caps.name(g).map(|m| m.as_bytes());
            pem(label("b"), label("e"), subject)
        }
        Check::Base64Json => decode_base64(subject).is_some_and(|d| json_object(&d)),
        Check::Base64 { min_bytes } => decode_base64(subject).is_some_and(|d| d.len() >= min_bytes),
        Check::BasicAuth => decode_base64(subject).is_some_and(|d| basic_auth(&d)),
        Check::Password => precision::is_password(subject),
        Check::Luhn => luhn(subject),
        Check::Bech32 => bech32(subject),
        Check::NumericId => numeric_id(subject),
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A letter, a digit, enough length, and enough Shannon entropy per byte.
pub(super) fn looks_random(v: &[u8], min_len: usize, min_bits: f64) -> bool {
    v.len() >= min_len
        && v.iter().any(u8::is_ascii_alphabetic)
        && v.iter().any(u8::is_ascii_digit)
        && shannon_bits(v) >= min_bits
}

/// Shannon entropy of `v` in bits per byte.
pub(super) fn shannon_bits(v: &[u8]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in v {
        counts[usize::from(b)] += 1;
    }
    let n = v.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// CRC-32 (IEEE 802.3, as zlib computes it).
pub(crate) fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// `n` in base 62 over `alphabet`, left-padded with its zero digit to `width`.
pub(crate) fn base62(mut n: u32, alphabet: &[u8; 62], width: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(width);
    while n > 0 {
        out.push(alphabet[(n % 62) as usize]);
        n /= 62;
    }
    while out.len() < width {
        out.push(alphabet[0]);
    }
    out.reverse();
    out
}

pub(crate) const BASE62: &[u8; 62] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const BASE62_LOWER_FIRST: &[u8; 62] =
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// GitHub's and npm's token format: `<prefix>_<30 random><6-char base62 CRC32>`. The
/// subject is the part after the prefix's `_`; both digit orders are accepted, and the
/// CRC over the random part alone or with the prefix.
fn crc32_base62(subject: &[u8]) -> bool {
    let Some(sep) = subject.iter().position(|&b| b == b'_') else {
        return false;
    };
    let body = &subject[sep + 1..];
    if body.len() != 36 {
        return false;
    }
    let (random, sum) = body.split_at(30);
    let with_prefix = &subject[..sep + 31];
    [crc32(random), crc32(with_prefix)]
        .iter()
        .any(|&c| base62(c, BASE62, 6) == sum || base62(c, BASE62_LOWER_FIRST, 6) == sum)
}

/// Base64 in either alphabet, padded or not; white space and literal `\n` escapes (a PEM
/// body inside a JSON string) are skipped. `None` if anything else is in the way.
pub(crate) fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    let mut i = 0;
    let mut padded = false;
    while i < text.len() {
        let c = text[i];
        i += 1;
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => {
                padded = true;
                continue;
            }
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            b'\\' if matches!(text.get(i), Some(b'n' | b'r' | b'\n' | b'\r')) => {
                i += 1;
                continue;
            }
            _ => return None,
        };
        if padded {
            return None;
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// `{` ... `}` that parses as a JSON object.
fn json_object(bytes: &[u8]) -> bool {
    matches!(
        serde_json::from_slice::<serde_json::Value>(bytes),
        Ok(serde_json::Value::Object(_))
    )
}

/// Header and payload decode to JSON objects; the header names an `alg`.
fn jwt(token: &[u8]) -> bool {
    let mut parts = token.split(|&b| b == b'.');
    let (Some(header), Some(payload)) = (parts.next(), parts.next()) else {
        return false;
    };
    let header =
        decode_base64(header).and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok());
    let alg = header
        .as_ref()
        .and_then(|h| h.get("alg"))
        .is_some_and(serde_json::Value::is_string);
    alg && decode_base64(payload).is_some_and(|p| json_object(&p))
}

/// A PEM private key block: labels agree, and the body is base64 of what the label
/// announces (DER starts with a SEQUENCE; OpenSSH keys with their magic). Header lines
/// (`Proc-Type: ...`) of legacy encrypted PEM are skipped.
fn pem(begin: Option<&[u8]>, end: Option<&[u8]>, body: &[u8]) -> bool {
    let Some(begin) = begin else {
        return false;
    };
    if end.is_some_and(|e| e != begin) {
        return false;
    }
    let text: Vec<u8> = split_lines(body)
        .filter(|l| !l.contains(&b':'))
        .flat_map(|l| l.iter().copied())
        .collect();
    let usable = text.len() / 4 * 4;
    let Some(der) = decode_base64(&text[..usable]) else {
        return false;
    };
    if der.len() < 48 {
        return false;
    }
    if begin.starts_with(b"OPENSSH") {
        der.starts_with(b"openssh-key-v1\0")
    } else {
        der[0] == 0x30
    }
}

/// Lines of a PEM body, whether separated by real newlines or `\n` escapes.
fn split_lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    body.split(|&b| b == b'\n' || b == b'\r')
        .flat_map(|l| {
            let mut parts = Vec::new();
            let mut from = 0;
            let mut i = 0;
            while i + 1 < l.len() {
                if l[i] == b'\\' && matches!(l[i + 1], b'n' | b'r') {
                    parts.push(&l[from..i]);
                    from = i + 2;
                    i += 2;
                } else {
                    i += 1;
                }
            }
            parts.push(&l[from..]);
            parts
        })
        // In the scanner's escape view a `\n` escape is `\` then a line break: the
        // backslash ends the line before it.
        .map(|l| l.strip_suffix(b"\\").unwrap_or(l).trim_ascii())
        .filter(|l| !l.is_empty())
}

/// Printable `user:password`, both non-empty, the password not a placeholder.
fn basic_auth(decoded: &[u8]) -> bool {
    let Some(colon) = decoded.iter().position(|&b| b == b':') else {
        return false;
    };
    let (user, pass) = (&decoded[..colon], &decoded[colon + 1..]);
    !user.is_empty()
        && pass.len() >= 3
        && decoded.iter().all(|b| b.is_ascii_graphic() || *b == b' ')
        && precision::is_password(pass)
}

/// The Luhn checksum over the digits of `v` (separators skipped), 13 to 19 digits.
fn luhn(v: &[u8]) -> bool {
    let digits: Vec<u32> = v
        .iter()
        .filter(|b| b.is_ascii_digit())
        .map(|&b| u32::from(b - b'0'))
        .collect();
    if !(13..=19).contains(&digits.len()) || digits.iter().all(|&d| d == digits[0]) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

const BECH32: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";

/// A Bech32 string (`hrp1data`, one case) whose checksum holds.
pub(crate) fn bech32(s: &[u8]) -> bool {
    let lower: Vec<u8> = s.to_ascii_lowercase();
    let Some(sep) = lower.iter().rposition(|&b| b == b'1') else {
        return false;
    };
    let (hrp, data) = (&lower[..sep], &lower[sep + 1..]);
    if hrp.is_empty() || data.len() < 6 {
        return false;
    }
    let mut values = Vec::with_capacity(hrp.len() * 2 + 1 + data.len());
    values.extend(hrp.iter().map(|&c| c >> 5));
    values.push(0);
    values.extend(hrp.iter().map(|&c| c & 31));
    for &c in data {
        match BECH32.iter().position(|&x| x == c) {
            Some(v) => values.push(v as u8),
            None => return false,
        }
    }
    bech32_polymod(&values) == 1
}

pub(crate) fn bech32_polymod(values: &[u8]) -> u32 {
    const GEN: [u32; 5] = [
        0x3b6a_57b2,
        0x2650_8e6d,
        0x1ea1_19fa,
        0x3d42_33dd,
        0x2a14_62b3,
    ];
    let mut chk = 1u32;
    for &v in values {
        let top = chk >> 25;
        chk = ((chk & 0x01ff_ffff) << 5) ^ u32::from(v);
        for (i, g) in GEN.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
    }
    chk
}

/// Discord bot tokens start with base64 of the bot's numeric user id.
fn numeric_id(subject: &[u8]) -> bool {
    let first = subject.split(|&b| b == b'.').next().unwrap_or(&[]);
    decode_base64(first).is_some_and(|d| d.len() >= 15 && d.iter().all(u8::is_ascii_digit))
}
