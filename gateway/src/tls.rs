//! TLS key material for the HTTPS listener.
//!
//! Certificates are loaded and checked here, during config validation, and
//! never by pingora: its `TlsSettings::build` panics on a bad file. The
//! listener is given a [`CertResolver`] that hands out the current
//! [`CertifiedKey`] from an `ArcSwap`, so a new certificate can be put in
//! place for new handshakes without touching the listening socket.

use crate::metrics::metrics;
use arc_swap::ArcSwap;
use pingora::listeners::{PreTlsProcess, TlsAccept};
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::tls::TlsRef;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use rustls::sign::CertifiedKey;

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate file {path}: {reason}")]
    CertFile { path: PathBuf, reason: String },
    #[error("no PEM certificate found in {path}")]
    NoCertificate { path: PathBuf },
    #[error("cannot read a PEM private key from {path}: {reason}")]
    KeyFile { path: PathBuf, reason: String },
    #[error("key {key} does not suit certificate {cert}: {reason}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("cannot use the client CA {path}: {reason}")]
    ClientCa { path: PathBuf, reason: String },
    #[error("cannot set up the HTTPS listener's TLS: {reason}")]
    Listener { reason: String },
}

impl TlsError {
    /// The config field the error belongs to.
    pub fn field(&self) -> &'static str {
        match self {
            TlsError::CertFile { .. } | TlsError::NoCertificate { .. } => {
                "listeners.https.certificate"
            }
            TlsError::KeyFile { .. } | TlsError::Mismatch { .. } => "listeners.https.key",
            TlsError::ClientCa { .. } => "admin.tls.client_ca",
            TlsError::Listener { .. } => "listeners.https",
        }
    }

    /// The field of the admin listener's TLS the error belongs to.
    pub fn admin_field(&self) -> &'static str {
        match self {
            TlsError::CertFile { .. } | TlsError::NoCertificate { .. } => "admin.tls.certificate",
            TlsError::KeyFile { .. } | TlsError::Mismatch { .. } => "admin.tls.key",
            TlsError::ClientCa { .. } => "admin.tls.client_ca",
            TlsError::Listener { .. } => "admin.tls",
        }
    }
}

/// The admin listener's TLS: TLS 1.2/1.3 with the certificate and key at
/// `cert`/`key`; with `client_ca`, every client must present a certificate
/// signed by one of its CAs (mutual TLS).
pub fn admin_server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<rustls::ServerConfig, TlsError> {
    let ck = load_certified_key(cert, key)?;
    let builder = server_config_builder().map_err(|reason| TlsError::Mismatch {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        reason,
    })?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let bad = |reason: String| TlsError::ClientCa {
                path: path.to_path_buf(),
                reason,
            };
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
                roots
                    .add(c.map_err(|e| bad(e.to_string()))?)
                    .map_err(|e| bad(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(bad("no PEM certificate in it".into()));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .map_err(|e| bad(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    Ok(builder.with_cert_resolver(Arc::new(CertResolverStatic(Arc::new(ck)))))
}

/// The one crypto provider of both TLS listeners (bench/LEVERS-3.md says
/// why ring and not aws-lc-rs); [`ticketer`] is the same library's.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Stateless session tickets from [`provider`]'s library (the key changes
/// every 6 hours).
fn ticketer() -> Result<Arc<dyn rustls::server::ProducesTickets>, rustls::Error> {
    rustls::crypto::ring::Ticketer::new()
}

/// TLS 1.3 and 1.2 with [`provider`]; the error is rustls' reason.
fn server_config_builder(
) -> Result<rustls::ConfigBuilder<rustls::ServerConfig, rustls::WantsVerifier>, String> {
    rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())
}

/// How the HTTPS listener lets a returning client skip the full handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resumption {
    /// Sessions kept in memory for resumption by id (TLS 1.2) or by a
    /// stateful ticket (TLS 1.3); 0 keeps none.
    pub session_cache: usize,
    /// Stateless tickets, encrypted with a key that changes every 6 hours.
    pub tickets: bool,
}

/// The HTTPS listener's TLS: TLS 1.3/1.2, the certificate `resolver`
/// hands out, HTTP/2 offered by ALPN when `http2`, and session resumption
/// as `resumption` says; resumed handshakes are counted.
pub fn listener_server_config(
    resolver: Arc<CertResolver>,
    http2: bool,
    resumption: Resumption,
) -> Result<rustls::ServerConfig, TlsError> {
    let bad = |reason: String| TlsError::Listener { reason };
    let mut config = server_config_builder()
        .map_err(bad)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    if http2 {
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    }
    config.session_storage = if resumption.session_cache == 0 {
        Arc::new(rustls::server::NoServerSessionStorage {})
    } else {
        Arc::new(CountResumed(rustls::server::ServerSessionMemoryCache::new(
            resumption.session_cache,
        )))
    };
    if resumption.tickets {
        config.ticketer = Arc::new(CountResumed(ticketer().map_err(|e| bad(e.to_string()))?));
    }
    Ok(config)
}

/// Counts the resumptions a session store or a ticketer allows:
/// `twinport_tls_handshakes_total{stage="resumed"}`.
#[derive(Debug)]
struct CountResumed<T>(T);

fn count_resumed<V>(found: Option<V>) -> Option<V> {
    if found.is_some() {
        metrics()
            .tls_handshakes
            .with_label_values(&["resumed"])
            .inc();
    }
    found
}

impl<T: rustls::server::StoresServerSessions> rustls::server::StoresServerSessions
    for CountResumed<Arc<T>>
{
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.0.put(key, value)
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        count_resumed(self.0.get(key))
    }
    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        count_resumed(self.0.take(key))
    }
    fn can_cache(&self) -> bool {
        self.0.can_cache()
    }
}

impl rustls::server::ProducesTickets for CountResumed<Arc<dyn rustls::server::ProducesTickets>> {
    fn enabled(&self) -> bool {
        self.0.enabled()
    }
    fn lifetime(&self) -> u32 {
        self.0.lifetime()
    }
    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.0.encrypt(plain)
    }
    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        count_resumed(self.0.decrypt(cipher))
    }
}

/// One fixed certificate (the admin listener's: changed at restart only).
#[derive(Debug)]
struct CertResolverStatic(Arc<CertifiedKey>);

impl ResolvesServerCert for CertResolverStatic {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Loads a PEM certificate chain and its private key and checks that they
/// belong together and that the key type is supported.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| TlsError::CertFile {
            path: cert.to_path_buf(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_path_buf(),
        });
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::KeyFile {
        path: key.to_path_buf(),
        reason: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, der, &provider()).map_err(|e| TlsError::Mismatch {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The Unix time at which the leaf certificate of `key` expires, or `None`
/// if its DER cannot be read (rustls accepted it, so this is unexpected).
pub fn not_after(key: &CertifiedKey) -> Option<i64> {
    let leaf = key.cert.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// Exports the expiry of the certificate now in force.
fn export_expiry(key: &CertifiedKey) {
    let gauge = metrics().certificate_expiry.with_label_values(&["https"]);
    match not_after(key) {
        Some(t) => gauge.set(t),
        None => tracing::warn!("cannot read the certificate's expiry date for the metric"),
    }
}

/// Counts the HTTPS listener's handshakes: `started` for every accepted
/// connection (pingora's pre-TLS hook), `completed` after a successful
/// handshake. Pingora has no hook for a failed handshake, so failures are
/// `started - completed` (handshakes still running count there for the
/// few milliseconds they take).
pub struct HandshakeCounter;

#[async_trait::async_trait]
impl PreTlsProcess for HandshakeCounter {
    async fn process(&self, _stream: &mut L4Stream) -> pingora::Result<()> {
        metrics()
            .tls_handshakes
            .with_label_values(&["started"])
            .inc();
        Ok(())
    }
}

#[async_trait::async_trait]
impl TlsAccept for HandshakeCounter {
    async fn handshake_complete_callback(
        &self,
        _tls: &TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        metrics()
            .tls_handshakes
            .with_label_values(&["completed"])
            .inc();
        None
    }
}

/// Serves the current certificate to every new handshake.
#[derive(Debug)]
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl CertResolver {
    pub fn new(key: Arc<CertifiedKey>) -> Self {
        export_expiry(&key);
        CertResolver {
            current: ArcSwap::new(key),
        }
    }

    /// Puts a new certificate in place for handshakes that start from now on;
    /// connections already established keep theirs.
    pub fn replace(&self, key: Arc<CertifiedKey>) {
        export_expiry(&key);
        self.current.store(key);
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("twinport-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn expiry_is_read_from_the_leaf() {
        let d = tempdir("expiry");
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 5, 17);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let c = write(&d, "c.pem", &cert.pem());
        let k = write(&d, "k.pem", &key.serialize_pem());
        let ck = load_certified_key(&c, &k).unwrap();
        // 2031-05-17T00:00:00Z
        assert_eq!(not_after(&ck), Some(1_936_742_400));
    }

    #[test]
    fn missing_certificate_names_the_certificate_field() {
        let d = tempdir("missing");
        let err = load_certified_key(&d.join("nope.crt"), &d.join("nope.key")).unwrap_err();
        assert_eq!(err.field(), "listeners.https.certificate");
        assert!(err.to_string().contains("nope.crt"), "{err}");
    }

    #[test]
    fn garbage_is_refused_with_the_right_field() {
        let d = tempdir("garbage");
        let c = write(&d, "c.pem", "not a certificate\n");
        let k = write(&d, "k.pem", "not a key\n");
        assert!(matches!(
            load_certified_key(&c, &k),
            Err(TlsError::NoCertificate { .. })
        ));
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let c = write(&d, "good.pem", &cert.cert.pem());
        let err = load_certified_key(&c, &k).unwrap_err();
        assert_eq!(err.field(), "listeners.https.key");
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let d = tempdir("mismatch");
        let one = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let two = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let c = write(&d, "one.pem", &one.cert.pem());
        let k = write(&d, "two.key", &two.key_pair.serialize_pem());
        assert!(matches!(
            load_certified_key(&c, &k),
            Err(TlsError::Mismatch { .. })
        ));
        let k = write(&d, "one.key", &one.key_pair.serialize_pem());
        load_certified_key(&c, &k).expect("matching pair loads");
    }
}
