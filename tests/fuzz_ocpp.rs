//! Fuzz target `ocpp`: the OCPP-J envelope (`Frame::parse`) and the charge point's handling of
//! inbound CALLs (`Charger::handle_call`) with arbitrary JSON, on a machine that is booted and
//! in a transaction (the state with the most to lose). Nothing panics; every answer is a JSON
//! object or a CALLERROR with an OCPP 1.6 error code; the machine keeps working afterwards.
//! See `fuzz_support` for the corpus and `FUZZ_CASES`.

mod fuzz_support;

use chargebridge::charger::keys::ConfigKeys;
use chargebridge::charger::reading::{ENERGY, MeasuredValue, POWER};
use chargebridge::charger::{AuthMode, CallOutcome, Charger, ChargerSettings, Identity, Reading};
use chargebridge::devicemap::Iec61851State;
use chargebridge::ocpp::rpc::{ErrorCode, Frame};
use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Every action a central system may send in OCPP 1.6 (core + profiles) and a few it may not.
const ACTIONS: &[&str] = &[
    "CancelReservation",
    "ChangeAvailability",
    "ChangeConfiguration",
    "ClearCache",
    "ClearChargingProfile",
    "DataTransfer",
    "GetCompositeSchedule",
    "GetConfiguration",
    "GetDiagnostics",
    "GetLocalListVersion",
    "RemoteStartTransaction",
    "RemoteStopTransaction",
    "ReserveNow",
    "Reset",
    "SendLocalList",
    "SetChargingProfile",
    "TriggerMessage",
    "UnlockConnector",
    "UpdateFirmware",
    "BootNotification",
    "",
    "changeconfiguration",
];

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_default()
}

fn reading(state: Iec61851State, energy: f64, power: f64) -> Reading {
    Reading {
        state: Some(Ok(state)),
        raw_status: Some("7".into()),
        values: vec![
            MeasuredValue {
                measurand: ENERGY.into(),
                phase: None,
                value: energy,
            },
            MeasuredValue {
                measurand: POWER.into(),
                phase: None,
                value: power,
            },
        ],
    }
}

/// Sends what is due and answers it like an accepting central system.
fn pump(c: &mut Charger, now: DateTime<Utc>) {
    for _ in 0..200 {
        let Some(call) = c.next_call(now) else { return };
        let reply = match call.action {
            "BootNotification" => {
                json!({"status": "Accepted", "interval": 300, "currentTime": "2026-12-01T12:00:00Z"})
            }
            "StartTransaction" => json!({"transactionId": 42, "idTagInfo": {"status": "Accepted"}}),
            _ => json!({}),
        };
        c.on_call_result(now, call.token, CallOutcome::Result(reply));
    }
}

/// A charger that is booted, charging, and in transaction 42.
fn charging() -> Charger {
    let settings = ChargerSettings {
        id: "FUZZ".into(),
        vendor: "Heidelberg".into(),
        model: "Energy Control".into(),
        auth: AuthMode::Free,
        id_tag: "FUZZ".into(),
        max_current: 16.0,
        min_current: 6.0,
        phases: 3,
        voltage: 230.0,
    };
    let keys = ConfigKeys::new(vec![ENERGY.into(), POWER.into()]);
    let mut c = Charger::new(settings, keys, t0());
    c.set_identity(Identity::default());
    c.on_connected(t0());
    c.on_sample(t0(), reading(Iec61851State::A, 1000.0, 0.0));
    pump(&mut c, t0());
    c.on_sample(t0(), reading(Iec61851State::C2, 1000.0, 11000.0));
    pump(&mut c, t0());
    assert!(
        c.in_transaction() && c.accepted(),
        "the fuzzed machine is charging"
    );
    c
}

/// Handles one CALL and checks the answer and that the machine still works.
fn exercise(action: &str, payload: &Value) {
    fuzz_support::note(format!("[2,\"fuzz\",{},{payload}]", Value::from(action)).as_bytes());
    let mut c = charging();
    let now = t0() + Duration::seconds(5);
    match c.handle_call(now, action, payload) {
        Ok(reply) => assert!(reply.is_object(), "{action}: {reply}"),
        Err((code, _)) => assert!(
            ErrorCode::from_wire(code).is_some(),
            "{action}: {code} is not an OCPP 1.6 error code"
        ),
    }
    let _ = c.take_store_ops();
    let _ = c.take_reconnect();
    let _ = c.take_new_credentials();
    let _ = c.desired_limit(now);
    c.on_tick(now + Duration::seconds(60));
    c.on_sample(
        now + Duration::seconds(61),
        reading(Iec61851State::C2, 1100.0, 11000.0),
    );
    pump(&mut c, now + Duration::seconds(61));
    let _ = c.next_deadline(now + Duration::seconds(61));
    let _ = c.desired_limit(now + Duration::seconds(3600));
}

/// Parses a frame; a parsed frame survives a round trip; an error replies only with its id.
fn envelope(text: &str) -> Option<Frame> {
    match Frame::parse(text) {
        Ok(frame) => {
            assert_eq!(
                Frame::parse(&frame.to_json()).ok(),
                Some(frame.clone()),
                "{text}"
            );
            Some(frame)
        }
        Err(e) => {
            if let Some(reply) = e.reply() {
                assert!(matches!(reply, Frame::CallError { .. }), "{text}");
            }
            None
        }
    }
}

#[test]
fn the_corpus_replays_cleanly() {
    for (name, bytes) in fuzz_support::corpus("ocpp") {
        let text = String::from_utf8_lossy(&bytes);
        if let Some(Frame::Call {
            action, payload, ..
        }) = envelope(&text)
        {
            exercise(&action, &payload);
        }
        eprintln!("replayed {name}");
    }
}

proptest! {
    #![proptest_config(fuzz_support::config())]

    #[test]
    fn arbitrary_text_is_a_frame_or_an_error(text in "\\PC{0,200}") {
        envelope(&text);
    }

    #[test]
    fn mutated_seed_frames_never_panic(
        seed in prop::sample::select(fuzz_support::corpus("ocpp")),
        edits in fuzz_support::edits(),
    ) {
        let text = String::from_utf8_lossy(&fuzz_support::mutate(&seed.1, &edits)).into_owned();
        if let Some(Frame::Call { action, payload, .. }) = envelope(&text) {
            exercise(&action, &payload);
        }
    }

    #[test]
    fn arbitrary_envelopes_of_json_never_panic(items in prop::collection::vec(fuzz_support::json(), 0..6)) {
        envelope(&Value::Array(items).to_string());
    }

    #[test]
    fn any_payload_for_any_action_is_answered(
        action in prop::sample::select(ACTIONS),
        payload in fuzz_support::json(),
    ) {
        exercise(action, &payload);
    }

    #[test]
    fn object_payloads_with_ocpp_field_names_are_answered(
        action in prop::sample::select(ACTIONS),
        fields in prop::collection::vec((fuzz_support::key(), fuzz_support::json()), 0..8),
    ) {
        let payload = Value::Object(fields.into_iter().collect());
        exercise(action, &payload);
    }
}
