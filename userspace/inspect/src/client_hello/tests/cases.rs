//! What cork reads from well-formed ClientHellos, and the verdicts on everything else.

use super::*;
use crate::client_hello::MAX_PEEK_LEN;

#[test]
fn sni_is_read_and_lowercased() {
    let info = parse(&Hello::tls13().sni("WWW.Example.TEST").wire());
    assert_eq!(info.sni.as_deref(), Some("www.example.test"));
    assert!(!info.has_ech);
    assert_eq!(info.record_version, 0x0301);
    assert_eq!(info.legacy_version, 0x0303);
    assert_eq!(info.supported_versions, [0x0304, 0x0303]);
    assert!(info.offers_tls13());
}

#[test]
fn no_server_name_extension_is_no_sni() {
    let info = parse(&Hello::tls13().wire());
    assert_eq!(info.sni, None);
    assert!(info.alpn.is_empty());
}

#[test]
fn hello_without_extensions_block() {
    let hello = Hello {
        legacy_version: 0x0301,
        extensions: None,
        ..Hello::tls13()
    };
    let info = parse(&hello.wire());
    assert_eq!(info.sni, None);
    assert_eq!(info.legacy_version, 0x0301);
    assert!(info.supported_versions.is_empty());
    assert!(!info.offers_tls13());
}

#[test]
fn alpn_in_client_order() {
    let info = parse(
        &Hello::tls13()
            .sni("api.example.test")
            .alpn(&["h2", "http/1.1"])
            .wire(),
    );
    assert_eq!(info.alpn, [b"h2".to_vec(), b"http/1.1".to_vec()]);
    assert!(info.offers_alpn(b"h2"));
    assert!(info.offers_alpn(b"http/1.1"));
    assert!(!info.offers_alpn(b"h3"));
}

#[test]
fn ech_outer_is_flagged() {
    let wire = Hello::tls13()
        .sni("public.example.test")
        .ext(EXT_ECH, ech(0, 200))
        .wire();
    let info = parse(&wire);
    assert!(info.has_ech);
    assert_eq!(info.sni.as_deref(), Some("public.example.test"));
}

#[test]
fn ech_and_esni_draft_code_points_are_flagged() {
    for code in [0xfe08, 0xfe0c, 0xffce] {
        let info = parse(&Hello::tls13().sni("a.test").ext(code, vec![1, 2, 3]).wire());
        assert!(info.has_ech, "{code:#x}");
    }
}

#[test]
fn ech_inner_or_broken_is_malformed() {
    let inner = Hello::tls13().sni("a.test").ext(EXT_ECH, vec![1]).wire();
    assert!(malformed(&inner).contains("outer"));
    let no_payload = Hello::tls13().sni("a.test").ext(EXT_ECH, ech(0, 0)).wire();
    assert!(malformed(&no_payload).contains("payload"));
    let truncated = Hello::tls13()
        .sni("a.test")
        .ext(EXT_ECH, vec![0, 0, 1])
        .wire();
    assert!(malformed(&truncated).contains("encrypted_client_hello"));
}

#[test]
fn hello_split_across_records() {
    let hello = Hello::tls13().sni("split.example.test").alpn(&["h2"]);
    let hs = hello.handshake();
    let whole = parse(&hello.wire());
    // Two records; the handshake header itself split; one record per byte.
    let one_per_byte: Vec<usize> = (1..hs.len()).collect();
    for cuts in [vec![hs.len() / 2], vec![2], vec![1, 3, 40], one_per_byte] {
        let wire = records(&hs, &cuts);
        let info = parse(&wire);
        assert_eq!(info.sni, whole.sni);
        assert_eq!(info.alpn, whole.alpn);
        assert_eq!(info.records_len, wire.len());
    }
}

#[test]
fn bytes_after_the_hello_records_are_not_read() {
    let mut wire = Hello::tls13().sni("a.test").wire();
    let len = wire.len();
    // TLS 1.3 middlebox-compatibility change_cipher_spec, then early data.
    wire.extend(record(20, 0x0303, &[1]));
    wire.extend(record(23, 0x0303, b"early"));
    let info = parse(&wire);
    assert_eq!(info.records_len, len);
}

#[test]
fn handshake_bytes_after_the_hello_in_its_record_are_malformed() {
    let mut hs = Hello::tls13().sni("a.test").handshake();
    hs.extend(handshake(1, &[]));
    assert!(malformed(&records(&hs, &[])).contains("after the ClientHello"));
}

#[test]
fn plain_http_is_recognised() {
    for req in [
        &b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"[..],
        b"POST /upload HTTP/1.1\r\n",
        b"CONNECT a.test:443 HTTP/1.1\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ] {
        assert_eq!(peek_client_hello(req), Err(HelloError::LooksLikeHttp));
        assert_eq!(HelloError::LooksLikeHttp.reason(), "plain_http");
    }
    // A prefix of a method waits for the rest; then it is either HTTP or not TLS.
    assert_eq!(
        peek_client_hello(b"CONN"),
        Err(HelloError::Incomplete { needed: Some(8) })
    );
    assert_eq!(
        peek_client_hello(b"P"),
        Err(HelloError::Incomplete { needed: Some(4) })
    );
    assert_eq!(peek_client_hello(b"GOT / "), Err(HelloError::NotTls));
}

#[test]
fn other_protocols_are_not_tls() {
    for bytes in [
        &b"SSH-2.0-OpenSSH_9.6\r\n"[..],
        // SSLv2-compatible ClientHello header.
        &[0x80, 0x2e, 0x01, 0x03, 0x01][..],
        // Handshake content type but not version 3.x.
        &[0x16, 0x04, 0x01, 0x00, 0x10][..],
        // An application-data record first.
        &record(23, 0x0303, b"data")[..],
        &[0x00][..],
    ] {
        assert_eq!(
            peek_client_hello(bytes),
            Err(HelloError::NotTls),
            "{bytes:?}"
        );
    }
}

#[test]
fn server_hello_is_not_a_client_hello() {
    let wire = records(&handshake(2, &[3, 3]), &[]);
    assert_eq!(
        peek_client_hello(&wire),
        Err(HelloError::NotClientHello { msg_type: 2 })
    );
}

#[test]
fn too_large() {
    // A declared length that cannot fit, refused from the header alone.
    let wire = record(22, 0x0301, &[1, 0, 0x40, 0]);
    assert_eq!(peek_client_hello(&wire), Err(HelloError::TooLarge));
    // Tiny records: the headers push the hello past the bound.
    let hs = Hello::tls13()
        .sni("a.test")
        .ext(0x1234, vec![0; 3000])
        .handshake();
    let cuts: Vec<usize> = (1..hs.len()).collect();
    let wire = records(&hs, &cuts);
    assert!(wire.len() > MAX_PEEK_LEN);
    assert_eq!(peek_client_hello(&wire), Err(HelloError::TooLarge));
    assert_eq!(
        peek_client_hello(&wire[..MAX_PEEK_LEN]),
        Err(HelloError::TooLarge)
    );
    // The same hello in one record is fine.
    assert_eq!(parse(&records(&hs, &[])).sni.as_deref(), Some("a.test"));
}

#[test]
fn record_layer_violations() {
    let hs = Hello::tls13().sni("a.test").handshake();
    let mut empty_record = record(22, 0x0301, &[]);
    empty_record.extend(records(&hs, &[]));
    assert!(malformed(&empty_record).contains("empty"));

    let mut interleaved = records(&hs[..10], &[]);
    interleaved.extend(record(21, 0x0301, &[2, 40]));
    interleaved.extend(records(&hs[10..], &[]));
    assert!(malformed(&interleaved).starts_with("record:"));

    let mut oversized = vec![22, 3, 1, 0x40, 1];
    oversized.extend(vec![0; 0x4001]);
    assert!(malformed(&oversized).contains("2^14"));
}

#[test]
fn duplicate_extension_is_malformed() {
    let alpn_twice = Hello::tls13()
        .sni("a.test")
        .alpn(&["h2"])
        .alpn(&["http/1.1"]);
    assert!(malformed(&alpn_twice.wire()).contains("twice"));
    // Two server_name extensions: one name for cork, another for the upstream.
    let sni_twice = Hello::tls13().sni("allowed.test").sni("other.test");
    assert!(malformed(&sni_twice.wire()).contains("twice"));
    let unknown_twice = Hello::tls13().ext(0x7777, vec![]).ext(0x7777, vec![1]);
    assert!(malformed(&unknown_twice.wire()).contains("twice"));
}

#[test]
fn server_name_list_must_hold_one_host_name() {
    let two = server_name(&[(0, b"allowed.test"), (0, b"other.test")]);
    let wire = Hello::tls13().ext(EXT_SERVER_NAME, two).wire();
    assert!(malformed(&wire).contains("more than one"));

    let other_type = server_name(&[(0, b"allowed.test"), (1, b"other.test")]);
    let wire = Hello::tls13().ext(EXT_SERVER_NAME, other_type).wire();
    assert!(malformed(&wire).contains("more than one"));

    let only_other_type = server_name(&[(1, b"other.test")]);
    let wire = Hello::tls13().ext(EXT_SERVER_NAME, only_other_type).wire();
    assert!(malformed(&wire).contains("name_type"));

    let wire = Hello::tls13().ext(EXT_SERVER_NAME, vec16(&[])).wire();
    assert!(malformed(&wire).contains("empty server_name_list"));

    // An empty extension body (the ServerHello form) is not a ClientHello's.
    let wire = Hello::tls13().ext(EXT_SERVER_NAME, vec![]).wire();
    assert!(malformed(&wire).starts_with("server_name"));
}

#[test]
fn bad_host_names_are_malformed() {
    let long = format!("{}.test", vec!["a".repeat(60); 5].join("."));
    assert!(long.len() > 253);
    let cases: [(&[u8], &str); 9] = [
        (b"198.51.100.7", "IP address"),
        (b"2001:db8::7", "IP address"),
        (b"[2001:db8::7]", "IP address"),
        (b"127.1", "IP address"),
        (long.as_bytes(), "longer than 253"),
        (b"", "empty"),
        ("bücher.test".as_bytes(), "not ASCII"),
        (b"a\0.test", "not allowed"),
        (b"a..test", "label"),
    ];
    for (name, expect) in cases {
        let wire = Hello::tls13()
            .ext(EXT_SERVER_NAME, server_name(&[(0, name)]))
            .wire();
        let what = malformed(&wire);
        assert!(what.contains(expect), "{name:?}: {what}");
    }
}

#[test]
fn trailing_dot_is_dropped() {
    let info = parse(&Hello::tls13().sni("Fqdn.Example.Test.").wire());
    assert_eq!(info.sni.as_deref(), Some("fqdn.example.test"));
}

#[test]
fn alpn_rules() {
    let empty_name = alpn(&[b"h2", b""]);
    let wire = Hello::tls13().ext(EXT_ALPN, empty_name).wire();
    assert!(malformed(&wire).contains("empty protocol name"));
    let wire = Hello::tls13().ext(EXT_ALPN, vec16(&[])).wire();
    assert!(malformed(&wire).contains("empty protocol_name_list"));
    // Names are opaque bytes: a GREASE-style name that is not UTF-8 is kept as is.
    let grease = alpn(&[&[0xfa, 0xfa], b"h2"]);
    let info = parse(&Hello::tls13().ext(EXT_ALPN, grease).wire());
    assert_eq!(info.alpn, [vec![0xfa, 0xfa], b"h2".to_vec()]);
}

#[test]
fn pre_shared_key_must_be_last() {
    let last = Hello::tls13()
        .sni("a.test")
        .ext(EXT_PRE_SHARED_KEY, vec![0; 8]);
    assert_eq!(parse(&last.wire()).sni.as_deref(), Some("a.test"));
    let not_last = Hello::tls13()
        .ext(EXT_PRE_SHARED_KEY, vec![0; 8])
        .sni("a.test");
    assert!(malformed(&not_last.wire()).contains("pre_shared_key"));
}

#[test]
fn body_field_violations() {
    let long_session = Hello {
        session_id: vec![0; 33],
        ..Hello::tls13()
    };
    assert!(malformed(&long_session.wire()).contains("legacy_session_id"));
    let mut body = Hello::tls13().body();
    body.push(0); // one byte after the extensions block
    assert!(malformed(&records(&handshake(1, &body), &[])).contains("after the extensions"));
    let no_compression = Hello {
        compression: vec![],
        ..Hello::tls13()
    };
    assert!(malformed(&no_compression.wire()).contains("compression"));
    let no_suites = Hello {
        cipher_suites: vec![],
        ..Hello::tls13()
    };
    assert!(malformed(&no_suites.wire()).contains("cipher_suites"));
    // An odd-length versions list, in place of tls13()'s supported_versions.
    let mut odd_versions = Hello::tls13();
    odd_versions.extensions.as_mut().unwrap()[0] = (EXT_SUPPORTED_VERSIONS, vec8(&[3]));
    assert!(malformed(&odd_versions.wire()).contains("supported_versions"));
}

#[test]
fn reasons_are_stable() {
    let cases = [
        (HelloError::Incomplete { needed: None }, "incomplete"),
        (HelloError::NotTls, "not_tls"),
        (HelloError::LooksLikeHttp, "plain_http"),
        (
            HelloError::NotClientHello { msg_type: 2 },
            "not_client_hello",
        ),
        (HelloError::Malformed { what: "x" }, "malformed"),
        (HelloError::TooLarge, "too_large"),
    ];
    for (err, reason) in cases {
        assert_eq!(err.reason(), reason);
        assert_eq!(err.is_final(), reason != "incomplete");
    }
}
