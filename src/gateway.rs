//! `chargebridge run`: wires a loaded configuration into bus tasks, OCPP sessions and charger
//! tasks, and stops them all on shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::charger::device::DeviceLink;
use crate::charger::keys::ConfigKeys;
use crate::charger::machine::{AuthMode, Charger, ChargerSettings};
use crate::charger::task::run_charger;
use crate::config::{self, ChargerConfig, Config, Link};
use crate::modbus::{BusHandle, DeviceTiming, Endpoint, spawn_bus};
use crate::ocpp::session::{SessionConfig, spawn_session};
use crate::ocpp::tls;
use crate::security::{self, SecurityConfig, SecurityState};
use crate::store::{Store, StoreHandle};

/// Starts every bus and charger of `config`; returns when `shutdown` is cancelled and all
/// tasks have stopped.
///
/// # Errors
/// TLS material that cannot be loaded (CA file, client certificates).
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut tasks = JoinSet::new();
    warn_about_secret_files(&config);
    let store = StoreHandle::spawn(Store::open(&config.state_dir).context("state database")?);
    let buses = spawn_buses(&config, &shutdown);
    // One TLS configuration shared by every charger without its own client certificate.
    let shared_tls = if config.csms.url.starts_with("wss://") {
        Some(
            tls::client_config(config.csms.ca_file.as_deref(), None)
                .context("TLS configuration")?,
        )
    } else {
        None
    };
    for charger in &config.chargers {
        let tls = match (&charger.client_cert, &charger.client_key) {
            (Some(cert), Some(key)) if shared_tls.is_some() => Some(
                tls::client_config(
                    config.csms.ca_file.as_deref(),
                    Some((cert.as_path(), key.as_path())),
                )
                .with_context(|| format!("client certificate of {}", charger.id))?,
            ),
            _ => shared_tls.clone(),
        };
        let Some(bus) = buses.get(&bus_key(charger)).cloned() else {
            anyhow::bail!("no bus for charger {}", charger.id);
        };
        let link = device_link(&config, charger, bus);
        let mut machine = charger_machine(charger);
        let saved = store
            .load(&charger.id)
            .await
            .with_context(|| format!("stored state of {}", charger.id))?;
        // An AuthorizationKey or SecurityProfile the central system wrote survives restarts.
        let (stored_key, stored_profile) = security::saved_credentials(&saved.keys);
        machine.restore(saved, Utc::now());
        machine.set_security(SecurityState::new(
            SecurityConfig {
                profile: config.csms.security_profile,
                tls: shared_tls.is_some(),
                client_cert: charger.client_cert.is_some() && charger.client_key.is_some(),
                password: charger.password.clone(),
            },
            stored_key,
            stored_profile,
        ));
        let mut session_cfg = SessionConfig::new(config.csms.url.clone(), charger.id.clone());
        session_cfg.password = machine.basic_auth_password().map(|p| p.expose().to_owned());
        session_cfg.tls = tls;
        let (session, events) = spawn_session(session_cfg, shutdown.clone());
        tasks.spawn(run_charger(
            machine,
            session,
            events,
            link,
            store.clone(),
            shutdown.clone(),
        ));
    }
    tracing::info!(
        chargers = config.chargers.len(),
        buses = buses.len(),
        "gateway running"
    );
    shutdown.cancelled().await;
    while tasks.join_next().await.is_some() {}
    Ok(())
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

/// Key of the bus a charger is on: a configured RS-485 bus, or its TCP endpoint.
fn bus_key(charger: &ChargerConfig) -> String {
    match &charger.link {
        Link::Bus(name) => format!("rtu:{name}"),
        Link::Tcp(addr) => format!("tcp:{addr}"),
    }
}

fn spawn_buses(config: &Config, shutdown: &CancellationToken) -> HashMap<String, BusHandle> {
    let mut buses = HashMap::new();
    for charger in &config.chargers {
        let key = bus_key(charger);
        if buses.contains_key(&key) {
            continue;
        }
        let endpoint = match &charger.link {
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
                Endpoint::Serial {
                    path: port,
                    settings,
                }
            }
            Link::Tcp(addr) => Endpoint::Tcp { addr: addr.clone() },
        };
        let name = match &charger.link {
            Link::Bus(name) => name.clone(),
            Link::Tcp(addr) => addr.clone(),
        };
        buses.insert(key, spawn_bus(name, endpoint, shutdown.clone()));
    }
    buses
}

fn device_link(config: &Config, charger: &ChargerConfig, bus: BusHandle) -> DeviceLink {
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
        min_current: map.control.current_limit.as_ref().map_or(0.0, |c| c.min),
        phases: charger.phases,
        voltage: charger.voltage,
    };
    Charger::new(settings, ConfigKeys::new(measurands), Utc::now())
}
