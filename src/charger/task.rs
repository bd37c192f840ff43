//! The charger task: connects the state machine to its OCPP session and its device task.
//!
//! One `select!` loop owns the machine. Inbound CALLs are answered at once (answer first, act
//! after); outgoing CALLs run as one in-flight future so the loop never blocks on the central
//! system; the desired limit goes to the device task through a `watch`.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::device::{DeviceEvent, DeviceLink, run_device};
use super::keys::names;
use super::machine::{CallOutcome, Charger};
use crate::ocpp::handshake::is_auth_refusal;
use crate::ocpp::rpc::ErrorCode;
use crate::ocpp::session::{CallFailure, SessionEvent, SessionHandle};
use crate::store::{StoreHandle, StoreOp};

/// How soon changes the store could not commit are tried again.
const RETRY_PERSIST: Duration = Duration::from_secs(1);

/// How often a failed reconnect with new credentials is looked at (a 401 rolls them back).
const REFUSAL_CHECK: Duration = Duration::from_millis(200);

type InFlight = Pin<Box<dyn Future<Output = (u64, Result<Value, CallFailure>)> + Send>>;

/// Runs one charger until `shutdown`: spawns its device task and drives the machine.
pub async fn run_charger(
    mut machine: Charger,
    session: SessionHandle,
    mut session_events: mpsc::Receiver<SessionEvent>,
    link: DeviceLink,
    store: StoreHandle,
    shutdown: CancellationToken,
) {
    let id = link.charger.clone();
    let tel = link.telemetry.clone();
    let (limit_tx, limit_rx) = watch::channel(machine.desired_limit(Utc::now()));
    let (dev_tx, mut dev_rx) = mpsc::channel(16);
    let device = tokio::spawn(run_device(link, limit_rx, dev_tx, shutdown.clone()));
    let mut in_flight: Option<InFlight> = None;
    apply_session_settings(&machine, &session);
    let mut last_ticked = None;
    // Changes the store could not commit yet (locked, disk full): kept and retried in order,
    // since the machine does not produce them again. Every op is idempotent.
    let mut unsaved = Vec::new();
    // After new credentials went out with a reconnect: watch the next attempt for HTTP 401.
    let mut watch_refusal = false;

    loop {
        if watch_refusal {
            let status = session.status();
            if !status.connected && is_auth_refusal(status.last_error.as_deref()) {
                watch_refusal = false;
                // Persisted just below, before the session is given the previous password.
                machine.credentials_refused();
            }
        }
        // Transaction messages are on disk before they can be sent (behaviour.md §Delivery).
        let persisted = persist(&store, &id, &mut machine, &mut unsaved).await;
        // Energy flows only once the StartTransaction that accounts for it is on disk
        // (behaviour.md §Delivery guarantees); lowering the limit never waits.
        limit_tx.send_if_modified(|l| {
            let want = machine.desired_limit(Utc::now());
            let changed = *l != want && (persisted || lowers(want, *l));
            if changed {
                *l = want;
            }
            changed
        });
        // New credentials (AuthorizationKey, SecurityProfile, or a rollback) were persisted
        // above before the session uses them; the reply to the change has gone out already.
        if let Some(password) = machine.take_new_credentials() {
            session.set_password(password.map(|p| p.expose().to_owned()));
        }
        if machine.take_reconnect() {
            session.reconnect();
        }
        let now = Utc::now();
        if persisted
            && in_flight.is_none()
            && let Some(call) = machine.next_call(now)
        {
            tracing::debug!(charger = %id, action = call.action, "sending");
            tel.call_sent(call.action);
            let s = session.clone();
            in_flight = Some(Box::pin(async move {
                (call.token, s.call(call.action, call.payload).await)
            }));
        }
        let deadline = machine.next_deadline(now);
        let mut wake = deadline
            .map(|t| (t - now).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::from_secs(3600));
        if deadline.is_some() && deadline == last_ticked && wake.is_zero() {
            // A due deadline the last tick did not consume must not become a busy loop.
            wake = Duration::from_secs(1);
        }
        if !persisted {
            wake = wake.min(RETRY_PERSIST);
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            event = session_events.recv() => match event {
                None => break,
                Some(SessionEvent::Connected) => {
                    watch_refusal = false;
                    machine.credentials_confirmed();
                    tel.ocpp_connected();
                    machine.on_connected(Utc::now());
                }
                Some(SessionEvent::Disconnected { reason }) => {
                    tracing::info!(charger = %id, %reason, "central system connection lost");
                    tel.ocpp_disconnected(&reason);
                    machine.on_disconnected();
                    watch_refusal = machine.credentials_pending();
                }
                Some(SessionEvent::Call { action, payload, reply }) => {
                    let answer = machine
                        .handle_call(Utc::now(), &action, &payload)
                        .map_err(|(code, text)| (ErrorCode::from_wire(code).unwrap_or(ErrorCode::GenericError), text));
                    tel.call_received(&action, &answer);
                    // What the answer confirms (a changed key, availability, a queued
                    // StopTransaction) is on disk before the central system hears it.
                    persist(&store, &id, &mut machine, &mut unsaved).await;
                    let _ = reply.send(answer);
                    apply_session_settings(&machine, &session);
                }
            },
            (token, result) = async {
                match in_flight.as_mut() {
                    Some(call) => call.await,
                    None => std::future::pending().await,
                }
            }, if in_flight.is_some() => {
                in_flight = None;
                tel.call_done(&result);
                machine.on_call_result(Utc::now(), token, outcome(result));
            }
            event = dev_rx.recv() => match event {
                None => break,
                Some(DeviceEvent::Identity(identity)) => machine.set_identity(identity),
                Some(DeviceEvent::Sample(reading)) => machine.on_sample(Utc::now(), reading),
                // Without an identity, BootNotification goes out after 10 s anyway (see machine).
                Some(DeviceEvent::PollFailed(error)) => machine.on_poll_failed(Utc::now(), error),
                Some(DeviceEvent::LimitWritten(_)) => {}
            },
            // Only wakes the loop: the check is at its top, so other events cannot starve it.
            () = tokio::time::sleep(REFUSAL_CHECK), if watch_refusal => {}
            () = tokio::time::sleep(wake) => {
                last_ticked = deadline;
                machine.on_tick(Utc::now());
            }
        }
        tel.observe(&machine, &session);
    }
    let _ = device.await;
    unsaved.extend(machine.take_store_ops());
    if let Err(e) = store.apply(&id, unsaved).await {
        tracing::error!(charger = %id, "cannot persist: {e}");
    }
    store.mark_clean(&id).await;
}

/// Whether `want` allows less current than `current` (`None` is off).
fn lowers(want: Option<f64>, current: Option<f64>) -> bool {
    match (want, current) {
        (None, _) => true,
        (Some(w), Some(c)) => w < c,
        (Some(_), None) => false,
    }
}

/// Commits the machine's new store changes after any still unsaved; returns whether
/// everything is on disk. What fails stays in `unsaved` for the next try.
async fn persist(
    store: &StoreHandle,
    id: &str,
    machine: &mut Charger,
    unsaved: &mut Vec<StoreOp>,
) -> bool {
    unsaved.extend(machine.take_store_ops());
    if unsaved.is_empty() {
        return true;
    }
    match store.apply(id, unsaved.clone()).await {
        Ok(()) => {
            unsaved.clear();
            true
        }
        Err(e) => {
            tracing::error!(charger = %id, "cannot persist, will retry: {e}");
            false
        }
    }
}

fn apply_session_settings(machine: &Charger, session: &SessionHandle) {
    let keys = machine.keys();
    session.set_ping_interval(Duration::from_secs(
        keys.uint(names::WEB_SOCKET_PING_INTERVAL),
    ));
    session.set_message_timeout(Duration::from_secs(
        keys.uint(names::MESSAGE_TIMEOUT).max(1),
    ));
}

fn outcome(result: Result<Value, CallFailure>) -> CallOutcome {
    match result {
        Ok(v) => CallOutcome::Result(v),
        Err(CallFailure::CallError {
            code, description, ..
        }) => CallOutcome::Error {
            code: code.as_str().to_owned(),
            description,
        },
        Err(CallFailure::Timeout) => CallOutcome::Timeout,
        Err(CallFailure::NotConnected | CallFailure::Disconnected) => CallOutcome::Lost,
    }
}
