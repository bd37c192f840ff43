//! The TLS client configuration towards the central system (security profiles 2 and 3).
//!
//! rustls with the *ring* provider, TLS 1.2 and 1.3 (SWP: "TLS 1.2 or later"). The provider's
//! suites include the four the security whitepaper names (ECDHE-ECDSA and ECDHE-RSA with
//! AES-128/256-GCM), which are also those of AWS `ELBSecurityPolicy-TLS-1-2-Ext-2018-06` that
//! rustls implements. The server certificate and host name are always verified: there is no
//! switch to turn that off (SmartEVSE PR #380 shows where such switches end up).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

/// Why a TLS configuration could not be built. Each message names the file to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA file could not be read or holds no PEM certificate.
    #[error(
        "ca_file {path}: {reason}; give a PEM file with the central system's CA certificate(s)"
    )]
    CaFile {
        /// The file as configured.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The operating system's trust store has no usable certificate.
    #[error(
        "the operating system's trust store has no usable CA certificate ({0}); install ca-certificates or set csms.ca_file"
    )]
    NativeRoots(String),
    /// The client certificate chain could not be read.
    #[error(
        "client_cert {path}: {reason}; give a PEM file with the charge point certificate (and its chain)"
    )]
    ClientCert {
        /// The file as configured.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The client key could not be read.
    #[error(
        "client_key {path}: {reason}; give a PEM file with the private key (PKCS#8, RSA or EC)"
    )]
    ClientKey {
        /// The file as configured.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the combination (e.g. a key that does not match the certificate).
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider used everywhere in chargebridge (client, test server).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The TLS versions offered: 1.2 and 1.3 (SWP: TLS 1.2 minimum).
pub const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS12, &rustls::version::TLS13];

/// Builds the client configuration: roots from `ca_file` (PEM, several certificates allowed)
/// or else the operating system's trust store; with `client_cert = Some((chain, key))` the
/// charge point authenticates with a certificate (security profile 3).
pub fn client_config(
    ca_file: Option<&Path>,
    client_cert: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = match ca_file {
        Some(path) => roots_from_file(path)?,
        None => native_roots()?,
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_root_certificates(roots);
    let config = match client_cert {
        None => builder.with_no_client_auth(),
        Some((cert_path, key_path)) => {
            let chain = read_chain(cert_path)?;
            let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| TlsError::ClientKey {
                path: key_path.to_path_buf(),
                reason: pem_reason(&e),
            })?;
            builder.with_client_auth_cert(chain, key)?
        }
    };
    Ok(Arc::new(config))
}

/// Builds a client configuration trusting exactly the CA certificates in `ca_pem` (test and
/// `demo` use; the PEM text is what [`crate::sim::pki::TestPki`] produces).
pub fn client_config_from_pem(ca_pem: &str) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = roots_from_pem(ca_pem.as_bytes(), Path::new("<memory>"))?;
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn roots_from_file(path: &Path) -> Result<RootCertStore, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| TlsError::CaFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    roots_from_pem(&bytes, path)
}

fn roots_from_pem(pem: &[u8], path: &Path) -> Result<RootCertStore, TlsError> {
    let ca_err = |reason: String| TlsError::CaFile {
        path: path.to_path_buf(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| ca_err(pem_reason(&e)))?;
        roots
            .add(cert)
            .map_err(|e| ca_err(format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(ca_err("no PEM certificate found".into()));
    }
    Ok(roots)
}

fn native_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map(ToString::to_string)
            .unwrap_or_else(|| "none found".into());
        return Err(TlsError::NativeRoots(why));
    }
    if !found.errors.is_empty() {
        tracing::debug!(
            errors = found.errors.len(),
            "some trust store entries could not be read"
        );
    }
    Ok(roots)
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::ClientCert {
        path: path.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(pem_reason(&e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(pem_reason(&e)))?;
    if chain.is_empty() {
        return Err(err("no PEM certificate found".into()));
    }
    Ok(chain)
}

fn pem_reason(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM item of the expected kind".into(),
        other => format!("invalid PEM ({other:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::CipherSuite;

    #[test]
    fn the_provider_offers_the_whitepaper_cipher_suites() {
        let p = provider();
        let suites: Vec<CipherSuite> = p.cipher_suites.iter().map(|s| s.suite()).collect();
        for needed in [
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ] {
            assert!(suites.contains(&needed), "{needed:?} missing");
        }
    }

    #[test]
    fn a_missing_ca_file_names_the_file() {
        let e = client_config(Some(Path::new("/nonexistent/ca.pem")), None).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let e = client_config(Some(&path), None).unwrap_err();
        assert!(matches!(e, TlsError::CaFile { .. }), "{e}");
    }
}
