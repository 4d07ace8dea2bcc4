//! A listener's TLS: its certificate and key read from PEM files into a rustls server
//! configuration (TLS 1.2 and 1.3, the ring provider), read again when the files change.

use crate::routes::Tls;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// A certificate in force: the acceptor new handshakes use, and a digest of the files it
/// came from, to tell whether they changed.
#[derive(Clone)]
pub(crate) struct Loaded {
    pub acceptor: TlsAcceptor,
    pub digest: u64,
}

/// Why a certificate could not be loaded. Its text names the file and what is wrong, never
/// any part of the key.
pub(crate) type LoadError = String;

/// Reads both files; `Ok(None)` when their contents are those of `current` already.
pub(crate) fn load(tls: &Tls, current: Option<u64>) -> Result<Option<Loaded>, LoadError> {
    let cert_pem = read(&tls.cert)?;
    // One file read once: a rename between two reads cannot pair two versions.
    let key_pem = match tls.key == tls.cert {
        true => cert_pem.clone(),
        false => read(&tls.key)?,
    };
    let digest = digest(&cert_pem, &key_pem);
    if current == Some(digest) {
        return Ok(None);
    }
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate: {e}", tls.cert))?;
    if chain.is_empty() {
        return Err(format!("{}: holds no certificate", tls.cert));
    }
    // pki-types' error names the section kind or the I/O failure, never key bytes.
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("{}: not a PEM private key: {e}", tls.key))?;
    // rustls 0.23.48 deprecates its ring provider for lacking post-quantum key exchange
    // (X25519MLKEM768, aws-lc-rs only). Keyhaven builds with a C compiler alone, which
    // aws-lc-rs does not (cmake), so handshakes use classical ECDHE (X25519, P-256, P-384).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS protocol versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("{} and {}: {e}", tls.cert, tls.key))?;
    Ok(Some(Loaded {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        digest,
    }))
}

fn read(path: &str) -> Result<Vec<u8>, LoadError> {
    std::fs::read(Path::new(path)).map_err(|e| format!("{path}: {e}"))
}

/// Tells changed files from unchanged ones; not a secret-keeping hash (it never leaves the
/// process).
fn digest(cert: &[u8], key: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    cert.hash(&mut h);
    key.hash(&mut h);
    h.finish()
}
