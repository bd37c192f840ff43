//! `chargebridge run`: wires a loaded configuration into bus tasks, OCPP sessions and charger
//! tasks, serves the HTTP endpoints, applies a new configuration on SIGHUP, and stops
//! everything on shutdown.
//!
//! Reload rules: a charger whose effective settings did not change (its own entry, its device
//! map, the central system, its bus's connection and timing) keeps running undisturbed: its
//! WebSocket is not reconnected and its transaction goes on. A changed charger is stopped and
//! started again; a removed one is stopped; a new one is started. A bus is started again only
//! when its connection settings changed. A configuration that does not load is rejected as a
//! whole and the running one is kept.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use indexmap::IndexMap;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::charger::device::DeviceLink;
use crate::charger::keys::ConfigKeys;
use crate::charger::machine::{AuthMode, Charger, ChargerSettings};
use crate::charger::task::run_charger;
use crate::config::{self, ChargerConfig, Config, CsmsConfig, HttpConfig, Link, Timing};
use crate::modbus::{BusHandle, DeviceTiming, Endpoint, spawn_bus};
use crate::ocpp::session::{SessionConfig, SessionHandle, spawn_session};
use crate::ocpp::tls;
use crate::security::{self, SecurityConfig, SecurityState};
use crate::store::{Store, StoreHandle};
use crate::telemetry::{ChargerTelemetry, Telemetry};

/// Where a new configuration comes from on reload, and when to reload.
pub struct Reload {
    /// One message per reload request (SIGHUP).
    pub requests: mpsc::Receiver<()>,
    /// Loads and validates the configuration with the same loader as `run`; the error is the
    /// located diagnostic text.
    pub load: Box<dyn Fn() -> Result<Config, String> + Send>,
}

impl std::fmt::Debug for Reload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reload").finish_non_exhaustive()
    }
}

/// Starts every bus and charger of `config` and the HTTP endpoints; returns when `shutdown` is
/// cancelled and all tasks have stopped.
///
/// # Errors
/// TLS material that cannot be loaded (CA file, client certificates).
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    run_with_reload(config, None, shutdown).await
}

/// [`run`], applying a new configuration on each reload request.
///
/// # Errors
/// TLS material of the first configuration that cannot be loaded.
pub async fn run_with_reload(
    config: Config,
    reload: Option<Reload>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    warn_about_secret_files(&config);
    let telemetry = Telemetry::new().context("setting up metrics")?;
    // Monitoring is secondary to charging: a port in use is logged, the gateway runs on.
    if let Err(e) = start_http(&config.http, telemetry.clone(), shutdown.clone()).await {
        tracing::error!("{e}");
    }
    // Read once at start; a reload that changes them says so.
    let mut restart_only = RestartOnly::of(&config);
    let mut gateway = Gateway::start(config, telemetry, &shutdown).await?;
    let (mut requests, load) = match reload {
        Some(r) => (Some(r.requests), Some(r.load)),
        None => (None, None),
    };
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(()) = async {
                match requests.as_mut() {
                    Some(r) => r.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                let Some(load) = load.as_ref() else { continue };
                tracing::info!("reloading the configuration");
                match load() {
                    Ok(new) => {
                        let wanted = RestartOnly::of(&new);
                        if wanted != restart_only {
                            tracing::warn!("`state_dir`, `http` and `log` changes take effect at the next restart");
                        }
                        restart_only = wanted;
                        match gateway.reload(new).await {
                        Ok(summary) => tracing::info!(
                            kept = summary.kept.len(),
                            restarted = ?summary.restarted,
                            added = ?summary.added,
                            removed = ?summary.removed,
                            "configuration reloaded"
                        ),
                        Err(e) => tracing::error!("reload rejected, keeping the running configuration: {e:#}"),
                        }
                    }
                    Err(e) => tracing::error!("reload rejected, keeping the running configuration:\n{e}"),
                }
            }
        }
    }
    gateway.stop().await;
    Ok(())
}

/// Binds `http.listen` and serves the HTTP endpoints until `shutdown`; returns the bound
/// address (useful with port 0).
///
/// # Errors
/// The address cannot be bound.
pub async fn start_http(
    http: &HttpConfig,
    telemetry: Telemetry,
    shutdown: CancellationToken,
) -> Result<SocketAddr, crate::http::BindError> {
    let listener = crate::http::bind(http.listen).await?;
    let addr = listener.local_addr().unwrap_or(http.listen);
    tracing::info!(%addr, "serving /metrics, /status, /status.json and /healthz");
    tokio::spawn(crate::http::serve(listener, telemetry, shutdown));
    Ok(addr)
}

/// The settings a reload does not apply (they are read once at start).
#[derive(Debug, PartialEq)]
struct RestartOnly {
    state_dir: std::path::PathBuf,
    http: HttpConfig,
    log: config::LogConfig,
}

impl RestartOnly {
    fn of(config: &Config) -> Self {
        Self {
            state_dir: config.state_dir.clone(),
            http: config.http.clone(),
            log: config.log.clone(),
        }
    }
}

/// How long a stopped charger's WebSocket may take to close before its successor starts.
const SESSION_CLOSE_WAIT: Duration = Duration::from_secs(3);

/// What a reload did, by charger id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    /// Unchanged and left running.
    pub kept: Vec<String>,
    /// Changed: stopped and started again.
    pub restarted: Vec<String>,
    /// New.
    pub added: Vec<String>,
    /// No longer configured: stopped.
    pub removed: Vec<String>,
}

/// Everything that decides how a charger runs; equal settings mean it can keep running.
#[derive(Clone, Debug)]
struct EffectiveSettings {
    charger: ChargerConfig,
    csms: CsmsConfig,
    endpoint: Endpoint,
    timing: Timing,
}

impl PartialEq for EffectiveSettings {
    fn eq(&self, other: &Self) -> bool {
        // Destructured without `..` so that a new field must be considered here.
        let ChargerConfig {
            id,
            device_map,
            device,
            link,
            unit,
            password,
            password_file: _,
            client_cert,
            client_key,
            phases,
            voltage,
            max_current,
            failsafe_current,
            poll_interval,
            authorization,
        } = &self.charger;
        let o = &other.charger;
        *id == o.id
            && *device_map == o.device_map
            && **device == *o.device
            && *link == o.link
            && *unit == o.unit
            // The file a password came from does not matter, only the password does.
            && *password == o.password
            && *client_cert == o.client_cert
            && *client_key == o.client_key
            && *phases == o.phases
            && voltage.to_bits() == o.voltage.to_bits()
            && max_current.to_bits() == o.max_current.to_bits()
            && failsafe_current.map(f64::to_bits) == o.failsafe_current.map(f64::to_bits)
            && *poll_interval == o.poll_interval
            && *authorization == o.authorization
            && self.csms == other.csms
            && self.endpoint == other.endpoint
            && self.timing == other.timing
    }
}

#[derive(Debug)]
struct RunningCharger {
    settings: EffectiveSettings,
    bus_key: String,
    token: CancellationToken,
    task: JoinHandle<()>,
    session: SessionHandle,
}

impl RunningCharger {
    /// Cancels the charger and waits for its task to end and its WebSocket to close, so that
    /// a successor with the same identity never overlaps it at the central system.
    async fn stop(self, id: &str) {
        self.token.cancel();
        if self.task.await.is_err() {
            tracing::warn!(charger = %id, "charger task ended abnormally");
        }
        let deadline = tokio::time::Instant::now() + SESSION_CLOSE_WAIT;
        while self.session.is_connected() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[derive(Debug)]
struct RunningBus {
    endpoint: Endpoint,
    handle: BusHandle,
    token: CancellationToken,
}

/// The running buses and chargers of one configuration.
#[derive(Debug)]
pub struct Gateway {
    telemetry: Telemetry,
    store: StoreHandle,
    shutdown: CancellationToken,
    buses: HashMap<String, RunningBus>,
    chargers: IndexMap<String, RunningCharger>,
}

impl Gateway {
    /// Opens the state database in `state_dir` and starts every bus and charger of
    /// `config`, each restored from its stored state. Must be called within a Tokio runtime.
    ///
    /// # Errors
    /// The state database cannot be opened, or TLS material cannot be loaded (CA file, client
    /// certificates); nothing is started then.
    pub async fn start(
        config: Config,
        telemetry: Telemetry,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let tls = tls_configs(&config, &config.chargers.iter().collect::<Vec<_>>())?;
        let store = StoreHandle::spawn(Store::open(&config.state_dir).context("state database")?);
        let mut gateway = Gateway {
            telemetry,
            store,
            shutdown: shutdown.child_token(),
            buses: HashMap::new(),
            chargers: IndexMap::new(),
        };
        for charger in &config.chargers {
            let tls = tls.get(&charger.id).cloned().flatten();
            gateway.start_charger(&config, charger, tls).await?;
        }
        tracing::info!(
            chargers = gateway.chargers.len(),
            buses = gateway.buses.len(),
            "gateway running"
        );
        Ok(gateway)
    }

    /// The telemetry the tasks report to.
    #[must_use]
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// Applies a new configuration: unchanged chargers keep running, changed ones are
    /// started again, removed ones stopped, new ones started.
    ///
    /// # Errors
    /// TLS material of a (re)started charger that cannot be loaded (nothing is changed then),
    /// or the stored state of a (re)started charger that cannot be read (the chargers before
    /// it in the file have been started then).
    pub async fn reload(&mut self, config: Config) -> anyhow::Result<ReloadSummary> {
        let mut summary = ReloadSummary::default();
        let mut to_start = Vec::new();
        for charger in &config.chargers {
            let settings = effective_settings(&config, charger);
            match self.chargers.get(&charger.id) {
                Some(running) if running.settings == settings => {
                    summary.kept.push(charger.id.clone());
                }
                Some(_) => {
                    summary.restarted.push(charger.id.clone());
                    to_start.push(charger);
                }
                None => {
                    summary.added.push(charger.id.clone());
                    to_start.push(charger);
                }
            }
        }
        summary.removed = self
            .chargers
            .keys()
            .filter(|id| config.charger(id).is_none())
            .cloned()
            .collect();
        // Everything that can fail is done before anything is stopped.
        let tls = tls_configs(&config, &to_start)?;

        for id in summary.restarted.iter().chain(&summary.removed) {
            if let Some(running) = self.chargers.shift_remove(id) {
                running.stop(id).await;
                tracing::info!(charger = %id, "charger stopped");
            }
        }
        for id in &summary.removed {
            self.telemetry.remove_charger(id);
        }
        // Buses that no running or starting charger uses with the same connection stop.
        let wanted: HashMap<String, Endpoint> = config
            .chargers
            .iter()
            .map(|c| {
                let (key, _, endpoint) = bus_spec(&config, c);
                (key, endpoint)
            })
            .collect();
        let stale: Vec<String> = self
            .buses
            .iter()
            .filter(|(key, bus)| wanted.get(*key) != Some(&bus.endpoint))
            .map(|(key, _)| key.clone())
            .collect();
        for key in stale {
            if let Some(bus) = self.buses.remove(&key) {
                bus.token.cancel();
                self.telemetry.remove_bus(bus.handle.name());
            }
        }
        for charger in to_start {
            let tls = tls.get(&charger.id).cloned().flatten();
            self.start_charger(&config, charger, tls).await?;
        }
        Ok(summary)
    }

    /// Stops every task and waits for the chargers to end.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        for (id, running) in self.chargers.drain(..) {
            running.stop(&id).await;
        }
    }

    fn bus(&mut self, key: &str, name: &str, endpoint: &Endpoint) -> BusHandle {
        if let Some(bus) = self.buses.get(key) {
            return bus.handle.clone();
        }
        let token = self.shutdown.child_token();
        let handle = spawn_bus(name.to_owned(), endpoint.clone(), token.clone());
        self.telemetry.add_bus(handle.clone());
        self.buses.insert(
            key.to_owned(),
            RunningBus {
                endpoint: endpoint.clone(),
                handle: handle.clone(),
                token,
            },
        );
        handle
    }

    async fn start_charger(
        &mut self,
        config: &Config,
        charger: &ChargerConfig,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> anyhow::Result<()> {
        let saved = self
            .store
            .load(&charger.id)
            .await
            .with_context(|| format!("stored state of {}", charger.id))?;
        let (key, name, endpoint) = bus_spec(config, charger);
        let bus = self.bus(&key, &name, &endpoint);
        let token = self.shutdown.child_token();
        let mut machine = charger_machine(charger);
        // An AuthorizationKey or SecurityProfile the central system wrote survives restarts.
        let (stored_key, stored_profile) = security::saved_credentials(&saved.keys);
        machine.restore(saved, Utc::now());
        machine.set_security(SecurityState::new(
            SecurityConfig {
                profile: config.csms.security_profile,
                tls: tls.is_some(),
                client_cert: charger.client_cert.is_some() && charger.client_key.is_some(),
                password: charger.password.clone(),
            },
            stored_key,
            stored_profile,
        ));
        let mut session_cfg = SessionConfig::new(config.csms.url.clone(), charger.id.clone());
        session_cfg.password = machine.basic_auth_password().map(|p| p.expose().to_owned());
        session_cfg.tls = tls;
        let (session, events) = spawn_session(session_cfg, token.clone());
        let device = format!("{} {}", charger.device.vendor, charger.device.model);
        let telemetry = self.telemetry.charger(&charger.id, &name, &device);
        let link = device_link(config, charger, bus, telemetry);
        let task = tokio::spawn(run_charger(
            machine,
            session.clone(),
            events,
            link,
            self.store.clone(),
            token.clone(),
        ));
        self.chargers.insert(
            charger.id.clone(),
            RunningCharger {
                settings: effective_settings(config, charger),
                bus_key: key,
                token,
                task,
                session,
            },
        );
        Ok(())
    }

    /// Ids of the running chargers, in start order.
    #[must_use]
    pub fn charger_ids(&self) -> Vec<String> {
        self.chargers.keys().cloned().collect()
    }

    /// Names of the running buses.
    #[must_use]
    pub fn bus_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .buses
            .values()
            .map(|b| b.handle.name().to_owned())
            .collect();
        names.sort();
        names
    }

    /// The bus key each running charger uses (for tests of bus sharing).
    #[must_use]
    pub fn charger_bus(&self, id: &str) -> Option<&str> {
        self.chargers.get(id).map(|c| c.bus_key.as_str())
    }
}

/// Warns about files holding secrets that every local user can read: the configuration (it
/// may hold passwords written inline), password files and client keys.
fn warn_about_secret_files(config: &Config) {
    security::warn_if_readable_by_others(&config.path, "the configuration file");
    for charger in &config.chargers {
        if let Some(path) = &charger.password_file {
            security::warn_if_readable_by_others(path, "a password_file");
        }
        if let Some(path) = &charger.client_key {
            security::warn_if_readable_by_others(path, "a client_key");
        }
    }
}

/// The TLS client configuration of each charger in `chargers` (`None` for `ws://`). Chargers
/// without their own client certificate share one configuration.
fn tls_configs(
    config: &Config,
    chargers: &[&ChargerConfig],
) -> anyhow::Result<HashMap<String, Option<Arc<rustls::ClientConfig>>>> {
    let mut out = HashMap::new();
    if !config.csms.url.starts_with("wss://") {
        for c in chargers {
            out.insert(c.id.clone(), None);
        }
        return Ok(out);
    }
    let mut shared = None;
    for charger in chargers {
        let tls = match (&charger.client_cert, &charger.client_key) {
            (Some(cert), Some(key)) => tls::client_config(
                config.csms.ca_file.as_deref(),
                Some((cert.as_path(), key.as_path())),
            )
            .with_context(|| format!("client certificate of {}", charger.id))?,
            _ => match &shared {
                Some(tls) => Arc::clone(tls),
                None => {
                    let tls = tls::client_config(config.csms.ca_file.as_deref(), None)
                        .context("TLS configuration")?;
                    shared = Some(Arc::clone(&tls));
                    tls
                }
            },
        };
        out.insert(charger.id.clone(), Some(tls));
    }
    Ok(out)
}

fn effective_settings(config: &Config, charger: &ChargerConfig) -> EffectiveSettings {
    EffectiveSettings {
        charger: charger.clone(),
        csms: config.csms.clone(),
        endpoint: bus_spec(config, charger).2,
        timing: config.timing(charger),
    }
}

/// Key, name and connection of the bus a charger is on: a configured RS-485 bus, or its TCP
/// endpoint.
fn bus_spec(config: &Config, charger: &ChargerConfig) -> (String, String, Endpoint) {
    match &charger.link {
        Link::Bus(name) => {
            let port = config
                .buses
                .get(name)
                .map(|b| b.port.clone())
                .unwrap_or_default();
            let settings =
                config
                    .serial_settings(name)
                    .unwrap_or(crate::devicemap::SerialSettings {
                        baud: 19200,
                        parity: crate::devicemap::Parity::Even,
                        data_bits: 8,
                        stop_bits: 1,
                    });
            (
                format!("rtu:{name}"),
                name.clone(),
                Endpoint::Serial {
                    path: port,
                    settings,
                },
            )
        }
        Link::Tcp(addr) => (
            format!("tcp:{addr}"),
            addr.clone(),
            Endpoint::Tcp { addr: addr.clone() },
        ),
    }
}

fn device_link(
    config: &Config,
    charger: &ChargerConfig,
    bus: BusHandle,
    telemetry: ChargerTelemetry,
) -> DeviceLink {
    let map = Arc::clone(&charger.device);
    let t = config.timing(charger);
    let timing = DeviceTiming {
        request_delay: t.request_delay,
        timeout: t.timeout,
        retries: map.modbus.retries,
    };
    DeviceLink {
        charger: charger.id.clone(),
        map,
        bus,
        unit: charger.unit,
        timing,
        poll_interval: charger.poll_interval.max(Duration::from_millis(100)),
        max_current: charger.max_current,
        failsafe_current: charger.failsafe_current,
        phases: charger.phases,
        voltage: charger.voltage,
        telemetry,
    }
}

/// The wallbox's smallest current: the map's `current_limit.min`, or `power_limit.min_w`
/// converted with the charger's phases and voltage; 0 without either.
fn min_current(map: &crate::devicemap::DeviceMap, charger: &ChargerConfig) -> f64 {
    let per_amp = f64::from(charger.phases.max(1)) * charger.voltage;
    match (&map.control.current_limit, &map.control.power_limit) {
        (Some(c), _) => c.min,
        (None, Some(p)) if per_amp > 0.0 => p.min_w / per_amp,
        _ => 0.0,
    }
}

fn charger_machine(charger: &ChargerConfig) -> Charger {
    let map = &charger.device;
    let mut measurands: Vec<String> = map.measurands.iter().map(|m| m.measurand.clone()).collect();
    // Power can be derived from currents and voltages (behaviour.md §Meter values).
    let derivable = map.measurand("Current.Import").is_some() && map.measurand("Voltage").is_some();
    if derivable && !measurands.iter().any(|m| m == "Power.Active.Import") {
        measurands.push("Power.Active.Import".into());
    }
    let settings = ChargerSettings {
        id: charger.id.clone(),
        vendor: map.vendor.clone(),
        model: map.model.clone(),
        auth: match charger.authorization.mode {
            config::AuthMode::Free => AuthMode::Free,
            config::AuthMode::Remote => AuthMode::Remote,
        },
        id_tag: charger.authorization.id_tag.clone(),
        max_current: charger.max_current,
        min_current: min_current(map, charger),
        phases: charger.phases,
        voltage: charger.voltage,
    };
    let mut machine = Charger::new(settings, ConfigKeys::new(measurands), Utc::now());
    if map.energy_counts() == crate::devicemap::Counts::Session {
        machine.count_session_energy();
    }
    machine
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Config {
        let resolve = |name: &str| {
            crate::devicemap::resolve(name, &[])
                .map(Arc::new)
                .map_err(|d| d.to_string())
        };
        match config::load_str("test.yaml", yaml, &|_| None, &resolve) {
            Ok(c) => c,
            Err(d) => panic!("{d}"),
        }
    }

    fn yaml(password: &str, max: u32, baud: u32) -> String {
        format!(
            "csms: {{ url: wss://csms.example.com/ocpp }}\n\
             buses: {{ rs485-1: {{ port: /dev/ttyUSB0, baud: {baud}, parity: even }} }}\n\
             chargers:\n\
             - {{ id: A, device_map: heidelberg-energy-control, bus: rs485-1, unit: 1, password: {password}, max_current: {max} }}\n\
             - {{ id: B, device_map: heidelberg-energy-control, tcp: 10.0.0.2:502, unit: 1, password: b-secret }}\n"
        )
    }

    fn settings(cfg: &Config, id: &str) -> EffectiveSettings {
        match cfg.charger(id) {
            Some(c) => effective_settings(cfg, c),
            None => panic!("no charger {id}"),
        }
    }

    #[test]
    fn only_a_real_change_of_a_charger_counts_as_changed() {
        let base = load(&yaml("a-secret", 16, 19200));
        let same = load(&yaml("a-secret", 16, 19200));
        assert!(settings(&base, "A") == settings(&same, "A"));
        // A new password, installer limit or bus setting restarts the charger ...
        for changed in [
            yaml("other-secret", 16, 19200),
            yaml("a-secret", 10, 19200),
            yaml("a-secret", 16, 9600),
        ] {
            let changed = load(&changed);
            assert!(settings(&base, "A") != settings(&changed, "A"));
            // ... and leaves the charger on another link alone.
            assert!(settings(&base, "B") == settings(&changed, "B"));
        }
    }
}
