//! The charge point state machine driven through whole scenarios, without sockets.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::keys::ConfigKeys;
use super::machine::{AuthMode, CallOutcome, Charger, ChargerSettings, Identity};
use super::reading::{ENERGY, MeasuredValue, Reading};
use crate::devicemap::Iec61851State as S;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn charger(auth: AuthMode) -> Charger {
    let settings = ChargerSettings {
        id: "CB-1".into(),
        vendor: "Heidelberg".into(),
        model: "Energy Control".into(),
        auth,
        id_tag: "CB-1".into(),
        max_current: 16.0,
        min_current: 6.0,
        phases: 3,
        voltage: 230.0,
    };
    let keys = ConfigKeys::new(vec![ENERGY.into(), "Power.Active.Import".into()]);
    Charger::new(settings, keys, t0())
}

fn reading(state: S, energy: f64, power: f64) -> Reading {
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
                measurand: "Power.Active.Import".into(),
                phase: None,
                value: power,
            },
        ],
    }
}

/// A central system that accepts everything and hands out transaction ids from 100.
struct Csms {
    sent: Vec<(&'static str, Value)>,
    next_tx: i64,
}

impl Csms {
    fn new() -> Self {
        Self {
            sent: Vec::new(),
            next_tx: 100,
        }
    }

    /// Sends everything that is due and answers it.
    fn pump(&mut self, c: &mut Charger, now: DateTime<Utc>) {
        while let Some(call) = c.next_call(now) {
            let reply = match call.action {
                "BootNotification" => {
                    json!({"status": "Accepted", "interval": 300, "currentTime": "2026-12-01T12:00:00Z"})
                }
                "StartTransaction" => {
                    self.next_tx += 1;
                    json!({"transactionId": self.next_tx, "idTagInfo": {"status": "Accepted"}})
                }
                _ => json!({}),
            };
            self.sent.push((call.action, call.payload));
            c.on_call_result(now, call.token, CallOutcome::Result(reply));
        }
    }

    /// Sends `action` to the charger, which must accept it, then answers what follows.
    #[track_caller]
    fn accepted_call(
        &mut self,
        c: &mut Charger,
        now: DateTime<Utc>,
        action: &str,
        payload: &Value,
    ) {
        let reply = c.handle_call(now, action, payload).unwrap();
        assert_eq!(reply["status"], "Accepted", "{action}");
        self.pump(c, now);
    }

    fn statuses(&self, connector: u64) -> Vec<String> {
        self.sent
            .iter()
            .filter(|(a, p)| *a == "StatusNotification" && p["connectorId"] == connector)
            .map(|(_, p)| p["status"].as_str().unwrap().to_owned())
            .collect()
    }

    fn find(&self, action: &str) -> Vec<&Value> {
        self.sent
            .iter()
            .filter(|(a, _)| *a == action)
            .map(|(_, p)| p)
            .collect()
    }
}

fn booted() -> (Charger, Csms) {
    let mut c = charger(AuthMode::Free);
    let mut csms = Csms::new();
    c.set_identity(Identity {
        firmware: Some("layout 264".into()),
        serial: None,
    });
    c.on_connected(t0());
    c.on_sample(t0(), reading(S::A, 1000.0, 0.0));
    csms.pump(&mut c, t0());
    (c, csms)
}

/// [`booted`], then a car plugged in 10 s later (returned: that time); in free mode this has
/// started transaction 101.
fn plugged_in() -> (Charger, Csms, DateTime<Utc>) {
    let (mut c, mut csms) = booted();
    let t = t0() + Duration::seconds(10);
    c.on_sample(t, reading(S::B1, 1000.0, 0.0));
    csms.pump(&mut c, t);
    (c, csms, t)
}

/// A fresh central system for `c` (after a restart), connected at `at` with the wallbox's
/// identity known.
fn reconnected(c: &mut Charger, at: DateTime<Utc>) -> Csms {
    c.set_identity(Identity::default());
    c.on_connected(at);
    Csms::new()
}

/// A charger in remote-start mode, booted, with a car plugged in and nothing started.
fn remote_with_car_plugged() -> (Charger, Csms) {
    let mut c = charger(AuthMode::Remote);
    let mut csms = Csms::new();
    c.set_identity(Identity::default());
    c.on_connected(t0());
    c.on_sample(t0(), reading(S::B1, 10.0, 0.0));
    csms.pump(&mut c, t0());
    (c, csms)
}

#[test]
fn boot_then_status_for_both_connectors() {
    let (_c, csms) = booted();
    assert_eq!(csms.sent[0].0, "BootNotification");
    assert_eq!(csms.sent[0].1["chargePointVendor"], "Heidelberg");
    assert_eq!(csms.sent[0].1["firmwareVersion"], "layout 264");
    assert_eq!(csms.statuses(0), vec!["Available"]);
    assert_eq!(csms.statuses(1), vec!["Available"]);
}

#[test]
fn nothing_but_boot_before_acceptance() {
    let mut c = charger(AuthMode::Free);
    c.on_connected(t0());
    // No identity yet and not 10 s since start: wait for the first poll.
    assert!(c.next_call(t0()).is_none());
    c.set_identity(Identity::default());
    let call = c.next_call(t0()).unwrap();
    assert_eq!(call.action, "BootNotification");
    c.on_call_result(
        t0(),
        call.token,
        CallOutcome::Result(
            json!({"status": "Pending", "interval": 20, "currentTime": "2026-12-01T12:00:00Z"}),
        ),
    );
    c.on_sample(t0(), reading(S::B1, 5.0, 0.0));
    assert!(c.next_call(t0() + Duration::seconds(19)).is_none());
    assert_eq!(
        c.next_call(t0() + Duration::seconds(20)).unwrap().action,
        "BootNotification"
    );
}

#[test]
fn free_vend_session_from_plug_to_unplug() {
    let (mut c, mut csms) = booted();
    let t = t0() + Duration::seconds(10);
    assert_eq!(
        c.desired_limit(t0() + Duration::seconds(3600)),
        None,
        "no energy without a transaction"
    );
    c.on_sample(t, reading(S::B1, 1000.0, 0.0));
    csms.pump(&mut c, t);
    assert_eq!(c.desired_limit(t0() + Duration::seconds(3600)), Some(16.0));
    let start = csms.find("StartTransaction");
    assert_eq!(start.len(), 1);
    assert_eq!(start[0]["meterStart"], 1000);
    assert_eq!(start[0]["idTag"], "CB-1");
    // The wallbox follows the limit.
    let t = t + Duration::seconds(2);
    c.on_sample(t, reading(S::C2, 1001.0, 11040.0));
    csms.pump(&mut c, t);
    // 60 s later: a periodic meter value with the transaction id.
    let t = t0() + Duration::seconds(70);
    c.on_sample(t, reading(S::C2, 1185.0, 11040.0));
    c.on_tick(t);
    csms.pump(&mut c, t);
    let mv = csms.find("MeterValues");
    assert_eq!(mv.len(), 1);
    assert_eq!(mv[0]["transactionId"], 101);
    assert_eq!(mv[0]["meterValue"][0]["sampledValue"][0]["value"], "1185");
    // Unplug.
    let t = t + Duration::seconds(5);
    c.on_sample(t, reading(S::A, 1200.0, 0.0));
    csms.pump(&mut c, t);
    let stop = csms.find("StopTransaction");
    assert_eq!(stop.len(), 1);
    assert_eq!(stop[0]["transactionId"], 101);
    assert_eq!(stop[0]["meterStop"], 1200);
    assert_eq!(stop[0]["reason"], "EVDisconnected");
    assert_eq!(c.desired_limit(t0() + Duration::seconds(3600)), None);
    assert_eq!(
        csms.statuses(1),
        vec!["Available", "Preparing", "Charging", "Available"]
    );
}

/// A map without B1 (EVSE-WB-DIN, Schrack, Phoenix Contact) shows a plug-in as B2 at once:
/// Preparing still goes out before StartTransaction, then SuspendedEV.
#[test]
fn a_plug_in_seen_as_b2_still_sends_preparing_first() {
    let (mut c, mut csms) = booted();
    let t = t0() + Duration::seconds(10);
    c.on_sample(t, reading(S::B2, 1000.0, 0.0));
    csms.pump(&mut c, t);
    assert_eq!(
        csms.statuses(1),
        vec!["Available", "Preparing", "SuspendedEV"]
    );
    let order: Vec<&str> = csms
        .sent
        .iter()
        .filter(|(a, p)| {
            *a == "StartTransaction" || (*a == "StatusNotification" && p["connectorId"] == 1)
        })
        .map(|(a, p)| p["status"].as_str().unwrap_or(a))
        .collect();
    assert_eq!(
        order,
        vec!["Available", "Preparing", "StartTransaction", "SuspendedEV"]
    );
}

#[test]
fn offline_session_is_delivered_in_order_with_the_returned_transaction_id() {
    let (mut c, mut csms) = booted();
    c.on_disconnected();
    let t = t0() + Duration::seconds(10);
    c.on_sample(t, reading(S::B1, 2000.0, 0.0));
    assert_eq!(
        c.desired_limit(t0() + Duration::seconds(3600)),
        Some(16.0),
        "free vend also while offline"
    );
    c.on_sample(t + Duration::seconds(2), reading(S::C2, 2001.0, 11000.0));
    c.on_sample(t + Duration::seconds(300), reading(S::A, 2900.0, 0.0));
    assert!(c.next_call(t).is_none());
    let later = t + Duration::seconds(400);
    c.on_connected(later);
    csms.pump(&mut c, later);
    let actions: Vec<&str> = csms.sent.iter().skip(3).map(|(a, _)| *a).collect();
    assert_eq!(&actions[..2], &["StartTransaction", "StopTransaction"]);
    let stop = csms.find("StopTransaction");
    assert_eq!(stop.len(), 1);
    assert_eq!(stop[0]["transactionId"], 101);
    assert_eq!(stop[0]["meterStop"], 2900);
    // Transaction messages first, then only the newest status per connector.
    let first_status = csms
        .sent
        .iter()
        .skip(3)
        .position(|(a, _)| *a == "StatusNotification")
        .unwrap();
    let last_tx = csms
        .sent
        .iter()
        .skip(3)
        .rposition(|(a, _)| *a == "StopTransaction")
        .unwrap();
    assert!(last_tx < first_status);
    assert_eq!(csms.statuses(1).last().unwrap(), "Available");
    assert_eq!(
        csms.statuses(1).len(),
        2,
        "one boot-time Available and one newest status"
    );
}

#[test]
fn callerror_on_a_transaction_message_is_retried_then_dropped() {
    let (mut c, mut csms) = booted();
    let t = t0() + Duration::seconds(10);
    c.on_sample(t, reading(S::B1, 1000.0, 0.0));
    // StatusNotification Preparing first.
    let call = c.next_call(t).unwrap();
    assert_eq!(call.action, "StatusNotification");
    c.on_call_result(t, call.token, CallOutcome::Result(json!({})));
    let mut sends = 0;
    let mut now = t;
    for _ in 0..10 {
        now += Duration::seconds(200);
        if let Some(call) = c.next_call(now) {
            if call.action == "StartTransaction" {
                sends += 1;
                c.on_call_result(
                    now,
                    call.token,
                    CallOutcome::Error {
                        code: "InternalError".into(),
                        description: String::new(),
                    },
                );
            } else {
                c.on_call_result(now, call.token, CallOutcome::Result(json!({})));
            }
        }
    }
    assert_eq!(sends, 3, "TransactionMessageAttempts = 3");
    // Unplug: StopTransaction carries -1 since the start was never confirmed (errata 3.18).
    c.on_sample(now, reading(S::A, 1500.0, 0.0));
    csms.pump(&mut c, now);
    assert_eq!(csms.find("StopTransaction")[0]["transactionId"], -1);
}

#[test]
fn a_lost_connection_is_not_a_failed_attempt() {
    let (mut c, mut csms) = booted();
    let t = t0() + Duration::seconds(10);
    c.on_sample(t, reading(S::B1, 1000.0, 0.0));
    for _ in 0..5 {
        while let Some(call) = c.next_call(t) {
            if call.action == "StartTransaction" {
                c.on_call_result(t, call.token, CallOutcome::Lost);
                break;
            }
            c.on_call_result(t, call.token, CallOutcome::Result(json!({})));
        }
    }
    csms.pump(&mut c, t);
    assert_eq!(csms.find("StartTransaction").len(), 1);
    assert_eq!(c.transaction_id(), Some(101));
}

#[test]
fn unreachable_wallbox_is_faulted_but_keeps_its_transaction() {
    let (mut c, mut csms) = booted();
    let t = t0() + Duration::seconds(10);
    c.on_sample(t, reading(S::B1, 1000.0, 0.0));
    c.on_sample(t + Duration::seconds(1), reading(S::C2, 1000.0, 11000.0));
    csms.pump(&mut c, t + Duration::seconds(1));
    for s in 2..15 {
        c.on_poll_failed(t + Duration::seconds(s), "timeout".into());
    }
    csms.pump(&mut c, t + Duration::seconds(15));
    let last = csms
        .find("StatusNotification")
        .into_iter()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["status"], "Faulted");
    assert_eq!(last["vendorErrorCode"], "ModbusUnreachable");
    assert!(c.in_transaction());
    assert!(csms.find("StopTransaction").is_empty());
}

#[test]
fn energy_running_backwards_is_not_sent() {
    let (mut c, mut csms) = booted();
    let t = t0() + Duration::seconds(10);
    c.on_sample(t, reading(S::B1, 1001.0, 0.0));
    // A jump of 50 kWh in one second is no charging session either.
    c.on_sample(t + Duration::seconds(1), reading(S::C2, 51_001.0, 11000.0));
    c.on_sample(t + Duration::seconds(2), reading(S::A, 10.0, 0.0));
    csms.pump(&mut c, t + Duration::seconds(2));
    assert_eq!(csms.find("StartTransaction")[0]["meterStart"], 1001);
    assert_eq!(csms.find("StopTransaction")[0]["meterStop"], 1001);
}

#[test]
fn remote_mode_waits_for_remote_start_and_remote_stop_finishes() {
    let (mut c, mut csms) = remote_with_car_plugged();
    assert!(csms.find("StartTransaction").is_empty());
    assert_eq!(c.desired_limit(t0() + Duration::seconds(3600)), None);
    csms.accepted_call(
        &mut c,
        t0(),
        "RemoteStartTransaction",
        &json!({"idTag": "TAG1", "connectorId": 1}),
    );
    assert_eq!(csms.find("StartTransaction")[0]["idTag"], "TAG1");
    assert_eq!(c.desired_limit(t0() + Duration::seconds(3600)), Some(16.0));
    csms.accepted_call(
        &mut c,
        t0(),
        "RemoteStopTransaction",
        &json!({"transactionId": 101}),
    );
    assert_eq!(csms.find("StopTransaction")[0]["reason"], "Remote");
    assert_eq!(csms.statuses(1).last().unwrap(), "Finishing");
    assert_eq!(c.desired_limit(t0() + Duration::seconds(3600)), None);
}

#[test]
fn inbound_calls_that_are_malformed_or_unknown_get_callerrors() {
    let (mut c, _) = booted();
    assert_eq!(
        c.handle_call(t0(), "Foo", &json!({})).unwrap_err().0,
        "NotImplemented"
    );
    assert_eq!(
        c.handle_call(t0(), "ReserveNow", &json!({})).unwrap_err().0,
        "NotSupported"
    );
    assert_eq!(
        c.handle_call(
            t0(),
            "ChangeConfiguration",
            &json!({"key": 5, "value": "x"})
        )
        .unwrap_err()
        .0,
        "TypeConstraintViolation"
    );
    assert_eq!(
        c.handle_call(t0(), "ChangeConfiguration", &json!({"value": "x"}))
            .unwrap_err()
            .0,
        "FormationViolation"
    );
    let r = c
        .handle_call(
            t0(),
            "ChangeConfiguration",
            &json!({"key": "MeterValueSampleInterval", "value": "10"}),
        )
        .unwrap();
    assert_eq!(r["status"], "Accepted");
}

#[test]
fn trigger_message_queues_the_requested_message_after_the_reply() {
    let (mut c, mut csms) = booted();
    csms.accepted_call(
        &mut c,
        t0(),
        "TriggerMessage",
        &json!({"requestedMessage": "StatusNotification"}),
    );
    assert_eq!(csms.statuses(0).len(), 2);
    assert_eq!(csms.statuses(1).len(), 2);
    csms.accepted_call(
        &mut c,
        t0(),
        "TriggerMessage",
        &json!({"requestedMessage": "MeterValues", "connectorId": 1}),
    );
    let mv = csms.find("MeterValues");
    assert_eq!(
        mv[0]["meterValue"][0]["sampledValue"][0]["context"],
        "Trigger"
    );
}

/// Changes a configuration key as the central system does (ChangeConfiguration at t0).
fn configure(c: &mut Charger, key: &str, value: &str) {
    c.handle_call(
        t0(),
        "ChangeConfiguration",
        &json!({"key": key, "value": value}),
    )
    .unwrap();
}

/// Applies the machine's store ops to a real (in-memory) store, as the task does.
fn persist(c: &mut Charger, store: &mut crate::store::Store) {
    store.apply(&[("CB-1".into(), c.take_store_ops())]).unwrap();
}

#[test]
fn a_restart_mid_transaction_resumes_when_the_car_is_still_plugged() {
    let mut store = crate::store::Store::in_memory().unwrap();
    store.load("CB-1").unwrap();
    let (mut c, _, t) = plugged_in();
    persist(&mut c, &mut store);
    // Power loss: nothing clean. A new process restores from the store.
    let saved = store.load("CB-1").unwrap();
    assert!(!saved.clean_shutdown);
    assert!(saved.outbox.is_empty(), "StartTransaction was acknowledged");
    let mut c2 = charger(AuthMode::Free);
    c2.restore(saved, t + Duration::seconds(60));
    assert_eq!(c2.transaction_id(), Some(101));
    assert_eq!(
        c2.desired_limit(t0() + Duration::seconds(3600)),
        None,
        "no current before the wallbox is seen again"
    );
    let mut csms2 = reconnected(&mut c2, t + Duration::seconds(60));
    c2.on_sample(t + Duration::seconds(61), reading(S::C2, 1200.0, 11000.0));
    csms2.pump(&mut c2, t + Duration::seconds(61));
    assert_eq!(c2.desired_limit(t0() + Duration::seconds(3600)), Some(16.0));
    assert!(
        csms2.find("StartTransaction").is_empty(),
        "no second StartTransaction"
    );
    c2.on_sample(t + Duration::seconds(70), reading(S::A, 1300.0, 0.0));
    csms2.pump(&mut c2, t + Duration::seconds(70));
    let stop = csms2.find("StopTransaction");
    assert_eq!(stop.len(), 1);
    assert_eq!(stop[0]["transactionId"], 101);
    assert_eq!(stop[0]["reason"], "EVDisconnected");
}

#[test]
fn a_restart_after_the_car_left_stops_with_powerloss_and_the_last_meter_value() {
    let mut store = crate::store::Store::in_memory().unwrap();
    store.load("CB-1").unwrap();
    let (mut c, _, t) = plugged_in();
    // Offline before the crash: a periodic meter value is queued, not sent.
    c.on_disconnected();
    let later = t + Duration::seconds(61);
    c.on_sample(later, reading(S::C2, 1180.0, 11000.0));
    c.on_tick(later);
    persist(&mut c, &mut store);
    let saved = store.load("CB-1").unwrap();
    assert_eq!(saved.outbox.len(), 1, "the MeterValues survive");
    let mut c2 = charger(AuthMode::Free);
    c2.restore(saved, later + Duration::seconds(100));
    let mut csms2 = reconnected(&mut c2, later + Duration::seconds(100));
    // The wallbox answers with the car gone and a register that did not move.
    c2.on_sample(later + Duration::seconds(101), reading(S::A, 1180.0, 0.0));
    csms2.pump(&mut c2, later + Duration::seconds(101));
    let actions: Vec<&str> = csms2.sent.iter().map(|(a, _)| *a).collect();
    assert_eq!(
        &actions[..3],
        &["BootNotification", "MeterValues", "StopTransaction"]
    );
    let stop = csms2.find("StopTransaction");
    assert_eq!(stop[0]["reason"], "PowerLoss");
    assert_eq!(stop[0]["meterStop"], 1180);
    assert_eq!(stop[0]["transactionId"], 101);
    assert_eq!(csms2.find("MeterValues")[0]["transactionId"], 101);
    // Everything acknowledged: the store is empty again.
    persist(&mut c2, &mut store);
    let saved = store.load("CB-1").unwrap();
    assert!(saved.outbox.is_empty());
    assert!(saved.transactions.is_empty());
}

#[test]
fn changed_configuration_and_availability_survive_a_restart() {
    let mut store = crate::store::Store::in_memory().unwrap();
    store.load("CB-1").unwrap();
    let (mut c, _) = booted();
    configure(&mut c, "metervaluesampleinterval", "15");
    c.handle_call(
        t0(),
        "ChangeAvailability",
        &json!({"connectorId": 0, "type": "Inoperative"}),
    )
    .unwrap();
    persist(&mut c, &mut store);
    let mut c2 = charger(AuthMode::Free);
    c2.restore(store.load("CB-1").unwrap(), t0());
    assert_eq!(c2.keys().get("MeterValueSampleInterval"), Some("15"));
    let mut csms = reconnected(&mut c2, t0());
    c2.on_sample(t0(), reading(S::B1, 10.0, 0.0));
    csms.pump(&mut c2, t0());
    assert_eq!(csms.statuses(1).last().unwrap(), "Unavailable");
    assert!(
        csms.find("StartTransaction").is_empty(),
        "an unavailable connector starts nothing"
    );
}

#[test]
fn clock_aligned_values_fall_on_exact_boundaries_also_outside_transactions() {
    let (mut c, mut csms) = booted();
    configure(&mut c, "ClockAlignedDataInterval", "900");
    let at = t0() + Duration::seconds(900);
    assert!(
        c.next_deadline(t0() + Duration::seconds(1)).unwrap() <= at,
        "a timer wakes the task by then"
    );
    c.on_tick(at + Duration::milliseconds(3));
    csms.pump(&mut c, at + Duration::milliseconds(3));
    let mv = csms.find("MeterValues");
    assert_eq!(mv.len(), 1);
    assert_eq!(
        mv[0]["meterValue"][0]["timestamp"],
        "2026-12-01T12:15:00.000Z"
    );
    assert_eq!(
        mv[0]["meterValue"][0]["sampledValue"][0]["context"],
        "Sample.Clock"
    );
    assert!(mv[0].get("transactionId").is_none());
}

#[test]
fn remote_start_is_authorized_first_when_configured() {
    let (mut c, mut csms) = remote_with_car_plugged();
    configure(&mut c, "AuthorizeRemoteTxRequests", "true");
    c.handle_call(t0(), "RemoteStartTransaction", &json!({"idTag": "TAG9"}))
        .unwrap();
    // The central system accepts the Authorize.
    while let Some(call) = c.next_call(t0()) {
        let reply = match call.action {
            "Authorize" => json!({"idTagInfo": {"status": "Accepted"}}),
            "StartTransaction" => json!({"transactionId": 7, "idTagInfo": {"status": "Accepted"}}),
            _ => json!({}),
        };
        csms.sent.push((call.action, call.payload));
        c.on_call_result(t0(), call.token, CallOutcome::Result(reply));
    }
    let actions: Vec<&str> = csms.sent.iter().map(|(a, _)| *a).collect();
    let auth = actions.iter().position(|a| *a == "Authorize").unwrap();
    let start = actions
        .iter()
        .position(|a| *a == "StartTransaction")
        .unwrap();
    assert!(auth < start);
    assert_eq!(c.transaction_id(), Some(7));
}

#[test]
fn clear_cache_is_accepted_and_data_transfer_unknown_vendor() {
    let (mut c, _) = booted();
    assert_eq!(
        c.handle_call(t0(), "ClearCache", &json!({})).unwrap(),
        json!({"status": "Accepted"})
    );
    assert_eq!(
        c.handle_call(t0(), "DataTransfer", &json!({"vendorId": "org.example"}))
            .unwrap(),
        json!({"status": "UnknownVendorId"})
    );
}

fn tx_profile(limit: f64, tx: i64) -> Value {
    json!({
        "connectorId": 1,
        "csChargingProfiles": {
            "chargingProfileId": 10, "transactionId": tx, "stackLevel": 0,
            "chargingProfilePurpose": "TxProfile", "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "startSchedule": "2026-12-01T12:00:00Z", "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}]
            }
        }
    })
}

#[test]
fn profiles_shape_the_limit_and_zero_pauses_the_session() {
    let (mut c, mut csms, t) = plugged_in();
    assert_eq!(c.desired_limit(t), Some(16.0));
    let r = c
        .handle_call(t, "SetChargingProfile", &tx_profile(10.0, 101))
        .unwrap();
    assert_eq!(r["status"], "Accepted");
    assert_eq!(c.desired_limit(t), Some(10.0));
    // A ChargePointMaxProfile below it wins (composite = min).
    let cp_max = json!({"connectorId": 0, "csChargingProfiles": {
        "chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "ChargePointMaxProfile",
        "chargingProfileKind": "Absolute", "chargingSchedule": {"startSchedule": "2026-12-01T12:00:00Z",
        "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 8}]}}});
    assert_eq!(
        c.handle_call(t, "SetChargingProfile", &cp_max).unwrap()["status"],
        "Accepted"
    );
    assert_eq!(c.desired_limit(t), Some(8.0));
    // Limit 0: off; the wallbox stops offering and the connector is SuspendedEVSE.
    c.handle_call(t, "SetChargingProfile", &tx_profile(0.0, 101))
        .unwrap();
    assert_eq!(c.desired_limit(t), None);
    let later = t + Duration::seconds(30);
    c.on_sample(later, reading(S::C1, 1100.0, 0.0));
    csms.pump(&mut c, later);
    assert_eq!(csms.statuses(1).last().unwrap(), "SuspendedEVSE");
    // Raising it resumes charging.
    c.handle_call(later, "SetChargingProfile", &tx_profile(12.0, 101))
        .unwrap();
    assert_eq!(
        c.desired_limit(later),
        Some(8.0),
        "still capped by ChargePointMax"
    );
    c.on_sample(later + Duration::seconds(2), reading(S::C2, 1101.0, 5520.0));
    csms.pump(&mut c, later + Duration::seconds(2));
    assert_eq!(csms.statuses(1).last().unwrap(), "Charging");
    // A TxProfile for another transaction is refused.
    let r = c
        .handle_call(later, "SetChargingProfile", &tx_profile(6.0, 999))
        .unwrap();
    assert_eq!(r["status"], "Rejected");
    // The TxProfile ends with the transaction; ChargePointMax stays.
    c.on_sample(later + Duration::seconds(5), reading(S::A, 1110.0, 0.0));
    let r = c
        .handle_call(
            later,
            "ClearChargingProfile",
            &json!({"chargingProfilePurpose": "TxProfile"}),
        )
        .unwrap();
    assert_eq!(r["status"], "Unknown");
    let r = c
        .handle_call(later, "ClearChargingProfile", &json!({"id": 1}))
        .unwrap();
    assert_eq!(r["status"], "Accepted");
}

#[test]
fn a_schedule_boundary_sets_a_timer_and_profiles_survive_a_restart() {
    let mut store = crate::store::Store::in_memory().unwrap();
    store.load("CB-1").unwrap();
    let (mut c, _, t) = plugged_in();
    // TxDefault: 16 A now, 6 A from 12:30.
    let default = json!({"connectorId": 0, "csChargingProfiles": {
        "chargingProfileId": 3, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute", "chargingSchedule": {"startSchedule": "2026-12-01T12:00:00Z",
        "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}, {"startPeriod": 1800, "limit": 6}]}}});
    assert_eq!(
        c.handle_call(t, "SetChargingProfile", &default).unwrap()["status"],
        "Accepted"
    );
    let boundary = t0() + Duration::seconds(1800);
    assert_eq!(c.desired_limit(boundary - Duration::seconds(1)), Some(16.0));
    assert_eq!(c.desired_limit(boundary), Some(6.0));
    assert!(
        c.next_deadline(t).unwrap() <= boundary,
        "the task wakes at the boundary"
    );
    let composite = c
        .handle_call(
            t,
            "GetCompositeSchedule",
            &json!({"connectorId": 1, "duration": 3600}),
        )
        .unwrap();
    assert_eq!(composite["status"], "Accepted");
    persist(&mut c, &mut store);
    let mut c2 = charger(AuthMode::Free);
    c2.restore(store.load("CB-1").unwrap(), t + Duration::seconds(5));
    c2.on_sample(boundary, reading(S::C2, 1200.0, 4000.0));
    assert_eq!(
        c2.desired_limit(boundary),
        Some(6.0),
        "the stored schedule keeps running"
    );
}

#[test]
fn a_remote_start_profile_applies_to_its_transaction() {
    let (mut c, mut csms) = remote_with_car_plugged();
    let profile = json!({"chargingProfileId": 5, "stackLevel": 0, "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative", "chargingSchedule": {"chargingRateUnit": "A",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 8.228260869565219}]}});
    csms.accepted_call(
        &mut c,
        t0(),
        "RemoteStartTransaction",
        &json!({"idTag": "T", "connectorId": 1, "chargingProfile": profile}),
    );
    assert_eq!(c.desired_limit(t0()), Some(8.2), "rounded down to 0.1 A");
}

#[path = "session_scenarios.rs"]
mod session_scenarios;
