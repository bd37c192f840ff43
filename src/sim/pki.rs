//! A throwaway PKI for `demo` and the tests: a CA, a server certificate for the loopback
//! central system, and client certificates for security profile 3.
//!
//! Everything is generated in memory with rcgen (ECDSA P-256) at start-up and never written
//! anywhere but where the caller asks. Not for production use: the CA key lives in memory.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Why a certificate could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused the parameters (e.g. a host name that is not a valid DNS name).
    #[error("cannot generate a test certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A test CA and a server certificate signed by it (PEM text).
#[derive(Clone)]
pub struct TestPki {
    /// The CA certificate: what a client trusts (`csms.ca_file`).
    pub ca_pem: String,
    /// The server certificate (leaf only; the CA is the direct issuer).
    pub server_cert_pem: String,
    /// The server's private key (PKCS#8).
    pub server_key_pem: String,
    ca_key_pem: String,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki").finish_non_exhaustive()
    }
}

const CA_NAME: &str = "chargebridge test CA";

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "chargebridge");
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    Ok(params)
}

impl TestPki {
    /// A new CA and a server certificate valid for `hosts` (DNS names or IP addresses, e.g.
    /// `["localhost", "127.0.0.1"]`).
    pub fn generate(hosts: &[&str]) -> Result<TestPki, PkiError> {
        let ca_key = KeyPair::generate()?;
        let ca_params = ca_params()?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, &ca_key);

        let server_key = KeyPair::generate()?;
        let names: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name.push(
            DnType::CommonName,
            hosts.first().copied().unwrap_or("localhost"),
        );
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let server_cert = params.signed_by(&server_key, &issuer)?;

        Ok(TestPki {
            ca_pem: ca_cert.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            ca_key_pem: ca_key.serialize_pem(),
        })
    }

    /// A client certificate with common name `cn` (for profile 3, the charge point's serial
    /// number, SWP A00.FR.405), signed by the CA. Returns `(cert_pem, key_pem)`.
    pub fn client_cert(&self, cn: &str) -> Result<(String, String), PkiError> {
        let ca_key = KeyPair::from_pem(&self.ca_key_pem)?;
        let issuer = Issuer::new(ca_params()?, &ca_key);
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::OrganizationName, "chargebridge");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Writes the CA certificate to `dir/ca.pem` (for `csms.ca_file`); returns the path.
    pub fn write_ca(&self, dir: &Path) -> Result<PathBuf, PkiError> {
        write(&dir.join("ca.pem"), &self.ca_pem)
    }

    /// Writes a new client certificate for `cn` and its key to `dir/<file_stem>.pem` and
    /// `dir/<file_stem>.key`; returns both paths.
    pub fn write_client_cert(
        &self,
        dir: &Path,
        file_stem: &str,
        cn: &str,
    ) -> Result<(PathBuf, PathBuf), PkiError> {
        let (cert, key) = self.client_cert(cn)?;
        let cert_path = write(&dir.join(format!("{file_stem}.pem")), &cert)?;
        let key_path = write(&dir.join(format!("{file_stem}.key")), &key)?;
        Ok((cert_path, key_path))
    }
}

fn write(path: &Path, text: &str) -> Result<PathBuf, PkiError> {
    std::fs::write(path, text).map_err(|source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_pem_for_ca_server_and_client() {
        let pki = TestPki::generate(&["localhost", "127.0.0.1"]).unwrap();
        assert!(pki.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(
            pki.server_cert_pem
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert!(pki.server_key_pem.contains("PRIVATE KEY"));
        let (cert, key) = pki.client_cert("SN-0001").unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(key.contains("PRIVATE KEY"));
        assert!(!format!("{pki:?}").contains("PRIVATE"));
    }

    #[test]
    fn the_written_ca_file_is_accepted_by_the_tls_client_config() {
        let pki = TestPki::generate(&["localhost"]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca = pki.write_ca(dir.path()).unwrap();
        let (cert, key) = pki.write_client_cert(dir.path(), "cp", "SN-0001").unwrap();
        crate::ocpp::tls::client_config(Some(&ca), Some((&cert, &key))).unwrap();
    }
}
