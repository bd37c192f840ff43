//! The OCPP session against the loopback central system, over real loopback sockets.

// Setup helpers outside #[test] functions: a failed setup is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chargebridge::ocpp::rpc::ErrorCode;
use chargebridge::ocpp::session::{
    CallFailure, SessionConfig, SessionEvent, SessionHandle, spawn_session,
};
use chargebridge::ocpp::tls;
use chargebridge::sim::csms::{Csms, CsmsCallError, CsmsEvent, CsmsHandle, CsmsOptions, CsmsReply};
use chargebridge::sim::pki::TestPki;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

const ID: &str = "CB-0001";
const PASSWORD: &str = "0123456789abcdef0123";
const WAIT: Duration = Duration::from_secs(5);

fn pki() -> TestPki {
    TestPki::generate(&["localhost", "127.0.0.1"]).unwrap()
}

async fn csms_with(pki: &TestPki, f: impl FnOnce(&mut CsmsOptions)) -> CsmsHandle {
    let mut opts = CsmsOptions {
        tls: Some(pki.clone()),
        passwords: HashMap::from([(ID.to_owned(), PASSWORD.to_owned())]),
        reject_unknown: true,
        ..CsmsOptions::default()
    };
    f(&mut opts);
    Csms::start(opts).await.unwrap()
}

fn client_tls(pki: &TestPki) -> Arc<rustls::ClientConfig> {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki.write_ca(dir.path()).unwrap();
    tls::client_config(Some(&ca), None).unwrap()
}

fn config(csms: &CsmsHandle, pki: &TestPki) -> SessionConfig {
    let mut cfg = SessionConfig::new(csms.url(), ID);
    cfg.password = Some(PASSWORD.to_owned());
    cfg.tls = Some(client_tls(pki));
    cfg.backoff_min = Duration::from_millis(50);
    cfg.backoff_max = Duration::from_millis(500);
    cfg
}

/// A running session; cancelled when dropped, also when a test fails.
struct Running {
    handle: SessionHandle,
    events: mpsc::Receiver<SessionEvent>,
    _guard: DropGuard,
}

fn start(cfg: SessionConfig) -> Running {
    let token = CancellationToken::new();
    let (handle, events) = spawn_session(cfg, token.clone());
    Running {
        handle,
        events,
        _guard: token.drop_guard(),
    }
}

impl Running {
    async fn next(&mut self, within: Duration) -> Option<SessionEvent> {
        tokio::time::timeout(within, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    async fn connected(&mut self) {
        match self.next(WAIT).await {
            Some(SessionEvent::Connected) => {}
            other => panic!("expected Connected, got {other:?}"),
        }
        assert!(self.handle.is_connected());
    }

    async fn disconnected(&mut self, within: Duration) -> String {
        match self.next(within).await {
            Some(SessionEvent::Disconnected { reason }) => reason,
            other => panic!("expected Disconnected, got {other:?}"),
        }
    }
}

/// The central system and a session started against it with the test settings, changed by
/// `f`; not yet connected.
async fn session_with(f: impl FnOnce(&mut SessionConfig)) -> (CsmsHandle, Running) {
    let pki = pki();
    let csms = csms_with(&pki, |_| {}).await;
    let mut cfg = config(&csms, &pki);
    f(&mut cfg);
    (csms, start(cfg))
}

/// [`session_with`], once the session has connected.
async fn connected_with(f: impl FnOnce(&mut SessionConfig)) -> (CsmsHandle, Running) {
    let (csms, mut s) = session_with(f).await;
    s.connected().await;
    (csms, s)
}

/// A session with the test settings, connected.
async fn connected() -> (CsmsHandle, Running) {
    connected_with(|_| {}).await
}

/// Starts a CALL from the central system to the charger; it completes once the charger's
/// answer (or a failure) is back.
fn csms_calls(
    csms: &CsmsHandle,
    action: &'static str,
    payload: Value,
) -> JoinHandle<Result<Value, CsmsCallError>> {
    let csms = csms.clone();
    tokio::spawn(async move { csms.call(ID, action, payload).await })
}

fn count(csms: &CsmsHandle, pred: impl Fn(&CsmsEvent) -> bool) -> usize {
    csms.events().iter().filter(|e| pred(e)).count()
}

fn boot() -> Value {
    json!({"chargePointVendor": "Heidelberg", "chargePointModel": "Energy Control"})
}

#[tokio::test]
async fn connects_over_wss_with_subprotocol_and_basic_auth_and_round_trips_a_call() {
    let (csms, s) = connected().await;
    assert!(
        csms.wait_for(
            |e| matches!(e, CsmsEvent::Connected { charger } if charger == ID),
            WAIT
        )
        .await
        .is_some()
    );

    let reply = s.handle.call("BootNotification", boot()).await.unwrap();
    assert_eq!(reply["status"], "Accepted");
    assert_eq!(reply["interval"], 300);
    let seen = csms.wait_for(|e| e.is_call("BootNotification"), WAIT).await;
    assert_eq!(
        seen,
        Some(CsmsEvent::Call {
            charger: ID.into(),
            action: "BootNotification".into(),
            payload: boot(),
        })
    );
    // Several CALLs in a row each get their own answer.
    let a = s.handle.call("StartTransaction", json!({"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "2026-01-01T00:00:00.000Z"})).await.unwrap();
    let b = s.handle.call("StartTransaction", json!({"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "2026-01-01T00:00:00.000Z"})).await.unwrap();
    assert_ne!(a["transactionId"], b["transactionId"]);
    csms.shutdown();
}

#[tokio::test]
async fn charger_ids_with_spaces_are_percent_encoded_into_one_path_segment() {
    let pki = pki();
    let csms = csms_with(&pki, |o| {
        o.passwords = HashMap::from([("RDAM 123".to_owned(), PASSWORD.to_owned())]);
    })
    .await;
    let mut cfg = config(&csms, &pki);
    cfg.charger_id = "RDAM 123".into();
    cfg.base_url = format!("{}/", csms.url());
    let mut s = start(cfg);
    s.connected().await;
    assert!(
        csms.wait_for(
            |e| matches!(e, CsmsEvent::Connected { charger } if charger == "RDAM 123"),
            WAIT
        )
        .await
        .is_some()
    );
    csms.shutdown();
}

#[tokio::test]
async fn a_wrong_password_is_refused_with_401_and_retried_with_backoff_not_in_a_hot_loop() {
    let (csms, mut s) = session_with(|cfg| {
        cfg.password = Some("wrong-password-0000".into());
        cfg.backoff_min = Duration::from_millis(200);
        cfg.backoff_max = Duration::from_secs(2);
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let refused = count(&csms, |e| {
        matches!(e, CsmsEvent::Rejected { status: 401, .. })
    });
    // Delays: <0.2 s, 0.2-0.3, 0.4-0.6, 0.8-1.2, 1.33-2 s: four or five attempts in 3 s.
    assert!((2..=6).contains(&refused), "{refused} attempts in 3 s");
    assert_eq!(
        count(&csms, |e| matches!(e, CsmsEvent::Connected { .. })),
        0
    );
    assert!(!s.handle.is_connected());
    assert_eq!(
        s.handle.call("Heartbeat", json!({})).await,
        Err(CallFailure::NotConnected)
    );
    assert!(s.next(Duration::from_millis(10)).await.is_none());
    let status = s.handle.status();
    assert!(!status.connected);
    assert_eq!(status.connections, 0);
    assert!(status.attempts >= refused as u64);
    let why = status.last_error.unwrap();
    assert!(why.contains("401") && why.contains("password"), "{why}");
    assert!(!why.contains("wrong-password"), "{why}");

    // A new password (AuthorizationKey) is used from the next attempt on.
    s.handle.set_password(Some(PASSWORD.into()));
    s.connected().await;
    csms.shutdown();
}

#[tokio::test]
async fn a_new_password_with_reconnect_connects_without_waiting_out_the_backoff() {
    let (csms, mut s) = session_with(|cfg| {
        cfg.password = Some("wrong-password-0000".into());
        cfg.backoff_min = Duration::from_millis(500);
        cfg.backoff_max = Duration::from_secs(60);
    })
    .await;
    // After the third refusal the next delay is at least 2 s.
    for n in 1..=3 {
        csms.wait_for(
            |_| count(&csms, |e| matches!(e, CsmsEvent::Rejected { .. })) >= n,
            WAIT,
        )
        .await
        .unwrap();
    }
    s.handle.set_password(Some(PASSWORD.into()));
    s.handle.reconnect();
    match s.next(Duration::from_secs(1)).await {
        Some(SessionEvent::Connected) => {}
        other => panic!("expected Connected at once, got {other:?}"),
    }
    csms.shutdown();
}

#[tokio::test]
async fn an_unknown_charger_id_is_refused_with_404_and_retried_with_backoff() {
    let (csms, _s) = session_with(|cfg| {
        cfg.charger_id = "CB-9999".into();
        cfg.backoff_min = Duration::from_millis(200);
        cfg.backoff_max = Duration::from_secs(2);
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let refused = count(
        &csms,
        |e| matches!(e, CsmsEvent::Rejected { charger, status: 404 } if charger == "CB-9999"),
    );
    assert!((1..=5).contains(&refused), "{refused} attempts in 2 s");
    csms.shutdown();
}

#[tokio::test]
async fn a_central_system_with_an_untrusted_ca_is_refused() {
    let pki = pki();
    let other = TestPki::generate(&["localhost", "127.0.0.1"]).unwrap();
    let csms = csms_with(&pki, |_| {}).await;
    let mut cfg = config(&csms, &pki);
    cfg.tls = Some(client_tls(&other));
    cfg.backoff_min = Duration::from_millis(200);
    cfg.backoff_max = Duration::from_secs(2);
    let mut s = start(cfg);
    assert!(s.next(Duration::from_secs(3)).await.is_none());
    assert!(!s.handle.is_connected());
    assert!(csms.events().is_empty(), "{:?}", csms.events());
    // A TLS failure backs off like any refusal: a handful of attempts in 3 s, no hot loop.
    let attempts = csms.connection_attempts();
    assert!((2..=6).contains(&attempts), "{attempts} attempts in 3 s");
    csms.shutdown();
}

#[tokio::test]
async fn a_server_certificate_for_another_host_name_is_refused() {
    let pki = TestPki::generate(&["localhost"]).unwrap();
    let csms = csms_with(&pki, |_| {}).await;
    // The URL says 127.0.0.1, the certificate only localhost.
    let mut s = start(config(&csms, &pki));
    assert!(s.next(Duration::from_secs(2)).await.is_none());
    assert!(csms.events().is_empty(), "{:?}", csms.events());

    // The same certificate is fine under its own name.
    let mut cfg = config(&csms, &pki);
    cfg.base_url = csms.url().replace("127.0.0.1", "localhost");
    let mut ok = start(cfg);
    ok.connected().await;
    csms.shutdown();
}

#[tokio::test]
async fn a_central_system_that_does_not_agree_to_ocpp16_is_left() {
    let pki = pki();
    let csms = csms_with(&pki, |o| o.omit_subprotocol = true).await;
    let mut s = start(config(&csms, &pki));
    assert!(s.next(Duration::from_secs(2)).await.is_none());
    assert!(!s.handle.is_connected());
    // It did reach the central system, and left again each time.
    assert!(count(&csms, |e| matches!(e, CsmsEvent::Connected { .. })) >= 1);
    csms.shutdown();
}

#[tokio::test]
async fn a_client_certificate_signed_by_the_ca_is_accepted_for_profile_3() {
    let pki = pki();
    let csms = csms_with(&pki, |o| {
        o.require_client_cert = true;
        o.passwords.clear();
        o.reject_unknown = false;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ca = pki.write_ca(dir.path()).unwrap();
    let (cert, key) = pki.write_client_cert(dir.path(), "cp", "SN-0001").unwrap();

    let mut cfg = config(&csms, &pki);
    cfg.password = None;
    cfg.tls = Some(tls::client_config(Some(&ca), Some((&cert, &key))).unwrap());
    let mut s = start(cfg);
    s.connected().await;

    // Without a certificate the handshake fails.
    let mut cfg = config(&csms, &pki);
    cfg.charger_id = "CB-0002".into();
    cfg.password = None;
    let mut without = start(cfg);
    assert!(without.next(Duration::from_secs(1)).await.is_none());
    csms.shutdown();
}

#[tokio::test]
async fn a_call_from_the_central_system_is_answered_by_the_charger() {
    let (csms, mut s) = connected().await;

    let remote = csms_calls(
        &csms,
        "ChangeAvailability",
        json!({"connectorId": 0, "type": "Operative"}),
    );
    let Some(SessionEvent::Call {
        action,
        payload,
        reply,
    }) = s.next(WAIT).await
    else {
        panic!("no inbound CALL")
    };
    assert_eq!(action, "ChangeAvailability");
    assert_eq!(payload["type"], "Operative");
    reply.send(Ok(json!({"status": "Accepted"}))).unwrap();
    assert_eq!(remote.await.unwrap(), Ok(json!({"status": "Accepted"})));

    // A CALLERROR answer reaches the central system with its code.
    let remote = csms_calls(&csms, "UpdateFirmware", json!({}));
    let Some(SessionEvent::Call { reply, .. }) = s.next(WAIT).await else {
        panic!("no inbound CALL")
    };
    reply
        .send(Err((ErrorCode::NotSupported, "no firmware updates".into())))
        .unwrap();
    assert_eq!(
        remote.await.unwrap(),
        Err(CsmsCallError::CallError {
            code: ErrorCode::NotSupported,
            description: "no firmware updates".into()
        })
    );

    // Dropping the reply sender answers InternalError instead of leaving the CSMS waiting.
    let remote = csms_calls(&csms, "ClearCache", json!({}));
    let Some(SessionEvent::Call { reply, .. }) = s.next(WAIT).await else {
        panic!("no inbound CALL")
    };
    drop(reply);
    assert!(matches!(
        remote.await.unwrap(),
        Err(CsmsCallError::CallError {
            code: ErrorCode::InternalError,
            ..
        })
    ));
    csms.shutdown();
}

#[tokio::test]
async fn the_charger_can_send_its_own_call_while_an_inbound_call_is_unanswered() {
    let (csms, mut s) = connected().await;

    let remote = csms_calls(&csms, "RemoteStartTransaction", json!({"idTag": "T"}));
    let Some(SessionEvent::Call { reply, .. }) = s.next(WAIT).await else {
        panic!("no inbound CALL")
    };
    // The read loop is not blocked by the pending inbound CALL: an outgoing CALL completes.
    let hb = s.handle.call("Heartbeat", json!({})).await.unwrap();
    assert!(hb["currentTime"].is_string());
    reply.send(Ok(json!({"status": "Accepted"}))).unwrap();
    assert_eq!(remote.await.unwrap(), Ok(json!({"status": "Accepted"})));
    // Answer first, act after: the StartTransaction follows the answer.
    s.handle
        .call(
            "StartTransaction",
            json!({"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "2026-01-01T00:00:00.000Z"}),
        )
        .await
        .unwrap();
    csms.shutdown();
}

#[tokio::test]
async fn an_answer_goes_out_before_a_call_the_charger_makes_after_answering() {
    let (csms, mut s) = connected().await;
    for round in 0..20 {
        let remote = csms_calls(&csms, "RemoteStartTransaction", json!({"idTag": "T"}));
        let Some(SessionEvent::Call { reply, .. }) = s.next(WAIT).await else {
            panic!("no inbound CALL in round {round}")
        };
        reply.send(Ok(json!({"status": "Accepted"}))).unwrap();
        let start = s.handle.call(
            "StartTransaction",
            json!({"connectorId": 1, "idTag": "T", "meterStart": round, "timestamp": "2026-01-01T00:00:00.000Z"}),
        );
        start.await.unwrap();
        remote.await.unwrap().unwrap();
    }
    // On the wire: each RemoteStartTransaction answer precedes the StartTransaction after it.
    let frames = csms.received(ID);
    let kinds: Vec<&str> = frames
        .iter()
        .map(|f| {
            if f.starts_with("[3,\"csms-") {
                "answer"
            } else if f.contains("\"StartTransaction\"") {
                "start"
            } else {
                "other"
            }
        })
        .collect();
    assert_eq!(kinds, ["answer", "start"].repeat(20), "{frames:?}");
    csms.shutdown();
}

#[tokio::test]
async fn a_call_without_answer_times_out_and_the_next_call_still_works() {
    let (csms, s) = connected_with(|cfg| cfg.message_timeout = Duration::from_secs(10)).await;

    // MessageTimeout changed at run time applies to the next CALL (10 s -> 300 ms).
    s.handle.set_message_timeout(Duration::from_millis(300));
    csms.set_reply("Heartbeat", Some(CsmsReply::Ignore));
    let started = tokio::time::Instant::now();
    assert_eq!(
        s.handle.call("Heartbeat", json!({})).await,
        Err(CallFailure::Timeout)
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(5),
        "{took:?}"
    );
    csms.set_reply("Heartbeat", None);
    assert!(s.handle.call("Heartbeat", json!({})).await.is_ok());
    assert!(s.handle.is_connected());
    csms.shutdown();
}

#[tokio::test]
async fn a_callerror_reply_fails_the_call_with_its_code() {
    let (csms, s) = connected().await;
    csms.set_reply(
        "StopTransaction",
        Some(CsmsReply::Error(ErrorCode::InternalError, "db down".into())),
    );
    match s.handle.call("StopTransaction", json!({})).await {
        Err(CallFailure::CallError {
            code, description, ..
        }) => {
            assert_eq!(code, ErrorCode::InternalError);
            assert_eq!(description, "db down");
        }
        other => panic!("{other:?}"),
    }
    // Unknown actions are NotImplemented at the test central system.
    assert!(matches!(
        s.handle.call("NoSuchAction", json!({})).await,
        Err(CallFailure::CallError {
            code: ErrorCode::NotImplemented,
            ..
        })
    ));
    csms.shutdown();
}

#[tokio::test]
async fn a_reply_with_an_unknown_id_is_ignored() {
    let (csms, s) = connected_with(|cfg| cfg.message_timeout = Duration::from_millis(1500)).await;

    csms.set_reply("Heartbeat", Some(CsmsReply::Ignore));
    let mark = csms.mark();
    let call = {
        let h = s.handle.clone();
        tokio::spawn(async move { h.call("Heartbeat", json!({})).await })
    };
    csms.wait_for_since(mark, |e| e.is_call("Heartbeat"), WAIT)
        .await
        .unwrap();
    csms.send_raw(
        ID,
        r#"[3,"not-your-id",{"currentTime":"2026-01-01T00:00:00.000Z"}]"#,
    )
    .await
    .unwrap();
    csms.send_raw(ID, r#"[4,"also-not-yours","InternalError","",{}]"#)
        .await
        .unwrap();
    // Neither stray reply is taken as the answer: the CALL times out.
    assert_eq!(call.await.unwrap(), Err(CallFailure::Timeout));
    assert!(s.handle.is_connected());
    // And no CALLERROR is sent back for a stray reply.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        count(&csms, |e| matches!(e, CsmsEvent::Unsolicited { .. })),
        0
    );
    csms.shutdown();
}

#[tokio::test]
async fn garbage_frames_are_answered_with_the_right_callerror_or_dropped() {
    let (csms, mut s) = connected().await;

    let long_id = "x".repeat(40);
    let garbage = [
        "this is not json".to_owned(),
        r#"{"not":"an array"}"#.to_owned(),
        r#"[2,17,"Heartbeat",{}]"#.to_owned(),
        r#"[2,"g1",5,{}]"#.to_owned(),
        r#"[2,"g2","Reset"]"#.to_owned(),
        r#"[7,"g3","Reset",{}]"#.to_owned(),
        r#"[2,"g4","Reset",[]]"#.to_owned(),
        format!(r#"[2,"{long_id}","Reset",{{}}]"#),
        r#"[3,"g5"]"#.to_owned(),
    ];
    let mark = csms.mark();
    for text in &garbage {
        csms.send_raw(ID, text).await.unwrap();
    }
    // A valid CALL afterwards proves the session survived and marks the end of the answers.
    let probe = csms_calls(&csms, "ClearCache", json!({}));
    let Some(SessionEvent::Call { action, reply, .. }) = s.next(WAIT).await else {
        panic!("no inbound CALL")
    };
    assert_eq!(action, "ClearCache");
    reply.send(Ok(json!({"status": "Accepted"}))).unwrap();
    probe.await.unwrap().unwrap();

    let answers: Vec<Value> = csms.events()[mark..]
        .iter()
        .filter_map(|e| match e {
            CsmsEvent::Unsolicited { text, .. } => Some(serde_json::from_str(text).unwrap()),
            _ => None,
        })
        .collect();
    let summary: Vec<(String, String)> = answers
        .iter()
        .map(|a| {
            assert_eq!(a[0], 4, "{a}");
            assert_eq!(a[4], json!({}), "{a}");
            (
                a[1].as_str().unwrap().to_owned(),
                a[2].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("g1".to_owned(), "FormationViolation".to_owned()),
            ("g2".to_owned(), "ProtocolError".to_owned()),
            ("g3".to_owned(), "ProtocolError".to_owned()),
            ("g4".to_owned(), "FormationViolation".to_owned()),
            (long_id, "FormationViolation".to_owned()),
        ]
    );
    assert!(s.handle.is_connected());
    csms.shutdown();
}

#[tokio::test]
async fn an_oversized_frame_drops_the_connection_and_the_session_reconnects() {
    let (csms, mut s) = connected().await;
    let huge = format!(
        r#"[2,"big","DataTransfer",{{"data":"{}"}}]"#,
        "a".repeat(70 * 1024)
    );
    csms.send_raw(ID, &huge).await.unwrap();
    let reason = s.disconnected(WAIT).await;
    assert!(!reason.is_empty());
    s.connected().await;
    csms.shutdown();
}

#[tokio::test]
async fn a_dropped_connection_fails_the_pending_call_and_reconnects() {
    let (csms, mut s) = connected().await;
    csms.set_reply("Heartbeat", Some(CsmsReply::Ignore));
    let call = {
        let h = s.handle.clone();
        tokio::spawn(async move { h.call("Heartbeat", json!({})).await })
    };
    csms.wait_for(|e| e.is_call("Heartbeat"), WAIT)
        .await
        .unwrap();
    csms.disconnect(ID).await.unwrap();
    assert_eq!(call.await.unwrap(), Err(CallFailure::Disconnected));
    s.disconnected(WAIT).await;
    assert!(!s.handle.is_connected());
    s.connected().await;
    assert_eq!(
        count(&csms, |e| matches!(e, CsmsEvent::Connected { .. })),
        2
    );
    csms.shutdown();
}

#[tokio::test]
async fn reconnect_closes_and_connects_again() {
    let (csms, mut s) = connected().await;
    s.handle.reconnect();
    assert_eq!(s.disconnected(WAIT).await, "reconnect requested");
    s.connected().await;
    let status = s.handle.status();
    assert!(status.connected);
    assert_eq!(status.connections, 2);
    assert!(status.since.is_some());
    csms.shutdown();
}

#[tokio::test]
async fn an_answer_given_before_a_reconnect_request_is_still_sent() {
    let (csms, mut s) = connected().await;
    for round in 0..5 {
        let remote = csms_calls(
            &csms,
            "ChangeConfiguration",
            json!({"key": "AuthorizationKey", "value": "00112233445566778899"}),
        );
        let Some(SessionEvent::Call { reply, .. }) = s.next(WAIT).await else {
            panic!("no inbound CALL in round {round}")
        };
        // Answer first, act after: the reply, then at once the reconnect.
        reply.send(Ok(json!({"status": "Accepted"}))).unwrap();
        s.handle.reconnect();
        assert_eq!(
            remote.await.unwrap(),
            Ok(json!({"status": "Accepted"})),
            "round {round}"
        );
        assert_eq!(s.disconnected(WAIT).await, "reconnect requested");
        s.connected().await;
        // The central system must see the new connection before it calls again.
        csms.wait_for(|_| csms.is_connected(ID), WAIT)
            .await
            .unwrap();
    }
    csms.shutdown();
}

#[tokio::test]
async fn pings_keep_an_idle_connection_alive() {
    let (csms, mut s) = connected_with(|cfg| cfg.ping_interval = Duration::from_secs(1)).await;
    // Longer than ping interval + 10 s of grace: only the pongs keep it up.
    assert!(s.next(Duration::from_secs(12)).await.is_none());
    assert!(s.handle.is_connected());
    assert_eq!(
        count(&csms, |e| matches!(e, CsmsEvent::Connected { .. })),
        1
    );
    assert_eq!(
        count(&csms, |e| matches!(e, CsmsEvent::Disconnected { .. })),
        0
    );
    csms.shutdown();
}

#[tokio::test]
async fn absurd_ping_intervals_and_timeouts_do_not_break_the_session() {
    let (csms, s) = connected_with(|cfg| {
        cfg.ping_interval = Duration::MAX;
        cfg.message_timeout = Duration::MAX;
        cfg.backoff_max = Duration::MAX;
    })
    .await;
    assert!(s.handle.call("Heartbeat", json!({})).await.is_ok());
    s.handle.set_ping_interval(Duration::MAX);
    s.handle.set_message_timeout(Duration::MAX);
    assert!(s.handle.call("Heartbeat", json!({})).await.is_ok());
    s.handle.set_ping_interval(Duration::ZERO);
    assert!(s.handle.call("Heartbeat", json!({})).await.is_ok());
    assert!(s.handle.is_connected());
    csms.shutdown();
}

#[tokio::test]
async fn a_dead_peer_is_detected_by_the_missing_pong() {
    let (csms, mut s) = connected_with(|cfg| cfg.ping_interval = Duration::from_secs(1)).await;
    csms.stall(ID).await.unwrap();
    let started = tokio::time::Instant::now();
    let reason = s.disconnected(Duration::from_secs(15)).await;
    assert!(reason.contains("no pong"), "{reason}");
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
    s.connected().await;
    csms.shutdown();
}

#[tokio::test]
async fn plain_ws_works_without_tls_for_profile_1() {
    let csms = Csms::start(CsmsOptions {
        passwords: HashMap::from([(ID.to_owned(), PASSWORD.to_owned())]),
        ..CsmsOptions::default()
    })
    .await
    .unwrap();
    assert!(csms.url().starts_with("ws://127.0.0.1:"));
    let mut cfg = SessionConfig::new(csms.url(), ID);
    cfg.password = Some(PASSWORD.into());
    cfg.backoff_min = Duration::from_millis(50);
    let mut s = start(cfg);
    s.connected().await;
    assert!(s.handle.call("Heartbeat", json!({})).await.is_ok());
    csms.shutdown();
}

#[tokio::test]
async fn shutdown_ends_the_session_and_closes_the_connection() {
    let pki = pki();
    let csms = csms_with(&pki, |_| {}).await;
    let token = CancellationToken::new();
    let (handle, mut events) = spawn_session(config(&csms, &pki), token.clone());
    assert!(matches!(
        tokio::time::timeout(WAIT, events.recv()).await,
        Ok(Some(SessionEvent::Connected))
    ));
    token.cancel();
    assert!(
        csms.wait_for(|e| matches!(e, CsmsEvent::Disconnected { .. }), WAIT)
            .await
            .is_some()
    );
    // The task ends: the event channel closes after the last event.
    let drained =
        tokio::time::timeout(WAIT, async { while events.recv().await.is_some() {} }).await;
    assert!(drained.is_ok());
    assert_eq!(
        handle.call("Heartbeat", json!({})).await,
        Err(CallFailure::NotConnected)
    );
    csms.shutdown();
}

#[tokio::test]
async fn a_central_system_that_shut_down_reports_no_connection_left() {
    let (csms, _s) = connected().await;
    assert!(csms.is_connected(ID));
    csms.shutdown();
    assert!(
        !csms.is_connected(ID),
        "a stopped central system still listed a connection"
    );
}
