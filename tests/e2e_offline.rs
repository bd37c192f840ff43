//! End to end: the central system goes away during a transaction, the EV is unplugged
//! meanwhile, and the central system comes back on the same address: exactly one
//! StopTransaction arrives, for the right transaction (behaviour.md §Delivery guarantees).
//! Only the in-memory queue of a running gateway is exercised here, not restarts.

mod common;
mod e2e_support;

use chargebridge::sim::SimHandle;
use e2e_support::{ChargerSpec, Rig, RigSpec, eventually};

/// Unplugs the EV and waits until the gateway has polled the wallbox a few times since
/// (so it has seen the unplug); returns the energy register then.
async fn unplug(wb: &SimHandle) -> f64 {
    wb.unplug();
    let requests = wb.snapshot().requests;
    eventually("the gateway polls the unplugged wallbox", || {
        (wb.snapshot().requests >= requests + 3).then_some(())
    })
    .await;
    wb.register_value("energy")
        .and_then(|v| v.as_f64())
        .expect("energy register")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unplug_while_offline_is_reported_once_after_reconnect() {
    let id = "E2E-OFFLINE";
    let mut rig = Rig::start(RigSpec::new(vec![ChargerSpec::tcp(id, 1)])).await;
    rig.expect_status(0, id, 1, "Available").await;
    rig.configure(id, "MeterValueSampleInterval", "1").await;
    let wb = rig.wallbox(id).clone();
    wb.plug();
    rig.expect_call(0, id, "StartTransaction", |_| true, "plug-in")
        .await;
    rig.expect_status(0, id, 1, "Charging").await;
    let tx = rig
        .expect_call(
            0,
            id,
            "MeterValues",
            |p| p.get("transactionId").is_some(),
            "sample",
        )
        .await["transactionId"]
        .clone();
    assert!(tx.is_i64(), "transactionId: {tx}");

    // The central system goes away (listener and connections closed).
    let offline_mark = rig.csms.mark();
    rig.stop_csms();

    // Unplugged while offline; the gateway sees it on the next polls.
    let energy_after = unplug(&wb).await;
    eventually(
        "the limit goes back to off without the central system",
        || (wb.snapshot().limit_raw == [0]).then_some(()),
    )
    .await;

    // The connection tasks of the stopped central system may still note their end; no message
    // (CALL) may arrive.
    let calls_while_down: Vec<_> = rig.csms.events()[offline_mark..]
        .iter()
        .filter(|e| matches!(e, chargebridge::sim::csms::CsmsEvent::Call { .. }))
        .cloned()
        .collect();
    assert!(
        calls_while_down.is_empty(),
        "nothing reached the stopped central system: {calls_while_down:?}"
    );

    // A central system on the same address again.
    rig.restart_csms().await;
    let stop = rig
        .expect_call(0, id, "StopTransaction", |_| true, "queued while offline")
        .await;
    assert_eq!(
        stop["transactionId"], tx,
        "the transaction started online: {stop}"
    );
    assert_eq!(stop["reason"], "EVDisconnected", "{stop}");
    #[allow(clippy::cast_possible_truncation)]
    let expected = energy_after.round() as i64;
    assert_eq!(stop["meterStop"].as_i64(), Some(expected), "{stop}");

    // Let the reconnect settle (the newest status is sent after the queue), then count.
    rig.expect_status(0, id, 1, "Available").await;
    let hb_mark = rig.csms.mark();
    rig.csms
        .call(
            id,
            "TriggerMessage",
            serde_json::json!({"requestedMessage": "Heartbeat"}),
        )
        .await
        .expect("TriggerMessage answered");
    rig.expect_call(hb_mark, id, "Heartbeat", |_| true, "triggered heartbeat")
        .await;
    let stops = rig.calls(0, id, "StopTransaction");
    assert_eq!(stops.len(), 1, "exactly one StopTransaction: {stops:?}");
    assert!(
        rig.calls(0, id, "StartTransaction").is_empty(),
        "no new transaction after reconnect"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_started_and_ended_offline_is_delivered_in_order_after_reconnect() {
    let id = "E2E-OFFLINE-2";
    let mut rig = Rig::start(RigSpec::new(vec![ChargerSpec::tcp(id, 1)])).await;
    rig.expect_status(0, id, 1, "Available").await;
    let wb = rig.wallbox(id).clone();

    rig.stop_csms();
    let energy_at_plug = wb
        .register_value("energy")
        .and_then(|v| v.as_f64())
        .expect("energy register");
    wb.plug();
    // Free vend: the EV charges although the central system is away.
    eventually("16 A offered and power flowing while offline", || {
        let s = wb.snapshot();
        (s.limit_raw == [160] && s.power_w > 0.0).then_some(())
    })
    .await;
    eventually("some energy charged offline", || {
        let e = wb.register_value("energy").and_then(|v| v.as_f64())?;
        (e > energy_at_plug).then_some(())
    })
    .await;
    let energy_after = unplug(&wb).await;

    rig.restart_csms().await;
    let stop = rig
        .expect_call(0, id, "StopTransaction", |_| true, "queued while offline")
        .await;
    let events = rig.csms.events();
    let starts: Vec<usize> = (0..events.len())
        .filter(|i| events[*i].is_call("StartTransaction"))
        .collect();
    let stops: Vec<usize> = (0..events.len())
        .filter(|i| events[*i].is_call("StopTransaction"))
        .collect();
    assert_eq!(starts.len(), 1, "one StartTransaction\n{}", rig.timeline());
    assert_eq!(stops.len(), 1, "one StopTransaction\n{}", rig.timeline());
    assert!(
        starts[0] < stops[0],
        "Start before Stop\n{}",
        rig.timeline()
    );
    let start = rig.calls(0, id, "StartTransaction").remove(0);
    #[allow(clippy::cast_possible_truncation)]
    let (expected_start, expected_stop) =
        (energy_at_plug.round() as i64, energy_after.round() as i64);
    assert_eq!(
        start["meterStart"].as_i64(),
        Some(expected_start),
        "{start}"
    );
    // The fresh central system handed out transactionId 1 for that StartTransaction.
    assert_eq!(
        stop["transactionId"], 1,
        "the id from the StartTransaction reply: {stop}"
    );
    assert_eq!(stop["meterStop"].as_i64(), Some(expected_stop), "{stop}");
    assert_eq!(stop["reason"], "EVDisconnected", "{stop}");
    rig.expect_status(0, id, 1, "Available").await;
    rig.stop().await;
}
