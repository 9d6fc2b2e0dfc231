//! The bottle's certificate authority: made in memory when the bottle starts, never
//! written anywhere the bottle can read (only its certificate is), and gone when the agent
//! exits — except that the daemon keeps its bottles' CA keys in its state directory
//! (root only) so that a restarted daemon serves the CA its bottles already trust. Leaf certificates are minted per SNI name on first use and cached.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::crypto::ring::sign::any_supported_type;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Leaves cached per bottle; past this the cache starts over (a bottle naming endlessly
/// many hosts must not grow the agent without bound). Names are policy-allowed anyway.
const MAX_CACHED_LEAVES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("generating a key pair")]
    Key(#[source] rcgen::Error),
    #[error("making the bottle CA certificate")]
    CaCert(#[source] rcgen::Error),
    #[error("minting a leaf certificate for {name}")]
    Leaf {
        name: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("loading the leaf key into rustls")]
    Signer(#[source] rustls::Error),
}

/// A per-bottle CA. `Debug` shows the subject only.
pub struct BottleCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    /// One key for every leaf of this bottle: minting is then one signature, and the
    /// key is as secret as the CA key (memory of the agent only).
    leaf_key: KeyPair,
    leaf_signer: Arc<dyn rustls::sign::SigningKey>,
    subject: String,
    leaves: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl fmt::Debug for BottleCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BottleCa")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// The common name of bottle `bottle`'s CA certificate. `cork probe` looks for it in the
/// bundles a bottle's clients trust.
pub fn subject(bottle: &str) -> String {
    format!("cork bottle {bottle} CA")
}

/// The CA certificate's parameters for bottle `bottle`, and its subject.
fn ca_params(bottle: &str) -> (CertificateParams, String) {
    let subject = subject(bottle);
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, subject.clone());
    dn.push(DnType::OrganizationName, "cork");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = time_now();
    params.not_before = now - std::time::Duration::from_secs(3600);
    params.not_after = now + std::time::Duration::from_secs(30 * 24 * 3600);
    (params, subject)
}

impl BottleCa {
    /// Makes a fresh CA for bottle `bottle` (its name goes in the subject, so a user who
    /// sees the certificate knows which cork bottle minted it).
    pub fn new(bottle: &str) -> Result<Self, CaError> {
        let key = KeyPair::generate().map_err(CaError::Key)?;
        let (params, subject) = ca_params(bottle);
        let cert = params.self_signed(&key).map_err(CaError::CaCert)?;
        Self::assemble(params, key, cert.pem(), subject)
    }

    /// The CA of bottle `bottle` made earlier by [`BottleCa::new`], from its certificate
    /// and key (a restarted daemon taking its bottles back: their processes trust this
    /// certificate already). Leaves minted from now on chain to that certificate: same
    /// subject, same key, so the same issuer name and key identifier.
    pub fn restore(bottle: &str, cert_pem: &str, key_pem: &str) -> Result<Self, CaError> {
        let key = KeyPair::from_pem(key_pem).map_err(CaError::Key)?;
        let (params, subject) = ca_params(bottle);
        Self::assemble(params, key, cert_pem.to_owned(), subject)
    }

    fn assemble(
        params: CertificateParams,
        key: KeyPair,
        cert_pem: String,
        subject: String,
    ) -> Result<Self, CaError> {
        let leaf_key = KeyPair::generate().map_err(CaError::Key)?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let leaf_signer = any_supported_type(&der).map_err(CaError::Signer)?;
        Ok(BottleCa {
            cert_pem,
            issuer: Issuer::new(params, key),
            leaf_key,
            leaf_signer,
            subject,
            leaves: Mutex::new(HashMap::new()),
        })
    }

    /// The CA's private key, PEM: only for the daemon's state directory (mode 0600, never
    /// a place the bottle can read), so that a restarted daemon serves the same CA.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// The CA certificate, PEM: what the bottle trusts.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The leaf for `name` (already validated as a host name), minted on first use.
    pub fn leaf(&self, name: &str) -> Result<Arc<CertifiedKey>, CaError> {
        if let Some(k) = lock(&self.leaves).get(name) {
            return Ok(k.clone());
        }
        let leaf = self.mint(name)?;
        let mut leaves = lock(&self.leaves);
        if leaves.len() >= MAX_CACHED_LEAVES {
            leaves.clear();
        }
        leaves.insert(name.to_owned(), leaf.clone());
        Ok(leaf)
    }

    fn mint(&self, name: &str) -> Result<Arc<CertifiedKey>, CaError> {
        let err = |source| CaError::Leaf {
            name: name.to_owned(),
            source,
        };
        // Only the SNI name: one certificate, one name, so a client cannot coalesce other
        // hosts onto this connection.
        let mut params = CertificateParams::new(vec![name.to_owned()]).map_err(err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = time_now();
        params.not_before = now - std::time::Duration::from_secs(3600);
        params.not_after = now + std::time::Duration::from_secs(7 * 24 * 3600);
        let cert = params
            .signed_by(&self.leaf_key, &self.issuer)
            .map_err(err)?;
        let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
        Ok(Arc::new(CertifiedKey::new(chain, self.leaf_signer.clone())))
    }
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Serves the one leaf the flow was decided for. The name rustls parses from the
/// handshake must be the name cork's own parser read before deciding (compared
/// case-insensitively); if the two parsers ever disagree, there is no certificate and the
/// handshake fails.
#[derive(Debug)]
pub struct DecidedLeaf {
    pub name: String,
    pub leaf: Arc<CertifiedKey>,
}

impl ResolvesServerCert for DecidedLeaf {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name()?;
        let name = name.strip_suffix('.').unwrap_or(name);
        name.eq_ignore_ascii_case(&self.name)
            .then(|| self.leaf.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::RootCertStore;
    use rustls::client::danger::ServerCertVerifier;

    #[test]
    fn leaves_are_cached_per_name_and_carry_only_that_name() {
        let ca = BottleCa::new("t").unwrap();
        assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let a = ca.leaf("api.example.test").unwrap();
        let b = ca.leaf("api.example.test").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let c = ca.leaf("other.example.test").unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        // The DER holds the name once as a SAN (and once in the CN) and not the other.
        let der = a.cert[0].as_ref();
        let has = |n: &[u8]| der.windows(n.len()).any(|w| w == n);
        assert!(has(b"api.example.test"));
        assert!(!has(b"other.example.test"));
    }

    #[test]
    fn a_restored_ca_mints_leaves_that_chain_to_the_original_certificate() {
        let ca = BottleCa::new("r").unwrap();
        let again = BottleCa::restore("r", ca.cert_pem(), &ca.key_pem()).unwrap();
        assert_eq!(again.cert_pem(), ca.cert_pem());
        let leaf = again.leaf("api.example.test").unwrap();
        // A client trusting only the original certificate accepts the new leaf.
        let mut roots = RootCertStore::empty();
        for der in rustls_pemfile_certs(ca.cert_pem()) {
            roots.add(der).unwrap();
        }
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let name = rustls_pki_types::ServerName::try_from("api.example.test").unwrap();
        verifier
            .verify_server_cert(
                &leaf.cert[0],
                &[],
                &name,
                &[],
                rustls_pki_types::UnixTime::now(),
            )
            .expect("the restored CA's leaf verifies against the original certificate");
        assert!(BottleCa::restore("r", ca.cert_pem(), "not a key").is_err());
    }

    fn rustls_pemfile_certs(pem: &str) -> Vec<CertificateDer<'static>> {
        use rustls_pki_types::pem::PemObject;
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn debug_does_not_print_keys() {
        let ca = BottleCa::new("dbg").unwrap();
        // Exactly the subject. A derived Debug would lack "PRIVATE" too (rcgen elides key
        // bytes) while printing the signer, the certificate and every minted leaf.
        assert_eq!(
            format!("{ca:?}"),
            r#"BottleCa { subject: "cork bottle dbg CA", .. }"#
        );
    }
}
