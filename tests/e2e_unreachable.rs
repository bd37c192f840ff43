//! End to end: a wallbox that stops answering on Modbus is reported Faulted with
//! vendorErrorCode `ModbusUnreachable` after about 10 s (behaviour.md §Status), without
//! disturbing the other wallbox on the same RS-485 line, and recovers when it answers again.

mod common;
mod e2e_support;

use std::time::Duration;

use chargebridge::sim::csms::CsmsEvent;
use e2e_support::{ChargerSpec, Rig, RigSpec, eventually};
use serde_json::Value;

fn is_unreachable(p: &Value) -> bool {
    p["connectorId"] == 1 && p["status"] == "Faulted" && p["vendorErrorCode"] == "ModbusUnreachable"
}

/// The time of the first CALL from `id` of `action` matching `pred` from event `since` on.
fn call_time(
    rig: &Rig,
    since: usize,
    id: &str,
    action: &str,
    pred: impl Fn(&Value) -> bool,
) -> Option<chrono::DateTime<chrono::Utc>> {
    rig.csms
        .timeline()
        .into_iter()
        .skip(since)
        .find_map(|t| match t.event {
            CsmsEvent::Call {
                charger,
                action: a,
                payload,
            } if charger == id && a == action && pred(&payload) => Some(t.at),
            _ => None,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_wallbox_is_faulted_while_its_neighbour_keeps_charging_then_recovers() {
    let (quiet, busy) = ("E2E-QUIET", "E2E-BUSY");
    let rig = Rig::start(RigSpec::new(vec![
        ChargerSpec::rtu(quiet, 1),
        ChargerSpec::rtu(busy, 2),
    ]))
    .await;
    for id in [quiet, busy] {
        rig.expect_status(0, id, 1, "Available").await;
    }
    rig.configure(busy, "MeterValueSampleInterval", "1").await;
    rig.configure(
        busy,
        "MeterValuesSampledData",
        "Energy.Active.Import.Register,Power.Active.Import",
    )
    .await;

    // The neighbour charges.
    rig.wallbox(busy).plug();
    rig.expect_call(
        0,
        busy,
        "StartTransaction",
        |_| true,
        "neighbour plugged in",
    )
    .await;
    rig.expect_status(0, busy, 1, "Charging").await;
    let tx = rig
        .expect_call(
            0,
            busy,
            "MeterValues",
            |p| p.get("transactionId").is_some(),
            "sample",
        )
        .await["transactionId"]
        .clone();

    // The quiet wallbox stops answering (switched off, broken cable).
    let since = rig.csms.mark();
    let silenced_at = chrono::Utc::now();
    rig.wallbox(quiet).set_silent(true);
    let fault = rig
        .expect_call(
            since,
            quiet,
            "StatusNotification",
            is_unreachable,
            "ModbusUnreachable",
        )
        .await;
    assert_eq!(fault["errorCode"], "OtherError", "{fault}");
    let faulted_at = call_time(&rig, since, quiet, "StatusNotification", is_unreachable)
        .expect("the fault is in the timeline");
    let after = (faulted_at - silenced_at).to_std().unwrap_or_default();
    assert!(
        after >= Duration::from_secs(9),
        "Faulted only after ~10 s of failures, not after {after:?}"
    );

    // The neighbour was not disturbed: it kept sending meter values with power flowing
    // during the outage, and never left Charging.
    let during: Vec<Value> = rig
        .calls(since, busy, "MeterValues")
        .into_iter()
        .filter(|p| p["transactionId"] == tx)
        .collect();
    assert!(
        during.len() >= 3,
        "the neighbour kept reporting meter values during the outage ({} sent)\n{}",
        during.len(),
        rig.timeline()
    );
    let busy_status: Vec<Value> = rig.calls(since, busy, "StatusNotification");
    assert!(
        busy_status.is_empty(),
        "the neighbour's status did not change: {busy_status:?}"
    );
    assert!(rig.calls(0, busy, "StopTransaction").is_empty());
    let s = rig.wallbox(busy).snapshot();
    assert!(
        s.power_w > 0.0 && s.limit_raw == [160],
        "still charging at 16 A: {s:?}"
    );

    // The quiet wallbox answers again: back to Available.
    let since = rig.csms.mark();
    rig.wallbox(quiet).set_silent(false);
    rig.expect_status(since, quiet, 1, "Available").await;
    let unreachable_again = rig
        .calls(since, quiet, "StatusNotification")
        .iter()
        .any(is_unreachable);
    assert!(!unreachable_again, "no stale fault after recovery");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_nobody_answers_for_is_faulted_and_the_served_one_works() {
    let (ghost, real) = ("E2E-GHOST", "E2E-REAL");
    let mut spec = RigSpec::new(vec![ChargerSpec::rtu(ghost, 3), ChargerSpec::rtu(real, 1)]);
    // Only unit 1 exists on the line.
    spec.rtu_units = vec![1];
    let rig = Rig::start(spec).await;

    // The ghost still appears to the central system (it boots without the wallbox's
    // identity) and is reported unreachable.
    rig.expect_call(
        0,
        ghost,
        "BootNotification",
        |_| true,
        "boot without identity",
    )
    .await;
    let fault = rig
        .expect_call(
            0,
            ghost,
            "StatusNotification",
            is_unreachable,
            "ModbusUnreachable",
        )
        .await;
    assert_eq!(fault["errorCode"], "OtherError", "{fault}");

    // The served wallbox on the same line is unaffected by the timeouts.
    rig.expect_status(0, real, 1, "Available").await;
    let since = rig.csms.mark();
    rig.wallbox(real).plug();
    rig.expect_call(since, real, "StartTransaction", |_| true, "plug-in")
        .await;
    rig.expect_status(since, real, 1, "Charging").await;
    eventually("the real wallbox gets 16 A", || {
        (rig.wallbox(real).snapshot().limit_raw == [160]).then_some(())
    })
    .await;
    assert!(
        !rig.calls(0, real, "StatusNotification")
            .iter()
            .any(|p| p["status"] == "Faulted"),
        "the served wallbox was never Faulted\n{}",
        rig.timeline()
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wallbox_lost_mid_transaction_keeps_its_transaction() {
    let id = "E2E-LOST";
    let rig = Rig::start(RigSpec::new(vec![ChargerSpec::tcp(id, 1)])).await;
    rig.expect_status(0, id, 1, "Available").await;
    let wb = rig.wallbox(id);
    wb.plug();
    rig.expect_call(0, id, "StartTransaction", |_| true, "plug-in")
        .await;
    rig.expect_status(0, id, 1, "Charging").await;

    let since = rig.csms.mark();
    wb.set_silent(true);
    let fault = rig
        .expect_call(
            since,
            id,
            "StatusNotification",
            is_unreachable,
            "ModbusUnreachable",
        )
        .await;
    assert_eq!(fault["errorCode"], "OtherError", "{fault}");
    // behaviour.md §Status: the transaction is kept, not stopped.
    assert!(
        rig.calls(0, id, "StopTransaction").is_empty(),
        "no StopTransaction for an unreachable wallbox\n{}",
        rig.timeline()
    );

    let since = rig.csms.mark();
    wb.set_silent(false);
    rig.expect_status(since, id, 1, "Charging").await;
    assert!(rig.calls(0, id, "StopTransaction").is_empty());
    assert_eq!(
        rig.calls(0, id, "StartTransaction").len(),
        1,
        "the same transaction continues"
    );
    rig.stop().await;
}
