//! What the gateway knows about itself, for `/metrics`, `/status`, `/status.json` and
//! `/healthz`.
//!
//! One [`Telemetry`] per gateway holds the Prometheus series ([`crate::metrics`]) and a small
//! view of every charger ([`ChargerView`]). The tasks report into it through a
//! [`ChargerTelemetry`] handle with one call per event; nothing here blocks for longer than a
//! short mutex section, and nothing here can fail the task that reports.
//!
//! Secrets never enter this module: OCPP messages are recorded by action and result only (a
//! ChangeConfiguration payload may carry an `AuthorizationKey`), and configuration is not
//! recorded at all.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value;

use crate::charger::Charger;
use crate::devicemap::Table;
use crate::metrics::{LIMIT_SOURCES, Metrics, MetricsError, STATUSES, action_label};
use crate::modbus::{BusError, BusHandle};
use crate::ocpp::session::{CallAnswer, CallFailure, SessionHandle};

/// How many OCPP messages each charger's view remembers.
pub const MESSAGE_HISTORY: usize = 20;

/// The one connector of a wallbox (OCPP connector 1).
const CONNECTOR: &str = "1";

/// Direction label of a CALL the gateway sent to the central system.
pub const SENT: &str = "sent";
/// Direction label of a CALL the central system sent to the gateway.
pub const RECEIVED: &str = "received";

/// A Modbus request as counted in `chargebridge_modbus_requests_total{function}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModbusOp {
    /// A read of a table (FC 1 / 2 / 3 / 4).
    Read(Table),
    /// A write to a table (FC 5 / 6 / 15 / 16).
    Write(Table),
}

impl ModbusOp {
    /// The `function` label value.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Read(Table::Holding) => "read_holding_registers",
            Self::Read(Table::Input) => "read_input_registers",
            Self::Read(Table::Coil) => "read_coils",
            Self::Read(Table::Discrete) => "read_discrete_inputs",
            Self::Write(Table::Coil) => "write_coils",
            // Input registers and discrete inputs cannot be written; the bus answers such a
            // request itself, and it is counted with the register writes.
            Self::Write(_) => "write_registers",
        }
    }
}

/// The `result` label value of a Modbus request.
fn bus_result<T>(result: &Result<T, BusError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(BusError::Exception(_)) => "exception",
        Err(BusError::Timeout) => "timeout",
        Err(BusError::Transport(_)) => "transport_error",
        Err(BusError::Closed) => "closed",
    }
}

/// The `result` label value of a CALL the gateway sent.
fn call_result(result: &Result<Value, CallFailure>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(CallFailure::CallError { .. }) => "call_error",
        Err(CallFailure::Timeout) => "timeout",
        Err(CallFailure::NotConnected) => "not_connected",
        Err(CallFailure::Disconnected) => "disconnected",
    }
}

/// Modbus health of one charger, as shown on `/status`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ModbusHealth {
    /// Requests made (after retries: one per read, write or keep-alive).
    pub requests: u64,
    /// Requests answered with data or a write confirmation.
    pub ok: u64,
    /// `ok / requests`, when there was a request.
    pub success_rate: Option<f64>,
    /// Time to the answer of the last request, in ms (includes queueing on a shared bus).
    pub last_latency_ms: Option<f64>,
    /// Mean time to an answer over every request, in ms.
    pub mean_latency_ms: Option<f64>,
    /// The most recent error.
    pub last_error: Option<String>,
    /// When it happened.
    pub last_error_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    latency_sum: Duration,
}

/// One OCPP message in a charger's recent history.
#[derive(Clone, Debug, Serialize)]
pub struct MessageRecord {
    /// When its answer (or failure) was known.
    pub at: DateTime<Utc>,
    /// `sent` (to the central system) or `received` (from it).
    pub direction: &'static str,
    /// The OCPP action (`other` for one OCPP 1.6 does not define).
    pub action: &'static str,
    /// `ok`, `call_error`, `timeout`, `not_connected`, `disconnected` (sent) or `ok`, the
    /// CALLERROR code (received).
    pub result: String,
}

/// What `/status` shows about one charger.
#[derive(Clone, Debug, Serialize)]
pub struct ChargerView {
    /// OCPP charge point identity.
    pub id: String,
    /// The bus (RS-485 line name or TCP endpoint) the wallbox is on.
    pub bus: String,
    /// Vendor and model from the device map.
    pub device: String,
    /// Whether the wallbox answered its last Modbus poll cycle.
    pub reachable: bool,
    /// Whether the WebSocket to the central system is up.
    pub ocpp_connected: bool,
    /// Whether the central system accepted the BootNotification.
    pub boot_accepted: bool,
    /// Connections after the first one.
    pub reconnects: u64,
    /// Why the last connection ended.
    pub last_disconnect: Option<String>,
    /// Why the last connection attempt failed or the last connection ended (e.g. HTTP 401).
    pub ocpp_last_error: Option<String>,
    /// Connection attempts so far.
    pub ocpp_attempts: u64,
    /// When the current connection was established, or the last one ended.
    pub ocpp_since: Option<DateTime<Utc>>,
    /// OCPP messages waiting (including the one in flight).
    pub outbox: usize,
    /// IEC 61851 state from the wallbox's status register (or the raw value if unmapped).
    pub iec_state: Option<String>,
    /// The raw status register value.
    pub raw_status: Option<String>,
    /// OCPP connector status (connector 1).
    pub status: Option<String>,
    /// OCPP ChargePointErrorCode with the status.
    pub error_code: Option<String>,
    /// The running transaction's OCPP id, once the central system assigned one.
    pub transaction_id: Option<i32>,
    /// Whether a transaction is running.
    pub in_transaction: bool,
    /// Active power, W.
    pub power_w: Option<f64>,
    /// Energy register, Wh.
    pub energy_wh: Option<f64>,
    /// Current limit last written, A; 0 means charging off; `None` before the first write.
    pub current_limit_a: Option<f64>,
    /// Where the limit comes from: the charging profile (purpose and id) that sets it, or
    /// `max_current` when no profile applies.
    pub limit_source: Option<String>,
    /// Modbus health.
    pub modbus: ModbusHealth,
    /// The last OCPP messages, newest first.
    pub last_messages: VecDeque<MessageRecord>,
    #[serde(skip)]
    in_flight: Option<&'static str>,
    #[serde(skip)]
    connections: u64,
    /// Label combinations of this charger's counters, so they can be removed with it.
    #[serde(skip)]
    modbus_series: HashSet<(&'static str, &'static str)>,
    #[serde(skip)]
    message_series: HashSet<(&'static str, &'static str, String)>,
}

impl ChargerView {
    fn new(id: &str, bus: &str, device: &str) -> Self {
        Self {
            id: id.to_owned(),
            bus: bus.to_owned(),
            device: device.to_owned(),
            reachable: false,
            ocpp_connected: false,
            boot_accepted: false,
            reconnects: 0,
            last_disconnect: None,
            ocpp_last_error: None,
            ocpp_attempts: 0,
            ocpp_since: None,
            outbox: 0,
            iec_state: None,
            raw_status: None,
            status: None,
            error_code: None,
            transaction_id: None,
            in_transaction: false,
            power_w: None,
            energy_wh: None,
            current_limit_a: None,
            limit_source: None,
            modbus: ModbusHealth::default(),
            last_messages: VecDeque::new(),
            in_flight: None,
            connections: 0,
            modbus_series: HashSet::new(),
            message_series: HashSet::new(),
        }
    }

    fn remember(&mut self, direction: &'static str, action: &'static str, result: String) {
        if self.last_messages.len() >= MESSAGE_HISTORY {
            self.last_messages.pop_back();
        }
        self.last_messages.push_front(MessageRecord {
            at: Utc::now(),
            direction,
            action,
            result,
        });
    }
}

/// Counters of one bus, as shown on `/status`.
#[derive(Clone, Debug, Serialize)]
pub struct BusView {
    /// The bus name.
    pub name: String,
    /// Attempts answered.
    pub ok: u64,
    /// Attempts answered with a Modbus exception.
    pub exceptions: u64,
    /// Attempts without a reply.
    pub timeouts: u64,
    /// Attempts that failed on the connection.
    pub transport_errors: u64,
    /// Seconds the line was busy.
    pub busy_seconds: f64,
    /// The most recent error.
    pub last_error: Option<String>,
}

/// Everything `/status.json` returns.
#[derive(Clone, Debug, Serialize)]
pub struct StatusSnapshot {
    /// The gateway's version.
    pub version: String,
    /// When the gateway started.
    pub started_at: DateTime<Utc>,
    /// When this snapshot was taken.
    pub generated_at: DateTime<Utc>,
    /// Every charger, in configuration order.
    pub chargers: Vec<ChargerView>,
    /// Every bus.
    pub buses: Vec<BusView>,
}

impl StatusSnapshot {
    /// Ids of the chargers whose wallbox did not answer its last poll cycle.
    #[must_use]
    pub fn unreachable(&self) -> Vec<&str> {
        self.chargers
            .iter()
            .filter(|c| !c.reachable)
            .map(|c| c.id.as_str())
            .collect()
    }
}

#[derive(Debug)]
struct BusEntry {
    handle: BusHandle,
    /// Busy seconds of this handle already added to the counter (a bus task started again
    /// after a reload counts from zero).
    counted_busy: f64,
}

#[derive(Debug)]
struct Inner {
    metrics: Metrics,
    version: String,
    started_at: DateTime<Utc>,
    chargers: Mutex<IndexMap<String, ChargerView>>,
    buses: Mutex<Vec<BusEntry>>,
}

/// The gateway's metrics and status. Cheap to clone; all clones share the data.
#[derive(Clone, Debug)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

/// A poisoned lock only means another reporter panicked mid-update; the data is still usable
/// for monitoring (and nothing here panics by design).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Telemetry {
    /// A new, empty telemetry for this build's version.
    ///
    /// # Errors
    /// Only for an invalid metric definition (a programming error).
    pub fn new() -> Result<Self, MetricsError> {
        let version = env!("CARGO_PKG_VERSION").to_owned();
        Ok(Self {
            inner: Arc::new(Inner {
                metrics: Metrics::new(&version)?,
                version,
                started_at: Utc::now(),
                chargers: Mutex::new(IndexMap::new()),
                buses: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Adds a charger (or starts its view afresh when it is started again after a reload;
    /// its counters continue) and returns the handle its tasks report through.
    #[must_use]
    pub fn charger(&self, id: &str, bus: &str, device: &str) -> ChargerTelemetry {
        let mut chargers = lock(&self.inner.chargers);
        let view = ChargerView::new(id, bus, device);
        match chargers.get_mut(id) {
            Some(old) => {
                let mut view = view;
                view.reconnects = old.reconnects;
                view.connections = old.connections;
                view.modbus_series = std::mem::take(&mut old.modbus_series);
                view.message_series = std::mem::take(&mut old.message_series);
                view.last_messages = std::mem::take(&mut old.last_messages);
                *old = view;
            }
            None => {
                chargers.insert(id.to_owned(), view);
            }
        }
        let m = &self.inner.metrics;
        m.reachable.with_label_values(&[id]).set(0);
        m.connected.with_label_values(&[id]).set(0);
        m.outbox.with_label_values(&[id]).set(0);
        m.reconnects.with_label_values(&[id]);
        ChargerTelemetry {
            telemetry: Some(self.clone()),
            id: id.into(),
            bus: bus.into(),
        }
    }

    /// Removes a charger that is no longer configured, with all its series.
    pub fn remove_charger(&self, id: &str) {
        let Some(view) = lock(&self.inner.chargers).shift_remove(id) else {
            return;
        };
        let m = &self.inner.metrics;
        // Errors only say that a series did not exist.
        for gauge in [&m.reachable, &m.connected, &m.outbox] {
            let _ = gauge.remove_label_values(&[id]);
        }
        for gauge in [&m.power, &m.energy, &m.limit] {
            let _ = gauge.remove_label_values(&[id]);
        }
        let _ = m.reconnects.remove_label_values(&[id]);
        for s in STATUSES {
            let _ = m.status.remove_label_values(&[id, CONNECTOR, s.as_str()]);
        }
        for s in LIMIT_SOURCES {
            let _ = m.limit_source.remove_label_values(&[id, s]);
        }
        for (function, result) in &view.modbus_series {
            let _ = m
                .modbus_requests
                .remove_label_values(&[&view.bus, id, function, result]);
        }
        for (direction, action, result) in &view.message_series {
            let _ = m
                .messages
                .remove_label_values(&[id, direction, action, result.as_str()]);
        }
    }

    /// Ids of the chargers known, in order.
    #[must_use]
    pub fn charger_ids(&self) -> Vec<String> {
        lock(&self.inner.chargers).keys().cloned().collect()
    }

    /// Exports a bus's counters. A bus of the same name that was exported before (a bus task
    /// started again after a reload) is replaced; its counter continues from where it was.
    pub fn add_bus(&self, handle: BusHandle) {
        let mut buses = lock(&self.inner.buses);
        if let Some(i) = buses.iter().position(|b| b.handle.name() == handle.name()) {
            let old = buses.swap_remove(i);
            self.count_busy(&old);
        }
        buses.push(BusEntry {
            handle,
            counted_busy: 0.0,
        });
    }

    /// Stops exporting a bus's live counters (its series keeps the last value).
    pub fn remove_bus(&self, name: &str) {
        let mut buses = lock(&self.inner.buses);
        if let Some(i) = buses.iter().position(|b| b.handle.name() == name) {
            let old = buses.swap_remove(i);
            self.count_busy(&old);
        }
    }

    /// Adds what the bus was busy since the last scrape to its counter.
    fn count_busy(&self, bus: &BusEntry) -> f64 {
        let busy = bus.handle.stats().busy.as_secs_f64();
        let delta = busy - bus.counted_busy;
        let counter = self
            .inner
            .metrics
            .bus_busy
            .with_label_values(&[bus.handle.name()]);
        if delta > 0.0 {
            counter.inc_by(delta);
            busy
        } else {
            bus.counted_busy
        }
    }

    /// The Prometheus text of every series.
    #[must_use]
    pub fn render_metrics(&self) -> String {
        {
            let mut buses = lock(&self.inner.buses);
            for bus in buses.iter_mut() {
                bus.counted_busy = self.count_busy(bus);
            }
        }
        self.inner.metrics.render()
    }

    /// A copy of the status of every charger and bus.
    #[must_use]
    pub fn snapshot(&self) -> StatusSnapshot {
        let chargers = lock(&self.inner.chargers).values().cloned().collect();
        let buses = lock(&self.inner.buses)
            .iter()
            .map(|b| {
                let s = b.handle.stats();
                BusView {
                    name: b.handle.name().to_owned(),
                    ok: s.ok,
                    exceptions: s.exceptions,
                    timeouts: s.timeouts,
                    transport_errors: s.transport_errors,
                    busy_seconds: s.busy.as_secs_f64(),
                    last_error: s.last_error,
                }
            })
            .collect();
        StatusSnapshot {
            version: self.inner.version.clone(),
            started_at: self.inner.started_at,
            generated_at: Utc::now(),
            chargers,
            buses,
        }
    }
}

/// The handle one charger's tasks report through. Cheap to clone. A detached handle
/// ([`ChargerTelemetry::detached`]) records nothing.
#[derive(Clone, Debug)]
pub struct ChargerTelemetry {
    telemetry: Option<Telemetry>,
    id: Arc<str>,
    bus: Arc<str>,
}

impl ChargerTelemetry {
    /// A handle that records nothing (for tests and tools that run a charger alone).
    #[must_use]
    pub fn detached(id: &str) -> Self {
        Self {
            telemetry: None,
            id: id.into(),
            bus: "".into(),
        }
    }

    fn with(&self, f: impl FnOnce(&Metrics, &mut ChargerView)) {
        let Some(t) = &self.telemetry else { return };
        let mut chargers = lock(&t.inner.chargers);
        if let Some(view) = chargers.get_mut(&*self.id) {
            f(&t.inner.metrics, view);
        }
    }

    /// One Modbus request ended, `elapsed` after it was submitted to the bus.
    pub fn modbus_request<T>(&self, op: ModbusOp, elapsed: Duration, result: &Result<T, BusError>) {
        let outcome = bus_result(result);
        let (id, bus) = (&*self.id, &*self.bus);
        self.with(|m, view| {
            m.modbus_requests
                .with_label_values(&[bus, id, op.label(), outcome])
                .inc();
            view.modbus_series.insert((op.label(), outcome));
            // A request that never reached the bus says nothing about its latency.
            if !matches!(result, Err(BusError::Closed)) {
                m.modbus_duration
                    .with_label_values(&[bus])
                    .observe(elapsed.as_secs_f64());
            }
            let h = &mut view.modbus;
            h.requests += 1;
            h.latency_sum += elapsed;
            h.last_latency_ms = Some(elapsed.as_secs_f64() * 1000.0);
            h.mean_latency_ms = Some(h.latency_sum.as_secs_f64() * 1000.0 / h.requests as f64);
            match result {
                Ok(_) => h.ok += 1,
                Err(e) => {
                    h.last_error = Some(e.to_string());
                    h.last_error_at = Some(Utc::now());
                }
            }
            h.success_rate = Some(h.ok as f64 / h.requests as f64);
        });
    }

    /// A poll cycle ended: the wallbox answered every read (`true`) or did not.
    pub fn poll_done(&self, answered: bool) {
        let id = &*self.id;
        self.with(|m, view| {
            // One line when a wallbox goes quiet (its return is logged by the device task);
            // the bus logs the individual errors, rate-limited.
            if view.reachable && !answered {
                tracing::warn!(charger = %id, error = view.modbus.last_error.as_deref().unwrap_or("-"), "wallbox stopped answering Modbus polls");
            }
            view.reachable = answered;
            m.reachable
                .with_label_values(&[id])
                .set(i64::from(answered));
        });
    }

    /// A limit was written to the wallbox (A; `None` = charging off).
    pub fn limit_written(&self, amperes: Option<f64>) {
        let id = &*self.id;
        self.with(|m, view| {
            let a = amperes.unwrap_or(0.0);
            view.current_limit_a = Some(a);
            m.limit.with_label_values(&[id]).set(a);
        });
    }

    /// The WebSocket to the central system is up.
    pub fn ocpp_connected(&self) {
        let id = &*self.id;
        self.with(|m, view| {
            view.ocpp_connected = true;
            view.connections += 1;
            if view.connections > 1 {
                view.reconnects += 1;
                m.reconnects.with_label_values(&[id]).inc();
            }
            m.connected.with_label_values(&[id]).set(1);
        });
    }

    /// The WebSocket went down.
    pub fn ocpp_disconnected(&self, reason: &str) {
        let id = &*self.id;
        self.with(|m, view| {
            view.ocpp_connected = false;
            view.last_disconnect = Some(reason.to_owned());
            m.connected.with_label_values(&[id]).set(0);
        });
    }

    /// A CALL is being sent to the central system (one in flight at a time, OCPP-J §4.1.1).
    pub fn call_sent(&self, action: &str) {
        let action = action_label(action);
        self.with(|_, view| view.in_flight = Some(action));
    }

    /// The CALL sent last got its answer (or failed).
    pub fn call_done(&self, result: &Result<Value, CallFailure>) {
        let id = &*self.id;
        let outcome = call_result(result);
        self.with(|m, view| {
            let action = view.in_flight.take().unwrap_or("other");
            m.messages
                .with_label_values(&[id, SENT, action, outcome])
                .inc();
            view.message_series
                .insert((SENT, action, outcome.to_owned()));
            view.remember(SENT, action, outcome.to_owned());
        });
    }

    /// A CALL from the central system was answered.
    pub fn call_received(&self, action: &str, answer: &CallAnswer) {
        let id = &*self.id;
        let action = action_label(action);
        // Error codes are a fixed set (OCPP-J §4.2.3), so they are bounded label values.
        let outcome = match answer {
            Ok(_) => "ok",
            Err((code, _)) => code.as_str(),
        };
        self.with(|m, view| {
            m.messages
                .with_label_values(&[id, RECEIVED, action, outcome])
                .inc();
            view.message_series
                .insert((RECEIVED, action, outcome.to_owned()));
            view.remember(RECEIVED, action, outcome.to_owned());
        });
    }

    /// Takes in the machine's and the session's state after the charger task handled an
    /// event.
    pub fn observe(&self, machine: &Charger, session: &SessionHandle) {
        let id = &*self.id;
        let now = Utc::now();
        let session = session.status();
        // The profile that sets the limit now (OCPP 1.6 §3.13 stacking), for the status page.
        let limit_source = machine.limit(now).source;
        let source = machine.in_transaction().then(|| {
            limit_source.map_or_else(
                || "max_current, no charging profile".to_owned(),
                |(purpose, profile)| format!("{} {profile}", purpose.as_str()),
            )
        });
        let source_label = match (machine.in_transaction(), limit_source) {
            (false, _) => "none",
            (true, None) => "max_current",
            (true, Some((purpose, _))) => purpose.as_str(),
        };
        self.with(|m, view| {
            view.ocpp_last_error = session.last_error;
            view.ocpp_attempts = session.attempts;
            view.ocpp_since = session.since;
            view.limit_source = source;
            let reading = machine.reading();
            view.boot_accepted = machine.accepted();
            view.transaction_id = machine.transaction_id();
            view.in_transaction = machine.in_transaction();
            view.outbox = machine.queued();
            m.outbox
                .with_label_values(&[id])
                .set(i64::try_from(view.outbox).unwrap_or(i64::MAX));
            view.iec_state = reading.state.as_ref().map(|s| match s {
                Ok(s) => s.as_str().to_owned(),
                Err(raw) => format!("unknown ({raw})"),
            });
            view.raw_status.clone_from(&reading.raw_status);
            let report = machine.status();
            view.status = report.map(|r| r.status.as_str().to_owned());
            view.error_code = report.map(|r| r.error_code.to_owned());
            for s in LIMIT_SOURCES {
                m.limit_source
                    .with_label_values(&[id, s])
                    .set(i64::from(s == source_label));
            }
            for s in STATUSES {
                let on = report.is_some_and(|r| r.status == s);
                m.status
                    .with_label_values(&[id, CONNECTOR, s.as_str()])
                    .set(i64::from(on));
            }
            view.power_w = reading.power_w();
            view.energy_wh = reading.energy_wh();
            let joules = view.energy_wh.map(|wh| wh * 3600.0);
            for (gauge, value) in [(&m.power, view.power_w), (&m.energy, joules)] {
                match value {
                    Some(v) => gauge.with_label_values(&[id]).set(v),
                    // An unknown value has no series rather than a misleading 0.
                    None => {
                        let _ = gauge.remove_label_values(&[id]);
                    }
                }
            }
        });
    }

    /// The charger id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ocpp::rpc::ErrorCode;

    fn telemetry() -> Telemetry {
        match Telemetry::new() {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn modbus_requests_are_counted_by_function_and_result() {
        let t = telemetry();
        let c = t.charger("CB-1", "rs485-1", "Acme Box");
        let now = Duration::from_millis(20);
        c.modbus_request(ModbusOp::Read(Table::Input), now, &Ok::<_, BusError>(()));
        c.modbus_request(ModbusOp::Read(Table::Input), now, &Ok::<_, BusError>(()));
        c.modbus_request::<()>(
            ModbusOp::Write(Table::Holding),
            now,
            &Err(BusError::Timeout),
        );
        let text = t.render_metrics();
        assert!(text.contains(
            "chargebridge_modbus_requests_total{bus=\"rs485-1\",charger=\"CB-1\",function=\"read_input_registers\",result=\"ok\"} 2"
        ), "{text}");
        assert!(text.contains(
            "chargebridge_modbus_requests_total{bus=\"rs485-1\",charger=\"CB-1\",function=\"write_registers\",result=\"timeout\"} 1"
        ), "{text}");
        assert!(
            text.contains("chargebridge_modbus_request_duration_seconds_count{bus=\"rs485-1\"} 3"),
            "{text}"
        );
        let snap = t.snapshot();
        let view = &snap.chargers[0];
        assert_eq!(view.modbus.requests, 3);
        assert_eq!(view.modbus.ok, 2);
        assert!(
            view.modbus
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("no reply"))
        );
    }

    #[test]
    fn reconnects_count_connections_after_the_first() {
        let t = telemetry();
        let c = t.charger("CB-1", "tcp", "Acme Box");
        c.ocpp_connected();
        c.ocpp_disconnected("closed");
        c.ocpp_connected();
        let text = t.render_metrics();
        assert!(
            text.contains("chargebridge_ocpp_reconnects_total{charger=\"CB-1\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("chargebridge_ocpp_connected{charger=\"CB-1\"} 1"),
            "{text}"
        );
        assert_eq!(
            t.snapshot().chargers[0].last_disconnect.as_deref(),
            Some("closed")
        );
    }

    #[test]
    fn hostile_action_names_do_not_create_series_and_history_is_bounded() {
        let t = telemetry();
        let c = t.charger("CB-1", "tcp", "Acme Box");
        for i in 0..100 {
            c.call_received(
                &format!("Evil{i}"),
                &Err((ErrorCode::NotImplemented, "no".into())),
            );
        }
        c.call_sent("Heartbeat");
        c.call_done(&Ok(Value::Null));
        let text = t.render_metrics();
        assert!(text.contains("chargebridge_ocpp_messages_total{action=\"other\",charger=\"CB-1\",direction=\"received\",result=\"NotImplemented\"} 100"), "{text}");
        assert!(text.contains("chargebridge_ocpp_messages_total{action=\"Heartbeat\",charger=\"CB-1\",direction=\"sent\",result=\"ok\"} 1"), "{text}");
        assert!(!text.contains("Evil"));
        let snap = t.snapshot();
        assert_eq!(snap.chargers[0].last_messages.len(), MESSAGE_HISTORY);
        assert_eq!(snap.chargers[0].last_messages[0].action, "Heartbeat");
    }

    #[test]
    fn a_removed_charger_leaves_no_series() {
        let t = telemetry();
        let c = t.charger("CB-GONE", "tcp", "Acme Box");
        c.poll_done(true);
        c.limit_written(Some(16.0));
        c.call_sent("BootNotification");
        c.call_done(&Err(CallFailure::Timeout));
        c.modbus_request(
            ModbusOp::Read(Table::Holding),
            Duration::from_millis(20),
            &Ok::<_, BusError>(()),
        );
        assert!(t.render_metrics().contains("CB-GONE"));
        t.remove_charger("CB-GONE");
        let text = t.render_metrics();
        assert!(!text.contains("CB-GONE"), "{text}");
        assert!(t.snapshot().chargers.is_empty());
        // A detached handle and a handle of a removed charger record nothing and do not panic.
        c.poll_done(false);
        ChargerTelemetry::detached("X").poll_done(true);
    }

    #[test]
    fn unreachable_chargers_are_listed() {
        let t = telemetry();
        let a = t.charger("A", "bus", "d");
        let _b = t.charger("B", "bus", "d");
        a.poll_done(true);
        assert_eq!(t.snapshot().unreachable(), vec!["B"]);
    }
}
