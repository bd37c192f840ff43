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
use chargebridge::sim::csms::{Csms, CsmsEvent, CsmsHandle, CsmsOptions, CsmsReply, TimedEvent};
use chargebridge::sim::{RunningSim, SimArgs, SimHandle};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

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
        let found = self
            .csms()
            .wait_for_since(
                since,
                |e| matches!(e, CsmsEvent::Call { action: a, payload, .. } if a == action && pred(payload)),
                timeout,
            )
            .await;
        match found {
            Some(CsmsEvent::Call { payload, .. }) => payload,
            _ => panic!(
                "timed out waiting for {what}; the central system saw:\n{}\n--- gateway log ---\n{}",
                summary(&self.timeline()),
                self.log_text()
            ),
        }
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
        let deadline = tokio::time::Instant::now() + SOON;
        while !cond() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting until {what}; the central system saw:\n{}\n--- gateway log ---\n{}",
                summary(&self.timeline()),
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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
        let path = self.state_dir().join("chargebridge.sqlite");
        let Ok(conn) = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        ) else {
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
    /// How many transactions the state database holds (open, or with queued messages).
    pub fn stored_transactions(&self) -> i64 {
        let path = self.state_dir().join("chargebridge.sqlite");
        let Ok(conn) = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        ) else {
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
        let path = self.state_dir().join("chargebridge.sqlite");
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .ok()?;
        conn.query_row(
            "SELECT attempts FROM outbox WHERE action = ?1 ORDER BY seq LIMIT 1",
            [action],
            |r| r.get(0),
        )
        .ok()
    }
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
    events
        .iter()
        .filter_map(|t| match &t.event {
            CsmsEvent::Call {
                action: a, payload, ..
            } if a == action => Some(payload.clone()),
            _ => None,
        })
        .collect()
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
