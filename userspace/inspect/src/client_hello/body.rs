//! The ClientHello message body and the extensions cork reads from it. The message has
//! fully arrived by now, so running short anywhere is [`HelloError::Malformed`].

use super::{ClientHelloInfo, HelloError, malformed, name::normalize_host_name};

const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
const EXT_PRE_SHARED_KEY: u16 = 41;
const EXT_SUPPORTED_VERSIONS: u16 = 43;
/// encrypted_client_hello, draft-ietf-tls-esni-13 and later (the code point that shipped).
const EXT_ECH: u16 = 0xfe0d;
/// Code points of earlier ECH drafts (-08 to -12) and of ESNI (encrypted_server_name,
/// draft-ietf-tls-esni-01 to -03): they hide the name just the same.
const EXT_ECH_DRAFTS: std::ops::RangeInclusive<u16> = 0xfe08..=0xfe0c;
const EXT_ESNI: u16 = 0xffce;
/// server_name NameType host_name (RFC 6066 §3), the only one defined.
const NAME_TYPE_HOST_NAME: u8 = 0;
/// ECHClientHelloType outer: the only type that may appear in a cleartext ClientHello
/// (`inner` marks the encrypted ClientHelloInner).
const ECH_OUTER: u8 = 0;

/// Parses a ClientHello body (RFC 8446 §4.1.2):
///
/// ```text
/// legacy_version(2) random(32) legacy_session_id<0..32>
/// cipher_suites<2..2^16-2> legacy_compression_methods<1..2^8-1>
/// extensions<8..2^16-1>          -- may be absent before TLS 1.3 (RFC 5246 §7.4.1.2)
/// ```
pub(super) fn parse(
    body: &[u8],
    record_version: u16,
    records_len: usize,
) -> Result<ClientHelloInfo, HelloError> {
    let mut r = Reader(body);
    let legacy_version = r.u16("client_hello: legacy_version")?;
    r.take(32, "client_hello: random")?;
    let session_id = r.vec8("client_hello: legacy_session_id")?;
    if session_id.len() > 32 {
        return Err(malformed(
            "client_hello: legacy_session_id longer than 32 bytes",
        ));
    }
    let suites = r.vec16("client_hello: cipher_suites")?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err(malformed("client_hello: cipher_suites"));
    }
    if r.vec8("client_hello: legacy_compression_methods")?
        .is_empty()
    {
        return Err(malformed("client_hello: no legacy_compression_methods"));
    }
    let mut info = ClientHelloInfo {
        sni: None,
        alpn: Vec::new(),
        has_ech: false,
        legacy_version,
        supported_versions: Vec::new(),
        record_version,
        records_len,
    };
    if r.is_empty() {
        return Ok(info);
    }
    let extensions = r.vec16("client_hello: extensions")?;
    r.end("client_hello: bytes after the extensions")?;
    read_extensions(extensions, &mut info)?;
    Ok(info)
}

/// `Extension { uint16 extension_type; opaque extension_data<0..2^16-1>; }` repeated.
fn read_extensions(extensions: &[u8], info: &mut ClientHelloInfo) -> Result<(), HelloError> {
    let mut r = Reader(extensions);
    let mut seen = Vec::new();
    while !r.is_empty() {
        let ext_type = r.u16("extension: type")?;
        let data = r.vec16("extension: data")?;
        if seen.last() == Some(&EXT_PRE_SHARED_KEY) {
            // RFC 8446 §4.2.11: pre_shared_key MUST be the last extension.
            return Err(malformed(
                "extensions: pre_shared_key is not the last extension",
            ));
        }
        seen.push(ext_type);
        match ext_type {
            EXT_SERVER_NAME => info.sni = Some(server_name(data)?),
            EXT_ALPN => info.alpn = alpn(data)?,
            EXT_SUPPORTED_VERSIONS => info.supported_versions = supported_versions(data)?,
            EXT_ECH => {
                ech_outer(data)?;
                info.has_ech = true;
            }
            t if t == EXT_ESNI || EXT_ECH_DRAFTS.contains(&t) => info.has_ech = true,
            _ => {}
        }
    }
    // RFC 8446 §4.2: no two extensions of the same type. Two server_name extensions would
    // let cork read one name while the upstream server reads the other.
    seen.sort_unstable();
    if seen.windows(2).any(|w| w[0] == w[1]) {
        return Err(malformed("extensions: the same extension type twice"));
    }
    Ok(())
}

/// RFC 6066 §3: `ServerName server_name_list<1..2^16-1>`, each
/// `{ NameType name_type; HostName name<1..2^16-1> }`. Exactly one `host_name` is accepted.
/// Other name types are refused: none is defined, and their encoding is not (RFC 6066 lets
/// each type define its own), so skipping one would be a guess.
fn server_name(data: &[u8]) -> Result<String, HelloError> {
    let mut outer = Reader(data);
    let mut list = Reader(outer.vec16("server_name: server_name_list")?);
    outer.end("server_name: bytes after server_name_list")?;
    if list.is_empty() {
        return Err(malformed("server_name: empty server_name_list"));
    }
    if list.u8("server_name: name_type")? != NAME_TYPE_HOST_NAME {
        return Err(malformed("server_name: name_type other than host_name"));
    }
    let name = list.vec16("server_name: host_name")?;
    if !list.is_empty() {
        return Err(malformed("server_name: more than one name"));
    }
    normalize_host_name(name).map_err(|e| malformed(e.sni_what()))
}

/// RFC 7301 §3.1: `ProtocolName protocol_name_list<2..2^16-1>`, each
/// `opaque ProtocolName<1..2^8-1>`; empty names are prohibited.
fn alpn(data: &[u8]) -> Result<Vec<Vec<u8>>, HelloError> {
    let mut outer = Reader(data);
    let mut list = Reader(outer.vec16("alpn: protocol_name_list")?);
    outer.end("alpn: bytes after protocol_name_list")?;
    if list.is_empty() {
        return Err(malformed("alpn: empty protocol_name_list"));
    }
    let mut names = Vec::new();
    while !list.is_empty() {
        let name = list.vec8("alpn: protocol name")?;
        if name.is_empty() {
            return Err(malformed("alpn: empty protocol name"));
        }
        names.push(name.to_vec());
    }
    Ok(names)
}

/// RFC 8446 §4.2.1, ClientHello form: `ProtocolVersion versions<2..254>`.
fn supported_versions(data: &[u8]) -> Result<Vec<u16>, HelloError> {
    let mut outer = Reader(data);
    let list = outer.vec8("supported_versions: versions")?;
    outer.end("supported_versions: bytes after versions")?;
    if list.is_empty() || list.len() % 2 != 0 {
        return Err(malformed("supported_versions: versions"));
    }
    Ok(list
        .chunks_exact(2)
        .map(|v| u16::from_be_bytes([v[0], v[1]]))
        .collect())
}

/// draft-ietf-tls-esni §5: `ECHClientHello` of type outer:
/// `HpkeSymmetricCipherSuite cipher_suite (kdf_id, aead_id); uint8 config_id;
/// opaque enc<0..2^16-1>; opaque payload<1..2^16-1>`. Checked only so that a broken
/// extension is refused like any other broken field; its contents are not used.
fn ech_outer(data: &[u8]) -> Result<(), HelloError> {
    let mut r = Reader(data);
    if r.u8("encrypted_client_hello: type")? != ECH_OUTER {
        return Err(malformed("encrypted_client_hello: not of type outer"));
    }
    r.take(4, "encrypted_client_hello: cipher_suite")?;
    r.u8("encrypted_client_hello: config_id")?;
    r.vec16("encrypted_client_hello: enc")?;
    if r.vec16("encrypted_client_hello: payload")?.is_empty() {
        return Err(malformed("encrypted_client_hello: empty payload"));
    }
    r.end("encrypted_client_hello: bytes after payload")
}

/// A cursor over a complete message: every shortfall is a malformed field.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], HelloError> {
        if self.0.len() < n {
            return Err(malformed(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, HelloError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, HelloError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// `opaque x<..2^8-1>`: a one-byte length, then that many bytes.
    fn vec8(&mut self, what: &'static str) -> Result<&'a [u8], HelloError> {
        let len = self.u8(what)?;
        self.take(usize::from(len), what)
    }

    /// `opaque x<..2^16-1>`: a two-byte length, then that many bytes.
    fn vec16(&mut self, what: &'static str) -> Result<&'a [u8], HelloError> {
        let len = self.u16(what)?;
        self.take(usize::from(len), what)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn end(&self, what: &'static str) -> Result<(), HelloError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(malformed(what))
        }
    }
}
