//! "Nothing lost": transaction messages, transactions, configuration keys, availability and
//! charging profiles survive an unreachable central system, a wallbox that stops answering, a
//! state database that cannot commit for a while, and a gateway that is killed (SIGKILL) or
//! stopped (SIGTERM) and started again (behaviour.md §Transactions, §Delivery guarantees;
//! ocpp16-facts §2.1, §3.3).
//!
//! Each test runs the real `chargebridge` binary against an in-process central system and a
//! simulated Heidelberg wallbox on Modbus TCP, with the state database in a temporary
//! directory (see `fault_support`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod fault_support;

use std::collections::HashSet;
use std::time::Duration;

use chargebridge::sim::csms::{CsmsEvent, CsmsReply};
use fault_support::{
    CHARGER, Rig, assert_calls, assert_stop, callerror, calls_in, meter_energy, meter_timestamps,
    summary, transaction_messages, tx_id,
};
use serde_json::{Value, json};

/// A rig whose central system hands out transaction `tx`, with the gateway booted, asking
/// for MeterValues every `interval` seconds and the car charging.
async fn charging(tx: i64, interval: u32) -> Rig {
    let mut rig = Rig::new().await;
    rig.set_transaction_id(tx);
    rig.start_available().await;
    rig.configure("MeterValueSampleInterval", &interval.to_string())
        .await;
    let since = rig.csms().mark();
    rig.sim().plug();
    rig.wait_call(since, "StartTransaction", |_| true, "StartTransaction")
        .await;
    rig.wait_status(since, "Charging", "StatusNotification Charging")
        .await;
    rig
}

/// Central system down for a while, car unplugged meanwhile: after the reconnect the queued
/// MeterValues and then exactly one StopTransaction arrive, with the id the central system
/// gave and the energy register's value at unplug.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_csms_outage_with_unplug_delivers_one_stop_after_queued_meter_values() {
    let mut rig = charging(1001, 1).await;
    let since = rig.csms().mark();
    rig.wait_call(
        since,
        "MeterValues",
        |p| tx_id(p) == 1001,
        "MeterValues of transaction 1001",
    )
    .await;

    rig.stop_csms().await;
    let offline_from = chrono::Utc::now();
    // Let a few samples queue up while the central system is unreachable.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let energy_at_unplug = rig.unplug();
    rig.wait_stored("StopTransaction", 1, "the StopTransaction is stored")
        .await;
    assert_eq!(
        rig.energy_register(),
        energy_at_unplug,
        "no energy flows after unplug"
    );
    rig.start_csms().await;

    // Everything queued goes before the status that follows it (behaviour.md §Delivery).
    let stop = rig.wait_stop_then_available(0, "after the outage").await;
    assert_stop(&stop, 1001, "EVDisconnected", Some(energy_at_unplug));

    let all = rig.timeline();
    assert_calls(&all, "StopTransaction", 1, "exactly one StopTransaction");
    assert_calls(&all, "StartTransaction", 1, "one StartTransaction");

    // After the reconnect: the queued MeterValues, in timestamp order, then the Stop.
    let after = rig.csms().timeline();
    // Offline only the newest status per connector is kept (behaviour.md §Status).
    let statuses: Vec<Value> = calls_in(&after, "StatusNotification")
        .into_iter()
        .filter(|p| p["connectorId"] == 1)
        .map(|p| p["status"].clone())
        .collect();
    assert_eq!(statuses, [json!("Available")], "{}", summary(&after));
    let msgs = transaction_messages(&after);
    let stop_at = msgs
        .iter()
        .position(|(a, _)| a == "StopTransaction")
        .expect("the Stop is among the messages after the reconnect");
    assert_eq!(
        stop_at,
        msgs.len() - 1,
        "nothing follows the Stop:\n{}",
        summary(&after)
    );
    let queued: Vec<&Value> = msgs[..stop_at].iter().map(|(_, p)| p).collect();
    assert!(
        !queued.is_empty(),
        "MeterValues sampled while offline arrive after the reconnect:\n{}",
        summary(&all)
    );
    let stop_time = stop["timestamp"].as_str().unwrap().to_owned();
    let mut previous = String::new();
    for mv in &queued {
        assert_eq!(tx_id(mv), 1001, "{mv}");
        for ts in meter_timestamps(mv) {
            assert!(ts > previous, "timestamps in order: {ts} after {previous}");
            assert!(
                ts <= stop_time,
                "sampled before the stop: {ts} vs {stop_time}"
            );
            previous = ts;
        }
    }
    // Some of them were sampled while the central system was down.
    let offline = offline_from.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    assert!(
        queued
            .iter()
            .flat_map(|mv| meter_timestamps(mv))
            .any(|ts| ts > offline),
        "no MeterValues from the outage:\n{}",
        summary(&all)
    );

    // Nothing duplicated: every sample arrives once. The only exception allowed is the last
    // message the first central system recorded, if it went down before its answer was
    // delivered (behaviour.md: nothing sent twice except what was not acknowledged).
    let before = calls_in(rig.earlier_timeline(), "MeterValues");
    let unacked = before.last().map(meter_timestamps).unwrap_or_default();
    let mut seen = HashSet::new();
    for mv in calls_in(&all, "MeterValues") {
        for ts in meter_timestamps(&mv) {
            if !seen.insert(ts.clone()) {
                assert!(
                    unacked.contains(&ts),
                    "MeterValues at {ts} delivered twice:\n{}",
                    summary(&all)
                );
            }
        }
    }
    rig.assert_no_secret_logged();
}

/// SIGKILL mid-transaction: with the car still plugged the transaction resumes (no second
/// StartTransaction, the limit written again, MeterValues with the same transactionId); with
/// the car unplugged while the gateway was down, exactly one StopTransaction, reason
/// PowerLoss, with the energy register's value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_sigkill_resumes_a_plugged_transaction_and_stops_an_unplugged_one_with_power_loss() {
    let mut rig = charging(2001, 2).await;
    rig.wait_limit(16.0, "the limit is raised").await;

    // 1. Killed while charging; the wallbox loses its limit meanwhile (as after its own
    //    power cycle), the car stays plugged.
    rig.kill_gateway();
    rig.clear_limit();
    let since = rig.restart_gateway();
    rig.wait_call(
        since,
        "BootNotification",
        |_| true,
        "BootNotification after the restart",
    )
    .await;
    rig.wait_limit(16.0, "the limit is written again after the restart")
        .await;
    let mv = rig
        .wait_call(
            since,
            "MeterValues",
            |p| p.get("transactionId").is_some(),
            "MeterValues after the restart",
        )
        .await;
    assert_eq!(
        tx_id(&mv),
        2001,
        "the resumed transaction keeps its id: {mv}"
    );
    rig.wait_status(since, "Charging", "Charging after the restart")
        .await;
    let all = rig.timeline();
    assert_calls(&all, "StartTransaction", 1, "no second StartTransaction");
    assert_calls(&all, "StopTransaction", 0, "no StopTransaction yet");
    let reported_max = calls_in(&all, "MeterValues")
        .iter()
        .filter_map(meter_energy)
        .fold(0.0, f64::max);

    // 2. Killed again; the car leaves while the gateway is down.
    rig.kill_gateway();
    let energy_at_unplug = rig.unplug();
    let since = rig.restart_gateway();
    let stop = rig
        .wait_stop_then_available(since, "after the restart")
        .await;
    assert_stop(&stop, 2001, "PowerLoss", Some(energy_at_unplug));
    #[allow(clippy::cast_precision_loss)]
    let meter_stop = energy_at_unplug as f64;
    assert!(
        meter_stop >= reported_max,
        "meterStop {meter_stop} below a reported MeterValues reading {reported_max}"
    );
    rig.assert_one_transaction();
    rig.assert_no_secret_logged();
}

/// A clean stop (SIGTERM) mid-transaction, the car unplugged while the gateway is down:
/// after the restart exactly one StopTransaction with reason Reboot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_sigterm_then_unplug_stops_the_transaction_with_reboot() {
    let mut rig = charging(3001, 60).await;
    rig.stop_gateway().await;
    let energy_at_unplug = rig.unplug();
    let since = rig.restart_gateway();
    let stop = rig
        .wait_stop_then_available(since, "after the restart")
        .await;
    assert_stop(&stop, 3001, "Reboot", Some(energy_at_unplug));
    rig.assert_one_transaction();
    rig.assert_no_secret_logged();
}

/// Free vend while the central system is unreachable, then the gateway killed and started
/// again before the central system is back: StartTransaction and StopTransaction each arrive
/// exactly once, the Stop with the id the central system returned for the Start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_offline_start_survives_sigkill_and_stop_carries_the_assigned_id() {
    let mut rig = Rig::booted().await;
    // MeterValues sampled offline wait behind the unanswered StartTransaction and need its id.
    rig.configure("MeterValueSampleInterval", "1").await;
    rig.stop_csms().await;

    rig.sim().plug();
    rig.wait_stored(
        "StartTransaction",
        1,
        "the offline StartTransaction is stored",
    )
    .await;
    rig.wait_sim("energy flows (free vend)", |s| s.snapshot().current_a > 0.0)
        .await;
    rig.wait_until("MeterValues are queued", || {
        rig.stored_messages("MeterValues") >= 1
    })
    .await;
    rig.kill_gateway();
    rig.clear_limit();
    rig.start_gateway();
    // The restarted gateway finds the transaction and the car: it resumes, offline.
    rig.wait_limit(16.0, "the limit is written again after the restart")
        .await;
    let energy_at_unplug = rig.unplug();
    rig.wait_stored("StopTransaction", 1, "the StopTransaction is stored")
        .await;
    assert_eq!(rig.stored_messages("StartTransaction"), 1);

    rig.set_transaction_id(4711);
    rig.start_csms().await;
    let stop = rig.wait_stop_then_available(0, "after the outage").await;
    assert_stop(&stop, 4711, "EVDisconnected", Some(energy_at_unplug));
    let all = rig.timeline();
    let msgs = transaction_messages(&all);
    let actions: Vec<&str> = msgs
        .iter()
        .map(|(a, _)| a.as_str())
        .filter(|a| *a != "MeterValues")
        .collect();
    assert_eq!(
        actions,
        ["StartTransaction", "StopTransaction"],
        "{}",
        summary(&all)
    );
    // Every message after the Start carries the id the central system gave it; none is
    // delivered twice.
    let mut seen = HashSet::new();
    for (action, payload) in &msgs[1..] {
        assert_eq!(tx_id(payload), 4711, "{action} {payload}");
        assert!(
            seen.insert(payload.to_string()),
            "delivered twice: {action} {payload}"
        );
    }
    assert!(
        msgs.iter().any(|(a, _)| a == "MeterValues"),
        "the offline MeterValues arrive:\n{}",
        summary(&all)
    );
    let start = &msgs[0].1;
    assert!(
        stop["meterStop"].as_i64() >= start["meterStart"].as_i64(),
        "{start} / {stop}"
    );
    assert_eq!(
        rig.stored_messages("StopTransaction"),
        0,
        "acknowledged: removed"
    );
    rig.assert_no_secret_logged();
}

/// CALLERROR replies to StopTransaction: TransactionMessageAttempts (3) failed attempts,
/// TransactionMessageRetryInterval (2 s) x attempt apart, then dropped with a log line; a
/// connection lost while the Stop is in flight is not a failed attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_stop_transaction_callerror_is_retried_then_dropped_and_a_lost_connection_does_not_count()
 {
    let mut rig = charging(5001, 60).await;
    rig.retry_policy(3, 2).await;
    rig.csms().set_reply("StopTransaction", callerror());

    let since = rig.csms().mark();
    rig.sim().unplug();
    // Attempt 1 fails with a CALLERROR.
    rig.wait_stop(since, "StopTransaction (1)").await;
    rig.wait_until("the failed attempt is stored", || {
        rig.stored_attempts("StopTransaction") == Some(1)
    })
    .await;
    // The retry is left unanswered and the connection dropped under it: not an attempt.
    rig.csms()
        .set_reply("StopTransaction", Some(CsmsReply::Ignore));
    let stops = |rig: &Rig| calls_in(&rig.csms().timeline()[since..], "StopTransaction").len();
    rig.wait_until("the StopTransaction is sent again", || stops(&rig) == 2)
        .await;
    rig.csms().set_reply("StopTransaction", callerror());
    rig.csms().disconnect(CHARGER).await.unwrap();
    // Attempts 2 and 3 fail again; then the message is given up.
    rig.wait_until("four StopTransactions", || stops(&rig) == 4)
        .await;
    rig.wait_until("the dropped message is logged", || {
        rig.log_text().contains("dropped after repeated failures")
    })
    .await;
    rig.wait_stored("StopTransaction", 0, "the outbox is empty")
        .await;

    let timeline = rig.csms().timeline()[since..].to_vec();
    let stop_times: Vec<_> = timeline
        .iter()
        .filter(|t| t.event.is_call("StopTransaction"))
        .map(|t| t.at)
        .collect();
    let reconnected = timeline
        .iter()
        .position(|t| matches!(&t.event, CsmsEvent::Connected { .. }))
        .expect("the charger reconnected");
    assert!(
        timeline[..reconnected]
            .iter()
            .filter(|t| t.event.is_call("StopTransaction"))
            .count()
            == 2,
        "two sends before the disconnect:\n{}",
        summary(&timeline)
    );
    // TransactionMessageRetryInterval x attempts (ocpp16-facts §3.3): >= 2 s after the first
    // failure, >= 4 s after the second.
    let gap = |a: usize, b: usize| (stop_times[b] - stop_times[a]).num_milliseconds();
    assert!(gap(0, 1) >= 1900, "first retry after {} ms", gap(0, 1));
    assert!(gap(2, 3) >= 3900, "second retry after {} ms", gap(2, 3));

    // Given up for good: the next transaction goes out and the old Stop does not come back.
    rig.csms().set_reply("StopTransaction", None);
    rig.set_transaction_id(5002);
    let since = rig.csms().mark();
    rig.sim().plug();
    rig.wait_call(
        since,
        "StartTransaction",
        |_| true,
        "the next StartTransaction",
    )
    .await;
    let all = rig.timeline();
    assert_calls(&all, "StopTransaction", 4, "no fifth StopTransaction");
    rig.assert_no_secret_logged();
}

/// The wallbox silent for more than 10 s during a transaction: Faulted/ModbusUnreachable, the
/// transaction kept; Charging again when it answers; one StopTransaction at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_silent_wallbox_faults_but_keeps_the_transaction() {
    let rig = charging(6001, 60).await;
    let since = rig.csms().mark();
    rig.sim().set_silent(true);
    let faulted = rig
        .wait_call(
            since,
            "StatusNotification",
            |p| p["connectorId"] == 1 && p["status"] == "Faulted",
            "Faulted while the wallbox is silent",
        )
        .await;
    assert_eq!(faulted["vendorErrorCode"], "ModbusUnreachable", "{faulted}");
    assert_eq!(faulted["errorCode"], "OtherError", "{faulted}");
    let back = rig.csms().mark();
    rig.sim().set_silent(false);
    rig.wait_status(back, "Charging", "Charging once the wallbox answers again")
        .await;
    let all = rig.timeline();
    assert_calls(&all, "StopTransaction", 0, "the transaction is kept");

    let end = rig.csms().mark();
    rig.sim().unplug();
    let stop = rig.wait_stop_then_available(end, "at the end").await;
    assert_stop(&stop, 6001, "EVDisconnected", None);
    rig.assert_one_transaction();
    rig.assert_no_secret_logged();
}

/// ChangeConfiguration and ChangeAvailability Inoperative survive a restart of the gateway
/// (here a SIGKILL): GetConfiguration returns the value, and the connector is Unavailable
/// after the new BootNotification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_configuration_and_availability_survive_a_restart() {
    let mut rig = Rig::booted().await;
    rig.configure("MeterValueSampleInterval", "17").await;
    let since = rig.csms().mark();
    let reply = rig.make_inoperative().await;
    assert_eq!(reply["status"], "Accepted", "{reply}");
    rig.wait_status(since, "Unavailable", "Unavailable").await;

    rig.kill_gateway();
    let (since, status) = rig.reboot().await;
    assert_eq!(status, "Unavailable", "{}", summary(&rig.timeline()));
    assert_eq!(rig.configured("MeterValueSampleInterval").await, "17");

    rig.wait_call(
        since,
        "StatusNotification",
        |p| p["connectorId"] == 0 && p["status"] == "Unavailable",
        "connector 0 Unavailable after the restart",
    )
    .await;
    rig.assert_no_secret_logged();
}

/// ChangeAvailability Inoperative during a transaction is Scheduled (OCPP 1.6 §5.2): it
/// takes effect when the transaction ends, also when the gateway was killed in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_scheduled_unavailability_survives_a_restart_during_the_transaction() {
    let mut rig = charging(7001, 60).await;
    let reply = rig.make_inoperative().await;
    assert_eq!(reply["status"], "Scheduled", "{reply}");

    // The change is acted on and committed before the next message goes out: ask for one,
    // so the kill below comes after the commit.
    let since = rig.csms().mark();
    let trigger = rig
        .call(
            "TriggerMessage",
            json!({ "requestedMessage": "StatusNotification", "connectorId": 1 }),
        )
        .await;
    assert_eq!(trigger["status"], "Accepted", "{trigger}");
    rig.wait_call(
        since,
        "StatusNotification",
        |p| p["connectorId"] == 1,
        "the triggered StatusNotification",
    )
    .await;
    rig.kill_gateway();
    let (since, _) = rig.reboot().await;
    rig.wait_status(
        since,
        "Charging",
        "Charging after the restart (the transaction resumed)",
    )
    .await;

    let end = rig.csms().mark();
    rig.sim().unplug();
    let stop = rig.wait_stop(end, "StopTransaction").await;
    assert_eq!(tx_id(&stop), 7001, "{stop}");
    let status = rig
        .wait_call(
            end,
            "StatusNotification",
            |p| p["connectorId"] == 1 && p["status"] != "Charging",
            "the status after the transaction",
        )
        .await;
    assert_eq!(
        status["status"],
        "Unavailable",
        "the scheduled change applies after the transaction:\n{}",
        summary(&rig.timeline())
    );
    rig.assert_no_secret_logged();
}

/// No energy flows before the StartTransaction is on disk: while the state database cannot
/// commit (its write lock held by another connection), a plug-in does not raise the limit.
/// A gateway killed in that window would otherwise have delivered energy that no stored
/// transaction accounts for (behaviour.md §Delivery guarantees).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_the_limit_is_raised_only_after_the_start_transaction_is_stored() {
    let mut rig = Rig::new().await;
    rig.set_transaction_id(8001);
    rig.start_available().await;
    rig.wait_limit(0.0, "the limit is held at off").await;

    let lock = rig.lock_database();
    rig.sim().plug();
    // Hold the lock for a while (well under the gateway's 5 s busy timeout): the gateway sees
    // the car and starts the transaction meanwhile.
    let held_until = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < held_until {
        let limit = rig.sim().snapshot().limit_a;
        assert!(
            limit == Some(0.0) || rig.stored_messages("StartTransaction") == 1,
            "the limit went to {limit:?} before StartTransaction was stored\n--- gateway log ---\n{}",
            rig.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        rig.log_text().contains("transaction started"),
        "the gateway started the transaction while the database was locked\n{}",
        rig.log_text()
    );
    drop(lock);
    rig.wait_limit(16.0, "the limit is raised once the start is stored")
        .await;
    let start = rig
        .wait_call(0, "StartTransaction", |_| true, "StartTransaction")
        .await;
    assert_eq!(start["meterStart"].as_i64(), Some(1_250_000), "{start}");
    rig.assert_no_secret_logged();
}

/// A StartTransaction the central system keeps failing (CALLERROR) is given up after
/// TransactionMessageAttempts; the transaction's later messages then carry transactionId -1
/// (OCPP 1.6 errata 3.18) and are still delivered, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_a_start_transaction_given_up_leaves_later_messages_with_id_minus_one() {
    let rig = Rig::booted().await;
    rig.retry_policy(3, 1).await;
    rig.fail_with_callerror("StartTransaction");
    let since = rig.csms().mark();
    rig.sim().plug();
    let starts = |rig: &Rig| calls_in(&rig.csms().timeline()[since..], "StartTransaction").len();
    rig.wait_until("three StartTransactions", || starts(&rig) == 3)
        .await;
    rig.wait_stored("StartTransaction", 0, "the StartTransaction is given up")
        .await;
    rig.csms().set_reply("StartTransaction", None);

    rig.sim().unplug();
    let stop = rig.wait_stop_then_available(since, "at the end").await;
    assert_stop(&stop, -1, "EVDisconnected", None);
    let all = rig.timeline();
    assert_eq!(starts(&rig), 3, "{}", summary(&all));
    assert_calls(&all, "StopTransaction", 1, "one StopTransaction");
    assert_eq!(rig.stored_messages("StopTransaction"), 0);
    rig.assert_no_secret_logged();
}

/// A state database that cannot commit for a while (here its write lock held longer than
/// the gateway's busy timeout; a full disk behaves alike) loses nothing: once it can commit
/// again, the offline StartTransaction is stored, so a SIGKILL afterwards does not lose the
/// transaction. After the restart and the central system's return, its StartTransaction and
/// StopTransaction (PowerLoss, the car gone meanwhile) each arrive once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_a_database_that_cannot_commit_for_a_while_loses_no_transaction() {
    let mut rig = Rig::booted().await;
    rig.stop_csms().await;

    let lock = rig.lock_database();
    rig.sim().plug();
    rig.wait_until("the gateway failed to commit", || {
        rig.log_text().contains("cannot persist")
    })
    .await;
    drop(lock);
    rig.wait_stored(
        "StartTransaction",
        1,
        "the StartTransaction is stored once the database is back",
    )
    .await;

    rig.kill_gateway();
    let energy_at_unplug = rig.unplug();
    rig.start_gateway();
    rig.wait_stored("StopTransaction", 1, "the StopTransaction is stored")
        .await;
    rig.set_transaction_id(9001);
    rig.start_csms().await;
    let stop = rig.wait_stop(0, "StopTransaction after the outage").await;
    assert_stop(&stop, 9001, "PowerLoss", Some(energy_at_unplug));
    rig.assert_one_transaction();
    rig.assert_no_secret_logged();
}

/// What the central system was told is Accepted is on disk before it is told so: a
/// ChangeConfiguration answered while the state database is slow to commit (its write lock
/// held by another connection) and the gateway killed right after the answer, the value is
/// still there after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_an_accepted_configuration_change_survives_a_kill_right_after_the_answer() {
    let mut rig = Rig::booted().await;

    let mut lock = Some(rig.lock_database());
    let csms = rig.csms().clone();
    let call = tokio::spawn(async move {
        csms.call(
            CHARGER,
            "ChangeConfiguration",
            json!({ "key": "MeterValueSampleInterval", "value": "23" }),
        )
        .await
    });
    // Hold the lock a while (under the gateway's 5 s busy timeout) unless the answer comes
    // first; then kill the gateway before the lock goes, as a crash right after answering.
    let held_until = tokio::time::Instant::now() + Duration::from_secs(2);
    while !call.is_finished() && tokio::time::Instant::now() < held_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if !call.is_finished() {
        lock = None;
    }
    let reply = call.await.unwrap().expect("ChangeConfiguration answered");
    assert_eq!(reply["status"], "Accepted", "{reply}");
    rig.kill_gateway();
    drop(lock);

    rig.reboot().await;
    assert_eq!(rig.configured("MeterValueSampleInterval").await, "23");
    rig.assert_no_secret_logged();
}

/// An installed charging profile survives a SIGKILL (errata 3.37): after the restart the
/// next transaction charges at the profile's 10 A, not at max_current (16 A).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_a_charging_profile_survives_a_kill() {
    let mut rig = Rig::booted().await;
    let reply = rig
        .call(
            "SetChargingProfile",
            json!({
                "connectorId": 0,
                "csChargingProfiles": {
                    "chargingProfileId": 10,
                    "stackLevel": 0,
                    "chargingProfilePurpose": "TxDefaultProfile",
                    "chargingProfileKind": "Absolute",
                    "chargingSchedule": {
                        "startSchedule": "2026-01-01T00:00:00Z",
                        "chargingRateUnit": "A",
                        "chargingSchedulePeriod": [{ "startPeriod": 0, "limit": 10.0 }]
                    }
                }
            }),
        )
        .await;
    assert_eq!(reply["status"], "Accepted", "{reply}");

    rig.kill_gateway();
    let (since, _) = rig.reboot().await;
    rig.sim().plug();
    rig.wait_call(since, "StartTransaction", |_| true, "StartTransaction")
        .await;
    rig.wait_sim("the limit is raised", |s| {
        s.snapshot().limit_a.is_some_and(|l| l > 0.0)
    })
    .await;
    assert_eq!(
        rig.sim().snapshot().limit_a,
        Some(10.0),
        "the stored TxDefaultProfile applies after the restart"
    );
    rig.assert_no_secret_logged();
}

/// Failed attempts are counted across a restart: a StopTransaction that failed once before
/// the gateway was killed gets only the remaining TransactionMessageAttempts after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_failed_attempts_are_counted_across_a_restart() {
    let mut rig = charging(10_001, 60).await;
    rig.retry_policy(3, 2).await;
    rig.fail_with_callerror("StopTransaction");
    rig.sim().unplug();
    rig.wait_until("the first failed attempt is stored", || {
        rig.stored_attempts("StopTransaction") == Some(1)
    })
    .await;
    rig.kill_gateway();
    rig.start_gateway();
    rig.wait_until("the dropped message is logged", || {
        rig.log_text().contains("dropped after repeated failures")
    })
    .await;
    rig.wait_stored("StopTransaction", 0, "the outbox is empty")
        .await;
    let all = rig.timeline();
    let stops = calls_in(&all, "StopTransaction");
    assert_eq!(stops.len(), 3, "three attempts in all:\n{}", summary(&all));
    assert!(
        stops.iter().all(|s| tx_id(s) == 10_001),
        "{}",
        summary(&all)
    );
    rig.assert_no_secret_logged();
}
