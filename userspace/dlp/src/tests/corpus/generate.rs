//! Deterministic generation of corpus values: a small PRNG and a template language for
//! credential shapes, with the checksums real credentials carry (so positives are what a
//! provider would issue, not just the right length).
//!
//! Template fields: `{a:N}` base62, `{k:N}` lowercase alphanumeric, `{A:N}` uppercase
//! alphanumeric, `{h:N}`/`{H:N}` hex, `{d:N}` digits, `{l:N}` lowercase letters, `{L:N}`
//! letters, `{b:N}` base64 characters, `{u:N}` base64url characters, `{B32:N}` base32,
//! `{uuid}`, `{crc:PREFIX}` a GitHub/npm-style token, `{jwt}`, `{pem:LABEL}`,
//! `{openssh}`, `{pgp}`, `{b64:N}` base64 of N random bytes, `{b64json}`, `{basic}`,
//! `{card}`, `{age}`, `{discord}`, `{pw}`.

use crate::checks::{BASE62, base62, bech32_polymod, crc32};
use crate::known::base64;

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// xorshift64*: deterministic, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn chars(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| char::from(alphabet[self.below(alphabet.len())]))
            .collect()
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Expands a template (see the module docs).
pub fn expand(template: &str, rng: &mut Rng) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let field = rest[open..]
            .find('}')
            .map(|close| (close + open, &rest[open + 1..close + open]))
            .filter(|(_, spec)| is_field(spec));
        match field {
            Some((close, spec)) => {
                out.push_str(&field_value(spec, rng));
                rest = &rest[close + 1..];
            }
            None => {
                out.push('{');
                rest = &rest[open + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

const FIELDS: &[&str] = &[
    "a", "k", "A", "h", "H", "d", "l", "L", "b", "u", "B32", "uuid", "crc", "jwt", "pem",
    "openssh", "pgp", "b64", "b64k", "b64json", "basic", "card", "age", "discord", "pw",
];

/// Whether `{spec}` is a field (anything else in braces is literal text: JSON, `${VAR}`).
fn is_field(spec: &str) -> bool {
    let (kind, arg) = spec.split_once(':').unwrap_or((spec, ""));
    FIELDS.contains(&kind)
        && match kind {
            "crc" | "pem" => !arg.is_empty(),
            "uuid" | "jwt" | "openssh" | "pgp" | "b64k" | "b64json" | "basic" | "card" | "age"
            | "discord" | "pw" => arg.is_empty(),
            _ => arg.parse::<usize>().is_ok(),
        }
}

fn field_value(spec: &str, rng: &mut Rng) -> String {
    let (kind, arg) = spec.split_once(':').unwrap_or((spec, ""));
    let n = || arg.parse::<usize>().expect("length");
    let alpha = |s: &str| s.as_bytes().to_vec();
    match kind {
        "a" => rng.chars(BASE62, n()),
        "k" => rng.chars(&alpha("abcdefghijklmnopqrstuvwxyz0123456789"), n()),
        "A" => rng.chars(&alpha("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"), n()),
        "h" => rng.chars(b"0123456789abcdef", n()),
        "H" => rng.chars(b"0123456789ABCDEF", n()),
        "d" => rng.chars(b"0123456789", n()),
        "l" => rng.chars(&alpha("abcdefghijklmnopqrstuvwxyz"), n()),
        "L" => rng.chars(
            &alpha("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"),
            n(),
        ),
        "b" => rng.chars(B64, n()),
        "u" => rng.chars(B64URL, n()),
        "B32" => rng.chars(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", n()),
        "uuid" => format!(
            "{}-{}-4{}-a{}-{}",
            rng.chars(b"0123456789abcdef", 8),
            rng.chars(b"0123456789abcdef", 4),
            rng.chars(b"0123456789abcdef", 3),
            rng.chars(b"0123456789abcdef", 3),
            rng.chars(b"0123456789abcdef", 12)
        ),
        "crc" => crc_token(arg, rng),
        "jwt" => jwt(rng),
        "pem" => pem(arg, der(rng)),
        "openssh" => {
            let mut body = b"openssh-key-v1\0".to_vec();
            body.extend(rng.bytes(300));
            pem("OPENSSH PRIVATE KEY", body)
        }
        "pgp" => {
            let mut body = vec![0x95u8, 0x03, 0xc6];
            body.extend(rng.bytes(400));
            let b = String::from_utf8(base64(&body, B64, true)).expect("ascii");
            let lines: Vec<&str> = b
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).expect("ascii"))
                .collect();
            format!(
                "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n{}\n=abcd\n-----END PGP PRIVATE KEY BLOCK-----",
                lines.join("\n")
            )
        }
        "b64" => {
            let bytes = rng.bytes(n());
            String::from_utf8(base64(&bytes, B64, true)).expect("ascii")
        }
        "b64json" => {
            let json = format!(
                r#"{{"o":"{}","n":"stack-{}","k":"{}","m":{{"r":"prod-us-east-0"}}}}"#,
                rng.chars(b"0123456789", 6),
                rng.chars(b"0123456789", 6),
                rng.chars(BASE62, 40)
            );
            String::from_utf8(base64(json.as_bytes(), B64, false)).expect("ascii")
        }
        "b64k" => {
            let json = format!(
                r#"{{"k":"{}","n":"ci-{}","id":{}}}"#,
                rng.chars(BASE62, 32),
                rng.chars(b"abcdefgh", 6),
                rng.below(100)
            );
            String::from_utf8(base64(json.as_bytes(), B64, true)).expect("ascii")
        }
        "basic" => {
            let pair = format!("{}:{}", rng.chars(b"abcdefghij", 6), rng.chars(BASE62, 16));
            String::from_utf8(base64(pair.as_bytes(), B64, true)).expect("ascii")
        }
        "card" => card(rng),
        "age" => age(rng),
        "discord" => {
            let id = format!("{}{}", 1 + rng.below(9), rng.chars(b"0123456789", 17));
            let first = String::from_utf8(base64(id.as_bytes(), B64URL, false)).expect("ascii");
            format!("{first}.{}.{}", rng.chars(B64URL, 6), rng.chars(B64URL, 38))
        }
        "pw" => {
            let mut p = rng.chars(BASE62, 10);
            p.push(char::from(*rng.pick(b"!#%^*_+-")));
            p.push_str(&rng.chars(BASE62, 5));
            p
        }
        other => panic!("unknown template field {other:?}"),
    }
}

/// `<prefix>_` + 30 base62 + base62 CRC32 of the 30, as GitHub and npm issue them.
fn crc_token(prefix: &str, rng: &mut Rng) -> String {
    let random = rng.chars(BASE62, 30);
    let sum = base62(crc32(random.as_bytes()), BASE62, 6);
    format!(
        "{prefix}_{random}{}",
        String::from_utf8(sum).expect("ascii")
    )
}

fn jwt(rng: &mut Rng) -> String {
    let enc = |s: &str| String::from_utf8(base64(s.as_bytes(), B64URL, false)).expect("ascii");
    let header = enc(r#"{"alg":"RS256","typ":"JWT","kid":"k1"}"#);
    let payload = enc(&format!(
        r#"{{"sub":"{}","iat":1700000000,"exp":1900000000,"scope":"read write"}}"#,
        rng.chars(BASE62, 12)
    ));
    format!("{header}.{payload}.{}", rng.chars(B64URL, 43))
}

/// A DER-looking body: a SEQUENCE header and random content.
fn der(rng: &mut Rng) -> Vec<u8> {
    let mut body = vec![0x30, 0x82, 0x04, 0xa4, 0x02, 0x01, 0x00];
    body.extend(rng.bytes(600));
    body
}

pub fn pem(label: &str, body: Vec<u8>) -> String {
    let b = String::from_utf8(base64(&body, B64, true)).expect("ascii");
    let lines: Vec<&str> = b
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----",
        lines.join("\n")
    )
}

/// A Luhn-valid 16-digit Visa number.
fn card(rng: &mut Rng) -> String {
    let mut digits: Vec<u32> = vec![4];
    digits.extend((0..14).map(|_| rng.below(10) as u32));
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    digits.push((10 - sum % 10) % 10);
    digits
        .iter()
        .map(|d| char::from_digit(*d, 10).expect("digit"))
        .collect()
}

/// `AGE-SECRET-KEY-1` + 52 data characters + a valid Bech32 checksum (upper case).
fn age(rng: &mut Rng) -> String {
    const CHARSET: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
    let hrp = b"age-secret-key-";
    let data: Vec<u8> = (0..52).map(|_| rng.below(32) as u8).collect();
    let mut values: Vec<u8> = hrp.iter().map(|c| c >> 5).collect();
    values.push(0);
    values.extend(hrp.iter().map(|c| c & 31));
    values.extend(&data);
    values.extend([0u8; 6]);
    let m = bech32_polymod(&values) ^ 1;
    let check: Vec<u8> = (0..6).map(|i| ((m >> (5 * (5 - i))) & 31) as u8).collect();
    let s: String = data
        .iter()
        .chain(&check)
        .map(|&v| char::from(CHARSET[usize::from(v)]))
        .collect();
    format!("AGE-SECRET-KEY-1{}", s.to_uppercase())
}
