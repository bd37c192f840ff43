//! A small rig for the fault tests: the real `chargebridge run` binary as a child process,
//! between an in-process loopback central system (which can be stopped and started again on
//! the same port) and an in-process simulated Heidelberg wallbox on Modbus TCP. The state
//! database is a real SQLite file in a temporary directory.
//!
//! Every child process is killed when its [`Gateway`] guard is dropped, on every path
//! (including a failed assertion).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use chargebridge::devicemap;
use chargebridge::ocpp::rpc::ErrorCode;
use chargebridge::sim::csms::{Csms, CsmsEvent, CsmsHandle, CsmsOptions, CsmsReply, TimedEvent};
use chargebridge::sim::{RunningSim, SimArgs, SimHandle};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::common::csms::{Calls, payloads};
use crate::common::wait;

/// The charge point identity used by every fault test.
pub const CHARGER: &str = "FAULT-1";
const PASSWORD: &str = "fault-test-password-1";
const MAP: &str = "heidelberg-energy-control";

/// Generous upper bound for anything the gateway should do "soon".
pub const SOON: Duration = Duration::from_secs(60);

/// The gateway binary as a child process; killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct Gateway {
    child: Child,
}

impl Gateway {
    /// Starts `chargebridge run -c config` with stderr (the log) going to `log`.
    pub fn spawn(config: &Path, log: &Path) -> Gateway {
        let log = std::fs::File::create(log).expect("creating the gateway log file");
        let child = Command::new(env!("CARGO_BIN_EXE_chargebridge"))
            .arg("run")
            .arg("-c")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("starting the gateway binary");
        Gateway { child }
    }

    /// SIGKILL: the process gets no chance to clean up (a power loss, as far as the state
    /// database is concerned).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits (up to 15 s) for the process to exit by itself.
    pub async fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("running kill -TERM");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the gateway") {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the gateway did not exit within 15 s of SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Central system + wallbox simulator + gateway process, all on loopback.
pub struct Rig {
    dir: tempfile::TempDir,
    csms: Option<CsmsHandle>,
    csms_addr: SocketAddr,
    /// Events of central-system instances already stopped, in order.
    history: Vec<TimedEvent>,
    /// The transactionId the central system gives the next StartTransaction.
    next_tx_id: Option<i64>,
    sim: SimHandle,
    sim_running: Option<RunningSim>,
    sim_token: CancellationToken,
    config: PathBuf,
    gateway: Option<Gateway>,
    runs: usize,
}

impl Rig {
    /// Starts the central system and the wallbox simulator and writes the gateway's
    /// configuration; the gateway itself is started with [`Rig::start_gateway`].
    pub async fn new() -> Rig {
        let dir = tempfile::tempdir().expect("tempdir");
        let csms = start_csms(SocketAddr::from(([127, 0, 0, 1], 0))).await;
        let csms_addr = csms.addr();
        let sim_token = CancellationToken::new();
        let map = devicemap::resolve(MAP, &[]).expect("built-in map");
        let running = chargebridge::sim::spawn(
            SimArgs {
                map: MAP.into(),
                tcp: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
                units: vec![1],
                set: vec![
                    "layout_version=0x0108".into(),
                    "hw_max_current=16".into(),
                    "hw_min_current=6".into(),
                    "energy=1250000".into(),
                ],
                ..SimArgs::default()
            },
            map,
            sim_token.clone(),
        )
        .await
        .expect("starting the simulator");
        let sim = running.units[0].1.clone();
        let sim_addr = running.tcp_addr.expect("simulator address");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, format!("{PASSWORD}\n")).expect("password file");
        let config = dir.path().join("chargebridge.yaml");
        let yaml = format!(
            "state_dir: {state}\n\
             log: {{ format: text, filter: info }}\n\
             device_map_dirs: []\n\
             csms:\n  url: {url}\n  security_profile: 1\n  allow_insecure: true\n\
             chargers:\n\
             \x20 - id: {CHARGER}\n\
             \x20   device_map: {MAP}\n\
             \x20   tcp: {sim_addr}\n\
             \x20   unit: 1\n\
             \x20   password_file: {secret}\n\
             \x20   max_current: 16\n\
             \x20   failsafe_current: 6\n\
             \x20   poll_interval: 1s\n",
            state = dir.path().join("state").display(),
            url = csms.url(),
            secret = secret.display(),
        );
        std::fs::write(&config, yaml).expect("config file");
        Rig {
            dir,
            csms: Some(csms),
            csms_addr,
            history: Vec::new(),
            next_tx_id: None,
            sim,
            sim_running: Some(running),
            sim_token,
            config,
            gateway: None,
            runs: 0,
        }
    }

    /// The simulated wallbox.
    pub fn sim(&self) -> &SimHandle {
        &self.sim
    }

    /// The state directory (the SQLite database lives there).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The running central system.
    pub fn csms(&self) -> &CsmsHandle {
        self.csms.as_ref().expect("the central system is stopped")
    }

    /// Starts (another run of) the gateway process.
    pub fn start_gateway(&mut self) {
        assert!(self.gateway.is_none(), "a gateway is already running");
        self.runs += 1;
        let log = self.dir.path().join(format!("gateway-{}.log", self.runs));
        self.gateway = Some(Gateway::spawn(&self.config, &log));
    }

    /// The running gateway process.
    pub fn gateway(&mut self) -> &mut Gateway {
        self.gateway.as_mut().expect("no gateway running")
    }

    /// SIGKILL the gateway.
    pub fn kill_gateway(&mut self) {
        let mut g = self.gateway.take().expect("no gateway running");
        g.kill();
    }

    /// SIGTERM the gateway and wait until it has exited; asserts a successful exit.
    pub async fn stop_gateway(&mut self) {
        let mut g = self.gateway.take().expect("no gateway running");
        let status = g.terminate().await;
        assert!(
            status.success(),
            "the gateway exited with {status} after SIGTERM"
        );
    }

    /// Everything the gateway logged so far, over all its runs.
    pub fn log_text(&self) -> String {
        (1..=self.runs)
            .map(|i| {
                std::fs::read_to_string(self.dir.path().join(format!("gateway-{i}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Asserts that no run of the gateway logged the Basic Auth password.
    pub fn assert_no_secret_logged(&self) {
        let log = self.log_text();
        assert!(!log.is_empty(), "the gateway logged nothing at all");
        assert!(
            !log.contains(PASSWORD),
            "the password appears in the log:\n{log}"
        );
    }

    /// Stops the central system (listener and connections): it is unreachable until
    /// [`Rig::start_csms`].
    pub async fn stop_csms(&mut self) {
        let csms = self.csms.take().expect("already stopped");
        csms.shutdown();
        // Let the cancelled connection tasks finish recording.
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.history.extend(csms.timeline());
    }

    /// Starts a new central system on the same address (same URL for the gateway).
    pub async fn start_csms(&mut self) {
        assert!(self.csms.is_none(), "already running");
        let csms = start_csms(self.csms_addr).await;
        if let Some(id) = self.next_tx_id {
            set_start_reply(&csms, id);
        }
        self.csms = Some(csms);
    }

    /// The transactionId the central system answers to StartTransaction from now on (also
    /// after a restart of the central system).
    pub fn set_transaction_id(&mut self, id: i64) {
        self.next_tx_id = Some(id);
        if let Some(csms) = &self.csms {
            set_start_reply(csms, id);
        }
    }

    /// The events of the central-system instances already stopped, in order.
    pub fn earlier_timeline(&self) -> &[TimedEvent] {
        &self.history
    }

    /// Every event of every central-system instance so far, in order.
    pub fn timeline(&self) -> Vec<TimedEvent> {
        let mut all = self.history.clone();
        if let Some(csms) = &self.csms {
            all.extend(csms.timeline());
        }
        all
    }

    /// Payloads of every `action` CALL the central system(s) received so far, in order.
    pub fn calls(&self, action: &str) -> Vec<Value> {
        calls_in(&self.timeline(), action)
    }

    /// The first `action` CALL at or after index `since` of the running central system that
    /// satisfies `pred`; panics with a summary of what was seen after [`SOON`].
    pub async fn wait_call(
        &self,
        since: usize,
        action: &str,
        pred: impl Fn(&Value) -> bool,
        what: &str,
    ) -> Value {
        self.wait_call_for(since, action, pred, what, SOON).await
    }

    /// Like [`Rig::wait_call`] with an explicit timeout.
    pub async fn wait_call_for(
        &self,
        since: usize,
        action: &str,
        pred: impl Fn(&Value) -> bool,
        what: &str,
        timeout: Duration,
    ) -> Value {
        let seen = || self.what_was_seen();
        Calls::new(self.csms(), timeout)
            .expect(since, None, action, pred, what, seen)
            .await
    }

    /// What the central system(s) saw and what the gateway logged, for failure messages.
    fn what_was_seen(&self) -> String {
        format!(
            "the central system saw:\n{}\n--- gateway log ---\n{}",
            summary(&self.timeline()),
            self.log_text()
        )
    }

    /// Waits for BootNotification and the connector's first StatusNotification after index
    /// `since`; returns that status.
    pub async fn wait_booted(&self, since: usize) -> String {
        self.wait_call(since, "BootNotification", |_| true, "BootNotification")
            .await;
        let status = self
            .wait_call(
                since,
                "StatusNotification",
                |p| p["connectorId"] == 1,
                "StatusNotification of connector 1",
            )
            .await;
        status["status"].as_str().unwrap_or_default().to_owned()
    }

    /// A central-system CALL to the charger; panics on failure.
    pub async fn call(&self, action: &str, payload: Value) -> Value {
        self.csms()
            .call(CHARGER, action, payload)
            .await
            .unwrap_or_else(|e| panic!("{action} failed: {e}"))
    }

    /// ChangeConfiguration; asserts it is Accepted.
    pub async fn configure(&self, key: &str, value: &str) {
        let reply = self
            .call("ChangeConfiguration", json!({ "key": key, "value": value }))
            .await;
        assert_eq!(
            reply["status"], "Accepted",
            "ChangeConfiguration {key}={value}: {reply}"
        );
    }

    /// Waits (up to [`SOON`]) until `cond` holds for the wallbox.
    pub async fn wait_sim(&self, what: &str, cond: impl Fn(&SimHandle) -> bool) {
        self.wait_until(what, || cond(&self.sim)).await;
    }

    /// Waits (up to [`SOON`]) until `cond` holds; panics naming `what` otherwise.
    pub async fn wait_until(&self, what: &str, cond: impl Fn() -> bool) {
        let held =
            wait::poll_until(SOON, Duration::from_millis(100), || cond().then_some(())).await;
        assert!(
            held.is_some(),
            "timed out waiting until {what}; {}",
            self.what_was_seen()
        );
    }

    /// The wallbox's lifetime energy register, Wh (what the gateway reads).
    pub fn energy_register(&self) -> i64 {
        let v = self
            .sim
            .register_value("energy")
            .and_then(|v| v.as_f64())
            .expect("the energy register");
        #[allow(clippy::cast_possible_truncation)]
        let wh = v.round() as i64;
        wh
    }

    /// How many rows the state database's outbox holds for `action` (read-only, as another
    /// process would; WAL allows that while the gateway writes).
    pub fn stored_messages(&self, action: &str) -> i64 {
        let Some(conn) = self.read_database() else {
            return 0;
        };
        conn.query_row(
            "SELECT count(*) FROM outbox WHERE action = ?1",
            [action],
            |r| r.get(0),
        )
        .unwrap_or(0)
    }
}

impl Rig {
    /// The state database, opened read-only (as another process would; WAL allows that while
    /// the gateway writes); `None` before the gateway has created it.
    fn read_database(&self) -> Option<rusqlite::Connection> {
        let path = self.state_dir().join("chargebridge.sqlite");
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()
    }

    /// How many transactions the state database holds (open, or with queued messages).
    pub fn stored_transactions(&self) -> i64 {
        let Some(conn) = self.read_database() else {
            return 0;
        };
        conn.query_row("SELECT count(*) FROM transactions", [], |r| r.get(0))
            .unwrap_or(0)
    }

    /// Takes the state database's write lock (`BEGIN IMMEDIATE`) until the returned
    /// connection is dropped: the gateway's commits wait meanwhile.
    pub fn lock_database(&self) -> rusqlite::Connection {
        let path = self.state_dir().join("chargebridge.sqlite");
        let conn = rusqlite::Connection::open(&path).expect("opening the state database");
        conn.execute_batch("BEGIN IMMEDIATE")
            .expect("taking the database's write lock");
        conn
    }

    /// The failed-attempt count stored for the first queued `action`, if one is queued.
    pub fn stored_attempts(&self, action: &str) -> Option<i64> {
        let conn = self.read_database()?;
        conn.query_row(
            "SELECT attempts FROM outbox WHERE action = ?1 ORDER BY seq LIMIT 1",
            [action],
            |r| r.get(0),
        )
        .ok()
    }
}

/// The scenario steps the fault tests repeat.
impl Rig {
    /// A new rig whose gateway has booted with connector 1 Available.
    pub async fn booted() -> Rig {
        let mut rig = Rig::new().await;
        rig.start_available().await;
        rig
    }

    /// Starts the gateway and waits until it has booted with connector 1 Available.
    pub async fn start_available(&mut self) {
        self.start_gateway();
        assert_eq!(self.wait_booted(0).await, "Available");
    }

    /// Starts (another run of) the gateway; returns the event index of the running central
    /// system just before, to wait for what that run sends.
    pub fn restart_gateway(&mut self) -> usize {
        let since = self.csms().mark();
        self.start_gateway();
        since
    }

    /// Starts (another run of) the gateway and waits for its BootNotification and first
    /// status of connector 1; returns the event index it started at and that status.
    pub async fn reboot(&mut self) -> (usize, String) {
        let since = self.restart_gateway();
        let status = self.wait_booted(since).await;
        (since, status)
    }

    /// Waits for a StatusNotification of connector 1 with `status` from index `since` on.
    pub async fn wait_status(&self, since: usize, status: &str, what: &str) -> Value {
        self.wait_call(
            since,
            "StatusNotification",
            |p| p["connectorId"] == 1 && p["status"] == status,
            what,
        )
        .await
    }

    /// Waits for a StopTransaction from index `since` on.
    pub async fn wait_stop(&self, since: usize, what: &str) -> Value {
        self.wait_call(since, "StopTransaction", |_| true, what)
            .await
    }

    /// Waits for the StopTransaction and then connector 1 Available from index `since` on
    /// (`when` completes both descriptions); returns the StopTransaction payload.
    pub async fn wait_stop_then_available(&self, since: usize, when: &str) -> Value {
        let stop = self
            .wait_stop(since, &format!("StopTransaction {when}"))
            .await;
        self.wait_status(since, "Available", &format!("Available {when}"))
            .await;
        stop
    }

    /// Asserts the central system(s) received exactly one StartTransaction and one
    /// StopTransaction so far.
    pub fn assert_one_transaction(&self) {
        let all = self.timeline();
        assert_calls(&all, "StartTransaction", 1, "one StartTransaction");
        assert_calls(&all, "StopTransaction", 1, "one StopTransaction");
    }

    /// Waits until the wallbox's limit register holds `amps`.
    pub async fn wait_limit(&self, amps: f64, what: &str) {
        self.wait_sim(what, |s| s.snapshot().limit_a == Some(amps))
            .await;
    }

    /// Waits until the state database's outbox holds exactly `count` rows for `action`.
    pub async fn wait_stored(&self, action: &str, count: i64, what: &str) {
        self.wait_until(what, || self.stored_messages(action) == count)
            .await;
    }

    /// The wallbox forgets its limit (0 A), as after its own power cycle.
    pub fn clear_limit(&self) {
        self.sim
            .set_register("limit", &chargebridge::devicemap::codec::Value::Number(0.0))
            .expect("writing the simulator's limit register");
        assert_eq!(self.sim.snapshot().limit_a, Some(0.0));
    }

    /// The car leaves; returns the energy register at that moment, Wh.
    pub fn unplug(&self) -> i64 {
        self.sim.unplug();
        self.energy_register()
    }

    /// TransactionMessageAttempts and TransactionMessageRetryInterval (seconds).
    pub async fn retry_policy(&self, attempts: u32, interval_s: u32) {
        self.configure("TransactionMessageAttempts", &attempts.to_string())
            .await;
        self.configure("TransactionMessageRetryInterval", &interval_s.to_string())
            .await;
    }

    /// The central system answers every `action` with a CALLERROR (InternalError).
    pub fn fail_with_callerror(&self, action: &str) {
        self.csms().set_reply(action, callerror());
    }

    /// ChangeAvailability Inoperative for the whole charge point; returns the answer.
    pub async fn make_inoperative(&self) -> Value {
        self.call(
            "ChangeAvailability",
            json!({ "connectorId": 0, "type": "Inoperative" }),
        )
        .await
    }

    /// The value GetConfiguration returns for `key`.
    pub async fn configured(&self, key: &str) -> Value {
        let config = self.call("GetConfiguration", json!({ "key": [key] })).await;
        config["configurationKey"][0]["value"].clone()
    }
}

/// A CALLERROR reply (InternalError) for [`CsmsHandle::set_reply`].
pub fn callerror() -> Option<CsmsReply> {
    Some(CsmsReply::Error(
        ErrorCode::InternalError,
        "cannot process it now".into(),
    ))
}

/// The transactionId of a payload (`i64::MIN` when it has none).
pub fn tx_id(payload: &Value) -> i64 {
    payload["transactionId"].as_i64().unwrap_or(i64::MIN)
}

/// Asserts a StopTransaction names transaction `tx` with `reason` and, when given,
/// `meter_stop` (Wh).
pub fn assert_stop(stop: &Value, tx: i64, reason: &str, meter_stop: Option<i64>) {
    assert_eq!(tx_id(stop), tx, "{stop}");
    assert_eq!(stop["reason"], reason, "{stop}");
    if let Some(wh) = meter_stop {
        assert_eq!(stop["meterStop"].as_i64(), Some(wh), "{stop}");
    }
}

/// Asserts `events` hold exactly `count` `action` CALLs; the message says `what` and lists
/// what arrived.
pub fn assert_calls(events: &[TimedEvent], action: &str, count: usize, what: &str) {
    assert_eq!(
        calls_in(events, action).len(),
        count,
        "{what}:\n{}",
        summary(events)
    );
}

impl Drop for Rig {
    fn drop(&mut self) {
        // The gateway guard kills its process; the simulator and central system stop with
        // their tokens.
        self.gateway = None;
        self.sim_token.cancel();
        if let Some(csms) = &self.csms {
            csms.shutdown();
        }
        drop(self.sim_running.take());
    }
}

async fn start_csms(bind: SocketAddr) -> CsmsHandle {
    // The old listener closes asynchronously after a shutdown: retry the bind for a while.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let opts = CsmsOptions {
            passwords: [(CHARGER.to_owned(), PASSWORD.to_owned())].into(),
            reject_unknown: true,
            bind,
            ..CsmsOptions::default()
        };
        match Csms::start(opts).await {
            Ok(csms) => return csms,
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot start the central system on {bind}: {e}"),
        }
    }
}

fn set_start_reply(csms: &CsmsHandle, id: i64) {
    csms.set_reply(
        "StartTransaction",
        Some(CsmsReply::Result(json!({
            "idTagInfo": { "status": "Accepted" },
            "transactionId": id,
        }))),
    );
}

/// Payloads of the `action` CALLs in `events`, in order.
pub fn calls_in(events: &[TimedEvent], action: &str) -> Vec<Value> {
    payloads(events.iter().map(|t| &t.event), None, action)
}

/// The transaction messages (StartTransaction, MeterValues with a transactionId,
/// StopTransaction) in the order the central system(s) received them.
pub fn transaction_messages(events: &[TimedEvent]) -> Vec<(String, Value)> {
    events
        .iter()
        .filter_map(|t| match &t.event {
            CsmsEvent::Call {
                action, payload, ..
            } if action == "StartTransaction"
                || action == "StopTransaction"
                || (action == "MeterValues" && payload.get("transactionId").is_some()) =>
            {
                Some((action.clone(), payload.clone()))
            }
            _ => None,
        })
        .collect()
}

/// The `timestamp`s of a MeterValues payload's meterValue entries.
pub fn meter_timestamps(payload: &Value) -> Vec<String> {
    payload["meterValue"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|mv| mv["timestamp"].as_str().map(str::to_owned))
        .collect()
}

/// The energy register value of a MeterValues payload, Wh, if it has one.
pub fn meter_energy(payload: &Value) -> Option<f64> {
    payload["meterValue"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|mv| mv["sampledValue"].as_array().into_iter().flatten())
        .find(|sv| {
            sv["measurand"]
                .as_str()
                .is_none_or(|m| m == "Energy.Active.Import.Register")
        })
        .and_then(|sv| sv["value"].as_str())
        .and_then(|v| v.parse().ok())
}

/// A readable list of the events, for failure messages.
pub fn summary(events: &[TimedEvent]) -> String {
    events
        .iter()
        .map(|t| {
            let what = match &t.event {
                CsmsEvent::Call {
                    action, payload, ..
                } => format!("{action} {payload}"),
                other => format!("{other:?}"),
            };
            format!("  {} {what}", t.at.format("%H:%M:%S%.3f"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}
