//! Shared rig for the end-to-end tests: the loopback central system (wss with a throwaway CA,
//! Basic Auth), simulated Heidelberg wallboxes on an in-process pty pair and/or Modbus TCP, and
//! the real gateway loaded from a YAML file written into a temporary directory, the way
//! `chargebridge demo` wires them. Everything is torn down by [`Rig::stop`] (and, as a fallback,
//! when the rig is dropped: the shared cancellation token stops every task).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chargebridge::devicemap;
use chargebridge::modbus::PtyPair;
use chargebridge::sim::csms::{Csms, CsmsHandle, CsmsOptions};
use chargebridge::sim::pki::TestPki;
use chargebridge::sim::{SimArgs, SimHandle};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::common::csms::{Calls, payloads, timeline_text};
use crate::common::gateway::{self, Tasks, TlsCsms};
use crate::common::wait;

/// The built-in map every rig wallbox speaks.
pub const MAP: &str = "heidelberg-energy-control";

/// A generous bound for anything the gateway should do "soon" on a loaded 2-core machine.
pub const SOON: Duration = Duration::from_secs(30);

/// How a charger reaches its wallbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// On the shared simulated RS-485 line, at this unit id.
    Rtu(u8),
    /// On the Modbus TCP simulator, at this unit id.
    Tcp(u8),
}

/// One charger of the gateway configuration.
#[derive(Clone, Debug)]
pub struct ChargerSpec {
    /// OCPP identity.
    pub id: String,
    /// Where its wallbox is.
    pub link: Link,
}

impl ChargerSpec {
    /// A charger on the RS-485 line.
    pub fn rtu(id: &str, unit: u8) -> Self {
        Self {
            id: id.to_owned(),
            link: Link::Rtu(unit),
        }
    }

    /// A charger on Modbus TCP.
    pub fn tcp(id: &str, unit: u8) -> Self {
        Self {
            id: id.to_owned(),
            link: Link::Tcp(unit),
        }
    }
}

/// What to start.
#[derive(Clone, Debug)]
pub struct RigSpec {
    /// The gateway's chargers.
    pub chargers: Vec<ChargerSpec>,
    /// Unit ids the RS-485 simulator serves (a configured unit missing here never answers).
    pub rtu_units: Vec<u8>,
    /// Unit ids the Modbus TCP simulator serves.
    pub tcp_units: Vec<u8>,
    /// The wallboxes' lifetime energy counter at power-on, Wh.
    pub energy_wh: u32,
    /// The central system expects these passwords instead of the ones the gateway is given.
    pub csms_passwords: Option<HashMap<String, String>>,
    /// Point the gateway at this URL instead of the rig's central system.
    pub url_override: Option<String>,
}

impl RigSpec {
    /// A spec with these chargers; the simulators serve exactly the units they use.
    pub fn new(chargers: Vec<ChargerSpec>) -> Self {
        let mut rtu_units = Vec::new();
        let mut tcp_units = Vec::new();
        for c in &chargers {
            match c.link {
                Link::Rtu(u) => rtu_units.push(u),
                Link::Tcp(u) => tcp_units.push(u),
            }
        }
        Self {
            chargers,
            rtu_units,
            tcp_units,
            energy_wh: 1_250_000,
            csms_passwords: None,
            url_override: None,
        }
    }
}

/// Everything started for one test.
#[derive(Debug)]
pub struct Rig {
    /// The central system (replace it with [`Rig::restart_csms`]).
    pub csms: CsmsHandle,
    /// The simulated wallboxes by charger id.
    pub wallboxes: HashMap<String, SimHandle>,
    /// The gateway configuration file.
    pub config_path: PathBuf,
    pki: TestPki,
    csms_opts: CsmsOptions,
    tasks: Tasks,
    line: Option<PtyPair>,
    dir: tempfile::TempDir,
}

/// The password the gateway is given for `id`.
pub fn password(id: &str) -> String {
    format!("e2e-secret-{id}")
}

impl Rig {
    /// Starts the central system, the simulators and the gateway.
    pub async fn start(spec: RigSpec) -> Rig {
        let token = CancellationToken::new();
        let dir = tempfile::tempdir().expect("tempdir");
        let map = devicemap::resolve(MAP, &[]).expect("built-in map");

        let passwords = spec.csms_passwords.clone().unwrap_or_else(|| {
            spec.chargers
                .iter()
                .map(|c| (c.id.clone(), password(&c.id)))
                .collect()
        });
        let central = TlsCsms::start(dir.path(), passwords).await;

        let set = vec![
            "layout_version=0x0108".to_owned(),
            "hw_max_current=16".to_owned(),
            "hw_min_current=6".to_owned(),
            format!("energy={}", spec.energy_wh),
        ];
        let mut sims = Vec::new();
        let mut wallboxes = HashMap::new();
        let mut line = None;
        if spec.chargers.iter().any(|c| matches!(c.link, Link::Rtu(_))) {
            let pair = PtyPair::open().expect("pty pair");
            let sim = chargebridge::sim::spawn(
                SimArgs {
                    map: MAP.into(),
                    serial: Some(pair.b.clone().into()),
                    units: spec.rtu_units.clone(),
                    set: set.clone(),
                    ..SimArgs::default()
                },
                map.clone(),
                token.clone(),
            )
            .await
            .expect("RS-485 simulator");
            for c in &spec.chargers {
                if let Link::Rtu(u) = c.link
                    && let Some((_, h)) = sim.units.iter().find(|(unit, _)| *unit == u)
                {
                    wallboxes.insert(c.id.clone(), h.clone());
                }
            }
            sims.push(sim);
            line = Some(pair);
        }
        let mut tcp_addr: Option<SocketAddr> = None;
        if spec.chargers.iter().any(|c| matches!(c.link, Link::Tcp(_))) {
            let sim = chargebridge::sim::spawn(
                SimArgs {
                    map: MAP.into(),
                    tcp: Some(([127, 0, 0, 1], 0).into()),
                    units: spec.tcp_units.clone(),
                    set: set.clone(),
                    ..SimArgs::default()
                },
                map.clone(),
                token.clone(),
            )
            .await
            .expect("TCP simulator");
            tcp_addr = sim.tcp_addr;
            for c in &spec.chargers {
                if let Link::Tcp(u) = c.link
                    && let Some((_, h)) = sim.units.iter().find(|(unit, _)| *unit == u)
                {
                    wallboxes.insert(c.id.clone(), h.clone());
                }
            }
            sims.push(sim);
        }

        let url = spec
            .url_override
            .clone()
            .unwrap_or_else(|| central.gateway_url());
        let mut yaml = central.config_head(dir.path(), &url);
        write_chargers(
            &mut yaml,
            dir.path(),
            line.as_ref().map(|l| l.a.as_str()),
            tcp_addr,
            &spec.chargers,
        );
        let config_path = gateway::write_config(dir.path(), &yaml);
        let gateway = gateway::spawn(&config_path, token.clone());
        Rig {
            csms: central.csms,
            wallboxes,
            config_path,
            pki: central.pki,
            csms_opts: central.opts,
            tasks: Tasks {
                token,
                gateway: Some(gateway),
                sims,
            },
            line,
            dir,
        }
    }

    /// The simulated wallbox of charger `id`.
    pub fn wallbox(&self, id: &str) -> &SimHandle {
        self.wallboxes
            .get(id)
            .unwrap_or_else(|| panic!("no simulated wallbox for {id}"))
    }

    /// Whether the gateway task has ended (it should run until [`Rig::stop`]).
    pub fn gateway_ended(&self) -> bool {
        self.tasks.gateway_ended()
    }

    /// Stops the central system and starts a fresh one on the same port (same PKI, same
    /// passwords): a central system that went away and came back.
    pub async fn restart_csms(&mut self) {
        let addr = self.csms.addr();
        self.csms.shutdown();
        let opts = CsmsOptions {
            bind: addr,
            ..self.csms_opts.clone()
        };
        // The old listener closes asynchronously; retry the bind for a moment.
        let mut last = None;
        for _ in 0..50 {
            match Csms::start(opts.clone()).await {
                Ok(c) => {
                    self.csms = c;
                    return;
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("cannot restart the central system on {addr}: {last:?}");
    }

    /// Stops the central system only (the gateway goes offline); [`Rig::restart_csms`] brings
    /// one back on the same port.
    pub fn stop_csms(&self) {
        self.csms.shutdown();
    }

    /// Stops the gateway and the simulators and checks the gateway ended cleanly.
    pub async fn stop(mut self) {
        self.csms.shutdown();
        self.tasks.stop(SOON).await;
        drop(self.line.take());
    }

    /// Asks the central system to set a configuration key on `id`; asserts it is Accepted.
    pub async fn configure(&self, id: &str, key: &str, value: &str) {
        let reply = self
            .csms
            .call(
                id,
                "ChangeConfiguration",
                json!({"key": key, "value": value}),
            )
            .await
            .unwrap_or_else(|e| panic!("ChangeConfiguration {key} on {id}: {e}"));
        assert_eq!(
            reply["status"], "Accepted",
            "ChangeConfiguration {key}={value} on {id}"
        );
    }

    /// Waits for a CALL from `id` matching `pred` among events from `since` on; panics
    /// with the timeline when it does not come within [`SOON`].
    pub async fn expect_call(
        &self,
        since: usize,
        id: &str,
        action: &str,
        pred: impl Fn(&Value) -> bool,
        what: &str,
    ) -> Value {
        let seen = || format!("timeline:\n{}", self.timeline());
        Calls::new(&self.csms, SOON)
            .expect(since, Some(id), action, pred, what, seen)
            .await
    }

    /// Waits for a StatusNotification of `id` for `connector` with `status`.
    pub async fn expect_status(
        &self,
        since: usize,
        id: &str,
        connector: u64,
        status: &str,
    ) -> Value {
        self.expect_call(
            since,
            id,
            "StatusNotification",
            |p| p["connectorId"] == connector && p["status"] == status,
            &format!("connector {connector} {status}"),
        )
        .await
    }

    /// Every CALL of `action` from `id` so far (from index `since` on).
    pub fn calls(&self, since: usize, id: &str, action: &str) -> Vec<Value> {
        payloads(self.csms.events().iter().skip(since), Some(id), action)
    }

    /// The central system's events, one a line, for failure messages.
    pub fn timeline(&self) -> String {
        timeline_text(&self.csms.timeline(), None)
    }

    /// The temporary directory holding the configuration.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The test PKI.
    pub fn pki(&self) -> &TestPki {
        &self.pki
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // A failed test still stops every task it started (the tasks stop with `tasks`).
        self.csms.shutdown();
    }
}

/// Appends the buses and `chargers` sections to `yaml`, writing each charger's password file
/// into `dir`.
fn write_chargers(
    yaml: &mut String,
    dir: &Path,
    rtu_port: Option<&str>,
    tcp_addr: Option<SocketAddr>,
    chargers: &[ChargerSpec],
) {
    if let Some(port) = rtu_port {
        yaml.push_str(&gateway::rs485_bus(port));
    }
    yaml.push_str("chargers:\n");
    for c in chargers {
        let secret = gateway::write_password(dir, &c.id, &password(&c.id));
        let link = match c.link {
            Link::Rtu(u) => format!("bus: rs485-1\n    unit: {u}"),
            Link::Tcp(u) => format!(
                "tcp: {}\n    unit: {u}",
                tcp_addr.expect("a TCP simulator for a TCP charger")
            ),
        };
        let _ = write!(
            yaml,
            "  - id: {id}\n    device_map: {MAP}\n    {link}\n    password_file: {secret}\n    \
             max_current: 16\n    failsafe_current: 6\n    poll_interval: 500ms\n    \
             authorization: {{ mode: free, id_tag: TAG-{id} }}\n",
            id = c.id,
            secret = secret.display()
        );
    }
}

/// Polls `f` every 100 ms until it returns `Some`, or panics with `what` after [`SOON`].
pub async fn eventually<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    wait::eventually(SOON, Duration::from_millis(100), what, f).await
}
