//! ClientHellos are built by hand here (a small builder), so tests can also write what no
//! TLS library would send. Names end in `.test`.

mod cases;
mod fuzz;
mod names;

use super::{ClientHelloInfo, HelloError, peek_client_hello};

pub(super) const EXT_SERVER_NAME: u16 = 0;
pub(super) const EXT_ALPN: u16 = 16;
pub(super) const EXT_PRE_SHARED_KEY: u16 = 41;
pub(super) const EXT_SUPPORTED_VERSIONS: u16 = 43;
pub(super) const EXT_ECH: u16 = 0xfe0d;

/// A ClientHello body, field by field.
#[derive(Clone)]
pub(super) struct Hello {
    pub legacy_version: u16,
    pub session_id: Vec<u8>,
    pub cipher_suites: Vec<u16>,
    pub compression: Vec<u8>,
    /// `None`: no extensions block at all (allowed before TLS 1.3).
    pub extensions: Option<Vec<(u16, Vec<u8>)>>,
}

impl Hello {
    /// What a TLS 1.3 client sends, minus key shares and the like: no SNI, no ALPN.
    pub fn tls13() -> Self {
        Self {
            legacy_version: 0x0303,
            session_id: vec![0x5a; 32],
            cipher_suites: vec![0x1301, 0x1302, 0x1303, 0xc02f],
            compression: vec![0],
            extensions: Some(vec![
                (
                    EXT_SUPPORTED_VERSIONS,
                    supported_versions(&[0x0304, 0x0303]),
                ),
                // supported_groups (x25519) and an unknown, GREASE-like extension.
                (10, vec![0, 2, 0, 29]),
                (0x0a0a, vec![]),
            ]),
        }
    }

    pub fn ext(mut self, ext_type: u16, data: Vec<u8>) -> Self {
        self.extensions
            .get_or_insert_with(Vec::new)
            .push((ext_type, data));
        self
    }

    pub fn sni(self, name: &str) -> Self {
        self.ext(EXT_SERVER_NAME, server_name(&[(0, name.as_bytes())]))
    }

    pub fn alpn(self, protos: &[&str]) -> Self {
        let protos: Vec<&[u8]> = protos.iter().map(|p| p.as_bytes()).collect();
        self.ext(EXT_ALPN, alpn(&protos))
    }

    pub fn body(&self) -> Vec<u8> {
        let mut b = self.legacy_version.to_be_bytes().to_vec();
        b.extend([0x11; 32]);
        b.extend(vec8(&self.session_id));
        let suites: Vec<u8> = self
            .cipher_suites
            .iter()
            .flat_map(|s| s.to_be_bytes())
            .collect();
        b.extend(vec16(&suites));
        b.extend(vec8(&self.compression));
        if let Some(exts) = &self.extensions {
            let mut block = Vec::new();
            for (t, data) in exts {
                block.extend(t.to_be_bytes());
                block.extend(vec16(data));
            }
            b.extend(vec16(&block));
        }
        b
    }

    /// The handshake message: msg_type client_hello, uint24 length, body.
    pub fn handshake(&self) -> Vec<u8> {
        handshake(1, &self.body())
    }

    /// The ClientHello in one TLS record.
    pub fn wire(&self) -> Vec<u8> {
        records(&self.handshake(), &[])
    }
}

pub(super) fn vec8(data: &[u8]) -> Vec<u8> {
    let mut v = vec![u8::try_from(data.len()).unwrap()];
    v.extend(data);
    v
}

pub(super) fn vec16(data: &[u8]) -> Vec<u8> {
    let mut v = u16::try_from(data.len()).unwrap().to_be_bytes().to_vec();
    v.extend(data);
    v
}

pub(super) fn handshake(msg_type: u8, body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).unwrap().to_be_bytes();
    let mut m = vec![msg_type, len[1], len[2], len[3]];
    m.extend(body);
    m
}

pub(super) fn record(content_type: u8, version: u16, payload: &[u8]) -> Vec<u8> {
    let mut r = vec![content_type];
    r.extend(version.to_be_bytes());
    r.extend(vec16(payload));
    r
}

/// `handshake` in handshake records (version 0x0301), cut after each of `cuts` bytes of
/// the message; the last record holds the rest.
pub(super) fn records(handshake: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain([&handshake.len()]) {
        out.extend(record(22, 0x0301, &handshake[start..cut]));
        start = cut;
    }
    out
}

/// A server_name extension body from `(name_type, name)` entries.
pub(super) fn server_name(entries: &[(u8, &[u8])]) -> Vec<u8> {
    let mut list = Vec::new();
    for (name_type, name) in entries {
        list.push(*name_type);
        list.extend(vec16(name));
    }
    vec16(&list)
}

pub(super) fn alpn(protos: &[&[u8]]) -> Vec<u8> {
    let list: Vec<u8> = protos.iter().flat_map(|p| vec8(p)).collect();
    vec16(&list)
}

pub(super) fn supported_versions(versions: &[u16]) -> Vec<u8> {
    let list: Vec<u8> = versions.iter().flat_map(|v| v.to_be_bytes()).collect();
    vec8(&list)
}

/// An encrypted_client_hello body: `ech_type`, HKDF-SHA256 + AES-128-GCM, config_id 7, a
/// 32-byte enc and `payload_len` payload bytes (the shape GREASE ECH has too).
pub(super) fn ech(ech_type: u8, payload_len: usize) -> Vec<u8> {
    let mut e = vec![ech_type, 0, 1, 0, 1, 7];
    e.extend(vec16(&[0x42; 32]));
    e.extend(vec16(&vec![0x24; payload_len]));
    e
}

pub(super) fn parse(wire: &[u8]) -> ClientHelloInfo {
    match peek_client_hello(wire) {
        Ok(info) => info,
        Err(e) => panic!("expected a ClientHello, got {e:?}"),
    }
}

pub(super) fn malformed(wire: &[u8]) -> &'static str {
    match peek_client_hello(wire) {
        Err(HelloError::Malformed { what }) => what,
        other => panic!("expected Malformed, got {other:?}"),
    }
}
