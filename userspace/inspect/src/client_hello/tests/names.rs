//! `normalize_host_name`, which the proxy also applies to Host / :authority.

use crate::client_hello::{NameError, normalize_host_name};

#[test]
fn accepted_names() {
    for (name, expect) in [
        ("a.test", "a.test"),
        ("API.Example.TEST", "api.example.test"),
        ("a.test.", "a.test"),
        ("xn--bcher-kva.test", "xn--bcher-kva.test"),
        ("_acme-challenge.a.test", "_acme-challenge.a.test"),
        ("localhost", "localhost"),
        ("1.2.3.test", "1.2.3.test"),
        ("0xz.test", "0xz.test"),
    ] {
        assert_eq!(normalize_host_name(name.as_bytes()).as_deref(), Ok(expect));
    }
    let longest = format!(
        "{}.{}.{}.{}",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61)
    );
    assert_eq!(longest.len(), 253);
    assert!(normalize_host_name(longest.as_bytes()).is_ok());
    assert!(normalize_host_name(format!("{longest}.").as_bytes()).is_ok());
}

#[test]
fn refused_names() {
    let too_long = format!(
        "{}.{}.{}.{}",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(62)
    );
    let long_label = format!("{}.test", "a".repeat(64));
    for (name, expect) in [
        (&b""[..], NameError::Empty),
        (b".", NameError::Empty),
        (b"a.test..", NameError::BadLabel),
        (b".a.test", NameError::BadLabel),
        (too_long.as_bytes(), NameError::TooLong),
        (long_label.as_bytes(), NameError::BadLabel),
        ("é.test".as_bytes(), NameError::NotAscii),
        (b"a b.test", NameError::BadByte),
        (b"a.test/x", NameError::BadByte),
        (b"a*.test", NameError::BadByte),
        (b"198.51.100.7", NameError::IpLiteral),
        (b"198.51.100.7.", NameError::IpLiteral),
        (b"2001:db8::1", NameError::IpLiteral),
        (b"::ffff:198.51.100.7", NameError::IpLiteral),
        (b"[2001:db8::1]", NameError::IpLiteral),
        (b"a.test:443", NameError::IpLiteral),
        (b"0x7f000001", NameError::IpLiteral),
        (b"0X7F.1", NameError::IpLiteral),
        (b"127.1", NameError::IpLiteral),
        (b"a.0x", NameError::IpLiteral),
        (b"2130706433", NameError::IpLiteral),
    ] {
        assert_eq!(normalize_host_name(name), Err(expect), "{name:?}");
    }
}
