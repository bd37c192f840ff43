//! A hostile or broken central system cannot crash the gateway or grow its memory without
//! bound: malformed frames get the right CALLERROR (or none, when there is no message id to
//! answer), an oversized frame closes the connection, a flood of CALLs is answered (beyond the
//! session's in-flight bound with CALLERROR InternalError),
//! and the outbox of each charger is bounded (transaction messages once queued are never
//! dropped).

mod common;
mod e2e_support;

use chargebridge::charger::keys::ConfigKeys;
use chargebridge::charger::machine::{MAX_QUEUED_OTHER, MAX_QUEUED_TX_METER_VALUES};
use chargebridge::charger::reading::{ENERGY, MeasuredValue};
use chargebridge::charger::{AuthMode, Charger, ChargerSettings, Reading};
use chargebridge::devicemap::Iec61851State;
use chargebridge::ocpp::session::MAX_MESSAGE_SIZE;
use chargebridge::sim::csms::CsmsEvent;
use chrono::{DateTime, Duration, Utc};
use e2e_support::{ChargerSpec, Rig, RigSpec, SOON};
use serde_json::{Value, json};

fn charger() -> Charger {
    let settings = ChargerSettings {
        id: "HOSTILE".into(),
        vendor: "Heidelberg".into(),
        model: "Energy Control".into(),
        auth: AuthMode::Free,
        id_tag: "HOSTILE".into(),
        max_current: 16.0,
        min_current: 6.0,
        phases: 3,
        voltage: 230.0,
    };
    Charger::new(settings, ConfigKeys::new(vec![ENERGY.into()]), t0())
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_default()
}

fn reading(state: Iec61851State, energy: f64) -> Reading {
    Reading {
        state: Some(Ok(state)),
        raw_status: Some("7".into()),
        values: vec![MeasuredValue {
            measurand: ENERGY.into(),
            phase: None,
            value: energy,
        }],
    }
}

#[test]
fn a_flood_of_triggered_messages_keeps_the_outbox_bounded() {
    let mut c = charger();
    for _ in 0..10_000 {
        let reply = c
            .handle_call(
                t0(),
                "TriggerMessage",
                &json!({ "requestedMessage": "Heartbeat" }),
            )
            .unwrap();
        assert_eq!(reply["status"], "Accepted");
    }
    assert!(
        c.queued() <= MAX_QUEUED_OTHER + 4,
        "{} messages queued",
        c.queued()
    );
}

#[test]
fn days_offline_in_a_transaction_bound_the_backlog_but_keep_start_and_stop() {
    let mut c = charger();
    let reply = c
        .handle_call(
            t0(),
            "ChangeConfiguration",
            &json!({ "key": "MeterValueSampleInterval", "value": "1" }),
        )
        .unwrap();
    assert_eq!(reply["status"], "Accepted");
    // Never connected: free vend starts the transaction offline.
    let mut now = t0();
    c.on_sample(now, reading(Iec61851State::A, 1000.0));
    c.on_sample(now, reading(Iec61851State::C2, 1000.0));
    assert!(c.in_transaction());
    let mut energy = 1000.0;
    for _ in 0..(3 * MAX_QUEUED_TX_METER_VALUES) {
        now += Duration::seconds(1);
        energy += 3.0;
        c.on_sample(now, reading(Iec61851State::C2, energy));
        c.on_tick(now);
    }
    let queued = c.queued();
    assert!(
        queued <= MAX_QUEUED_TX_METER_VALUES + MAX_QUEUED_OTHER + 8,
        "{queued} messages queued"
    );
    // Unplugging still queues StopTransaction: it is never refused.
    now += Duration::seconds(1);
    c.on_sample(now, reading(Iec61851State::A, energy));
    assert!(!c.in_transaction());
    assert!(
        c.queued() > queued,
        "StopTransaction joined the full outbox"
    );
    // Everything queued is eventually sent in order, StartTransaction first.
    c.on_connected(now);
    let mut actions = Vec::new();
    while let Some(call) = c.next_call(now) {
        let reply = match call.action {
            "BootNotification" => {
                json!({"status": "Accepted", "interval": 300, "currentTime": "2026-12-01T12:00:00Z"})
            }
            "StartTransaction" => {
                json!({"transactionId": 7, "idTagInfo": {"status": "Accepted"}})
            }
            _ => json!({}),
        };
        actions.push(call.action);
        c.on_call_result(
            now,
            call.token,
            chargebridge::charger::CallOutcome::Result(reply),
        );
        assert!(actions.len() < 10 * MAX_QUEUED_TX_METER_VALUES, "no end");
    }
    assert!(actions.contains(&"StartTransaction"));
    assert!(actions.contains(&"StopTransaction"));
}

/// Sends `frame` raw and waits for the gateway's answer to message id `id`.
async fn answer_to(rig: &Rig, id: &str, frame: &str) -> Value {
    let mark = rig.csms.mark();
    rig.csms.send_raw(ID, frame).await.expect("send");
    let hit = rig
        .csms
        .wait_for_since(
            mark,
            |e| match e {
                CsmsEvent::Unsolicited { text, .. } => serde_json::from_str::<Value>(text)
                    .is_ok_and(|v| v.get(1).and_then(Value::as_str) == Some(id)),
                _ => false,
            },
            SOON,
        )
        .await;
    match hit {
        Some(CsmsEvent::Unsolicited { text, .. }) => serde_json::from_str(&text).expect("json"),
        _ => panic!("no answer to {frame}\n{}", rig.timeline()),
    }
}

const ID: &str = "HOSTILE-1";

fn callerror_code(v: &Value) -> &str {
    assert_eq!(v[0], 4, "a CALLERROR: {v}");
    v[2].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_get_callerrors_or_a_closed_connection_never_a_crash() {
    let rig = Rig::start(RigSpec::new(vec![ChargerSpec::tcp(ID, 1)])).await;
    rig.expect_call(0, ID, "BootNotification", |_| true, "boot")
        .await;

    // No message id to answer: ignored (OCPP-J §4.2.3), the connection stays.
    for garbage in [
        "{not json",
        "",
        "[]",
        "null",
        "[2]",
        "\"just a string\"",
        "[99,\"x\"]",
    ] {
        rig.csms.send_raw(ID, garbage).await.expect("send");
    }
    // With a message id: the right error code.
    let wrong_payload =
        answer_to(&rig, "h1", r#"[2,"h1","GetConfiguration","not an object"]"#).await;
    assert!(
        [
            "FormationViolation",
            "TypeConstraintViolation",
            "ProtocolError"
        ]
        .contains(&callerror_code(&wrong_payload)),
        "{wrong_payload}"
    );
    let unknown = answer_to(&rig, "h2", r#"[2,"h2","LaunchRockets",{}]"#).await;
    assert_eq!(callerror_code(&unknown), "NotImplemented", "{unknown}");
    let wrong_types = answer_to(
        &rig,
        "h3",
        r#"[2,"h3","ChangeConfiguration",{"key":5,"value":true}]"#,
    )
    .await;
    assert_eq!(
        callerror_code(&wrong_types),
        "TypeConstraintViolation",
        "{wrong_types}"
    );
    let missing = answer_to(&rig, "h4", r#"[2,"h4","ChangeConfiguration",{}]"#).await;
    assert!(
        ["FormationViolation", "OccurenceConstraintViolation"].contains(&callerror_code(&missing)),
        "{missing}"
    );
    let absurd = answer_to(
        &rig,
        "h5",
        r#"[2,"h5","ChangeConfiguration",{"key":"HeartbeatInterval","value":"99999999999999999999"}]"#,
    )
    .await;
    assert_eq!(absurd[0], 3, "answered: {absurd}");
    assert_eq!(absurd[2]["status"], "Rejected", "{absurd}");

    // A flood of CALLs: every one is answered, in order, and the connection stays up.
    let mark = rig.csms.mark();
    const FLOOD: usize = 500;
    for i in 0..FLOOD {
        let frame = format!(r#"[2,"f{i}","TriggerMessage",{{"requestedMessage":"Heartbeat"}}]"#);
        rig.csms.send_raw(ID, &frame).await.expect("send");
    }
    // Answers refused for the in-flight bound go out at once, the others after the machine;
    // so wait for the count, not for the last id.
    let answers: Vec<String> = e2e_support::eventually("every flood CALL answered", || {
        let answers: Vec<String> = rig.csms.events()[mark..]
            .iter()
            .filter_map(|e| match e {
                CsmsEvent::Unsolicited { text, .. } if text.contains(",\"f") => Some(text.clone()),
                _ => None,
            })
            .collect();
        (answers.len() >= FLOOD).then_some(answers)
    })
    .await;
    let results = answers.iter().filter(|t| t.starts_with("[3,")).count();
    let sample: Vec<&String> = answers
        .iter()
        .filter(|t| !t.starts_with("[3,"))
        .take(3)
        .collect();
    eprintln!(
        "flood: {} answers, {results} CALLRESULTs; others e.g. {sample:?}",
        answers.len()
    );
    // OCPP-J allows one CALL at a time; the session answers those beyond its in-flight bound
    // with CALLERROR InternalError instead of queueing them without limit.
    assert_eq!(answers.len(), FLOOD, "every CALL answered exactly once");
    assert!(
        results > 0,
        "the flood is worked through, not refused wholesale"
    );
    assert!(
        answers
            .iter()
            .all(|t| t.starts_with("[3,") || t.contains("\"InternalError\"")),
        "{sample:?}"
    );

    // An oversized frame: the connection is closed (and comes back), nothing crashes.
    let mark = rig.csms.mark();
    let huge = format!(
        r#"[2,"big","DataTransfer",{{"vendorId":"x","data":"{}"}}]"#,
        "A".repeat(MAX_MESSAGE_SIZE + 1)
    );
    rig.csms.send_raw(ID, &huge).await.expect("send");
    rig.csms
        .wait_for_since(
            mark,
            |e| matches!(e, CsmsEvent::Disconnected { charger } if charger == ID),
            SOON,
        )
        .await
        .unwrap_or_else(|| panic!("an oversized frame must close\n{}", rig.timeline()));
    rig.csms
        .wait_for_since(
            mark,
            |e| matches!(e, CsmsEvent::Connected { charger } if charger == ID),
            SOON,
        )
        .await
        .unwrap_or_else(|| panic!("the gateway reconnects\n{}", rig.timeline()));
    assert!(
        !rig.csms.events()[mark..]
            .iter()
            .any(|e| matches!(e, CsmsEvent::Unsolicited { text, .. } if text.contains("\"big\""))),
        "the oversized CALL was not processed"
    );
    let still = rig
        .csms
        .call(
            ID,
            "GetConfiguration",
            json!({ "key": ["HeartbeatInterval"] }),
        )
        .await
        .expect("still answering after all that");
    assert!(still["configurationKey"].is_array());
    assert!(!rig.gateway_ended(), "the gateway keeps running");
    rig.stop().await;
}
