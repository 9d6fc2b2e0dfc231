//! Private keys: PEM blocks of every common kind (checked to parse), OpenSSH, PuTTY, PGP
//! and age.

use super::{Check, Detector, tok};
use crate::detectors::Severity::Critical;

/// A PEM block with `label` (a regex): BEGIN line, base64 body (real or `\n`-escaped line
/// breaks, header lines), and the END line when it comes within the match bound. The
/// detectors judge the scanner's escape view (see `escapes`), where an escaped break is
/// `\` then the control byte.
fn pem(id: &str, title: &str, keyword: &str, label: &str) -> Detector {
    tok(
        id,
        title,
        Critical,
        &[keyword],
        &format!(
            concat!(
                r"-----BEGIN (?P<b>{label})-----",
                r"(?P<s>(?:(?:\r?\n|\\\n)(?:Proc-Type|DEK-Info): [A-Za-z0-9,-]{{1,100}}){{0,2}}",
                r"(?:[A-Za-z0-9+/=]|\r|\n|\\[\r\n]){{64,1800}})",
                r"(?:-----END (?P<e>{label})-----)?"
            ),
            label = label
        ),
        Check::Pem,
    )
}

pub(super) fn detectors() -> Vec<Detector> {
    vec![
        pem(
            "private-key",
            "Private key (PKCS#8)",
            "-----BEGIN PRIVATE KEY",
            "PRIVATE KEY",
        ),
        pem(
            "private-key-rsa",
            "RSA private key",
            "-----BEGIN RSA PRIVATE KEY",
            "RSA PRIVATE KEY",
        ),
        pem(
            "private-key-ec",
            "EC private key",
            "-----BEGIN EC PRIVATE KEY",
            "EC PRIVATE KEY",
        ),
        pem(
            "private-key-dsa",
            "DSA private key",
            "-----BEGIN DSA PRIVATE KEY",
            "DSA PRIVATE KEY",
        ),
        pem(
            "private-key-openssh",
            "OpenSSH private key",
            "-----BEGIN OPENSSH PRIVATE KEY",
            "OPENSSH PRIVATE KEY",
        ),
        pem(
            "private-key-encrypted",
            "Encrypted private key (PKCS#8)",
            "-----BEGIN ENCRYPTED PRIVATE KEY",
            "ENCRYPTED PRIVATE KEY",
        ),
        tok(
            "private-key-pgp",
            "PGP private key block",
            Critical,
            &["-----BEGIN PGP PRIVATE KEY BLOCK-----"],
            r"-----BEGIN PGP PRIVATE KEY BLOCK-----(?:\r?\n|\\\n)(?:[A-Za-z]{2,20}: [^\r\n]{0,100}(?:\r?\n|\\\n)){0,5}(?:\r?\n|\\\n)?(?P<s>[A-Za-z0-9+/=]{60,80}(?:(?:\r?\n|\\\n)[A-Za-z0-9+/][A-Za-z0-9+/=]{0,79}){1,40})",
            Check::Base64 { min_bytes: 100 },
        ),
        tok(
            "private-key-putty",
            "PuTTY private key file",
            Critical,
            &["PuTTY-User-Key-File-"],
            r"PuTTY-User-Key-File-[23]: [a-z0-9-]{3,40}\r?\nEncryption: [a-z0-9-]{4,20}\r?\n(?s:.){0,1600}?Private-Lines: [0-9]{1,3}\r?\n(?P<s>[A-Za-z0-9+/=\r\n]{40,2000})",
            Check::Base64 { min_bytes: 20 },
        ),
        tok(
            "age-secret-key",
            "age secret key",
            Critical,
            &["AGE-SECRET-KEY-1"],
            r"(?P<s>AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58})",
            Check::Bech32,
        ),
        tok(
            "private-key-ssh2",
            "SSH2 (ssh.com) encrypted private key",
            Critical,
            &["---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----"],
            r"---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----(?:\r?\n|\\\n)(?P<s>(?:[A-Za-z0-9+/=:\x22 -]|\r|\n|\\\n){64,1800})",
            Check::Token,
        ),
    ]
}
