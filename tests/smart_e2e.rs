//! Smart charging end to end: profiles sent by the central system reach the wallbox's limit
//! register (Heidelberg HR 261, 0.1 A units) through the real gateway, over Modbus TCP and over
//! Modbus RTU on a pty pair at 19200 8E1 (behaviour.md §Smart charging).

mod common;
mod smart_support;

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;
use smart_support::{Link, SmartRig, Spec, eventually, profile, tx_profile};

/// Every profile change the platform makes, in order, and the register value after each.
async fn profile_changes_reach_the_register(link: Link) {
    let rig = SmartRig::start(Spec::new(link)).await;
    let tx = rig.charging().await;

    rig.set_profile(1, tx_profile(1, tx, 10.0)).await;
    rig.expect_limit_raw(100, "TxProfile 10 A").await;

    // min(ChargePointMax 8 A, TxProfile 10 A)
    rig.set_profile(
        0,
        profile(2, "ChargePointMaxProfile", 0, "Absolute", "A", &[(0, 8.0)]),
    )
    .await;
    rig.expect_limit_raw(80, "ChargePointMaxProfile 8 A").await;

    let reply = rig.call("ClearChargingProfile", json!({"id": 2})).await;
    assert_eq!(reply["status"], "Accepted", "{reply}");
    rig.expect_limit_raw(100, "ChargePointMaxProfile cleared")
        .await;

    // Limit 0 pauses: the map's off value, and the EV stops drawing.
    let since = rig.csms.mark();
    rig.set_profile(1, tx_profile(1, tx, 0.0)).await;
    rig.expect_limit_raw(0, "limit 0").await;
    rig.expect_status(since, "SuspendedEVSE").await;
    assert!(
        rig.wallbox.snapshot().current_a.abs() < f64::EPSILON,
        "no current while paused"
    );

    let since = rig.csms.mark();
    rig.set_profile(1, tx_profile(1, tx, 12.0)).await;
    rig.expect_limit_raw(120, "raised to 12 A").await;
    rig.expect_status(since, "Charging").await;

    // 7360 W on 3 phases at 230 V = 10.67 A, rounded down to 10.6 A (never above the profile).
    let mut watts = profile(1, "TxProfile", 0, "Relative", "W", &[(0, 7360.0)]);
    watts["transactionId"] = json!(tx);
    watts["chargingSchedule"]["chargingSchedulePeriod"][0]["numberPhases"] = json!(3);
    rig.set_profile(1, watts).await;
    rig.expect_limit_raw(106, "7360 W on 3 phases").await;

    // Clearing everything goes back to the installer's max_current (16 A).
    let reply = rig.call("ClearChargingProfile", json!({})).await;
    assert_eq!(reply["status"], "Accepted", "{reply}");
    rig.expect_limit_raw(160, "all profiles cleared").await;

    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_profile_changes_reach_the_register() {
    profile_changes_reach_the_register(Link::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtu_profile_changes_reach_the_register() {
    profile_changes_reach_the_register(Link::Rtu).await;
}

fn ocpp_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An Absolute profile with periods at 0 s (10 A) and 3 s (7 A): the register switches at the
/// boundary, within one poll (500 ms) plus the map's request delay; a generous margin is
/// added for a loaded machine, but never before the boundary.
async fn schedule_boundary_switches_the_register(link: Link) {
    let rig = SmartRig::start(Spec::new(link)).await;
    rig.charging().await;

    let start = Utc::now() + chrono::Duration::seconds(1);
    let boundary = start + chrono::Duration::seconds(3);
    let mut p = profile(
        3,
        "ChargePointMaxProfile",
        0,
        "Absolute",
        "A",
        &[(0, 10.0), (3, 7.0)],
    );
    p["chargingSchedule"]["startSchedule"] = json!(ocpp_time(start));
    rig.set_profile(0, p).await;
    rig.expect_limit_raw(100, "first period").await;
    assert!(
        Utc::now() < boundary,
        "the machine was too slow to see the first period before the boundary"
    );

    // Watch the register closely around the boundary.
    let wb = rig.wallbox.clone();
    let switched = eventually("second period (7 A)", || {
        let raw = wb.snapshot().limit_raw;
        let now = Utc::now();
        match raw.as_slice() {
            [100] => None,
            [70] => Some(now),
            other => panic!("unexpected limit register {other:?} at {now}"),
        }
    })
    .await;
    let early = (boundary - switched).num_milliseconds();
    assert!(
        early <= 50,
        "switched {early} ms before the boundary (at {switched}, boundary {boundary})"
    );
    let late = (switched - boundary).num_milliseconds();
    // One poll (500 ms) + request delay (100 ms) + frames; doubled for a loaded 2-core box.
    assert!(
        late <= 2_000,
        "switched {late} ms after the boundary: the limit timer did not fire"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_schedule_boundary_switches_the_register() {
    schedule_boundary_switches_the_register(Link::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtu_schedule_boundary_switches_the_register() {
    schedule_boundary_switches_the_register(Link::Rtu).await;
}

/// A profile survives a gateway restart on the same state_dir and is written again.
async fn restart_keeps_the_profile(link: Link) {
    let mut rig = SmartRig::start(Spec::new(link)).await;
    rig.charging().await;
    rig.set_profile(
        0,
        profile(4, "ChargePointMaxProfile", 0, "Absolute", "A", &[(0, 8.0)]),
    )
    .await;
    rig.expect_limit_raw(80, "ChargePointMaxProfile 8 A").await;

    rig.stop_gateway().await;
    // While the gateway is down, the box loses its limit (it reverts at power-on).
    rig.wallbox
        .set_register_text("limit", "16")
        .expect("set the limit register");
    assert_eq!(rig.wallbox.snapshot().limit_raw, [160]);

    let since = rig.csms.mark();
    rig.start_gateway();
    rig.expect_call(since, "BootNotification", |_| true, "boot after restart")
        .await;
    rig.expect_limit_raw(80, "the stored profile written again after the restart")
        .await;
    let last = rig.wallbox.snapshot().last_write;
    assert!(
        rig.wallbox.snapshot().limit_raw == [80]
            && last
                .iter()
                .any(|w| w.registers.iter().any(|r| r == "limit")),
        "the gateway wrote the limit: {last:?}"
    );
    let composite = rig
        .call(
            "GetCompositeSchedule",
            json!({"connectorId": 0, "duration": 60, "chargingRateUnit": "A"}),
        )
        .await;
    assert_eq!(composite["status"], "Accepted", "{composite}");
    assert_eq!(
        composite["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"], 8.0,
        "{composite}"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_restart_keeps_the_profile() {
    restart_keeps_the_profile(Link::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtu_restart_keeps_the_profile() {
    restart_keeps_the_profile(Link::Rtu).await;
}

/// With a 2 s watchdog, the gateway's keep-alive holds the limit; once the gateway stops, the
/// wallbox falls back to the failsafe current written at connect (6 A); once it is back, its
/// limit write takes control again.
async fn keepalive_stopping_falls_back_to_failsafe(link: Link) {
    let mut spec = Spec::new(link);
    spec.sim_set.push("watchdog=2000".to_owned());
    // Polls far apart: only the keep-alive (every 500 ms) keeps the watchdog fed.
    spec.poll_interval = "10s";
    let mut rig = SmartRig::start(spec).await;
    rig.charging().await;
    assert_eq!(
        rig.wallbox.snapshot().limit_raw,
        [160],
        "charging at max_current"
    );
    assert_eq!(
        rig.wallbox
            .register_value("failsafe")
            .and_then(|v| v.as_f64()),
        Some(6.0),
        "failsafe current written at connect"
    );

    // Two watchdog periods with the gateway running: still under remote control.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let s = rig.wallbox.snapshot();
    assert!(!s.failsafe_active, "keep-alive holds the watchdog: {s:?}");
    assert!((s.offered_a - 16.0).abs() < 1e-9, "offered {}", s.offered_a);

    rig.stop_gateway().await;
    let wb = rig.wallbox.clone();
    let s = eventually("failsafe after the keep-alive stopped", || {
        let s = wb.snapshot();
        s.failsafe_active.then_some(s)
    })
    .await;
    assert!((s.offered_a - 6.0).abs() < 1e-9, "offered {}", s.offered_a);
    assert!(
        s.current_a <= 6.0 + 1e-9,
        "the EV draws the failsafe current at most: {}",
        s.current_a
    );

    // The gateway comes back: writing the limit takes control back from the failsafe.
    rig.start_gateway();
    let s = eventually("remote control again after the restart", || {
        let s = wb.snapshot();
        (!s.failsafe_active && (s.offered_a - 16.0).abs() < 1e-9).then_some(s)
    })
    .await;
    assert_eq!(s.limit_raw, [160], "{s:?}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_keepalive_stopping_falls_back_to_failsafe() {
    keepalive_stopping_falls_back_to_failsafe(Link::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtu_keepalive_stopping_falls_back_to_failsafe() {
    keepalive_stopping_falls_back_to_failsafe(Link::Rtu).await;
}
