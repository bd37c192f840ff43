//! Rig for driving any device map end to end: the loopback central system (wss with a
//! throwaway CA, Basic Auth), one Modbus TCP simulator per charger speaking that charger's map,
//! and the real gateway loaded from a YAML file written into a temporary directory. Unlike
//! `e2e_support` (which always speaks the Heidelberg map) every charger here picks its own map.
//! Everything is torn down by [`MapRig::stop`], and as a fallback when the rig is dropped.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chargebridge::devicemap::{self, DeviceMap};
use chargebridge::sim::csms::CsmsHandle;
use chargebridge::sim::{SimArgs, SimHandle};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::common::csms::{Calls, calls_of, payloads, timeline_text};
use crate::common::gateway::{self, Tasks, TlsCsms};
use crate::common::wait;

/// A generous bound for anything the gateway should do "soon": many chargers share one
/// loaded 2-core machine.
pub const SOON: Duration = Duration::from_secs(60);

/// The gateway's installer limit for every charger, A (at most every shipped map's maximum).
pub const MAX_CURRENT: f64 = 16.0;

/// One charger of the rig: an OCPP identity, its map and the simulator initial values.
#[derive(Clone, Debug)]
pub struct MapCharger {
    /// OCPP identity.
    pub id: String,
    /// Built-in map name.
    pub map: String,
    /// `NAME=VALUE` register values the simulated wallbox starts with.
    pub set: Vec<String>,
}

/// One running charger: its map and its simulated wallbox.
#[derive(Clone, Debug)]
pub struct Wallbox {
    /// OCPP identity.
    pub id: String,
    /// The map the gateway and the simulator both speak.
    pub map: Arc<DeviceMap>,
    /// The simulated wallbox.
    pub sim: SimHandle,
}

/// Everything started for one test.
#[derive(Debug)]
pub struct MapRig {
    /// The central system.
    pub csms: CsmsHandle,
    /// The chargers by id.
    pub wallboxes: HashMap<String, Wallbox>,
    tasks: Tasks,
    dir: tempfile::TempDir,
}

/// The password the gateway is given for `id`.
pub fn password(id: &str) -> String {
    format!("mapsproof-secret-{id}")
}

/// The phase voltage of every simulated wallbox and of the gateway configuration: the
/// highest the configuration accepts, so the coarse energy registers (Vestel counts 0.1 kWh)
/// move within seconds. The two must agree: the gateway converts a power limit (Delta) from
/// amperes with the configured voltage, the simulator back with its own.
pub const VOLTAGE: f64 = 1000.0;

impl MapRig {
    /// Starts the central system, one TCP simulator per charger and the gateway.
    pub async fn start(chargers: &[MapCharger]) -> MapRig {
        let token = CancellationToken::new();
        let dir = tempfile::tempdir().expect("tempdir");
        let passwords = chargers
            .iter()
            .map(|c| (c.id.clone(), password(&c.id)))
            .collect();
        let central = TlsCsms::start(dir.path(), passwords).await;

        let mut sims = Vec::new();
        let mut wallboxes = HashMap::new();
        let mut yaml = central.config_head(dir.path(), &central.gateway_url());
        yaml.push_str("chargers:\n");
        for c in chargers {
            let map = devicemap::resolve(&c.map, &[]).expect("built-in map");
            let sim = chargebridge::sim::spawn(
                SimArgs {
                    map: c.map.clone(),
                    tcp: Some(([127, 0, 0, 1], 0).into()),
                    voltage: Some(VOLTAGE),
                    set: c.set.clone(),
                    ..SimArgs::default()
                },
                map.clone(),
                token.clone(),
            )
            .await
            .unwrap_or_else(|e| panic!("{}: simulator: {e:#}", c.map));
            let (unit, handle) = sim.units[0].clone();
            let phases = handle.snapshot().phases;
            let secret = gateway::write_password(dir.path(), &c.id, &password(&c.id));
            let _ = write!(
                yaml,
                "  - id: {id}\n    device_map: {map}\n    tcp: {addr}\n    unit: {unit}\n    \
                 password_file: {secret}\n    phases: {phases}\n    voltage: {VOLTAGE}\n    \
                 max_current: {MAX_CURRENT}\n    poll_interval: 500ms\n    \
                 authorization: {{ mode: free, id_tag: TAG-{id} }}\n",
                id = c.id,
                map = c.map,
                addr = sim.tcp_addr.expect("TCP simulator address"),
                secret = secret.display(),
            );
            wallboxes.insert(
                c.id.clone(),
                Wallbox {
                    id: c.id.clone(),
                    map: Arc::new(map),
                    sim: handle,
                },
            );
            sims.push(sim);
        }
        let config_path = gateway::write_config(dir.path(), &yaml);
        let gateway = gateway::spawn(&config_path, token.clone());
        MapRig {
            csms: central.csms,
            wallboxes,
            tasks: Tasks {
                token,
                gateway: Some(gateway),
                sims,
            },
            dir,
        }
    }

    /// The charger `id`.
    pub fn wallbox(&self, id: &str) -> &Wallbox {
        self.wallboxes
            .get(id)
            .unwrap_or_else(|| panic!("no charger {id}"))
    }

    /// Whether the gateway task has ended (it should run until [`MapRig::stop`]).
    pub fn gateway_ended(&self) -> bool {
        self.tasks.gateway_ended()
    }

    /// Stops the gateway and the simulators and checks the gateway ended cleanly.
    pub async fn stop(mut self) {
        self.csms.shutdown();
        self.tasks.stop(SOON).await;
    }

    /// Waits for a CALL from `id` matching `pred` among events from `since` on; panics with
    /// that charger's map, simulator state and timeline when it does not come within [`SOON`].
    pub async fn expect_call(
        &self,
        since: usize,
        id: &str,
        action: &str,
        pred: impl Fn(&Value) -> bool,
        what: &str,
    ) -> Value {
        let wallbox = self.wallbox(id);
        let seen = || {
            let (map, sim) = (&wallbox.map.name, wallbox.sim.snapshot());
            format!("map {map}; sim: {sim:?}; timeline:\n{}", self.timeline(id))
        };
        Calls::new(&self.csms, SOON)
            .expect(since, Some(id), action, pred, what, seen)
            .await
    }

    /// Waits for a StatusNotification of `id` for `connector` with `status`.
    pub async fn expect_status(&self, since: usize, id: &str, connector: u64, status: &str) {
        self.expect_call(
            since,
            id,
            "StatusNotification",
            |p| p["connectorId"] == connector && p["status"] == status,
            &format!("connector {connector} {status}"),
        )
        .await;
    }

    /// Every CALL of `action` from `id` from index `since` on.
    pub fn calls(&self, since: usize, id: &str, action: &str) -> Vec<Value> {
        payloads(self.csms.events().iter().skip(since), Some(id), action)
    }

    /// What `id` told the central system about connector 1 from index `since` on, in order:
    /// each StatusNotification's status, and the transaction CALLs by action name.
    pub fn connector_1_story(&self, since: usize, id: &str) -> Vec<String> {
        let events = self.csms.events();
        calls_of(events.iter().skip(since))
            .filter(|(charger, _, _)| *charger == id)
            .filter_map(|(_, action, payload)| match action {
                "StatusNotification" if payload["connectorId"] == 1 => {
                    payload["status"].as_str().map(ToOwned::to_owned)
                }
                "StartTransaction" | "StopTransaction" => Some(action.to_owned()),
                _ => None,
            })
            .collect()
    }

    /// The central system's events about `id`, one a line, for failure messages.
    pub fn timeline(&self, id: &str) -> String {
        timeline_text(&self.csms.timeline(), Some(id))
    }

    /// The temporary directory holding the configuration.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for MapRig {
    fn drop(&mut self) {
        // A failed test still stops every task it started (the tasks stop with `tasks`).
        self.csms.shutdown();
    }
}

/// Polls `f` every 100 ms until it returns `Some`, or panics with `what` after [`SOON`].
pub async fn eventually<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    wait::eventually(SOON, Duration::from_millis(100), what, f).await
}
