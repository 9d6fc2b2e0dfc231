//! [`TestCa`]: a certificate authority made fresh for one test, and the server
//! certificates it issues for the test upstream (`*.test` names and test addresses).

use std::path::Path;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::addr::check_ip;

/// The CA's common name, as a client's error message shows it.
pub const CA_NAME: &str = "cork test upstream CA";

/// A per-test CA ("cork test upstream CA") whose key lives only in this process.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").field("name", &CA_NAME).finish()
    }
}

impl TestCa {
    /// Generates a new CA key and self-signed certificate named [`CA_NAME`].
    pub fn new() -> Result<Self> {
        Self::named(CA_NAME)
    }

    /// Like [`TestCa::new`] with another common name (a second CA in the same test).
    pub fn named(common_name: &str) -> Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new()).context("CA params")?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().context("generate CA key")?;
        let issuer = CertifiedIssuer::self_signed(params, key).context("self-sign CA")?;
        Ok(Self { issuer })
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA certificate, DER.
    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// The CA's private key, PEM (PKCS#8): for a test proxy that mints certificates with
    /// this CA (squid's `tls-key=`, mitmproxy's `mitmproxy-ca.pem`).
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Writes the CA certificate as PEM (what `curl --cacert` or `SSL_CERT_FILE` takes).
    pub fn write_pem(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.pem()).with_context(|| format!("write {}", path.display()))
    }

    /// A rustls root store trusting only this CA.
    pub fn roots(&self) -> Result<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.der()).context("add test CA to root store")?;
        Ok(roots)
    }

    /// Issues a server certificate for `names`: DNS names (which must end in `.test`)
    /// and IP literals (which must be test addresses). The first name is also the CN.
    pub fn issue(&self, names: &[String]) -> Result<ServerCert> {
        for n in names {
            match n.parse() {
                Ok(ip) => {
                    check_ip(ip)?;
                }
                Err(_) => anyhow::ensure!(
                    n.trim_end_matches('.').ends_with(".test"),
                    "certificate name {n:?} is neither a .test name nor an address"
                ),
            }
        }
        let mut params = CertificateParams::new(names.to_vec())
            .with_context(|| format!("server cert params for {names:?}"))?;
        let mut dn = DistinguishedName::new();
        if let Some(first) = names.first() {
            dn.push(DnType::CommonName, first.as_str());
        }
        params.distinguished_name = dn;
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        // OpenSSL's strict mode (Python 3.13's default) wants an AKI on every issued cert.
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().context("generate server key")?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .with_context(|| format!("sign server cert for {names:?}"))?;
        let sans = params
            .subject_alt_names
            .iter()
            .map(|s| match s {
                SanType::DnsName(d) => d.as_str().to_owned(),
                SanType::IpAddress(ip) => ip.to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        Ok(ServerCert {
            cert: cert.der().clone(),
            cert_pem: cert.pem(),
            key_pkcs8: key.serialize_der(),
            key_pem: key.serialize_pem(),
            names: sans,
        })
    }
}

/// A leaf certificate and its key, issued by a [`TestCa`].
#[derive(Clone)]
pub struct ServerCert {
    /// The certificate, DER.
    pub cert: CertificateDer<'static>,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (PKCS#8).
    pub key_pem: String,
    /// The subject alternative names, as given.
    pub names: Vec<String>,
    key_pkcs8: Vec<u8>,
}

impl std::fmt::Debug for ServerCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCert")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl ServerCert {
    /// The private key in the form rustls takes.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.clone()))
    }
}
