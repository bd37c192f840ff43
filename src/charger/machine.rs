//! The charge point as a pure state machine: samples, OCPP replies and inbound CALLs in,
//! outgoing CALLs and the desired current limit out. No I/O, no clock: every method takes `now`.
//!
//! The task around it (`task.rs`) polls the wallbox, feeds [`Charger::on_sample`], asks
//! [`Charger::next_call`] what to send, reports the outcome with [`Charger::on_call_result`]
//! and writes [`Charger::desired_limit`] to the wallbox whenever it changes.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::keys::{ChangeResult, ConfigKeys, names};
use super::meter::{energy_int, meter_value, sampled_values, timestamp};
use super::reading::{ENERGY, Reading};
use super::session_energy::SessionEnergy;
use super::status::{Status, StatusInputs, StatusReport, connector_status};
use crate::config::Secret;
use crate::devicemap::Iec61851State;
use crate::security::{self, SecurityState};
use crate::smartcharging::{
    self as sc, Electrical, ProfileSet, Reject, SetContext, Setpoint, TxContext,
};
use crate::store::{SavedState, SavedTx, StoreOp};

/// How transactions are authorised (behaviour.md §Transactions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// A plug-in starts a transaction with the configured idTag.
    #[default]
    Free,
    /// Charging waits for RemoteStartTransaction.
    Remote,
}

/// Fixed facts about one charge point.
#[derive(Clone, Debug)]
pub struct ChargerSettings {
    /// OCPP identity.
    pub id: String,
    /// BootNotification vendor.
    pub vendor: String,
    /// BootNotification model.
    pub model: String,
    /// Authorisation mode.
    pub auth: AuthMode,
    /// idTag used in free mode.
    pub id_tag: String,
    /// Installer limit in A.
    pub max_current: f64,
    /// The wallbox's smallest current (the map's `current_limit.min`); less means off.
    pub min_current: f64,
    /// Phases wired (for plausibility of energy jumps).
    pub phases: u8,
    /// Nominal voltage.
    pub voltage: f64,
}

/// BootNotification fields read from the wallbox.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// firmwareVersion.
    pub firmware: Option<String>,
    /// chargePointSerialNumber.
    pub serial: Option<String>,
}

/// Result of one outgoing CALL as the session reports it.
#[derive(Clone, Debug)]
pub enum CallOutcome {
    /// CALLRESULT payload.
    Result(Value),
    /// CALLERROR: the central system failed to process it.
    Error {
        /// Error code.
        code: String,
        /// Description.
        description: String,
    },
    /// No answer within MessageTimeout on a live connection.
    Timeout,
    /// The connection went away before an answer; not a failed attempt.
    Lost,
}

/// A CALL the task should send now.
#[derive(Clone, Debug, PartialEq)]
pub struct OutgoingCall {
    /// Identifies the call in [`Charger::on_call_result`].
    pub token: u64,
    /// OCPP action.
    pub action: &'static str,
    /// Payload.
    pub payload: Value,
}

/// A CALLERROR answer to an inbound CALL: (OCPP-J error code, description).
pub type CallErrorReply = (&'static str, String);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Transaction,
    Status(u32),
    Other,
}

#[derive(Clone, Debug)]
struct Queued {
    token: u64,
    action: &'static str,
    payload: Value,
    kind: Kind,
    /// Local transaction whose OCPP id is patched in at send time.
    tx: Option<u64>,
    attempts: u32,
    not_before: Option<DateTime<Utc>>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Registration {
    /// Not (yet) accepted in this run; boot when connected.
    Unknown,
    /// Pending or Rejected: retry at the given time.
    RetryAt(DateTime<Utc>),
    /// Accepted.
    Accepted,
}

/// The OCPP transactionId of a local transaction, as far as known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TxId {
    /// StartTransaction not answered yet.
    Unknown,
    /// Assigned by the central system.
    Known(i32),
    /// StartTransaction was given up: later messages carry -1 (errata 3.18).
    Failed,
}

#[derive(Clone, Debug)]
struct Transaction {
    local: u64,
    id_tag: String,
    meter_start: i64,
    started: DateTime<Utc>,
    /// Last energy value persisted for this transaction (restart recovery).
    last_meter: i64,
    last_meter_saved: DateTime<Utc>,
    next_sample: Option<DateTime<Utc>>,
    /// Transaction.Begin values for StopTransaction.transactionData.
    begin: Vec<Value>,
    /// False once StartTransaction.conf said the idTag is not Accepted.
    authorized: bool,
}

/// Seconds of Modbus failures before the wallbox counts as unreachable.
const UNREACHABLE_AFTER: i64 = 10;
/// After raising the limit, a wallbox still in B1 is given this long before SuspendedEVSE.
const SETTLE: i64 = 5;

/// One charge point (one wallbox, connector 1).
#[derive(Debug)]
pub struct Charger {
    settings: ChargerSettings,
    keys: ConfigKeys,
    connected: bool,
    was_connected: bool,
    registration: Registration,
    identity: Option<Identity>,
    queue: VecDeque<Queued>,
    in_flight: Option<Queued>,
    next_token: u64,
    reading: Reading,
    failing_since: Option<DateTime<Utc>>,
    last_error: Option<String>,
    ever_polled: bool,
    tx: Option<Transaction>,
    tx_ids: HashMap<u64, TxId>,
    next_local_tx: u64,
    finishing: bool,
    unavailable: bool,
    unavailable_scheduled: bool,
    limit_raised_at: Option<DateTime<Utc>>,
    reported: [Option<StatusReport>; 2],
    next_heartbeat: Option<DateTime<Utc>>,
    remote_start: Option<(String, DateTime<Utc>)>,
    last_energy: Option<(f64, DateTime<Utc>)>,
    started_at: DateTime<Utc>,
    /// Changes for the store, taken by the task and committed before anything is sent.
    ops: Vec<StoreOp>,
    /// An open transaction restored after a restart waits for the first poll: resumed if the
    /// car is still plugged, else stopped with this reason (PowerLoss or Reboot).
    recovering: Option<&'static str>,
    /// Transaction.End needs the Sample.Clock values of StopTxnAlignedData.
    aligned_in_tx: Vec<Value>,
    next_aligned: Option<DateTime<Utc>>,
    /// An Authorize for a remote start: (token, idTag).
    pending_authorize: Option<(u64, String)>,
    reconnect: bool,
    boot_rejected: bool,
    /// The total kept for a per-session energy register; `None` for a lifetime register.
    session_energy: Option<SessionEnergy>,
    /// Installed charging profiles (persisted, errata 3.37).
    profiles: ProfileSet,
    /// A TxProfile that came with RemoteStartTransaction, installed when the transaction starts.
    remote_profile: Option<sc::ChargingProfile>,
    /// AuthorizationKey and SecurityProfile (SWP §3.1), see [`crate::security`].
    security: SecurityState,
}

/// Persist the running transaction's meter reading at most this often (flash wear).
const METER_SAVE_EVERY: i64 = 60;
/// At most this many clock-aligned values are kept for StopTransaction (errata 3.89).
const MAX_ALIGNED_IN_TX: usize = 48;

impl Charger {
    /// A charge point that has not yet connected or polled.
    #[must_use]
    pub fn new(settings: ChargerSettings, keys: ConfigKeys, now: DateTime<Utc>) -> Self {
        Self {
            settings,
            keys,
            connected: false,
            was_connected: false,
            registration: Registration::Unknown,
            identity: None,
            queue: VecDeque::new(),
            in_flight: None,
            next_token: 1,
            reading: Reading::default(),
            failing_since: None,
            last_error: None,
            ever_polled: false,
            tx: None,
            tx_ids: HashMap::new(),
            next_local_tx: 1,
            finishing: false,
            unavailable: false,
            unavailable_scheduled: false,
            limit_raised_at: None,
            reported: [None, None],
            next_heartbeat: None,
            remote_start: None,
            last_energy: None,
            started_at: now,
            ops: Vec::new(),
            recovering: None,
            aligned_in_tx: Vec::new(),
            next_aligned: None,
            pending_authorize: None,
            reconnect: false,
            boot_rejected: false,
            profiles: ProfileSet::new(),
            remote_profile: None,
            security: SecurityState::default(),
            session_energy: None,
        }
    }

    /// The map's energy register counts per session (`counts: session`): report a lifetime
    /// total instead ([`SessionEnergy`]). Call before [`Charger::restore`].
    pub fn count_session_energy(&mut self) {
        self.session_energy
            .get_or_insert_with(SessionEnergy::default);
    }

    /// Takes the changes to persist; the caller commits them before the next
    /// [`Charger::next_call`].
    pub fn take_store_ops(&mut self) -> Vec<StoreOp> {
        std::mem::take(&mut self.ops)
    }

    /// Whether the session should reconnect (after a Reset); cleared by reading.
    pub fn take_reconnect(&mut self) -> bool {
        std::mem::take(&mut self.reconnect)
    }

    /// Restores what a previous run stored: configuration keys, availability, unacknowledged
    /// transaction messages and the open transaction (behaviour.md §Transactions, restarts).
    pub fn restore(&mut self, saved: SavedState, now: DateTime<Utc>) {
        for (key, value) in &saved.keys {
            let _ = self.keys.change(key, value);
        }
        self.unavailable = saved.unavailable;
        if let (Some(total), Some((base, raw))) =
            (self.session_energy.as_mut(), saved.session_energy)
        {
            *total = SessionEnergy::restored(base, raw);
        }
        if let Some(doc) = saved.profiles {
            match serde_json::from_value::<ProfileSet>(doc) {
                Ok(p) => self.profiles = p,
                Err(e) => {
                    tracing::warn!(charger = %self.settings.id, "stored charging profiles unreadable: {e}")
                }
            }
        }
        for t in &saved.transactions {
            let id = match t.ocpp_id {
                Some(-1) => TxId::Failed,
                Some(id) => TxId::Known(id),
                None => TxId::Unknown,
            };
            self.tx_ids.insert(t.local, id);
            self.next_local_tx = self.next_local_tx.max(t.local + 1);
            if t.open {
                let started =
                    DateTime::parse_from_rfc3339(&t.started).map_or(now, |d| d.with_timezone(&Utc));
                let interval = self.keys.uint(names::METER_VALUE_SAMPLE_INTERVAL);
                self.tx = Some(Transaction {
                    local: t.local,
                    id_tag: t.id_tag.clone(),
                    meter_start: t.meter_start,
                    started,
                    last_meter: t.last_meter,
                    last_meter_saved: now,
                    next_sample: (interval > 0).then(|| now + secs(interval)),
                    begin: t.begin.as_array().cloned().unwrap_or_default(),
                    authorized: t.authorized,
                });
                self.recovering = Some(if saved.clean_shutdown {
                    "Reboot"
                } else {
                    "PowerLoss"
                });
            }
        }
        for m in saved.outbox {
            let Some(action) = ["StartTransaction", "StopTransaction", "MeterValues"]
                .into_iter()
                .find(|a| *a == m.action)
            else {
                continue;
            };
            self.next_token = self.next_token.max(m.seq + 1);
            self.queue.push_back(Queued {
                token: m.seq,
                action,
                payload: m.payload,
                kind: Kind::Transaction,
                tx: m.local_tx,
                attempts: m.attempts,
                not_before: None,
            });
        }
        // A StartTransaction that is neither queued nor answered never will be: -1 then.
        let queued_starts: Vec<u64> = self
            .queue
            .iter()
            .filter(|q| q.action == "StartTransaction")
            .filter_map(|q| q.tx)
            .collect();
        for (local, id) in &mut self.tx_ids {
            if *id == TxId::Unknown && !queued_starts.contains(local) {
                *id = TxId::Failed;
            }
        }
        if self.tx.is_some() {
            tracing::info!(charger = %self.settings.id, "open transaction restored; waiting for the wallbox");
            // Inoperative is stored as soon as it is Scheduled; with a transaction still open
            // it takes effect when that ends (OCPP 1.6 §5.2), as before the restart.
            if self.unavailable {
                self.unavailable = false;
                self.unavailable_scheduled = true;
            }
        }
    }

    fn saved_tx(&self, local: u64) -> Option<SavedTx> {
        let ocpp_id = match self.tx_ids.get(&local)? {
            TxId::Unknown => None,
            TxId::Known(id) => Some(*id),
            TxId::Failed => Some(-1),
        };
        let open = self.tx.as_ref().filter(|t| t.local == local);
        Some(SavedTx {
            local,
            ocpp_id,
            id_tag: open.map(|t| t.id_tag.clone()).unwrap_or_default(),
            meter_start: open.map_or(0, |t| t.meter_start),
            started: open.map(|t| timestamp(t.started)).unwrap_or_default(),
            open: open.is_some(),
            authorized: open.is_some_and(|t| t.authorized),
            last_meter: open.map_or(0, |t| t.last_meter),
            begin: json!(open.map(|t| t.begin.clone()).unwrap_or_default()),
        })
    }

    fn persist_tx(&mut self, local: u64) {
        if let Some(saved) = self.saved_tx(local) {
            self.ops.push(StoreOp::TxUpsert(saved));
        }
    }

    /// The configuration keys.
    #[must_use]
    pub fn keys(&self) -> &ConfigKeys {
        &self.keys
    }

    /// The last reading.
    #[must_use]
    pub fn reading(&self) -> &Reading {
        &self.reading
    }

    /// Whether BootNotification was accepted.
    #[must_use]
    pub fn accepted(&self) -> bool {
        self.registration == Registration::Accepted
    }

    /// The running transaction's OCPP id, if any and known.
    #[must_use]
    pub fn transaction_id(&self) -> Option<i32> {
        let tx = self.tx.as_ref()?;
        match self.tx_ids.get(&tx.local) {
            Some(TxId::Known(id)) => Some(*id),
            _ => None,
        }
    }

    /// Whether a transaction is running.
    #[must_use]
    pub fn in_transaction(&self) -> bool {
        self.tx.is_some()
    }

    /// Messages waiting to be sent (the outbox depth).
    #[must_use]
    pub fn queued(&self) -> usize {
        self.queue.len() + usize::from(self.in_flight.is_some())
    }

    /// The connector status last reported (or to be reported).
    #[must_use]
    pub fn status(&self) -> Option<&StatusReport> {
        self.reported[1].as_ref()
    }

    /// The limit to write to the wallbox in A, or `None` for off. No energy flows without a
    /// transaction (behaviour.md §Transactions).
    #[must_use]
    pub fn desired_limit(&self, now: DateTime<Utc>) -> Option<f64> {
        let tx = self.tx.as_ref()?;
        if !tx.authorized || self.unavailable || self.recovering.is_some() {
            return None;
        }
        let el = self.electrical();
        match self.limit(now).setpoint(&el) {
            Setpoint::Amps(a) => Some(a),
            Setpoint::Off => None,
        }
    }

    /// The composite limit of the installed profiles for connector 1 at `now`.
    #[must_use]
    pub fn limit(&self, now: DateTime<Utc>) -> sc::Limit {
        sc::limit_at(
            &self.profiles,
            1,
            now,
            self.tx_context().as_ref(),
            &self.electrical(),
        )
    }

    fn electrical(&self) -> Electrical {
        Electrical {
            phases: self.settings.phases,
            voltage: self.settings.voltage,
            max_current: self.settings.max_current,
            min_current: self.settings.min_current,
        }
    }

    fn tx_context(&self) -> Option<TxContext> {
        self.tx.as_ref().map(|t| TxContext {
            id: self.transaction_id(),
            started: t.started,
        })
    }

    fn persist_profiles(&mut self) {
        match serde_json::to_value(&self.profiles) {
            Ok(v) => self.ops.push(StoreOp::Profiles(v)),
            Err(e) => {
                tracing::error!(charger = %self.settings.id, "cannot serialise profiles: {e}")
            }
        }
    }

    fn rejected(&self, now: DateTime<Utc>) -> bool {
        self.boot_rejected && matches!(self.registration, Registration::RetryAt(t) if t > now)
    }

    /// The identity registers were read (or cannot be): BootNotification may go out.
    pub fn set_identity(&mut self, identity: Identity) {
        self.identity = Some(identity);
    }

    // ----- connection -------------------------------------------------------------------

    /// The WebSocket is up.
    pub fn on_connected(&mut self, now: DateTime<Utc>) {
        self.connected = true;
        self.was_connected = true;
        // After an outage the transaction messages go first, in order; the newest status per
        // connector follows (behaviour.md §Delivery guarantees).
        let (mut tx, other): (VecDeque<Queued>, VecDeque<Queued>) = self
            .queue
            .drain(..)
            .partition(|q| q.kind == Kind::Transaction);
        tx.extend(other);
        self.queue = tx;
        self.touch(now);
    }

    /// The WebSocket went down.
    pub fn on_disconnected(&mut self) {
        self.connected = false;
        self.next_heartbeat = None;
    }

    fn touch(&mut self, now: DateTime<Utc>) {
        let interval = self.keys.uint(names::HEARTBEAT_INTERVAL);
        self.next_heartbeat = (interval > 0 && self.connected)
            .then(|| now + Duration::seconds(i64::try_from(interval).unwrap_or(i64::MAX / 2)));
    }

    // ----- outgoing -------------------------------------------------------------------

    fn enqueue(&mut self, action: &'static str, payload: Value, kind: Kind, tx: Option<u64>) {
        if !self.admit(action, kind) {
            return;
        }
        if let Kind::Status(connector) = kind
            && !self.connected
        {
            // Offline, only the newest status per connector waits in the queue (behaviour.md
            // §Status). Online every change goes out: a plug-in queues Preparing,
            // StartTransaction and SuspendedEV in one go, and Preparing must not be lost.
            self.queue.retain(|q| q.kind != Kind::Status(connector));
        }
        let token = self.next_token;
        self.next_token += 1;
        if kind == Kind::Transaction {
            self.ops.push(StoreOp::Enqueue {
                seq: token,
                action: action.to_owned(),
                payload: payload.clone(),
                local_tx: tx,
            });
        }
        self.queue.push_back(Queued {
            token,
            action,
            payload,
            kind,
            tx,
            attempts: 0,
            not_before: None,
        });
    }

    fn boot_payload(&self) -> Value {
        let mut p = json!({
            "chargePointVendor": truncate(&self.settings.vendor, 20),
            "chargePointModel": truncate(&self.settings.model, 20),
        });
        if let Some(id) = &self.identity {
            if let Some(fw) = id.firmware.as_deref().filter(|s| !s.is_empty()) {
                p["firmwareVersion"] = json!(truncate(fw, 50));
            }
            if let Some(sn) = id.serial.as_deref().filter(|s| !s.is_empty()) {
                p["chargePointSerialNumber"] = json!(truncate(sn, 25));
            }
        }
        p
    }

    /// Whether the identity is known or waiting for it is pointless (wallbox unreachable).
    fn boot_ready(&self, now: DateTime<Utc>) -> bool {
        self.identity.is_some() || now - self.started_at >= Duration::seconds(UNREACHABLE_AFTER)
    }

    /// The next CALL to send, if any may go out now. At most one is in flight.
    pub fn next_call(&mut self, now: DateTime<Utc>) -> Option<OutgoingCall> {
        if !self.connected || self.in_flight.is_some() {
            return None;
        }
        match self.registration {
            Registration::Accepted => {}
            Registration::Unknown if self.boot_ready(now) => return Some(self.send_boot()),
            Registration::RetryAt(t) if t <= now => return Some(self.send_boot()),
            // §4.2: until accepted, nothing but BootNotification.
            _ => return None,
        }
        let mut tx_blocked = false;
        let idx = self.queue.iter().position(|q| {
            let due = q.not_before.is_none_or(|t| t <= now);
            if q.kind == Kind::Transaction {
                // Transaction messages keep their order: a message waiting for its retry
                // holds back the ones behind it.
                let ok = due && !tx_blocked;
                tx_blocked |= !due;
                ok
            } else {
                due
            }
        })?;
        let mut q = self.queue.remove(idx)?;
        if let Some(local) = q.tx.filter(|_| q.action != "StartTransaction") {
            let id = match self.tx_ids.get(&local) {
                Some(TxId::Known(id)) => *id,
                Some(TxId::Unknown) => {
                    // StartTransaction still unanswered: it is ahead in the queue or in flight.
                    self.queue.insert(idx, q);
                    return None;
                }
                _ => -1,
            };
            q.payload["transactionId"] = json!(id);
        }
        let call = OutgoingCall {
            token: q.token,
            action: q.action,
            payload: q.payload.clone(),
        };
        self.in_flight = Some(q);
        self.touch(now);
        Some(call)
    }

    fn send_boot(&mut self) -> OutgoingCall {
        let token = self.next_token;
        self.next_token += 1;
        let payload = self.boot_payload();
        self.in_flight = Some(Queued {
            token,
            action: "BootNotification",
            payload: payload.clone(),
            kind: Kind::Other,
            tx: None,
            attempts: 0,
            not_before: None,
        });
        OutgoingCall {
            token,
            action: "BootNotification",
            payload,
        }
    }

    /// The outcome of the CALL with this token.
    pub fn on_call_result(&mut self, now: DateTime<Utc>, token: u64, outcome: CallOutcome) {
        let Some(mut q) = self.in_flight.take_if(|q| q.token == token) else {
            return;
        };
        match outcome {
            CallOutcome::Lost => {
                if q.action == "BootNotification" {
                    return;
                }
                // Not a failed attempt: it goes out again first after the reconnect.
                if q.kind != Kind::Other || q.action != "Heartbeat" {
                    self.queue.push_front(q);
                }
            }
            CallOutcome::Error { .. } | CallOutcome::Timeout if q.kind == Kind::Transaction => {
                q.attempts += 1;
                let max = self.keys.uint(names::TRANSACTION_MESSAGE_ATTEMPTS).max(1);
                if u64::from(q.attempts) >= max {
                    tracing::warn!(
                        charger = %self.settings.id,
                        action = q.action,
                        attempts = q.attempts,
                        "transaction message dropped after repeated failures"
                    );
                    self.ops.push(StoreOp::Dequeue { seq: q.token });
                    if q.action == "StartTransaction"
                        && let Some(local) = q.tx
                    {
                        self.tx_ids.insert(local, TxId::Failed);
                        self.persist_tx(local);
                    }
                    self.forget_tx_if_done(q.tx);
                } else {
                    let interval = self.keys.uint(names::TRANSACTION_MESSAGE_RETRY_INTERVAL);
                    let wait = i64::try_from(interval.saturating_mul(u64::from(q.attempts)))
                        .unwrap_or(i64::MAX / 2);
                    q.not_before = Some(now + Duration::seconds(wait));
                    self.ops.push(StoreOp::Attempted {
                        seq: q.token,
                        attempts: q.attempts,
                    });
                    self.queue.push_front(q);
                }
            }
            CallOutcome::Error { code, description } => {
                tracing::info!(charger = %self.settings.id, action = q.action, %code, %description, "CALLERROR");
                if q.action == "BootNotification" {
                    self.registration = Registration::RetryAt(now + Duration::seconds(60));
                }
            }
            CallOutcome::Timeout => {
                if q.action == "BootNotification" {
                    self.registration = Registration::RetryAt(now + Duration::seconds(30));
                }
            }
            CallOutcome::Result(payload) => {
                if q.kind == Kind::Transaction {
                    self.ops.push(StoreOp::Dequeue { seq: q.token });
                }
                self.on_result(now, &q, &payload);
            }
        }
    }

    fn on_result(&mut self, now: DateTime<Utc>, q: &Queued, payload: &Value) {
        match q.action {
            "BootNotification" => {
                let status = payload.get("status").and_then(Value::as_str).unwrap_or("");
                let interval = payload.get("interval").and_then(Value::as_u64).unwrap_or(0);
                if status == "Accepted" {
                    let first = self.registration != Registration::Accepted;
                    self.registration = Registration::Accepted;
                    if interval > 0 {
                        self.keys
                            .set_internal(names::HEARTBEAT_INTERVAL, interval.to_string());
                    }
                    self.touch(now);
                    tracing::info!(charger = %self.settings.id, "BootNotification accepted");
                    if first {
                        // errata 3.22: the current status of connector 0 and every connector.
                        self.reported = [None, None];
                        self.update_status(now);
                    }
                } else {
                    // Pending / Rejected: wait `interval` (a non-flooding default for 0).
                    let wait = if interval == 0 {
                        60
                    } else {
                        interval.min(86_400)
                    };
                    tracing::info!(charger = %self.settings.id, status, wait, "BootNotification not accepted");
                    self.boot_rejected = status == "Rejected";
                    self.registration = Registration::RetryAt(
                        now + Duration::seconds(i64::try_from(wait).unwrap_or(60)),
                    );
                }
            }
            "StartTransaction" => {
                let id = payload
                    .get("transactionId")
                    .and_then(Value::as_i64)
                    .and_then(|i| i32::try_from(i).ok());
                let accepted = payload
                    .pointer("/idTagInfo/status")
                    .and_then(Value::as_str)
                    .is_none_or(|s| s == "Accepted");
                if let Some(local) = q.tx {
                    self.tx_ids
                        .insert(local, id.map_or(TxId::Failed, TxId::Known));
                    self.persist_tx(local);
                    let running = self.tx.as_ref().is_some_and(|t| t.local == local);
                    if !accepted && running {
                        tracing::warn!(charger = %self.settings.id, "idTag not accepted by the central system");
                        // errata 3.17: stop, or at least stop the energy.
                        if self.keys.bool(names::STOP_TRANSACTION_ON_INVALID_ID) {
                            self.stop_transaction(now, "DeAuthorized");
                        } else if let Some(tx) = self.tx.as_mut() {
                            tx.authorized = false;
                            self.persist_tx(local);
                        }
                        self.update_status(now);
                    }
                    self.forget_tx_if_done(q.tx);
                }
            }
            "StopTransaction" | "MeterValues" => self.forget_tx_if_done(q.tx),
            "Authorize" => self.on_authorize(now, q.token, payload),
            _ => {}
        }
    }

    /// Drops the id mapping of an ended transaction once no queued message needs it.
    fn forget_tx_if_done(&mut self, local: Option<u64>) {
        let Some(local) = local else { return };
        let running = self.tx.as_ref().is_some_and(|t| t.local == local);
        let needed = self
            .queue
            .iter()
            .chain(self.in_flight.iter())
            .any(|q| q.tx == Some(local));
        if !running && !needed && self.tx_ids.remove(&local).is_some() {
            self.ops.push(StoreOp::TxForget { local });
        }
    }

    // ----- wallbox -------------------------------------------------------------------------

    /// A successful poll.
    pub fn on_sample(&mut self, now: DateTime<Utc>, mut reading: Reading) {
        self.failing_since = None;
        self.last_error = None;
        self.ever_polled = true;
        self.add_up_sessions(&mut reading);
        self.check_energy(now, &mut reading);
        self.reading = reading;
        self.save_meter(now, false);
        let state = self.reading.state.clone().and_then(Result::ok);
        if let (Some(reason), Some(st)) = (self.recovering, state) {
            // The first poll after a restart decides about the restored transaction.
            self.recovering = None;
            if st.plugged() {
                tracing::info!(charger = %self.settings.id, "car still plugged: transaction resumed");
            } else {
                tracing::info!(charger = %self.settings.id, reason, "car gone: restored transaction stopped");
                self.stop_transaction(now, reason);
            }
        }
        match state {
            Some(Iec61851State::A) => {
                if self.tx.is_some() {
                    self.stop_transaction(now, "EVDisconnected");
                }
                self.finishing = false;
            }
            Some(s) if s.plugged() && self.tx.is_none() && !self.finishing && !self.unavailable => {
                // Preparing goes out before StartTransaction (behaviour.md §Transactions).
                self.update_status(now);
                self.maybe_start(now);
            }
            _ => {}
        }
        self.update_status(now);
    }

    /// Replaces a per-session energy value by the lifetime total, and stores the total when
    /// a new session began (its base changed).
    fn add_up_sessions(&mut self, reading: &mut Reading) {
        let Some(total) = self.session_energy.as_mut() else {
            return;
        };
        let Some(value) = reading
            .values
            .iter_mut()
            .find(|v| v.measurand == ENERGY && v.phase.is_none())
        else {
            return;
        };
        let (lifetime, restarted) = total.lifetime(value.value);
        value.value = lifetime;
        if restarted {
            tracing::info!(charger = %self.settings.id, base = total.base,
                "energy register started a new session: counting on from the total");
            self.save_session_energy();
        }
    }

    fn save_session_energy(&mut self) {
        if let Some(SessionEnergy {
            base,
            raw: Some(raw),
        }) = self.session_energy
        {
            self.ops.push(StoreOp::SessionEnergy { base, raw });
        }
    }

    /// Rejects an energy register that runs backwards or jumps further than the wallbox could
    /// have charged; the previous value stays in use (behaviour.md §Meter values).
    fn check_energy(&mut self, now: DateTime<Utc>, reading: &mut Reading) {
        let Some(e) = reading.energy_wh() else { return };
        if let Some((last, at)) = self.last_energy {
            #[allow(clippy::cast_precision_loss)]
            let hours = (now - at).num_milliseconds().max(0) as f64 / 3.6e6;
            let max_w = self.settings.max_current.max(32.0) * self.settings.voltage * 3.0;
            let plausible = e >= last && e - last <= max_w * hours * 2.0 + 100.0;
            if !plausible {
                tracing::warn!(charger = %self.settings.id, previous = last, read = e, "implausible energy register value ignored");
                for v in reading.values.iter_mut().filter(|v| v.measurand == ENERGY) {
                    v.value = last;
                }
                return;
            }
        }
        self.last_energy = Some((e, now));
    }

    /// A failed poll.
    pub fn on_poll_failed(&mut self, now: DateTime<Utc>, error: String) {
        self.failing_since.get_or_insert(now);
        self.last_error = Some(error);
        self.update_status(now);
    }

    fn unreachable(&self, now: DateTime<Utc>) -> bool {
        self.failing_since
            .is_some_and(|t| now - t >= Duration::seconds(UNREACHABLE_AFTER))
    }

    fn maybe_start(&mut self, now: DateTime<Utc>) {
        let id_tag = match self.settings.auth {
            AuthMode::Free => self
                .remote_start
                .take()
                .map_or_else(|| self.settings.id_tag.clone(), |(t, _)| t),
            AuthMode::Remote => match self.remote_start.take() {
                Some((tag, expires)) if expires > now => tag,
                _ => return,
            },
        };
        self.start_transaction(now, id_tag);
    }

    fn start_transaction(&mut self, now: DateTime<Utc>, id_tag: String) {
        let local = self.next_local_tx;
        self.next_local_tx += 1;
        let meter_start = energy_int(&self.reading).unwrap_or(0).max(0);
        let interval = self.keys.uint(names::METER_VALUE_SAMPLE_INTERVAL);
        let begin = sampled_values(
            &self.reading,
            &self.keys.measurands(names::STOP_TXN_SAMPLED_DATA),
            "Transaction.Begin",
        );
        self.tx = Some(Transaction {
            local,
            id_tag: id_tag.clone(),
            meter_start,
            started: now,
            last_meter: meter_start,
            last_meter_saved: now,
            next_sample: (interval > 0).then(|| now + secs(interval)),
            begin: if begin.is_empty() {
                vec![]
            } else {
                vec![meter_value(now, begin)]
            },
            authorized: true,
        });
        self.tx_ids.insert(local, TxId::Unknown);
        self.aligned_in_tx.clear();
        if let Some(profile) = self.remote_profile.take() {
            // §5.11: the RemoteStart's TxProfile applies to the transaction it starts.
            if self.profiles.install(1, profile).is_ok() {
                self.persist_profiles();
            }
        }
        self.persist_tx(local);
        self.limit_raised_at = Some(now);
        tracing::info!(charger = %self.settings.id, id_tag, meter_start, "transaction started");
        self.enqueue(
            "StartTransaction",
            json!({
                "connectorId": 1,
                "idTag": truncate(&id_tag, 20),
                "meterStart": meter_start,
                "timestamp": timestamp(now),
            }),
            Kind::Transaction,
            Some(local),
        );
    }

    fn stop_transaction(&mut self, now: DateTime<Utc>, reason: &str) {
        let tx_id = self.transaction_id();
        let Some(tx) = self.tx.take() else { return };
        self.save_session_energy();
        // TxProfiles end with their transaction (§3.13.1).
        let before = self.profiles.len();
        self.profiles.end_transaction(tx_id);
        if self.profiles.len() != before {
            self.persist_profiles();
        }
        // The register as read now; after a restart without a reading, the last one stored.
        let meter_stop = energy_int(&self.reading)
            .unwrap_or(tx.last_meter)
            .max(tx.last_meter)
            .max(0);
        let mut payload = json!({
            "idTag": truncate(&tx.id_tag, 20),
            "meterStop": meter_stop,
            "timestamp": timestamp(now),
            "transactionId": -1,
            "reason": reason,
        });
        let end = sampled_values(
            &self.reading,
            &self.keys.measurands(names::STOP_TXN_SAMPLED_DATA),
            "Transaction.End",
        );
        let mut data = tx.begin.clone();
        data.append(&mut self.aligned_in_tx);
        if !end.is_empty() {
            data.push(meter_value(now, end));
        }
        if !data.is_empty() {
            payload["transactionData"] = json!(data);
        }
        tracing::info!(charger = %self.settings.id, reason, meter_stop, "transaction stopped");
        self.enqueue(
            "StopTransaction",
            payload,
            Kind::Transaction,
            Some(tx.local),
        );
        self.persist_tx(tx.local);
        self.finishing = self
            .reading
            .state
            .as_ref()
            .is_some_and(|s| s.as_ref().is_ok_and(|s| s.plugged()));
        self.limit_raised_at = None;
        if self.unavailable_scheduled {
            self.unavailable_scheduled = false;
            self.unavailable = true;
            self.ops.push(StoreOp::Unavailable(true));
        }
    }

    /// Stores the running transaction's meter reading, at most every minute unless `force`d,
    /// so a restart can stop it with the last known value without wearing out flash.
    fn save_meter(&mut self, now: DateTime<Utc>, force: bool) {
        let Some(e) = energy_int(&self.reading) else {
            return;
        };
        let Some(tx) = self.tx.as_mut() else { return };
        if e <= tx.last_meter
            || (!force && now - tx.last_meter_saved < Duration::seconds(METER_SAVE_EVERY))
        {
            return;
        }
        tx.last_meter = e;
        tx.last_meter_saved = now;
        let local = tx.local;
        self.persist_tx(local);
        // With the transaction's meter, so a restart finds both at the same point.
        self.save_session_energy();
    }

    /// The next clock-aligned boundary after `now`, counted from midnight UTC.
    fn next_boundary(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let interval = i64::try_from(self.keys.uint(names::CLOCK_ALIGNED_DATA_INTERVAL)).ok()?;
        if interval <= 0 {
            return None;
        }
        let midnight = now.date_naive().and_hms_opt(0, 0, 0)?.and_utc();
        let since = (now - midnight).num_seconds();
        Some(midnight + Duration::seconds((since / interval + 1) * interval))
    }

    /// Clock-aligned meter values at the boundary `at` (OCPP §3.16.2; behaviour.md).
    fn queue_aligned_meter_values(&mut self, at: DateTime<Utc>) {
        let aligned = sampled_values(
            &self.reading,
            &self.keys.measurands(names::METER_VALUES_ALIGNED_DATA),
            "Sample.Clock",
        );
        if !aligned.is_empty() {
            let mut payload = json!({ "connectorId": 1, "meterValue": [meter_value(at, aligned)] });
            match self.tx.as_ref().map(|t| t.local) {
                Some(local) => {
                    payload["transactionId"] = json!(-1);
                    self.enqueue("MeterValues", payload, Kind::Transaction, Some(local));
                }
                None => self.enqueue("MeterValues", payload, Kind::Other, None),
            }
        }
        let stop_aligned = sampled_values(
            &self.reading,
            &self.keys.measurands(names::STOP_TXN_ALIGNED_DATA),
            "Sample.Clock",
        );
        if self.tx.is_some() && !stop_aligned.is_empty() {
            if self.aligned_in_tx.len() >= MAX_ALIGNED_IN_TX {
                // errata 3.89: thin out the middle, never the first or the newest.
                let mut i = 1;
                self.aligned_in_tx.retain(|_| {
                    i += 1;
                    i % 2 == 0
                });
            }
            self.aligned_in_tx.push(meter_value(at, stop_aligned));
        }
    }

    fn on_authorize(&mut self, now: DateTime<Utc>, token: u64, payload: &Value) {
        let Some((t, id_tag)) = self.pending_authorize.take() else {
            return;
        };
        if t != token {
            self.pending_authorize = Some((t, id_tag));
            return;
        }
        let accepted =
            payload.pointer("/idTagInfo/status").and_then(Value::as_str) == Some("Accepted");
        if !accepted {
            tracing::info!(charger = %self.settings.id, id_tag, "remote start idTag not authorised");
            return;
        }
        let timeout = self.keys.uint(names::CONNECTION_TIME_OUT);
        self.remote_start = Some((id_tag, now + secs(timeout.max(1))));
        self.start_if_plugged(now);
    }

    fn start_if_plugged(&mut self, now: DateTime<Utc>) {
        let plugged = self
            .reading
            .state
            .as_ref()
            .is_some_and(|s| s.as_ref().is_ok_and(|s| s.plugged()));
        if plugged && self.tx.is_none() {
            self.finishing = false;
            self.update_status(now);
            self.maybe_start(now);
            self.update_status(now);
        }
    }

    fn status_report(&self, now: DateTime<Utc>) -> StatusReport {
        let unreachable = if self.unreachable(now) {
            self.last_error.as_deref().or(Some("no reply"))
        } else {
            None
        };
        connector_status(&StatusInputs {
            state: self.reading.state.as_ref(),
            raw_status: self.reading.raw_status.as_deref(),
            unreachable,
            transaction: self.tx.is_some(),
            finishing: self.finishing,
            unavailable: self.unavailable,
        })
    }

    fn update_status(&mut self, now: DateTime<Utc>) {
        if self.registration != Registration::Accepted {
            return;
        }
        if !self.ever_polled && !self.unreachable(now) && self.failing_since.is_none() {
            // Nothing known about the wallbox yet: wait for the first poll.
            if self.reported[0].is_none() {
                self.report(
                    0,
                    StatusReport::ok(if self.unavailable {
                        Status::Unavailable
                    } else {
                        Status::Available
                    }),
                );
            }
            return;
        }
        let report = self.status_report(now);
        // Right after the limit was raised the wallbox needs a poll or two to follow.
        let settling = self
            .limit_raised_at
            .is_some_and(|t| now - t < Duration::seconds(SETTLE));
        if settling && report.status == Status::SuspendedEVSE {
            return;
        }
        let cp = StatusReport::ok(if self.unavailable {
            Status::Unavailable
        } else {
            Status::Available
        });
        self.report(0, cp);
        self.report(1, report);
    }

    fn report(&mut self, connector: u32, report: StatusReport) {
        let slot = usize::try_from(connector).unwrap_or(1).min(1);
        if self.reported[slot].as_ref() == Some(&report) {
            return;
        }
        tracing::info!(charger = %self.settings.id, connector, status = report.status.as_str(), "status");
        self.enqueue_status(connector, &report, None);
        self.reported[slot] = Some(report);
    }

    fn enqueue_status(&mut self, connector: u32, report: &StatusReport, at: Option<DateTime<Utc>>) {
        let mut p = json!({
            "connectorId": connector,
            "errorCode": report.error_code,
            "status": report.status.as_str(),
        });
        if let Some(i) = report.info.as_deref().filter(|s| !s.is_empty()) {
            p["info"] = json!(i);
        }
        if let Some(v) = &report.vendor_error_code {
            p["vendorErrorCode"] = json!(v);
        }
        if let Some(t) = at {
            p["timestamp"] = json!(timestamp(t));
        }
        self.enqueue("StatusNotification", p, Kind::Status(connector), None);
    }

    // ----- timers ----------------------------------------------------------------------------

    /// Runs what is due: heartbeats, sampled meter values, expiry of a remote start.
    pub fn on_tick(&mut self, now: DateTime<Utc>) {
        if self.registration == Registration::Accepted
            && self.connected
            && self.next_heartbeat.is_some_and(|t| t <= now)
        {
            if self.queue.is_empty() && self.in_flight.is_none() {
                self.enqueue("Heartbeat", json!({}), Kind::Other, None);
            }
            self.touch(now);
        }
        let sample_due = self
            .tx
            .as_ref()
            .and_then(|t| t.next_sample)
            .is_some_and(|t| t <= now);
        if sample_due {
            self.queue_sampled_meter_values(now);
        }
        match self.next_aligned {
            Some(at) if at <= now => {
                // Outside a transaction these are not transaction messages: only when online.
                if self.tx.is_some() || (self.connected && self.accepted()) {
                    self.queue_aligned_meter_values(at);
                }
                self.next_aligned = self.next_boundary(now);
            }
            None => self.next_aligned = self.next_boundary(now),
            Some(_) => {}
        }
        if let Some((_, expires)) = &self.remote_start
            && *expires <= now
        {
            tracing::info!(charger = %self.settings.id, "remote start expired (ConnectionTimeOut)");
            self.remote_start = None;
        }
        self.update_status(now);
    }

    fn queue_sampled_meter_values(&mut self, now: DateTime<Utc>) {
        self.save_meter(now, true);
        let interval = self.keys.uint(names::METER_VALUE_SAMPLE_INTERVAL);
        let Some(tx) = self.tx.as_mut() else { return };
        tx.next_sample = (interval > 0).then(|| {
            // Keep the grid anchored at the transaction start, skipping missed slots.
            let mut next = tx.next_sample.unwrap_or(now);
            while next <= now {
                next += secs(interval);
            }
            next
        });
        let local = tx.local;
        let sampled = sampled_values(
            &self.reading,
            &self.keys.measurands(names::METER_VALUES_SAMPLED_DATA),
            "Sample.Periodic",
        );
        if sampled.is_empty() {
            return;
        }
        let payload = json!({
            "connectorId": 1,
            "transactionId": -1,
            "meterValue": [meter_value(now, sampled)],
        });
        self.enqueue("MeterValues", payload, Kind::Transaction, Some(local));
    }

    /// When [`Charger::on_tick`] next has something to do.
    #[must_use]
    pub fn next_deadline(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let retry = self
            .queue
            .iter()
            .filter_map(|q| q.not_before)
            .filter(|t| *t > now)
            .min();
        let boot = match self.registration {
            // When due, next_call sends it as soon as the session is up; no tick needed.
            Registration::RetryAt(t) => Some(t).filter(|t| *t > now),
            Registration::Unknown if !self.boot_ready(now) => {
                Some(self.started_at + Duration::seconds(UNREACHABLE_AFTER))
            }
            _ => None,
        };
        let settle = self
            .limit_raised_at
            .map(|t| t + Duration::seconds(SETTLE))
            .filter(|t| *t > now);
        let unreachable = self
            .failing_since
            .map(|t| t + Duration::seconds(UNREACHABLE_AFTER))
            .filter(|t| *t > now);
        [
            self.next_heartbeat,
            self.next_aligned,
            self.tx.as_ref().and_then(|_| self.limit(now).next_change),
            self.tx.as_ref().and_then(|t| t.next_sample),
            self.remote_start.as_ref().map(|r| r.1),
            retry,
            boot,
            settle,
            unreachable,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ----- inbound CALLs -----------------------------------------------------------------

    /// Answers a CALL from the central system. Effects (queued messages, limit changes) are
    /// applied to the state and go out after the reply.
    ///
    /// # Errors
    /// A CALLERROR `(code, description)`.
    pub fn handle_call(
        &mut self,
        now: DateTime<Utc>,
        action: &str,
        payload: &Value,
    ) -> Result<Value, CallErrorReply> {
        self.touch(now);
        if self.rejected(now) {
            // §4.2: while Rejected the charge point does not take requests.
            return Err(("SecurityError", "BootNotification was rejected".into()));
        }
        match action {
            "GetConfiguration" => Ok(self.get_configuration(payload)),
            "ChangeConfiguration" => self.change_configuration(now, payload),
            "TriggerMessage" => self.trigger_message(now, payload),
            "RemoteStartTransaction" => self.remote_start(now, payload),
            "RemoteStopTransaction" => self.remote_stop(now, payload),
            "ChangeAvailability" => self.change_availability(now, payload),
            "Reset" => self.reset(now, payload),
            // behaviour.md: Accepted. There is no authorization cache to clear (remote starts
            // are authorized per request), so an empty cache is trivially cleared (§5.4).
            "ClearCache" => Ok(json!({ "status": "Accepted" })),
            "DataTransfer" => Ok(json!({ "status": "UnknownVendorId" })),
            "UnlockConnector" => {
                field_u64(payload, "connectorId")?;
                Ok(json!({ "status": "NotSupported" }))
            }
            "SetChargingProfile" => self.set_charging_profile(now, payload),
            "ClearChargingProfile" => self.clear_charging_profile(payload),
            "GetCompositeSchedule" => self.get_composite_schedule(now, payload),
            "GetDiagnostics"
            | "UpdateFirmware"
            | "ReserveNow"
            | "CancelReservation"
            | "SendLocalList"
            | "GetLocalListVersion" => Err(("NotSupported", format!("{action} is not supported"))),
            _ => Err(("NotImplemented", format!("unknown action {action}"))),
        }
    }

    fn set_charging_profile(
        &mut self,
        now: DateTime<Utc>,
        payload: &Value,
    ) -> Result<Value, CallErrorReply> {
        let ctx = SetContext {
            now,
            transaction: self.tx_context(),
        };
        let installed = sc::parse_set_charging_profile(payload, &ctx)
            .and_then(|(connector, profile)| self.profiles.install(connector, profile));
        match installed {
            Ok(()) => {
                self.persist_profiles();
                tracing::info!(charger = %self.settings.id, "charging profile installed");
                Ok(json!({ "status": "Accepted" }))
            }
            Err(reject) => {
                tracing::info!(charger = %self.settings.id, "SetChargingProfile refused: {reject}");
                reject_reply(&reject)
            }
        }
    }

    fn clear_charging_profile(&mut self, payload: &Value) -> Result<Value, CallErrorReply> {
        let req = match sc::parse_clear_charging_profile(payload) {
            Ok(r) => r,
            Err(reject) => return reject_reply(&reject),
        };
        let removed = self
            .profiles
            .clear(req.id, req.connector, req.purpose, req.stack_level);
        if removed {
            self.persist_profiles();
        }
        Ok(json!({ "status": if removed { "Accepted" } else { "Unknown" } }))
    }

    fn get_composite_schedule(
        &self,
        now: DateTime<Utc>,
        payload: &Value,
    ) -> Result<Value, CallErrorReply> {
        let req = match sc::parse_get_composite_schedule(payload) {
            Ok(r) => r,
            Err(reject) => return reject_reply(&reject),
        };
        let tx = self.tx_context();
        sc::composite_schedule(
            &self.profiles,
            req.connector,
            now,
            req.duration_s,
            req.unit,
            tx.as_ref(),
            &self.electrical(),
        )
        .or_else(|reject| reject_reply(&reject))
    }

    fn get_configuration(&self, payload: &Value) -> Value {
        let requested: Option<Vec<String>> =
            payload.get("key").and_then(Value::as_array).map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            });
        let (known, unknown) = self.keys.list(requested.as_deref());
        let keys: Vec<Value> = known
            .into_iter()
            .map(|(k, readonly, v)| json!({ "key": k, "readonly": readonly, "value": v }))
            .collect();
        let mut out = json!({ "configurationKey": keys });
        if !unknown.is_empty() {
            out["unknownKey"] = json!(unknown);
        }
        out
    }

    fn change_configuration(
        &mut self,
        now: DateTime<Utc>,
        payload: &Value,
    ) -> Result<Value, CallErrorReply> {
        let key = field_str(payload, "key")?;
        let value = field_str(payload, "value")?;
        if let Some(status) = self.change_security_key(key, value) {
            return Ok(json!({ "status": status }));
        }
        let result = self.keys.change(key, value);
        if result == ChangeResult::Accepted {
            if key.eq_ignore_ascii_case(names::METER_VALUE_SAMPLE_INTERVAL) {
                let interval = self.keys.uint(names::METER_VALUE_SAMPLE_INTERVAL);
                if let Some(tx) = self.tx.as_mut() {
                    tx.next_sample = (interval > 0).then(|| now + secs(interval));
                }
            }
            if key.eq_ignore_ascii_case(names::HEARTBEAT_INTERVAL) {
                self.touch(now);
            }
            if key.eq_ignore_ascii_case(names::CLOCK_ALIGNED_DATA_INTERVAL) {
                self.next_aligned = self.next_boundary(now);
            }
            if let Some(stored) = self.keys.get(key) {
                let (name, value) = (self.keys.canonical(key).to_owned(), stored.to_owned());
                self.ops.push(StoreOp::Key { key: name, value });
            }
        }
        let status = match result {
            ChangeResult::Accepted => "Accepted",
            ChangeResult::Rejected => "Rejected",
            ChangeResult::NotSupported => "NotSupported",
        };
        Ok(json!({ "status": status }))
    }

    fn trigger_message(
        &mut self,
        now: DateTime<Utc>,
        payload: &Value,
    ) -> Result<Value, CallErrorReply> {
        let requested = field_str(payload, "requestedMessage")?;
        let connector = payload
            .get("connectorId")
            .map(|_| field_u64(payload, "connectorId"))
            .transpose()?;
        if connector.is_some_and(|c| c > 1) {
            return Ok(json!({ "status": "Rejected" }));
        }
        match requested {
            "BootNotification" => {
                let p = self.boot_payload();
                self.enqueue("BootNotification", p, Kind::Other, None);
            }
            "Heartbeat" => self.enqueue("Heartbeat", json!({}), Kind::Other, None),
            "StatusNotification" => {
                let report = self.status_report(now);
                let cp = StatusReport::ok(if self.unavailable {
                    Status::Unavailable
                } else {
                    Status::Available
                });
                if connector.is_none_or(|c| c == 0) {
                    self.enqueue_status(0, &cp, Some(now));
                }
                if connector.is_none_or(|c| c == 1) {
                    self.enqueue_status(1, &report, Some(now));
                }
            }
            "MeterValues" => {
                // errata 3.46: the latest values of every MeterValuesSampledData measurand.
                let sampled = sampled_values(
                    &self.reading,
                    &self.keys.measurands(names::METER_VALUES_SAMPLED_DATA),
                    "Trigger",
                );
                // Connector 0 is the main meter: the wallbox's own meter is that too, but
                // errata 3.16 recommends no transactionId there.
                let connector = connector.unwrap_or(1);
                let mut p =
                    json!({ "connectorId": connector, "meterValue": [meter_value(now, sampled)] });
                if connector == 1
                    && let Some(id) = self.transaction_id()
                {
                    p["transactionId"] = json!(id);
                }
                self.enqueue("MeterValues", p, Kind::Other, None);
            }
            "DiagnosticsStatusNotification" => {
                self.enqueue(
                    "DiagnosticsStatusNotification",
                    json!({ "status": "Idle" }),
                    Kind::Other,
                    None,
                );
            }
            "FirmwareStatusNotification" => {
                self.enqueue(
                    "FirmwareStatusNotification",
                    json!({ "status": "Idle" }),
                    Kind::Other,
                    None,
                );
            }
            _ => return Ok(json!({ "status": "NotImplemented" })),
        }
        Ok(json!({ "status": "Accepted" }))
    }

    fn remote_start(
        &mut self,
        now: DateTime<Utc>,
        payload: &Value,
    ) -> Result<Value, CallErrorReply> {
        let id_tag = field_str(payload, "idTag")?.to_owned();
        let connector = payload
            .get("connectorId")
            .map(|_| field_u64(payload, "connectorId"))
            .transpose()?;
        // A given connectorId must be 1 here; 0 is never valid (c-jimenez/open-ocpp #161).
        if connector.is_some_and(|c| c != 1) || self.tx.is_some() || self.unavailable {
            return Ok(json!({ "status": "Rejected" }));
        }
        if let Some(profile) = payload.get("chargingProfile").filter(|p| !p.is_null()) {
            match sc::parse_remote_start_profile(profile, now) {
                Ok(p) => self.remote_profile = Some(p),
                Err(reject) => {
                    tracing::info!(charger = %self.settings.id, "RemoteStart profile refused: {reject}");
                    return reject_reply(&reject).map(|_| json!({ "status": "Rejected" }));
                }
            }
        }
        if self.keys.bool(names::AUTHORIZE_REMOTE_TX_REQUESTS) {
            // Authorised like a local start first; the start follows an Accepted reply.
            let token = self.next_token;
            self.enqueue(
                "Authorize",
                json!({ "idTag": truncate(&id_tag, 20) }),
                Kind::Other,
                None,
            );
            self.pending_authorize = Some((token, id_tag));
            return Ok(json!({ "status": "Accepted" }));
        }
        let timeout = self.keys.uint(names::CONNECTION_TIME_OUT);
        self.remote_start = Some((id_tag, now + secs(timeout.max(1))));
        self.start_if_plugged(now);
        Ok(json!({ "status": "Accepted" }))
    }

    fn remote_stop(
        &mut self,
        now: DateTime<Utc>,
        payload: &Value,
    ) -> Result<Value, CallErrorReply> {
        let id = field_i64(payload, "transactionId")?;
        let matches = self.tx.is_some() && self.transaction_id().is_none_or(|t| i64::from(t) == id);
        if !matches {
            return Ok(json!({ "status": "Rejected" }));
        }
        self.stop_transaction(now, "Remote");
        self.update_status(now);
        Ok(json!({ "status": "Accepted" }))
    }

    fn change_availability(
        &mut self,
        now: DateTime<Utc>,
        payload: &Value,
    ) -> Result<Value, CallErrorReply> {
        let connector = field_u64(payload, "connectorId")?;
        let kind = field_str(payload, "type")?;
        if connector > 1 {
            return Ok(json!({ "status": "Rejected" }));
        }
        let inoperative = match kind {
            "Inoperative" => true,
            "Operative" => false,
            other => {
                return Err((
                    "PropertyConstraintViolation",
                    format!("type {other} is not Operative/Inoperative"),
                ));
            }
        };
        let status = if inoperative && self.tx.is_some() {
            // Stored now so that a restart before the transaction ends keeps it (see
            // `restore`).
            if !self.unavailable_scheduled {
                self.ops.push(StoreOp::Unavailable(true));
            }
            self.unavailable_scheduled = true;
            "Scheduled"
        } else {
            if self.unavailable != inoperative || self.unavailable_scheduled {
                self.ops.push(StoreOp::Unavailable(inoperative));
            }
            self.unavailable = inoperative;
            self.unavailable_scheduled = false;
            "Accepted"
        };
        self.update_status(now);
        Ok(json!({ "status": status }))
    }

    fn reset(&mut self, now: DateTime<Utc>, payload: &Value) -> Result<Value, CallErrorReply> {
        let reason = match field_str(payload, "type")? {
            "Soft" => "SoftReset",
            "Hard" => "HardReset",
            other => {
                return Err((
                    "PropertyConstraintViolation",
                    format!("type {other} is not Soft/Hard"),
                ));
            }
        };
        // errata 3.36: stop running transactions first, then boot again.
        self.stop_transaction(now, reason);
        self.registration = Registration::RetryAt(now + Duration::seconds(1));
        self.reported = [None, None];
        self.reconnect = true;
        Ok(json!({ "status": "Accepted" }))
    }
}

// ----- outbox bounds ----------------------------------------------------------------------

/// At most this many messages that belong to no transaction wait in the outbox (Heartbeat,
/// BootNotification, triggered or clock-aligned MeterValues outside a transaction, …). When
/// full, the oldest of them is dropped: they describe a moment that has passed, and a central
/// system flooding TriggerMessage must not grow the gateway's memory.
pub const MAX_QUEUED_OTHER: usize = 64;

/// At most this many periodic transaction MeterValues wait in the outbox. Queued transaction
/// messages are never dropped (behaviour.md §Delivery guarantees), and StartTransaction /
/// StopTransaction are always queued; but while this backlog is full (e.g. days offline with a
/// short MeterValueSampleInterval) further periodic samples are not taken. The energy register
/// is cumulative, so the next sample and StopTransaction's meterStop still account for every
/// Wh; memory and the store stay bounded (about 2 000 × 0.3 KiB per charger).
pub const MAX_QUEUED_TX_METER_VALUES: usize = 2000;

impl Charger {
    /// Whether a new outgoing message may join the outbox (see [`MAX_QUEUED_OTHER`] and
    /// [`MAX_QUEUED_TX_METER_VALUES`]); makes room by dropping the oldest non-transaction
    /// message when needed.
    fn admit(&mut self, action: &str, kind: Kind) -> bool {
        match kind {
            Kind::Other => {
                let queued = self.queue.iter().filter(|q| q.kind == Kind::Other).count();
                if queued >= MAX_QUEUED_OTHER
                    && let Some(oldest) = self.queue.iter().position(|q| q.kind == Kind::Other)
                    && let Some(dropped) = self.queue.remove(oldest)
                {
                    tracing::debug!(charger = %self.settings.id, action = dropped.action, "outbox full: oldest non-transaction message dropped");
                }
                true
            }
            Kind::Transaction if action == "MeterValues" => {
                let queued = self
                    .queue
                    .iter()
                    .filter(|q| q.kind == Kind::Transaction && q.action == "MeterValues")
                    .count();
                if queued + 1 == MAX_QUEUED_TX_METER_VALUES {
                    tracing::warn!(
                        charger = %self.settings.id,
                        queued = queued + 1,
                        "transaction MeterValues backlog full: no further periodic samples until it drains"
                    );
                }
                queued < MAX_QUEUED_TX_METER_VALUES
            }
            Kind::Transaction | Kind::Status(_) => true,
        }
    }
}

// ----- security keys (SWP §3.1, use cases A01 and A05) ------------------------------------

impl Charger {
    /// Sets the security configuration and what the store kept of `AuthorizationKey` and
    /// `SecurityProfile` (see [`security::saved_credentials`]). Call after
    /// [`Charger::restore`]. Without this call the machine never touches the session's password.
    pub fn set_security(&mut self, state: SecurityState) {
        self.security = state;
        self.keys.set_internal(
            security::SECURITY_PROFILE,
            self.security.profile().to_string(),
        );
    }

    /// The Basic Auth password in effect (`None` with profile 3). Only meaningful after
    /// [`Charger::set_security`].
    #[must_use]
    pub fn basic_auth_password(&self) -> Option<Secret> {
        self.security.password()
    }

    /// `Some(password)` once after the credentials changed (new key, raised profile, rollback):
    /// give it to the session, then reconnect ([`Charger::take_reconnect`] is set too).
    pub fn take_new_credentials(&mut self) -> Option<Option<Secret>> {
        self.security.take_changed()
    }

    /// Whether new credentials wait for their first connection.
    #[must_use]
    pub fn credentials_pending(&self) -> bool {
        self.security.is_pending()
    }

    /// A connection with the new credentials succeeded.
    pub fn credentials_confirmed(&mut self) {
        if self.security.confirm() {
            tracing::info!(charger = %self.settings.id, "the central system accepted the new credentials");
        }
    }

    /// The central system refused the new credentials (HTTP 401 on the reconnect): the
    /// previous key and profile are restored and persisted, and the session reconnects.
    pub fn credentials_refused(&mut self) {
        let Some((key, profile)) = self.security.roll_back() else {
            return;
        };
        tracing::warn!(
            charger = %self.settings.id,
            profile,
            "the central system refused the new credentials; back to the previous ones"
        );
        self.persist_security(key.as_ref(), profile);
        self.reconnect = true;
    }

    fn persist_security(&mut self, key: Option<&Secret>, profile: u8) {
        self.keys
            .set_internal(security::SECURITY_PROFILE, profile.to_string());
        // "" restores as "no key written": the configured password applies again.
        self.ops.push(StoreOp::Key {
            key: security::AUTHORIZATION_KEY.to_owned(),
            value: key.map(|k| k.expose().to_owned()).unwrap_or_default(),
        });
        self.ops.push(StoreOp::Key {
            key: security::SECURITY_PROFILE.to_owned(),
            value: profile.to_string(),
        });
    }

    /// ChangeConfiguration of `AuthorizationKey` / `SecurityProfile`: `Some(status)` when the
    /// key is one of them. The value is never logged.
    fn change_security_key(&mut self, key: &str, value: &str) -> Option<&'static str> {
        if key.eq_ignore_ascii_case(security::AUTHORIZATION_KEY) {
            return Some(match security::check_authorization_key(value) {
                Ok(()) => {
                    self.security.set_key(Secret::new(value));
                    tracing::info!(charger = %self.settings.id, "AuthorizationKey changed by the central system; reconnecting with it");
                    let profile = self.security.profile();
                    self.persist_security(Some(&Secret::new(value)), profile);
                    self.reconnect = true;
                    "Accepted"
                }
                Err(e) => {
                    tracing::info!(charger = %self.settings.id, "AuthorizationKey rejected: {e}");
                    "Rejected"
                }
            });
        }
        if key.eq_ignore_ascii_case(security::SECURITY_PROFILE) {
            return Some(match self.security.raise_profile(value) {
                Ok(profile) => {
                    tracing::info!(charger = %self.settings.id, profile, "SecurityProfile raised; reconnecting");
                    let key = self.security.key().cloned();
                    self.persist_security(key.as_ref(), profile);
                    self.reconnect = true;
                    "Accepted"
                }
                Err(e) => {
                    tracing::info!(charger = %self.settings.id, "SecurityProfile change rejected: {e}");
                    "Rejected"
                }
            });
        }
        None
    }
}

/// A smart-charging refusal as this module's reply type.
fn reject_reply(reject: &Reject) -> Result<Value, CallErrorReply> {
    reject.reply().map_err(|(code, text)| (code.as_str(), text))
}

fn secs(s: u64) -> Duration {
    Duration::seconds(
        i64::try_from(s)
            .unwrap_or(i64::MAX / 2)
            .min(10 * 365 * 86_400),
    )
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

fn field_str<'a>(payload: &'a Value, name: &str) -> Result<&'a str, CallErrorReply> {
    match payload.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err((
            "TypeConstraintViolation",
            format!("{name} must be a string"),
        )),
        None => Err(("FormationViolation", format!("{name} is required"))),
    }
}

fn field_i64(payload: &Value, name: &str) -> Result<i64, CallErrorReply> {
    match payload.get(name) {
        Some(v) => v.as_i64().ok_or_else(|| {
            (
                "TypeConstraintViolation",
                format!("{name} must be an integer"),
            )
        }),
        None => Err(("FormationViolation", format!("{name} is required"))),
    }
}

fn field_u64(payload: &Value, name: &str) -> Result<u64, CallErrorReply> {
    let v = field_i64(payload, name)?;
    u64::try_from(v).map_err(|_| {
        (
            "PropertyConstraintViolation",
            format!("{name} must not be negative"),
        )
    })
}
