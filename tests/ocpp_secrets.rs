//! The Basic Auth password never reaches the logs, not even at trace level with `log` records
//! of the dependencies forwarded (its own test binary: it installs the global subscriber).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use chargebridge::ocpp::session::{SessionConfig, SessionEvent, spawn_session};
use chargebridge::sim::csms::{Csms, CsmsOptions};
use common::log_capture::LogCapture;
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn the_password_is_never_logged_even_at_trace_level() {
    let capture = LogCapture::install();

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

    let logs = capture.text();
    assert!(
        logs.contains("Heartbeat") || logs.contains("connected"),
        "nothing was logged"
    );
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{ID}:{PASSWORD}"));
    assert!(!logs.contains(PASSWORD), "password in logs");
    assert!(!logs.contains(&token), "Basic Auth token in logs");
}
