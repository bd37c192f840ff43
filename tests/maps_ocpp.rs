//! Every shipped device map end to end, as the central system sees it: the real gateway polls
//! a simulated wallbox speaking the map over Modbus TCP and acts as an OCPP 1.6J charge point
//! towards the loopback central system (wss, Basic Auth). One charger per map, all in one
//! gateway, driven concurrently: boot with the map's identity, Available, plug in, Preparing,
//! StartTransaction, Charging with the limit register holding the limit, unplug,
//! StopTransaction EVDisconnected, Available. A map added to device-maps/ is covered without
//! touching this file (`builtin_names`).
//!
//! Energy: meterStart / meterStop must equal the map's energy register as integer Wh
//! (behaviour.md §Transactions). Maps without an energy register (EVSE-WB-DIN, Schrack) send
//! 0 for both: there is nothing better to send, and the test asserts exactly that. A register
//! that counts the session only (`counts: session`, ABB) starts again from 0 at each plug-in in
//! its simulated wallbox; such maps charge a second session, which must start at the first
//! one's meterStop and end at it plus the register (the gateway adds sessions up). Coarse
//! registers (Vestel counts 0.1 kWh) give multiples of their step; the rig runs the wallboxes at
//! 1000 V so that every register moves by at least one step within seconds.
#![allow(clippy::unwrap_used, clippy::float_cmp)]

mod common;
mod mapsproof_support;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use chargebridge::devicemap::{self, DeviceMap};
use futures_util::FutureExt as _;
use mapsproof_support::{MAX_CURRENT, MapCharger, MapRig, eventually};
use serde_json::Value;

/// Lifetime energy counters start here, Wh (as a wallbox in service for a while would).
const LIFETIME_WH: u32 = 1_250_000;

/// The name of the map's energy register (the total, not a phase), if it has one.
fn energy_register(map: &DeviceMap) -> Option<String> {
    let spec = map.measurand("Energy.Active.Import.Register")?;
    let (_, id) = spec.sources.iter().find(|(phase, _)| phase.is_none())?;
    Some(map.register(*id).name.clone())
}

/// The energy register's value as the wallbox serves it now, Wh.
fn energy_now(map: &DeviceMap, sim: &chargebridge::sim::SimHandle) -> Option<f64> {
    let name = energy_register(map)?;
    let value = sim
        .register_value(&name)
        .unwrap_or_else(|| panic!("{}: energy register `{name}` unreadable", map.name));
    Some(
        value
            .as_f64()
            .unwrap_or_else(|| panic!("{}: `{name}` is not a number", map.name)),
    )
}

#[allow(clippy::cast_possible_truncation)]
fn integer_wh(wh: f64) -> i64 {
    wh.round() as i64
}

/// The current the wallbox offers when the gateway writes [`MAX_CURRENT`], per the map.
fn expected_limit(map: &DeviceMap) -> f64 {
    match (&map.control.current_limit, &map.control.power_limit) {
        (Some(l), _) => MAX_CURRENT.min(l.max),
        // The gateway converts with the configured phases and voltage, which the rig sets to
        // the simulator's, so the simulator reads the same amperes back.
        (None, Some(_)) => MAX_CURRENT,
        (None, None) => panic!("{}: no limit register to check", map.name),
    }
}

fn meter(payload: &Value, key: &str) -> i64 {
    payload[key]
        .as_i64()
        .unwrap_or_else(|| panic!("{key} is an integer: {payload}"))
}

/// One charger's whole cycle; panics with the charger's timeline on the first failure.
async fn drive(rig: Arc<MapRig>, id: String) {
    let wb = rig.wallbox(&id).clone();
    let (map, sim) = (&wb.map, &wb.sim);
    let name = map.name.as_str();

    let boot = rig
        .expect_call(0, &id, "BootNotification", |_| true, "boot")
        .await;
    assert_eq!(
        boot["chargePointVendor"],
        map.vendor.as_str(),
        "{name}: {boot}"
    );
    assert_eq!(
        boot["chargePointModel"],
        map.model.as_str(),
        "{name}: {boot}"
    );
    rig.expect_status(0, &id, 1, "Available").await;
    // No transaction: no current is offered, so no energy flows before the plug-in.
    eventually(
        &format!("{name}: nothing offered before a transaction"),
        || (sim.snapshot().offered_a == 0.0).then_some(()),
    )
    .await;

    let since = rig.csms.mark();
    let energy_at_plug = energy_now(map, sim);
    sim.plug();
    rig.expect_status(since, &id, 1, "Preparing").await;
    let start = rig
        .expect_call(since, &id, "StartTransaction", |_| true, "after plug-in")
        .await;
    assert_eq!(start["connectorId"], 1, "{name}: {start}");
    assert_eq!(start["idTag"], format!("TAG-{id}"), "{name}: {start}");
    let meter_start = meter(&start, "meterStart");
    // Without an energy register there is no meter: 0 is all the gateway can send.
    assert_eq!(
        meter_start,
        energy_at_plug.map_or(0, integer_wh),
        "{name}: meterStart == the energy register at plug-in"
    );
    rig.expect_status(since, &id, 1, "Charging").await;
    // In that order: Preparing first, before StartTransaction (behaviour.md §Transactions).
    let order = rig.connector_1_story(since, &id);
    let preparing = order.iter().position(|s| s == "Preparing");
    let started = order.iter().position(|s| s == "StartTransaction");
    assert!(
        preparing == Some(0) && started.is_some_and(|s| s > 0),
        "{name}: Preparing, then StartTransaction: {order:?}"
    );

    // The limit the gateway wrote, as the wallbox holds it in its limit register.
    let want = expected_limit(map);
    let snap = eventually(&format!("{name}: limit {want} A while charging"), || {
        let s = sim.snapshot();
        (s.limit_a.is_some_and(|a| (a - want).abs() < 0.01) && s.current_a > 0.0).then_some(s)
    })
    .await;
    assert!(snap.power_w > 0.0, "{name}: {snap:?}");

    // Charge until the energy register moves (one step of its resolution), so meterStop
    // has something to show; without a register, until the simulated meter counts.
    match energy_at_plug {
        Some(at_plug) => {
            eventually(&format!("{name}: energy register grows"), || {
                energy_now(map, sim)
                    .is_some_and(|e| e > at_plug)
                    .then_some(())
            })
            .await;
        }
        None => {
            eventually(&format!("{name}: the wallbox charges"), || {
                (sim.snapshot().energy_wh > 0.0).then_some(())
            })
            .await;
        }
    }

    let (since_unplug, stop) = unplug(&rig, &id, sim, "after unplug").await;
    assert_eq!(stop["reason"], "EVDisconnected", "{name}: {stop}");
    assert!(
        stop["transactionId"].as_i64().is_some_and(|t| t > 0),
        "{name}: the central system's transactionId: {stop}"
    );
    let meter_stop = meter(&stop, "meterStop");
    match energy_now(map, sim) {
        Some(after) => {
            assert_eq!(
                meter_stop,
                integer_wh(after),
                "{name}: meterStop == the energy register after unplug"
            );
            assert!(
                meter_stop > meter_start,
                "{name}: energy flowed: {meter_start} -> {meter_stop}"
            );
        }
        None => assert_eq!(meter_stop, 0, "{name}: no meter: {stop}"),
    }
    rig.expect_status(since_unplug, &id, 1, "Available").await;
    // The transaction is over: the limit goes back to off.
    eventually(
        &format!("{name}: nothing offered after the transaction"),
        || (sim.snapshot().offered_a == 0.0).then_some(()),
    )
    .await;
    let story = rig.connector_1_story(0, &id);
    assert!(
        !story.iter().any(|s| s == "Faulted"),
        "{name}: never Faulted: {story:?}"
    );
    let sessions = if counts_per_session(map) {
        second_session(&rig, &id, meter_stop).await;
        2
    } else {
        1
    };
    assert_eq!(
        rig.calls(0, &id, "StartTransaction").len(),
        sessions,
        "{name}: exactly one StartTransaction per session"
    );
    assert_eq!(
        rig.calls(0, &id, "StopTransaction").len(),
        sessions,
        "{name}: exactly one StopTransaction per session"
    );
}

/// Unplugs the car; returns the central system's mark from just before and the
/// StopTransaction that followed.
async fn unplug(
    rig: &MapRig,
    id: &str,
    sim: &chargebridge::sim::SimHandle,
    what: &str,
) -> (usize, Value) {
    let since = rig.csms.mark();
    sim.unplug();
    let stop = rig
        .expect_call(since, id, "StopTransaction", |_| true, what)
        .await;
    (since, stop)
}

fn counts_per_session(map: &DeviceMap) -> bool {
    map.energy_counts() == devicemap::Counts::Session
}

/// The next session on a wallbox whose energy register counts per session: the register
/// starts from 0 again, the meter the central system sees goes on from `previous_stop`.
async fn second_session(rig: &MapRig, id: &str, previous_stop: i64) {
    let wb = rig.wallbox(id).clone();
    let (map, sim) = (&wb.map, &wb.sim);
    let name = map.name.as_str();
    let since = rig.csms.mark();
    sim.plug();
    let start = rig
        .expect_call(since, id, "StartTransaction", |_| true, "second plug-in")
        .await;
    assert_eq!(
        energy_now(map, sim),
        Some(0.0),
        "{name}: the register started the session from 0"
    );
    assert_eq!(
        meter(&start, "meterStart"),
        previous_stop,
        "{name}: the second session starts where the first stopped, not at 0"
    );
    eventually(&format!("{name}: session energy grows"), || {
        energy_now(map, sim).is_some_and(|e| e > 0.0).then_some(())
    })
    .await;
    let (since_unplug, stop) = unplug(rig, id, sim, "second unplug").await;
    let session = energy_now(map, sim).map_or(0, integer_wh);
    assert_eq!(
        meter(&stop, "meterStop"),
        previous_stop + session,
        "{name}: the first session's meter plus this session's register ({session} Wh)"
    );
    rig.expect_status(since_unplug, id, 1, "Available").await;
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(no message)".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shipped_map_charges_through_ocpp() {
    let mut names = devicemap::builtin_names();
    names.sort_unstable();
    assert!(!names.is_empty(), "no built-in maps");
    let chargers: Vec<MapCharger> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let map = devicemap::resolve(name, &[]).unwrap();
            // A per-session register starts at 0.
            let start = if counts_per_session(&map) {
                0
            } else {
                LIFETIME_WH
            };
            MapCharger {
                id: format!("MP-{:02}", i + 1),
                map: (*name).to_owned(),
                set: energy_register(&map)
                    .map(|reg| vec![format!("{reg}={start}")])
                    .unwrap_or_default(),
            }
        })
        .collect();
    let rig = Arc::new(MapRig::start(&chargers).await);

    let mut set = tokio::task::JoinSet::new();
    for c in &chargers {
        let (rig, id, map) = (Arc::clone(&rig), c.id.clone(), c.map.clone());
        set.spawn(async move {
            let outcome = AssertUnwindSafe(drive(rig, id.clone()))
                .catch_unwind()
                .await;
            (map, id, outcome.map_err(|p| panic_text(&*p)))
        });
    }
    let mut failures = Vec::new();
    let mut passed = Vec::new();
    while let Some(joined) = set.join_next().await {
        let (map, id, outcome) = joined.expect("a map task is never cancelled");
        match outcome {
            Ok(()) => passed.push(map),
            Err(why) => failures.push(format!("{map} ({id}): {why}")),
        }
    }
    assert!(!rig.gateway_ended(), "the gateway keeps running");
    let rig = Arc::try_unwrap(rig).expect("every map task has ended");
    rig.stop().await;
    assert!(
        failures.is_empty(),
        "{} of {} maps failed (passed: {passed:?}):\n{}",
        failures.len(),
        chargers.len(),
        failures.join("\n\n")
    );
}
