//! The Basic Auth password never reaches the logs, not even at trace level with `log` records
//! of the dependencies forwarded (its own test binary: it installs the global subscriber).

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use chargebridge::ocpp::session::{SessionConfig, SessionEvent, spawn_session};
use chargebridge::sim::csms::{Csms, CsmsOptions};
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_password_is_never_logged_even_at_trace_level() {
    let capture = Capture::default();
    let writer = capture.clone();
    // `init` also forwards `log` records (tungstenite, rustls) into tracing.
    tracing_subscriber::fmt()
        .with_env_filter("trace")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    const ID: &str = "CB-0001";
    const PASSWORD: &str = "Sup3rSecretAuthKey42";
    let csms = Csms::start(CsmsOptions {
        passwords: HashMap::from([(ID.to_owned(), PASSWORD.to_owned())]),
        ..CsmsOptions::default()
    })
    .await
    .unwrap();
    let token = CancellationToken::new();
    let mut cfg = SessionConfig::new(csms.url(), ID);
    cfg.password = Some(PASSWORD.into());
    cfg.backoff_min = Duration::from_millis(20);
    let (handle, mut events) = spawn_session(cfg.clone(), token.clone());
    assert!(matches!(
        tokio::time::timeout(Duration::from_secs(5), events.recv()).await,
        Ok(Some(SessionEvent::Connected))
    ));
    handle.call("Heartbeat", json!({})).await.unwrap();
    tracing::info!(config = ?cfg, "config as a log line");
    token.cancel();
    csms.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    assert!(
        logs.contains("Heartbeat") || logs.contains("connected"),
        "nothing was logged"
    );
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{ID}:{PASSWORD}"));
    assert!(!logs.contains(PASSWORD), "password in logs");
    assert!(!logs.contains(&token), "Basic Auth token in logs");
}
