//! Rig for the smart-charging end-to-end tests and the limit-latency benchmark: the loopback
//! central system (wss, test CA, Basic Auth), one simulated Heidelberg wallbox on Modbus TCP or
//! on an in-process pty pair (RTU, 19200 8E1), and the real gateway loaded from a YAML file.
//!
//! Unlike the e2e rig, the gateway can be stopped and started again on the same `state_dir`
//! (profiles must survive a restart), the simulator's initial registers can be chosen (a short
//! watchdog), and the map can be given a different request delay (to show what the gateway
//! itself costs, apart from the pause the map asks for).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chargebridge::devicemap;
use chargebridge::modbus::PtyPair;
use chargebridge::sim::csms::CsmsHandle;
use chargebridge::sim::{SimArgs, SimHandle};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::common::csms::{Calls, timeline_text};
use crate::common::gateway::{self, Tasks, TlsCsms};
use crate::common::wait;

/// The built-in map the wallbox speaks.
pub const MAP: &str = "heidelberg-energy-control";

/// The charger's OCPP identity.
pub const ID: &str = "SC-1";

/// A generous bound for anything the gateway should do "soon" on a loaded 2-core machine.
pub const SOON: Duration = Duration::from_secs(30);

/// How the charger reaches its wallbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Modbus RTU over a pty pair at 19200 8E1.
    Rtu,
    /// Modbus TCP on loopback.
    Tcp,
}

/// What to start.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Where the wallbox is.
    pub link: Link,
    /// Extra initial register values of the simulator (`watchdog=2000`).
    pub sim_set: Vec<String>,
    /// Replace the map's `request_delay` (a copy of the built-in map is written).
    pub request_delay: Option<&'static str>,
    /// The charger's poll interval.
    pub poll_interval: &'static str,
}

impl Spec {
    /// The defaults for `link`: the map as built in, 500 ms polls.
    pub fn new(link: Link) -> Self {
        Self {
            link,
            sim_set: Vec::new(),
            request_delay: None,
            poll_interval: "500ms",
        }
    }
}

/// Everything started for one test.
#[derive(Debug)]
pub struct SmartRig {
    /// The central system.
    pub csms: CsmsHandle,
    /// The simulated wallbox.
    pub wallbox: SimHandle,
    /// The gateway configuration file.
    pub config_path: PathBuf,
    tasks: Tasks,
    gateway_token: CancellationToken,
    line: Option<PtyPair>,
    dir: tempfile::TempDir,
}

fn password() -> String {
    format!("smart-secret-{ID}")
}

impl SmartRig {
    /// Starts the central system, the simulator and the gateway.
    pub async fn start(spec: Spec) -> SmartRig {
        let token = CancellationToken::new();
        let dir = tempfile::tempdir().expect("tempdir");
        let map = devicemap::resolve(MAP, &[]).expect("built-in map");

        let central =
            TlsCsms::start(dir.path(), HashMap::from([(ID.to_owned(), password())])).await;

        let mut set = vec![
            "layout_version=0x0108".to_owned(),
            "hw_max_current=16".to_owned(),
            "hw_min_current=6".to_owned(),
        ];
        set.extend(spec.sim_set.iter().cloned());
        let mut args = SimArgs {
            map: MAP.into(),
            units: vec![1],
            set,
            ..SimArgs::default()
        };
        let mut line = None;
        match spec.link {
            Link::Rtu => {
                let pair = PtyPair::open().expect("pty pair");
                args.serial = Some(pair.b.clone().into());
                line = Some(pair);
            }
            Link::Tcp => args.tcp = Some(([127, 0, 0, 1], 0).into()),
        }
        let sim = chargebridge::sim::spawn(args, map, token.clone())
            .await
            .expect("simulator");
        let wallbox = sim.units[0].1.clone();
        let tcp_addr = sim.tcp_addr;

        let map_ref = match spec.request_delay {
            None => MAP.to_owned(),
            Some(delay) => {
                let text = std::fs::read_to_string(
                    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                        .join("device-maps")
                        .join(format!("{MAP}.yaml")),
                )
                .expect("the built-in map's source");
                let text = text.replace("request_delay: 100ms", &format!("request_delay: {delay}"));
                let path = dir.path().join("heidelberg-fast.yaml");
                std::fs::write(&path, text).expect("write map copy");
                path.display().to_string()
            }
        };
        let config_path = write_config(
            dir.path(),
            &central,
            line.as_ref().map(|l| l.a.as_str()),
            tcp_addr,
            &map_ref,
            spec.poll_interval,
        );
        let mut rig = SmartRig {
            csms: central.csms,
            wallbox,
            config_path,
            gateway_token: token.child_token(),
            tasks: Tasks {
                token,
                gateway: None,
                sims: vec![sim],
            },
            line,
            dir,
        };
        rig.start_gateway();
        rig
    }

    /// Starts the gateway from the configuration file (again, after [`Self::stop_gateway`]).
    pub fn start_gateway(&mut self) {
        assert!(
            self.tasks.gateway.is_none(),
            "the gateway is already running"
        );
        self.gateway_token = self.tasks.token.child_token();
        self.tasks.gateway = Some(gateway::spawn(
            &self.config_path,
            self.gateway_token.clone(),
        ));
    }

    /// Stops the gateway (as a service stop would) and checks it ended cleanly.
    pub async fn stop_gateway(&mut self) {
        self.gateway_token.cancel();
        if let Some(g) = self.tasks.gateway.take() {
            gateway::join(g, SOON).await;
        }
    }

    /// Stops everything and checks the gateway ended cleanly.
    pub async fn stop(mut self) {
        self.stop_gateway().await;
        self.csms.shutdown();
        self.tasks.stop(SOON).await;
        drop(self.line.take());
    }

    /// Sends a CALL from the central system and returns the answer.
    pub async fn call(&self, action: &str, payload: Value) -> Value {
        self.csms
            .call(ID, action, payload)
            .await
            .unwrap_or_else(|e| panic!("{action}: {e}"))
    }

    /// Sends SetChargingProfile; asserts it is Accepted.
    pub async fn set_profile(&self, connector: u64, profile: Value) {
        let reply = self
            .call(
                "SetChargingProfile",
                json!({"connectorId": connector, "csChargingProfiles": profile}),
            )
            .await;
        assert_eq!(reply["status"], "Accepted", "SetChargingProfile {profile}");
    }

    /// Asks the central system to set a configuration key; asserts it is Accepted.
    pub async fn configure(&self, key: &str, value: &str) {
        let reply = self
            .call("ChangeConfiguration", json!({"key": key, "value": value}))
            .await;
        assert_eq!(reply["status"], "Accepted", "{key}={value}");
    }

    /// Waits for a CALL of `action` from the charger matching `pred` among events from
    /// `since` on; panics with the timeline when it does not come within [`SOON`].
    pub async fn expect_call(
        &self,
        since: usize,
        action: &str,
        pred: impl Fn(&Value) -> bool,
        what: &str,
    ) -> Value {
        let seen = || format!("timeline:\n{}", self.timeline());
        Calls::new(&self.csms, SOON)
            .expect(since, Some(ID), action, pred, what, seen)
            .await
    }

    /// Waits for a StatusNotification of connector 1 with `status`.
    pub async fn expect_status(&self, since: usize, status: &str) {
        self.expect_call(
            since,
            "StatusNotification",
            |p| p["connectorId"] == 1 && p["status"] == status,
            status,
        )
        .await;
    }

    /// Waits until the limit register holds `raw` (0.1 A units), with `what` in the message.
    pub async fn expect_limit_raw(&self, raw: u16, what: &str) {
        let wb = &self.wallbox;
        eventually(&format!("limit register {raw} ({what})"), || {
            (wb.snapshot().limit_raw == [raw]).then_some(())
        })
        .await;
    }

    /// Boots, plugs the EV in and waits for the transaction and Charging at 16 A (raw 160);
    /// returns the transactionId the central system handed out.
    pub async fn charging(&self) -> i64 {
        self.expect_call(0, "BootNotification", |_| true, "boot")
            .await;
        self.expect_status(0, "Available").await;
        // Samples every second carry the transactionId the central system returned.
        self.configure("MeterValueSampleInterval", "1").await;
        let since = self.csms.mark();
        self.wallbox.plug();
        self.expect_call(since, "StartTransaction", |_| true, "after plug-in")
            .await;
        self.expect_status(since, "Charging").await;
        self.expect_limit_raw(160, "max_current while charging")
            .await;
        let mv = self
            .expect_call(
                since,
                "MeterValues",
                |p| p.get("transactionId").is_some(),
                "a sample of the transaction",
            )
            .await;
        mv["transactionId"].as_i64().expect("integer transactionId")
    }

    /// The central system's events, one a line, for failure messages.
    pub fn timeline(&self) -> String {
        timeline_text(&self.csms.timeline(), None)
    }
}

impl Drop for SmartRig {
    fn drop(&mut self) {
        // A failed test still stops every task it started (the tasks stop with `tasks`).
        self.csms.shutdown();
    }
}

fn write_config(
    dir: &std::path::Path,
    central: &TlsCsms,
    rtu_port: Option<&str>,
    tcp_addr: Option<SocketAddr>,
    map: &str,
    poll_interval: &str,
) -> PathBuf {
    let mut yaml = central.config_head(dir, &central.gateway_url());
    if let Some(port) = rtu_port {
        yaml.push_str(&gateway::rs485_bus(port));
    }
    let secret = gateway::write_password(dir, ID, &password());
    let link = match tcp_addr {
        Some(addr) => format!("tcp: {addr}"),
        None => "bus: rs485-1".to_owned(),
    };
    let _ = write!(
        yaml,
        "chargers:\n  - id: {ID}\n    device_map: {map}\n    {link}\n    unit: 1\n    \
         password_file: {secret}\n    phases: 3\n    voltage: 230\n    max_current: 16\n    \
         failsafe_current: 6\n    poll_interval: {poll_interval}\n    \
         authorization: {{ mode: free, id_tag: TAG-{ID} }}\n",
        secret = secret.display()
    );
    gateway::write_config(dir, &yaml)
}

/// Polls `f` every 20 ms until it returns `Some`, or panics with `what` after [`SOON`].
pub async fn eventually<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    wait::eventually(SOON, Duration::from_millis(20), what, f).await
}

/// A profile with one schedule: `periods` as (startPeriod s, limit) in `unit` (`A` or `W`);
/// `kind` is `Absolute` (starting now unless a `startSchedule` is added), `Relative` or
/// `Recurring` (add `recurrencyKind` and `startSchedule`).
pub fn profile(
    id: i64,
    purpose: &str,
    stack_level: i64,
    kind: &str,
    unit: &str,
    periods: &[(i64, f64)],
) -> Value {
    let periods: Vec<Value> = periods
        .iter()
        .map(|(start, limit)| json!({"startPeriod": start, "limit": limit}))
        .collect();
    json!({
        "chargingProfileId": id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": {
            "chargingRateUnit": unit,
            "chargingSchedulePeriod": periods,
        },
    })
}

/// A TxProfile for transaction `tx` holding `amps` from the transaction start.
pub fn tx_profile(id: i64, tx: i64, amps: f64) -> Value {
    let mut p = profile(id, "TxProfile", 0, "Relative", "A", &[(0, amps)]);
    p["transactionId"] = json!(tx);
    p
}
