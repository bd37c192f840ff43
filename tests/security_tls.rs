//! chargebridge's TLS client (`ocpp::tls::client_config`) against real `openssl s_server`
//! processes with certificates made by `openssl` in each test (RSA included, which rcgen with
//! *ring* cannot make): the AWS ELB policy `ELBSecurityPolicy-TLS-1-2-Ext-2018-06` is accepted,
//! TLS 1.0/1.1 are refused, the chain and host name are always verified (wildcards and
//! intermediates as mainstream clients handle them), and a server demanding a client
//! certificate accepts security profile 3 and refuses a client without one.
//!
//! Each server is started on a free loopback port with `-www`, so a successful handshake is
//! followed by an HTTP request whose answer is s_server's session report (protocol, cipher).
//! The server processes are killed when the test ends (also when it fails).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chargebridge::ocpp::tls;
use rustls::pki_types::ServerName;
use rustls::{CipherSuite, ProtocolVersion};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The cipher list of AWS `ELBSecurityPolicy-TLS-1-2-Ext-2018-06` (TLS 1.2 only).
const ELB_CIPHERS: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:\
ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES256-SHA384:\
ECDHE-RSA-AES256-SHA384:ECDHE-RSA-AES256-SHA:ECDHE-ECDSA-AES256-SHA:AES128-GCM-SHA256:\
AES128-SHA256:AES128-SHA:AES256-GCM-SHA384:AES256-SHA256:AES256-SHA";

const HOST: &str = "csms.chargebridge.test";
const LIMIT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy)]
enum KeyKind {
    Rsa,
    Ec,
}

impl KeyKind {
    fn newkey_args(self) -> Vec<&'static str> {
        match self {
            KeyKind::Rsa => vec!["-newkey", "rsa:2048"],
            KeyKind::Ec => vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
        }
    }
}

/// Certificates made with the openssl command line in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
}

/// A certificate file and its key file.
#[derive(Clone)]
struct Cert {
    pem: PathBuf,
    key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A self-signed root CA.
    fn root(&self, name: &str, kind: KeyKind) -> Cert {
        // `req -x509` takes the CA extensions from a config file section.
        let ext = self.path(&format!("{name}.cnf"));
        std::fs::write(
            &ext,
            "[req]\ndistinguished_name=dn\n[dn]\n[v3]\nbasicConstraints=critical,CA:TRUE\n\
             keyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n",
        )
        .expect("write config");
        let (pem, key) = (format!("{name}.pem"), format!("{name}.key"));
        let mut args = vec!["req", "-x509", "-nodes", "-days", "2"];
        args.extend(kind.newkey_args());
        let subj = format!("/O=chargebridge test/CN={name}");
        let ext_s = ext.to_string_lossy().into_owned();
        args.extend([
            "-keyout",
            &key,
            "-out",
            &pem,
            "-subj",
            &subj,
            "-config",
            &ext_s,
            "-extensions",
            "v3",
        ]);
        openssl(self.dir.path(), &args);
        Cert {
            pem: self.path(&pem),
            key: self.path(&key),
        }
    }

    /// A certificate signed by `issuer`: a server (`san` = DNS names), a client, or an
    /// intermediate CA.
    fn issue(&self, name: &str, kind: KeyKind, issuer: &Cert, role: Role<'_>) -> Cert {
        let (csr, pem, key) = (
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.key"),
        );
        let subj = format!("/O=chargebridge test/CN={name}");
        let mut args = vec!["req", "-new", "-nodes"];
        args.extend(kind.newkey_args());
        args.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(self.dir.path(), &args);
        let ext = match role {
            Role::Server(names) => format!(
                "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
                 extendedKeyUsage=serverAuth\nsubjectAltName={}\n",
                names
                    .iter()
                    .map(|n| format!("DNS:{n}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Role::Client => "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
                             extendedKeyUsage=clientAuth\n"
                .to_owned(),
            Role::Intermediate => "basicConstraints=critical,CA:TRUE,pathlen:0\n\
                                   keyUsage=critical,keyCertSign,cRLSign\n"
                .to_owned(),
        };
        let ext_file = format!("{name}.ext");
        std::fs::write(self.path(&ext_file), ext).expect("write extension file");
        let (ca, ca_key) = (
            issuer.pem.to_string_lossy().into_owned(),
            issuer.key.to_string_lossy().into_owned(),
        );
        openssl(
            self.dir.path(),
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &pem,
                "-extfile",
                &ext_file,
            ],
        );
        Cert {
            pem: self.path(&pem),
            key: self.path(&key),
        }
    }
}

enum Role<'a> {
    Server(&'a [&'a str]),
    Client,
    Intermediate,
}

/// A running `openssl s_server`, killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Starts `openssl s_server -www` with `cert` and extra arguments; waits until it listens.
fn s_server(cert: &Cert, extra: &[&str]) -> Server {
    let port = free_port();
    let accept = format!("127.0.0.1:{port}");
    let child = Command::new("openssl")
        .args(["s_server", "-www", "-accept", &accept, "-cert"])
        .arg(&cert.pem)
        .arg("-key")
        .arg(&cert.key)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server starts");
    let server = Server { child, port };
    let start = Instant::now();
    while std::net::TcpStream::connect(&accept).is_err() {
        assert!(start.elapsed() < LIMIT, "s_server did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

/// What a successful connection negotiated, and s_server's report page.
struct Negotiated {
    version: ProtocolVersion,
    suite: CipherSuite,
    page: String,
}

/// Connects with chargebridge's client configuration (trusting `ca`, optionally with a client
/// certificate), asks for s_server's page. `Err` with the reason when refused at any stage.
async fn fetch(
    server: &Server,
    host: &str,
    ca: &Path,
    client: Option<&Cert>,
) -> Result<Negotiated, String> {
    let config: Arc<rustls::ClientConfig> =
        tls::client_config(Some(ca), client.map(|c| (c.pem.as_path(), c.key.as_path())))
            .map_err(|e| format!("configuration: {e}"))?;
    let work = async {
        let tcp = TcpStream::connect(("127.0.0.1", server.port))
            .await
            .map_err(|e| format!("tcp: {e}"))?;
        let name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
        let mut stream = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let (version, suite) = {
            let conn = stream.get_ref().1;
            (
                conn.protocol_version().ok_or("no version")?,
                conn.negotiated_cipher_suite().ok_or("no suite")?.suite(),
            )
        };
        stream
            .write_all(b"GET / HTTP/1.0\r\n\r\n")
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut page = Vec::new();
        // s_server -www closes without close_notify; what was read is what counts.
        let read = stream.read_to_end(&mut page).await;
        let page = String::from_utf8_lossy(&page).into_owned();
        if !page.starts_with("HTTP/1.0 200") {
            return Err(format!("no page: {read:?}"));
        }
        Ok(Negotiated {
            version,
            suite,
            page,
        })
    };
    tokio::time::timeout(LIMIT, work)
        .await
        .map_err(|_| "timed out".to_owned())?
}

/// The "Cipher is" / protocol lines of s_server's report.
fn report(page: &str) -> String {
    page.lines()
        .filter(|l| l.contains("Cipher is") || l.contains("Protocol"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ")
}

fn elb_server(pki: &Pki, kind: KeyKind) -> (Server, Cert) {
    let root = pki.root("root", kind);
    let leaf = pki.issue("csms", kind, &root, Role::Server(&[HOST]));
    let server = s_server(&leaf, &["-tls1_2", "-cipher", ELB_CIPHERS]);
    (server, root)
}

#[tokio::test]
async fn the_elb_policy_with_an_rsa_certificate_is_accepted() {
    let pki = Pki::new();
    let (server, root) = elb_server(&pki, KeyKind::Rsa);
    let n = fetch(&server, HOST, &root.pem, None).await.unwrap();
    eprintln!(
        "ELB policy, RSA certificate: {:?} {:?} (s_server: {})",
        n.version,
        n.suite,
        report(&n.page)
    );
    assert_eq!(n.version, ProtocolVersion::TLSv1_2);
    assert!(
        [
            CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ]
        .contains(&n.suite),
        "{:?}",
        n.suite
    );
    assert!(n.page.contains("TLSv1.2"), "{}", n.page);
}

#[tokio::test]
async fn the_elb_policy_with_an_ecdsa_certificate_is_accepted() {
    let pki = Pki::new();
    let (server, root) = elb_server(&pki, KeyKind::Ec);
    let n = fetch(&server, HOST, &root.pem, None).await.unwrap();
    eprintln!(
        "ELB policy, ECDSA certificate: {:?} {:?} (s_server: {})",
        n.version,
        n.suite,
        report(&n.page)
    );
    assert_eq!(n.version, ProtocolVersion::TLSv1_2);
    assert!(
        [
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ]
        .contains(&n.suite),
        "{:?}",
        n.suite
    );
}

#[tokio::test]
async fn tls_1_0_and_1_1_only_servers_are_refused() {
    let pki = Pki::new();
    let root = pki.root("root", KeyKind::Rsa);
    let leaf = pki.issue("csms", KeyKind::Rsa, &root, Role::Server(&[HOST]));
    for version in ["-tls1", "-tls1_1"] {
        // SECLEVEL=0: OpenSSL 3 refuses these versions itself otherwise.
        let server = s_server(&leaf, &[version, "-cipher", "DEFAULT:@SECLEVEL=0"]);
        let e = fetch(&server, HOST, &root.pem, None)
            .await
            .err()
            .unwrap_or_else(|| panic!("{version} was accepted"));
        assert!(e.starts_with("handshake"), "{version}: {e}");
    }
}

#[tokio::test]
async fn an_untrusted_server_certificate_is_refused() {
    let pki = Pki::new();
    let ours = pki.root("our-root", KeyKind::Ec);
    let theirs = pki.root("their-root", KeyKind::Ec);
    let leaf = pki.issue("csms", KeyKind::Ec, &theirs, Role::Server(&[HOST]));
    let server = s_server(&leaf, &[]);
    let e = fetch(&server, HOST, &ours.pem, None)
        .await
        .err()
        .expect("refused");
    assert!(
        e.contains("handshake") && e.contains("UnknownIssuer"),
        "{e}"
    );
}

#[tokio::test]
async fn a_certificate_for_another_host_is_refused() {
    let pki = Pki::new();
    let root = pki.root("root", KeyKind::Rsa);
    let leaf = pki.issue(
        "other",
        KeyKind::Rsa,
        &root,
        Role::Server(&["other.chargebridge.test"]),
    );
    let server = s_server(&leaf, &[]);
    let e = fetch(&server, HOST, &root.pem, None)
        .await
        .err()
        .expect("refused");
    assert!(
        e.contains("handshake") && e.contains("not valid for name"),
        "{e}"
    );
}

#[tokio::test]
async fn a_wildcard_certificate_covers_one_label_like_mainstream_clients() {
    let pki = Pki::new();
    let root = pki.root("root", KeyKind::Ec);
    let leaf = pki.issue(
        "wildcard",
        KeyKind::Ec,
        &root,
        Role::Server(&["*.chargebridge.test"]),
    );
    let server = s_server(&leaf, &[]);
    fetch(&server, HOST, &root.pem, None)
        .await
        .expect("csms.chargebridge.test matches *.chargebridge.test");
    let e = fetch(&server, "a.csms.chargebridge.test", &root.pem, None)
        .await
        .err()
        .expect("a wildcard does not cover two labels (RFC 6125 §6.4.3)");
    assert!(e.contains("not valid for name"), "{e}");
}

#[tokio::test]
async fn an_intermediate_sent_by_the_server_completes_the_chain() {
    let pki = Pki::new();
    let root = pki.root("root", KeyKind::Rsa);
    let intermediate = pki.issue("intermediate", KeyKind::Rsa, &root, Role::Intermediate);
    let leaf = pki.issue("csms", KeyKind::Rsa, &intermediate, Role::Server(&[HOST]));
    let chain = intermediate.pem.to_string_lossy().into_owned();
    let with_chain = s_server(&leaf, &["-cert_chain", &chain]);
    fetch(&with_chain, HOST, &root.pem, None)
        .await
        .expect("root trusted, intermediate sent by the server");
    // Without the intermediate the chain cannot be built (everest-demo #113: "unable to get
    // local issuer certificate"); mainstream non-browser clients fail the same way.
    let without = s_server(&leaf, &[]);
    let e = fetch(&without, HOST, &root.pem, None)
        .await
        .err()
        .expect("refused without the intermediate");
    assert!(e.contains("UnknownIssuer"), "{e}");
}

#[tokio::test]
async fn a_server_demanding_a_client_certificate_accepts_profile_3_and_refuses_without() {
    let pki = Pki::new();
    let root = pki.root("root", KeyKind::Ec);
    let leaf = pki.issue("csms", KeyKind::Ec, &root, Role::Server(&[HOST]));
    let client_ca = pki.root("client-ca", KeyKind::Rsa);
    let rsa_client = pki.issue("CB-0001", KeyKind::Rsa, &client_ca, Role::Client);
    let ec_client = pki.issue("CB-0002", KeyKind::Ec, &client_ca, Role::Client);
    let ca = client_ca.pem.to_string_lossy().into_owned();
    // Both TLS 1.2 (the ELB policy) and TLS 1.3, where the server's verdict on the client
    // certificate only arrives after the client's handshake finished.
    for version in [vec!["-tls1_2", "-cipher", ELB_CIPHERS], vec!["-tls1_3"]] {
        let mut args = vec!["-Verify", "1", "-verify_return_error", "-CAfile", &ca];
        args.extend(version.iter().copied());
        let server = s_server(&leaf, &args);
        for client in [&rsa_client, &ec_client] {
            let n = fetch(&server, HOST, &root.pem, Some(client))
                .await
                .unwrap_or_else(|e| panic!("{version:?}: profile 3 refused: {e}"));
            assert!(
                n.page.contains("Client certificate"),
                "{version:?}: the server saw the certificate: {}",
                n.page
            );
        }
        let e = fetch(&server, HOST, &root.pem, None)
            .await
            .err()
            .unwrap_or_else(|| panic!("{version:?}: accepted without a client certificate"));
        eprintln!("{version:?} without a client certificate: {e}");
        assert!(
            e.contains("HandshakeFailure") || e.contains("CertificateRequired"),
            "{version:?}: refused for the missing certificate: {e}"
        );
    }
}
