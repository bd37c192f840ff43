//! The TLS client configuration against servers restricted to one version and cipher suite:
//! a central system that only speaks the security whitepaper's TLS 1.2 suites is reachable.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use chargebridge::ocpp::tls;
use chargebridge::sim::pki::TestPki;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{CipherSuite, ProtocolVersion, SupportedCipherSuite};
use tokio::net::{TcpListener, TcpStream};

fn restricted_server(
    pki: &TestPki,
    suite: SupportedCipherSuite,
    version: &'static rustls::SupportedProtocolVersion,
) -> Arc<rustls::ServerConfig> {
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: vec![suite],
        ..rustls::crypto::ring::default_provider()
    };
    let chain = CertificateDer::pem_slice_iter(pki.server_cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes()).unwrap();
    Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[version])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
    )
}

/// Connects with chargebridge's client configuration; returns the negotiated version and suite.
async fn handshake(
    pki: &TestPki,
    server: Arc<rustls::ServerConfig>,
) -> Result<(ProtocolVersion, CipherSuite), String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let serve = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let _ = acceptor.accept(tcp).await;
    });
    let dir = tempfile::tempdir().unwrap();
    let ca = pki.write_ca(dir.path()).unwrap();
    let client = tls::client_config(Some(&ca), None).unwrap();
    let connector = tokio_rustls::TlsConnector::from(client);
    let tcp = TcpStream::connect(addr).await.unwrap();
    let result = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())
        .map(|tls| {
            let (_, conn) = tls.get_ref();
            (
                conn.protocol_version().unwrap(),
                conn.negotiated_cipher_suite().unwrap().suite(),
            )
        });
    serve.abort();
    result
}

#[tokio::test]
async fn the_whitepaper_ecdsa_suites_over_tls_12_are_negotiated() {
    let pki = TestPki::generate(&["localhost"]).unwrap();
    for suite in [
        rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ] {
        let server = restricted_server(&pki, suite, &rustls::version::TLS12);
        let (version, negotiated) = handshake(&pki, server).await.unwrap();
        assert_eq!(version, ProtocolVersion::TLSv1_2);
        assert_eq!(negotiated, suite.suite());
    }
}

#[tokio::test]
async fn tls_13_is_negotiated_when_the_server_offers_it() {
    let pki = TestPki::generate(&["localhost"]).unwrap();
    let server = restricted_server(
        &pki,
        rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
        &rustls::version::TLS13,
    );
    let (version, _) = handshake(&pki, server).await.unwrap();
    assert_eq!(version, ProtocolVersion::TLSv1_3);
}

#[tokio::test]
async fn a_server_signed_by_another_ca_fails_the_handshake() {
    let pki = TestPki::generate(&["localhost"]).unwrap();
    let other = TestPki::generate(&["localhost"]).unwrap();
    let server = restricted_server(
        &other,
        rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
        &rustls::version::TLS13,
    );
    let err = handshake(&pki, server).await.unwrap_err();
    assert!(err.contains("certificate"), "{err}");
}

#[tokio::test]
async fn a_ca_file_with_several_certificates_trusts_each_of_them() {
    let first = TestPki::generate(&["localhost"]).unwrap();
    let second = TestPki::generate(&["localhost"]).unwrap();
    let mut bundle = first.clone();
    bundle.ca_pem = format!("{}{}", first.ca_pem, second.ca_pem);
    for server_pki in [&first, &second] {
        let server = restricted_server(
            server_pki,
            rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
            &rustls::version::TLS13,
        );
        assert!(handshake(&bundle, server).await.is_ok());
    }
}
