//! The gateway configuration (`chargebridge.yaml`, interfaces.md §2): load, validate, resolve
//! secrets.
//!
//! [`load`] reads the file, [`load_str`] takes the text (and an injectable environment, for
//! tests); [`load_in`] and [`load_str_in`] also tell the map resolver the configured
//! `device_map_dirs`. All return every problem found, each located at `file:line:column` with what to
//! change, or a [`Config`] that the rest of the gateway can use without further checks: every
//! charger has its device map, its link, its effective unit, limits and secrets.
//!
//! - `${VAR}` may be written in any value; it is read from the environment and must be set and
//!   non-empty (`$${` is a literal `${`).
//! - Relative paths (`state_dir`, `device_map_dirs`, `ca_file`, `password_file`,
//!   `client_cert`, `client_key`, and a `device_map` that contains `/` or ends in `.yaml` or
//!   `.yml`) are taken relative to the directory of the configuration file, so the daemon's
//!   working directory does not matter.
//! - Secrets are [`Secret`]s: they never print, and no message of this module contains one.

mod expand;
mod raw;
mod secret;
mod validate;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;

use crate::devicemap::{DeviceMap, Parity, SerialSettings};
use crate::diag::{Diagnostic, Diagnostics};

pub use expand::{ExpandError, expand};
pub use secret::Secret;

/// Where the daemon keeps its SQLite database when `state_dir` is not given.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/chargebridge";
/// Where `/metrics`, `/status` and `/healthz` listen when `http.listen` is not given.
pub const DEFAULT_HTTP_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9464));
/// Searched for device maps (before the built-in ones) when `device_map_dirs` is not given.
pub const DEFAULT_DEVICE_MAP_DIR: &str = "/etc/chargebridge/device-maps";
/// The OCPP security profile used when `csms.security_profile` is not given (TLS + Basic Auth).
pub const DEFAULT_SECURITY_PROFILE: u8 = 2;
/// The installer limit used when neither `max_current` nor the map's `current_limit.max` is given.
pub const DEFAULT_MAX_CURRENT: f64 = 16.0;
/// Nominal phase voltage used when `voltage` is not given.
pub const DEFAULT_VOLTAGE: f64 = 230.0;
/// Poll period used when `poll_interval` is not given.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Longest charger id accepted (the identity is one URL path segment and the Basic Auth user
/// name; central systems store it in short fields).
pub const MAX_CHARGER_ID_LEN: usize = 48;
/// Longest `id_tag` (OCPP 1.6 `IdToken` is a CiString20Type).
pub const MAX_ID_TAG_LEN: usize = 20;

/// A validated gateway configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was loaded from (or the label given to [`load_str`]).
    pub path: PathBuf,
    /// Directory of the SQLite database.
    pub state_dir: PathBuf,
    /// The HTTP endpoints.
    pub http: HttpConfig,
    /// Logging.
    pub log: LogConfig,
    /// Directories searched for device maps before the built-in ones.
    pub device_map_dirs: Vec<PathBuf>,
    /// The central system.
    pub csms: CsmsConfig,
    /// RS-485 lines by name, in file order.
    pub buses: IndexMap<String, BusConfig>,
    /// The wallboxes, in file order.
    pub chargers: Vec<ChargerConfig>,
}

/// `http:`: where `/metrics`, `/status`, `/status.json` and `/healthz` are served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// Listen address; loopback unless `allow_remote`.
    pub listen: SocketAddr,
    /// Whether a non-loopback `listen` address was explicitly allowed.
    pub allow_remote: bool,
}

/// `log:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// Output format on stderr.
    pub format: LogFormat,
    /// `RUST_LOG`-style filter (already checked to parse).
    pub filter: String,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `csms:`: the OCPP central system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsmsConfig {
    /// `ws://` or `wss://` URL; the charger id is appended as one path segment
    /// (see [`CsmsConfig::url_for`]).
    pub url: String,
    /// OCPP security profile: 1 (ws + Basic Auth), 2 (TLS + Basic Auth) or 3 (TLS + client
    /// certificate).
    pub security_profile: u8,
    /// CA certificates (PEM) to trust instead of the operating system's store.
    pub ca_file: Option<PathBuf>,
    /// Whether plain `ws://` (profile 1) was explicitly allowed.
    pub allow_insecure: bool,
}

impl CsmsConfig {
    /// The WebSocket URL of one charge point: the configured URL plus the charger id as one
    /// percent-encoded path segment (OCPP-J 1.6: `<endpoint>/<identity>`).
    #[must_use]
    pub fn url_for(&self, charger_id: &str) -> String {
        // Everything but unreserved characters (RFC 3986 §2.3) is encoded, so the id is
        // always exactly one segment.
        const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'.')
            .remove(b'_')
            .remove(b'~');
        let base = self.url.trim_end_matches('/');
        format!(
            "{base}/{}",
            percent_encoding::utf8_percent_encode(charger_id, SEGMENT)
        )
    }
}

/// One RS-485 line (`buses:` entry). `None` fields take the device maps' defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusConfig {
    /// Serial device, e.g. `/dev/ttyUSB0`.
    pub port: String,
    /// Baud rate.
    pub baud: Option<u32>,
    /// Parity.
    pub parity: Option<Parity>,
    /// Data bits (7 or 8).
    pub data_bits: Option<u8>,
    /// Stop bits (1 or 2).
    pub stop_bits: Option<u8>,
    /// Reply timeout, overriding the maps' `modbus.timeout`.
    pub timeout: Option<Duration>,
    /// Pause before each request, overriding the maps' `modbus.request_delay`.
    pub request_delay: Option<Duration>,
}

/// Effective timing of the requests to one wallbox (see [`Config::timing`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long to wait for a reply.
    pub timeout: Duration,
    /// Pause on the line before each request.
    pub request_delay: Duration,
}

/// How the gateway reaches a wallbox.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Link {
    /// Modbus RTU on the named bus (a key of [`Config::buses`]).
    Bus(String),
    /// Modbus TCP at `host:port`.
    Tcp(String),
}

/// One wallbox (`chargers:` entry), with every default applied.
#[derive(Clone, Debug)]
pub struct ChargerConfig {
    /// OCPP charge point identity.
    pub id: String,
    /// The device map as written (relative paths made relative to the configuration file).
    pub device_map: String,
    /// The resolved device map.
    pub device: Arc<DeviceMap>,
    /// Bus or TCP endpoint.
    pub link: Link,
    /// Modbus unit id (default: the map's `modbus.unit`).
    pub unit: u8,
    /// Basic Auth password (security profiles 1 and 2).
    pub password: Option<Secret>,
    /// Where `password` was read from, when it came from `password_file` (for the
    /// permission warning; the file is not read again).
    pub password_file: Option<PathBuf>,
    /// Client certificate (PEM), security profile 3.
    pub client_cert: Option<PathBuf>,
    /// Client private key (PEM), security profile 3.
    pub client_key: Option<PathBuf>,
    /// 1 or 3: how the wallbox is wired, for W <-> A.
    pub phases: u8,
    /// Nominal phase voltage, for W <-> A when no voltage is measured.
    pub voltage: f64,
    /// Installer limit in amperes; caps every limit written.
    pub max_current: f64,
    /// Written to the map's failsafe register at connect, if it has one.
    pub failsafe_current: Option<f64>,
    /// Poll period.
    pub poll_interval: Duration,
    /// How transactions are authorized.
    pub authorization: Authorization,
}

/// `authorization:` of a charger (behaviour.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorization {
    /// Free vend or remote start.
    pub mode: AuthMode,
    /// idTag sent in StartTransaction in free mode (default: the charger id).
    pub id_tag: String,
}

/// Authorization mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// Plugging in starts a transaction with the configured idTag (the default).
    Free,
    /// The limit stays off until RemoteStartTransaction.
    Remote,
}

impl Config {
    /// The effective serial settings of a bus: each field the bus sets explicitly, else the
    /// device-map default of the chargers on it (validation guarantees they agree). `None` for
    /// an unknown bus, or when a field is neither set on the bus nor known from a map (a bus
    /// without chargers).
    #[must_use]
    pub fn serial_settings(&self, bus: &str) -> Option<SerialSettings> {
        let cfg = self.buses.get(bus)?;
        let mut maps = self
            .chargers
            .iter()
            .filter(|c| matches!(&c.link, Link::Bus(b) if b == bus))
            .filter_map(|c| c.device.modbus.serial);
        let map = maps.next();
        Some(SerialSettings {
            baud: cfg.baud.or(map.map(|s| s.baud))?,
            parity: cfg.parity.or(map.map(|s| s.parity))?,
            data_bits: cfg.data_bits.or(map.map(|s| s.data_bits))?,
            stop_bits: cfg.stop_bits.or(map.map(|s| s.stop_bits))?,
        })
    }

    /// The Modbus timing of one charger's requests: the map's `timeout` and `request_delay`,
    /// unless its bus overrides them.
    #[must_use]
    pub fn timing(&self, charger: &ChargerConfig) -> Timing {
        let map = &charger.device.modbus;
        let bus = match &charger.link {
            Link::Bus(name) => self.buses.get(name),
            Link::Tcp(_) => None,
        };
        Timing {
            timeout: bus.and_then(|b| b.timeout).unwrap_or(map.timeout),
            request_delay: bus
                .and_then(|b| b.request_delay)
                .unwrap_or(map.request_delay),
        }
    }

    /// The charger with this id.
    #[must_use]
    pub fn charger(&self, id: &str) -> Option<&ChargerConfig> {
        self.chargers.iter().find(|c| c.id == id)
    }

    /// The chargers on one bus, in file order.
    pub fn chargers_on_bus<'a>(&'a self, bus: &'a str) -> impl Iterator<Item = &'a ChargerConfig> {
        self.chargers
            .iter()
            .filter(move |c| matches!(&c.link, Link::Bus(b) if b == bus))
    }
}

/// Turns a charger's `device_map` (a built-in name, or a path already made relative to the
/// configuration file) into a validated map; the error text is shown at the `device_map:` line.
pub type ResolveMap<'a> = &'a dyn Fn(&str) -> Result<Arc<DeviceMap>, String>;

/// Like [`ResolveMap`], also given the configuration's `device_map_dirs` (searched before the
/// built-in maps), which are only known once the file is read.
pub type ResolveMapIn<'a> = &'a dyn Fn(&str, &[PathBuf]) -> Result<Arc<DeviceMap>, String>;

/// Reads and validates a configuration file; `${VAR}` comes from the process environment.
///
/// # Errors
/// Every problem found, each located in `path` (see [`Diagnostics`]).
pub fn load(path: &Path, resolve_map: ResolveMap<'_>) -> Result<Config, Diagnostics> {
    load_in(path, &|name, _| resolve_map(name))
}

/// Validates configuration text. `file_label` names the file in messages and is the base of
/// relative paths; `env` answers `${VAR}` look-ups.
///
/// # Errors
/// Every problem found, each located in `file_label` (see [`Diagnostics`]).
pub fn load_str(
    file_label: &str,
    yaml: &str,
    env: &dyn Fn(&str) -> Option<String>,
    resolve_map: ResolveMap<'_>,
) -> Result<Config, Diagnostics> {
    load_str_in(file_label, yaml, env, &|name, _| resolve_map(name))
}

/// [`load`] with a resolver that is told the configured `device_map_dirs`: what `run` and
/// `check` use.
///
/// # Errors
/// Every problem found, each located in `path` (see [`Diagnostics`]).
pub fn load_in(path: &Path, resolve_map: ResolveMapIn<'_>) -> Result<Config, Diagnostics> {
    let label = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics(vec![Diagnostic::at(
            label.clone(),
            0,
            0,
            format!("cannot read the configuration file: {e}"),
        )])
    })?;
    load_str_in(&label, &text, &|name| std::env::var(name).ok(), resolve_map)
}

/// [`load_str`] with a resolver that is told the configured `device_map_dirs`.
///
/// # Errors
/// Every problem found, each located in `file_label` (see [`Diagnostics`]).
pub fn load_str_in(
    file_label: &str,
    yaml: &str,
    env: &dyn Fn(&str) -> Option<String>,
    resolve_map: ResolveMapIn<'_>,
) -> Result<Config, Diagnostics> {
    validate::load_str(file_label, yaml, env, resolve_map)
}
