//! End to end: a full charging cycle through the real gateway, as the central system sees it,
//! over Modbus RTU (two units sharing one simulated RS-485 line at 19200 8E1) and Modbus TCP.
//! wss with the test CA and Basic Auth; behaviour.md is the rule book.

mod common;
mod e2e_support;

use e2e_support::{ChargerSpec, Rig, RigSpec, eventually};
use serde_json::Value;

/// The measurands a platform usually asks for (behaviour.md §Remote trigger and configuration).
const SAMPLED: &str = "Energy.Active.Import.Register,Power.Active.Import";

/// The energy register's value now, in Wh.
fn energy_register(rig: &Rig, id: &str) -> f64 {
    rig.wallbox(id)
        .register_value("energy")
        .and_then(|v| v.as_f64())
        .expect("the map has an energy register")
}

/// Boot as the central system sees it: BootNotification with the map's identity, then
/// connector 0 and connector 1 Available; then the platform configures meter values.
async fn boots_and_is_configured(rig: &Rig, id: &str) {
    let boot = rig
        .expect_call(0, id, "BootNotification", |_| true, "boot")
        .await;
    assert_eq!(boot["chargePointVendor"], "Heidelberg", "{boot}");
    assert_eq!(boot["chargePointModel"], "Energy Control", "{boot}");
    // layout_version 0x0108 (decimal 264) through the map's `format: "layout {}"`.
    assert_eq!(boot["firmwareVersion"], "layout 264", "{boot}");
    rig.expect_status(0, id, 0, "Available").await;
    rig.expect_status(0, id, 1, "Available").await;
    rig.configure(id, "MeterValueSampleInterval", "2").await;
    rig.configure(id, "MeterValuesSampledData", SAMPLED).await;
    // No transaction: the limit is held at off_value (0), so no energy flows.
    eventually(
        &format!("{id}: limit held at 0 before any transaction"),
        || (rig.wallbox(id).snapshot().limit_raw == [0]).then_some(()),
    )
    .await;
}

/// Plug in, charge, unplug; asserts every message and the limit register on the way.
async fn charging_cycle(rig: &Rig, id: &str) {
    let wb = rig.wallbox(id);
    let since = rig.csms.mark();
    let energy_at_plug = energy_register(rig, id);
    wb.plug();

    rig.expect_status(since, id, 1, "Preparing").await;
    let start = rig
        .expect_call(since, id, "StartTransaction", |_| true, "after plug-in")
        .await;
    assert_eq!(start["connectorId"], 1, "{start}");
    assert_eq!(start["idTag"], format!("TAG-{id}"), "{start}");
    let meter_start = start["meterStart"]
        .as_i64()
        .unwrap_or_else(|| panic!("meterStart is an integer: {start}"));
    #[allow(clippy::cast_possible_truncation)]
    let expected_start = energy_at_plug.round() as i64;
    assert_eq!(
        meter_start, expected_start,
        "meterStart == energy register at plug-in"
    );
    rig.expect_status(since, id, 1, "Charging").await;

    // The limit is raised to max_current (16 A -> raw 160 at scale 0.1) while charging.
    eventually(&format!("{id}: limit 16 A while charging"), || {
        let s = wb.snapshot();
        (s.limit_raw == [160] && s.power_w > 0.0).then_some(())
    })
    .await;

    // Periodic meter values with the configured measurands; the transactionId they carry
    // is the one the central system handed out.
    let mv = rig
        .expect_call(
            since,
            id,
            "MeterValues",
            |p| p.get("transactionId").is_some() && power_of(p).is_some_and(|w| w > 0.0),
            "periodic sample while charging",
        )
        .await;
    let tx = mv["transactionId"].as_i64().expect("integer transactionId");
    check_meter_values(&mv, meter_start);
    let samples = rig.calls(since, id, "MeterValues");
    for p in samples.iter().filter(|p| p.get("transactionId").is_some()) {
        assert_eq!(
            p["transactionId"], tx,
            "every MeterValues of the transaction: {p}"
        );
        check_meter_values(p, meter_start);
    }

    let since_unplug = rig.csms.mark();
    wb.unplug();
    let stop = rig
        .expect_call(
            since_unplug,
            id,
            "StopTransaction",
            |_| true,
            "after unplug",
        )
        .await;
    let energy_after = energy_register(rig, id);
    assert_eq!(stop["transactionId"], tx, "same transaction: {stop}");
    assert_eq!(stop["reason"], "EVDisconnected", "{stop}");
    let meter_stop = stop["meterStop"]
        .as_i64()
        .unwrap_or_else(|| panic!("meterStop is an integer: {stop}"));
    #[allow(clippy::cast_possible_truncation)]
    let expected_stop = energy_after.round() as i64;
    assert_eq!(
        meter_stop, expected_stop,
        "meterStop == energy register after unplug"
    );
    assert!(
        meter_stop > meter_start,
        "energy flowed: {meter_start} -> {meter_stop}"
    );
    assert_eq!(
        rig.calls(since, id, "StopTransaction").len(),
        1,
        "exactly one StopTransaction"
    );
    rig.expect_status(since_unplug, id, 1, "Available").await;
    eventually(
        &format!("{id}: limit back to 0 after the transaction"),
        || (wb.snapshot().limit_raw == [0]).then_some(()),
    )
    .await;
}

/// The total active power of a MeterValues payload, W.
fn power_of(p: &Value) -> Option<f64> {
    p["meterValue"]
        .as_array()?
        .iter()
        .flat_map(|mv| mv["sampledValue"].as_array().into_iter().flatten())
        .find(|sv| sv["measurand"] == "Power.Active.Import" && sv.get("phase").is_none())
        .and_then(|sv| sv["value"].as_str()?.parse().ok())
}

/// Each sampled value: the configured measurands only, Wh/W, integer Wh not below meterStart,
/// context Sample.Periodic.
fn check_meter_values(p: &Value, meter_start: i64) {
    let mut seen = Vec::new();
    for mv in p["meterValue"].as_array().expect("meterValue array") {
        assert!(mv["timestamp"].is_string(), "timestamp: {p}");
        for sv in mv["sampledValue"].as_array().expect("sampledValue array") {
            assert_eq!(sv["context"], "Sample.Periodic", "{p}");
            let value = sv["value"].as_str().expect("value is a string");
            match sv["measurand"].as_str() {
                Some("Energy.Active.Import.Register") => {
                    assert_eq!(sv["unit"], "Wh", "{p}");
                    let wh: i64 = value
                        .parse()
                        .unwrap_or_else(|_| panic!("energy is an integer Wh: {p}"));
                    assert!(wh >= meter_start, "energy never below meterStart: {p}");
                }
                Some("Power.Active.Import") => {
                    assert_eq!(sv["unit"], "W", "{p}");
                    let _: f64 = value.parse().expect("power is a number");
                }
                other => panic!("unconfigured measurand {other:?} sent: {p}"),
            }
            seen.push(sv["measurand"].as_str().unwrap_or_default().to_owned());
        }
    }
    for m in SAMPLED.split(',') {
        assert!(seen.iter().any(|s| s == m), "{m} missing: {p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtu_two_units_on_one_line_each_complete_a_transaction() {
    let rig = Rig::start(RigSpec::new(vec![
        ChargerSpec::rtu("E2E-RTU-1", 1),
        ChargerSpec::rtu("E2E-RTU-2", 2),
    ]))
    .await;
    tokio::join!(
        boots_and_is_configured(&rig, "E2E-RTU-1"),
        boots_and_is_configured(&rig, "E2E-RTU-2")
    );
    // Both wallboxes charge at the same time on the shared line.
    tokio::join!(
        charging_cycle(&rig, "E2E-RTU-1"),
        charging_cycle(&rig, "E2E-RTU-2")
    );
    let t1 = rig.calls(0, "E2E-RTU-1", "StopTransaction")[0]["transactionId"].clone();
    let t2 = rig.calls(0, "E2E-RTU-2", "StopTransaction")[0]["transactionId"].clone();
    assert_ne!(t1, t2, "each charger has its own transaction");
    assert!(!rig.gateway_ended(), "the gateway keeps running");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_wallbox_completes_a_transaction() {
    let rig = Rig::start(RigSpec::new(vec![ChargerSpec::tcp("E2E-TCP-1", 1)])).await;
    boots_and_is_configured(&rig, "E2E-TCP-1").await;
    charging_cycle(&rig, "E2E-TCP-1").await;
    rig.stop().await;
}
