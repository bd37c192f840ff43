//! From the raw YAML shapes to a [`Config`], collecting every problem with its position.
//!
//! Each value is checked where it is read; values that fail are replaced by their default so
//! the rest of the file is still checked (one typo must not hide the next). Checks between
//! values (duplicates, buses, serial settings, security profile) run after all chargers are
//! read. A [`Config`] is returned only when no problem was found.

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use serde_saphyr::Spanned;

use super::raw::{
    EntryList, RawAuthorization, RawBus, RawCharger, RawConfig, RawCsms, RawHttp, RawLog, Str,
    position,
};
use super::{
    AuthMode, Authorization, BusConfig, ChargerConfig, Config, CsmsConfig, DEFAULT_DEVICE_MAP_DIR,
    DEFAULT_HTTP_LISTEN, DEFAULT_MAX_CURRENT, DEFAULT_POLL_INTERVAL, DEFAULT_SECURITY_PROFILE,
    DEFAULT_STATE_DIR, DEFAULT_VOLTAGE, HttpConfig, Link, LogConfig, LogFormat, MAX_CHARGER_ID_LEN,
    MAX_ID_TAG_LEN, Secret, expand,
};
use crate::devicemap::{DeviceMap, Parity};
use crate::diag::{Diagnostic, Diagnostics};

/// A password file larger than this is certainly not a password (and might be a device).
const MAX_PASSWORD_FILE_BYTES: u64 = 4096;

/// A line and column.
type Pos = (u64, u64);

/// The map resolver supplied by the caller.
type Resolver<'a> = &'a dyn Fn(&str) -> Result<Arc<DeviceMap>, String>;

pub(super) fn load_str(
    file_label: &str,
    yaml: &str,
    env: &dyn Fn(&str) -> Option<String>,
    resolve_map: Resolver<'_>,
) -> Result<Config, Diagnostics> {
    let raw: Spanned<RawConfig> = match serde_saphyr::from_str(yaml) {
        Ok(raw) => raw,
        Err(e) => return Err(Diagnostics(vec![yaml_error(file_label, &e)])),
    };
    let base_dir = Path::new(file_label)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut v = Validator {
        file: file_label,
        base_dir,
        env,
        diags: Vec::new(),
    };
    let config = v.config(&raw, resolve_map);
    match config {
        Some(config) if v.diags.is_empty() => Ok(config),
        _ => {
            if v.diags.is_empty() {
                v.err(
                    (0, 0),
                    "internal error: configuration incomplete without a reason",
                );
            }
            // File order reads best; the sort is stable, so problems at one place keep the
            // order in which they were found.
            v.diags.sort_by_key(|d| (d.line, d.column));
            Err(Diagnostics(v.diags))
        }
    }
}

/// A YAML syntax or structure error, located, without the source snippet serde-saphyr adds
/// (the terminal shows `file:line:col` already).
fn yaml_error(file: &str, e: &serde_saphyr::Error) -> Diagnostic {
    let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
    // The user formatter leaves out hints about parser options that only make sense to the
    // programmer (serde-saphyr's default formatter suggests `DuplicateKeyPolicy`).
    let text = e.render_with_options(serde_saphyr::render_options! {
        formatter: &serde_saphyr::UserMessageFormatter,
        snippets: serde_saphyr::SnippetMode::Off,
    });
    let suffix = format!(" at line {line}, column {column}");
    let message = match text.strip_suffix(&suffix).unwrap_or(&text) {
        // The two shape errors an installer meets most, in the file's own terms.
        "expected string scalar" => {
            "expected a single value here, not a list or mapping".to_owned()
        }
        "expected mapping start" => "expected `key: value` settings here".to_owned(),
        other => other.to_owned(),
    };
    Diagnostic::at(file, line, column, message)
}

struct Validator<'a> {
    file: &'a str,
    base_dir: PathBuf,
    env: &'a dyn Fn(&str) -> Option<String>,
    diags: Vec<Diagnostic>,
}

/// A charger as far as it could be read; complete when no problem was reported.
struct Draft {
    at: Pos,
    id: Option<String>,
    id_at: Pos,
    device_map: Option<String>,
    device_map_at: Pos,
    device: Option<Arc<DeviceMap>>,
    link: Option<Link>,
    link_at: Pos,
    /// Normalised `host:port` for TCP links, to find two chargers at one endpoint.
    endpoint_key: Option<String>,
    unit: Option<u8>,
    unit_at: Option<Pos>,
    password: Option<Secret>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    phases: u8,
    voltage: f64,
    max_current: f64,
    failsafe_current: Option<f64>,
    poll_interval: Duration,
    authorization: Authorization,
}

impl Draft {
    fn finish(self) -> Option<ChargerConfig> {
        Some(ChargerConfig {
            id: self.id?,
            device_map: self.device_map?,
            device: self.device?,
            link: self.link?,
            unit: self.unit?,
            password: self.password,
            client_cert: self.client_cert,
            client_key: self.client_key,
            phases: self.phases,
            voltage: self.voltage,
            max_current: self.max_current,
            failsafe_current: self.failsafe_current,
            poll_interval: self.poll_interval,
            authorization: self.authorization,
        })
    }
}

/// A bus as read, with the positions needed for later checks.
struct BusDraft {
    name: String,
    at: Pos,
    config: BusConfig,
}

impl Validator<'_> {
    fn err(&mut self, at: Pos, message: impl Into<String>) {
        self.diags
            .push(Diagnostic::at(self.file, at.0, at.1, message.into()));
    }

    /// The value with `${VAR}` expanded; `None` (and a problem) when expansion fails.
    fn text(&mut self, field: &str, s: &Str) -> Option<String> {
        match expand(&s.value, self.env) {
            Ok(v) => Some(v),
            Err(e) => {
                self.err(position(s), format!("`{field}`: {e}"));
                None
            }
        }
    }

    /// An optional value parsed by `parse`; `None` when absent or invalid (then reported).
    fn opt<T>(
        &mut self,
        field: &str,
        s: Option<&Str>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let s = s?;
        let text = self.text(field, s)?;
        match parse(text.trim()) {
            Ok(v) => Some(v),
            Err(msg) => {
                self.err(position(s), format!("`{field}`: {msg}"));
                None
            }
        }
    }

    /// A path; relative paths are relative to the configuration file's directory.
    fn path(&mut self, field: &str, s: Option<&Str>) -> Option<PathBuf> {
        let base = self.base_dir.clone();
        self.opt(field, s, |t| {
            if t.is_empty() {
                Err("is empty; write a path or remove the line".to_owned())
            } else {
                Ok(base.join(t))
            }
        })
    }

    /// A path that must be a readable file now (certificates): better found by `check` than
    /// at the first TLS handshake.
    fn readable_file(&mut self, field: &str, s: Option<&Str>) -> Option<PathBuf> {
        let path = self.path(field, s)?;
        if let Err(e) = std::fs::File::open(&path)
            && let Some(s) = s
        {
            self.err(
                position(s),
                format!("`{field}`: cannot read {}: {e}", path.display()),
            );
        }
        Some(path)
    }

    fn config(&mut self, raw: &Spanned<RawConfig>, resolve: Resolver<'_>) -> Option<Config> {
        let top = position(raw);
        let raw = &raw.value;
        let state_dir = self
            .path("state_dir", raw.state_dir.as_ref())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        let http = self.http(raw.http.as_ref());
        let log = self.log(raw.log.as_ref());
        let device_map_dirs = match &raw.device_map_dirs {
            Some(dirs) => dirs
                .value
                .iter()
                .filter_map(|d| self.path("device_map_dirs", Some(d)))
                .collect(),
            None => vec![PathBuf::from(DEFAULT_DEVICE_MAP_DIR)],
        };
        let csms = self.csms(top, raw.csms.as_ref());
        let buses = match &raw.buses {
            Some(b) => self.buses(&b.value),
            None => Vec::new(),
        };
        let drafts = match &raw.chargers {
            Some(list) if !list.value.is_empty() => {
                let mut cache = HashMap::new();
                let bus_names: Vec<String> = buses.iter().map(|b| b.name.clone()).collect();
                list.value
                    .iter()
                    .map(|c| self.charger(c, &csms, &bus_names, resolve, &mut cache))
                    .collect()
            }
            Some(list) => {
                self.err(
                    position(list),
                    "`chargers` is empty; list at least one wallbox (id, device_map, bus or tcp)",
                );
                Vec::new()
            }
            None => {
                self.err(
                    top,
                    "missing `chargers:`; list at least one wallbox (id, device_map, bus or tcp)",
                );
                Vec::new()
            }
        };
        self.check_unique_ids(&drafts);
        self.check_unique_units(&drafts);
        self.check_serial(&buses, &drafts);
        self.check_profile3(&csms, &drafts);

        let buses: IndexMap<String, BusConfig> =
            buses.into_iter().map(|b| (b.name, b.config)).collect();
        let chargers = drafts
            .into_iter()
            .map(Draft::finish)
            .collect::<Option<Vec<_>>>()?;
        Some(Config {
            path: PathBuf::from(self.file),
            state_dir,
            http,
            log,
            device_map_dirs,
            csms: csms?,
            buses,
            chargers,
        })
    }

    fn http(&mut self, raw: Option<&Spanned<RawHttp>>) -> HttpConfig {
        let default_listen = SocketAddr::from(([127, 0, 0, 1], 9464));
        let Some(raw) = raw else {
            return HttpConfig {
                listen: DEFAULT_HTTP_LISTEN.parse().unwrap_or(default_listen),
                allow_remote: false,
            };
        };
        let raw = &raw.value;
        let listen = self.opt("listen", raw.listen.as_ref(), |t| {
            t.parse::<SocketAddr>().map_err(|_| {
                format!("`{t}` is not an IP address and port, e.g. 127.0.0.1:9464 or [::1]:9464")
            })
        });
        let allow_remote = self
            .opt("allow_remote", raw.allow_remote.as_ref(), parse_bool)
            .unwrap_or(false);
        if let (Some(addr), Some(s)) = (listen, raw.listen.as_ref())
            && !addr.ip().to_canonical().is_loopback()
            && !allow_remote
        {
            self.err(
                position(s),
                format!(
                    "`listen`: {addr} is reachable from the network, and /status and \
                     /metrics have no authentication; listen on 127.0.0.1, or set \
                     `allow_remote: true` under `http:` if that is intended"
                ),
            );
        }
        HttpConfig {
            listen: listen.unwrap_or(default_listen),
            allow_remote,
        }
    }

    fn log(&mut self, raw: Option<&Spanned<RawLog>>) -> LogConfig {
        let raw = raw.map(|r| &r.value);
        let format = self
            .opt("format", raw.and_then(|r| r.format.as_ref()), |t| match t {
                "text" => Ok(LogFormat::Text),
                "json" => Ok(LogFormat::Json),
                _ => Err(format!("`{t}` is not a log format; use text or json")),
            })
            .unwrap_or(LogFormat::Text);
        let filter = self
            .opt("filter", raw.and_then(|r| r.filter.as_ref()), |t| {
                tracing_subscriber::EnvFilter::try_new(t)
                    .map(|_| t.to_owned())
                    .map_err(|e| {
                        format!("`{t}` is not a log filter ({e}); e.g. info or chargebridge=debug")
                    })
            })
            .unwrap_or_else(|| "info".to_owned());
        LogConfig { format, filter }
    }

    fn csms(&mut self, top: Pos, raw: Option<&Spanned<RawCsms>>) -> Option<CsmsConfig> {
        let Some(raw_csms) = raw else {
            self.err(
                top,
                "missing `csms:`; add at least `csms: { url: wss://HOST/PATH }`",
            );
            return None;
        };
        let at = position(raw_csms);
        let raw = &raw_csms.value;
        let url = match &raw.url {
            Some(u) => self.opt("url", Some(u), check_csms_url),
            None => {
                self.err(
                    at,
                    "missing `url:` under `csms:`, e.g. wss://csms.example.com/ocpp",
                );
                None
            }
        };
        let profile = self.opt(
            "security_profile",
            raw.security_profile.as_ref(),
            |t| match t.parse::<u8>() {
                Ok(p @ 1..=3) => Ok(p),
                _ => Err(format!(
                    "`{t}` is not a security profile; use 1 (ws:// + Basic Auth), \
                         2 (TLS + Basic Auth) or 3 (TLS + client certificate)"
                )),
            },
        );
        let profile_given = raw.security_profile.is_some();
        let profile = profile.unwrap_or(DEFAULT_SECURITY_PROFILE);
        let ca_file = self.readable_file("ca_file", raw.ca_file.as_ref());
        let allow_insecure = self
            .opt("allow_insecure", raw.allow_insecure.as_ref(), parse_bool)
            .unwrap_or(false);

        // Security whitepaper §1.3: profile 1 is plain ws:// (trusted networks only), profiles
        // 2 and 3 are TLS. The URL and the profile must say the same thing.
        let url_at = raw.url.as_ref().map_or(at, position);
        let profile_at = raw.security_profile.as_ref().map_or(at, position);
        if let Some(url) = &url {
            let tls = url.to_ascii_lowercase().starts_with("wss://");
            if tls && profile == 1 && profile_given {
                self.err(
                    profile_at,
                    "`security_profile`: 1 is plain ws:// without TLS, but `url` is wss://; \
                     use 2 (TLS + Basic Auth) or 3 (TLS + client certificate)",
                );
            } else if !tls && profile != 1 {
                self.err(
                    url_at,
                    format!(
                        "`url`: security profile {profile} needs TLS (wss://); for plain ws:// \
                         set `security_profile: 1` and `allow_insecure: true` (trusted networks only)"
                    ),
                );
            } else if !tls && !allow_insecure {
                self.err(
                    url_at,
                    "`url`: plain ws:// sends the Basic Auth password unencrypted; use wss://, \
                     or set `allow_insecure: true` under `csms:` on a trusted network (VPN)",
                );
            }
        }
        Some(CsmsConfig {
            url: url?,
            security_profile: profile,
            ca_file,
            allow_insecure,
        })
    }

    fn buses(&mut self, raw: &EntryList<Spanned<RawBus>>) -> Vec<BusDraft> {
        let mut out: Vec<BusDraft> = Vec::new();
        for (name, bus) in &raw.0 {
            let at = position(name);
            if name.value.trim().is_empty() {
                self.err(at, "a bus needs a name, e.g. `rs485-1:`");
            }
            if let Some(first) = out.iter().find(|b| b.name == name.value) {
                let line = first.at.0;
                self.err(
                    at,
                    format!("bus `{}` is already defined at line {line}", name.value),
                );
                continue;
            }
            let raw = &bus.value;
            let port = match &raw.port {
                Some(p) => self
                    .opt("port", Some(p), |t| {
                        if t.is_empty() {
                            Err("is empty; write the serial device, e.g. /dev/ttyUSB0".to_owned())
                        } else {
                            Ok(t.to_owned())
                        }
                    })
                    .unwrap_or_default(),
                None => {
                    self.err(
                        at,
                        format!(
                            "bus `{}` needs `port:` (the serial device, e.g. /dev/ttyUSB0)",
                            name.value
                        ),
                    );
                    String::new()
                }
            };
            let baud = self.opt("baud", raw.baud.as_ref(), |t| match t.parse::<u32>() {
                Ok(b) if b > 0 => Ok(b),
                _ => Err(format!("`{t}` is not a baud rate, e.g. 9600 or 19200")),
            });
            let parity = self.opt("parity", raw.parity.as_ref(), parse_parity);
            let data_bits = self.opt("data_bits", raw.data_bits.as_ref(), |t| match t {
                "7" => Ok(7),
                "8" => Ok(8),
                _ => Err(format!("`{t}` data bits: use 7 or 8")),
            });
            let stop_bits = self.opt("stop_bits", raw.stop_bits.as_ref(), |t| match t {
                "1" => Ok(1),
                "2" => Ok(2),
                _ => Err(format!("`{t}` stop bits: use 1 or 2")),
            });
            let timeout =
                self.opt(
                    "timeout",
                    raw.timeout.as_ref(),
                    |t| match crate::duration::parse(t)? {
                        d if d.is_zero() => Err("must be longer than 0, e.g. 1s".to_owned()),
                        d => Ok(d),
                    },
                );
            let request_delay = self.opt(
                "request_delay",
                raw.request_delay.as_ref(),
                crate::duration::parse,
            );
            out.push(BusDraft {
                name: name.value.clone(),
                at,
                config: BusConfig {
                    port,
                    baud,
                    parity,
                    data_bits,
                    stop_bits,
                    timeout,
                    request_delay,
                },
            });
        }
        out
    }

    fn charger(
        &mut self,
        raw: &Spanned<RawCharger>,
        csms: &Option<CsmsConfig>,
        bus_names: &[String],
        resolve: Resolver<'_>,
        cache: &mut HashMap<String, Option<Arc<DeviceMap>>>,
    ) -> Draft {
        let at = position(raw);
        let raw = &raw.value;
        let profile = csms
            .as_ref()
            .map_or(DEFAULT_SECURITY_PROFILE, |c| c.security_profile);

        let id = match &raw.id {
            Some(s) => self.opt("id", Some(s), |t| check_charger_id(t, profile)),
            None => {
                self.err(at, "a charger needs `id:` (its OCPP charge point identity)");
                None
            }
        };
        let id_at = raw.id.as_ref().map_or(at, position);

        // The device map.
        let device_map_at = raw.device_map.as_ref().map_or(at, position);
        let device_map = match &raw.device_map {
            Some(s) => {
                let base = self.base_dir.clone();
                self.opt("device_map", Some(s), |t| {
                    if t.is_empty() {
                        return Err("is empty; write a built-in map name or a path".to_owned());
                    }
                    // A built-in name never contains `/`; anything that does is a path.
                    if t.contains('/') {
                        Ok(base.join(t).display().to_string())
                    } else {
                        Ok(t.to_owned())
                    }
                })
            }
            None => {
                self.err(
                    at,
                    "a charger needs `device_map:` (a built-in map name or a path to a YAML file)",
                );
                None
            }
        };
        let device = device_map.as_ref().and_then(|name| {
            if let Some(cached) = cache.get(name) {
                return cached.clone();
            }
            // Resolve each map once: chargers of one model share one `Arc`, and a broken map
            // is reported once, at its first use.
            let resolved = match resolve(name) {
                Ok(map) => Some(map),
                Err(msg) => {
                    self.err(
                        device_map_at,
                        format!("`device_map`: cannot load `{name}`: {msg}"),
                    );
                    None
                }
            };
            cache.insert(name.clone(), resolved.clone());
            resolved
        });

        // The link: exactly one of `bus:` and `tcp:`.
        let (link, link_at, endpoint_key) = match (&raw.bus, &raw.tcp) {
            (Some(_), Some(tcp)) => {
                self.err(
                    position(tcp),
                    "a charger has either `bus:` (Modbus RTU) or `tcp:` (Modbus TCP), not both",
                );
                (None, position(tcp), None)
            }
            (None, None) => {
                self.err(
                    at,
                    "a charger needs `bus:` (a bus from `buses:`, Modbus RTU) or \
                     `tcp: HOST:PORT` (Modbus TCP)",
                );
                (None, at, None)
            }
            (Some(bus), None) => {
                let name = self.opt("bus", Some(bus), |t| {
                    if bus_names.iter().any(|b| b == t) {
                        Ok(t.to_owned())
                    } else if bus_names.is_empty() {
                        Err(format!(
                            "bus `{t}` is not defined; add it under `buses:` with its `port:`"
                        ))
                    } else {
                        Err(format!(
                            "bus `{t}` is not defined under `buses:` (defined: {})",
                            bus_names.join(", ")
                        ))
                    }
                });
                (name.map(Link::Bus), position(bus), None)
            }
            (None, Some(tcp)) => {
                let parsed = self.opt("tcp", Some(tcp), parse_endpoint);
                match parsed {
                    Some((written, key)) => (Some(Link::Tcp(written)), position(tcp), Some(key)),
                    None => (None, position(tcp), None),
                }
            }
        };
        let on_bus = matches!(link, Some(Link::Bus(_))) || (raw.bus.is_some() && raw.tcp.is_none());

        // The unit: RTU reserves 0 for broadcast (never answered) and 248..=255 (Modbus over
        // serial line §2.2); TCP gateways use any byte, often 1 or 255.
        let unit_explicit = self.opt("unit", raw.unit.as_ref(), |t| {
            t.parse::<u8>()
                .map_err(|_| format!("`{t}` is not a Modbus unit id (0..=255)"))
        });
        let unit = match (unit_explicit, &device) {
            (Some(u), _) => Some(u),
            (None, Some(map)) if raw.unit.is_none() => Some(map.modbus.unit),
            _ => None,
        };
        if let Some(u) = unit
            && on_bus
            && !(1..=247).contains(&u)
        {
            let (where_, source) = match &raw.unit {
                Some(s) => (position(s), "`unit`"),
                None => (device_map_at, "the device map's default unit"),
            };
            self.err(
                where_,
                format!(
                    "{source} {u} cannot be used on an RS-485 bus: Modbus RTU unit ids are \
                     1..=247 (0 is broadcast); set `unit:`"
                ),
            );
        }

        // A map without serial settings describes a TCP-only device.
        if let (Some(map), Some(bus)) = (&device, &raw.bus)
            && map.modbus.serial.is_none()
            && raw.tcp.is_none()
        {
            self.err(
                position(bus),
                format!(
                    "`bus`: device map `{}` describes a Modbus TCP device (it has no \
                     `modbus.serial`); connect it with `tcp: HOST:PORT` instead",
                    map.name
                ),
            );
        }

        // Secrets.
        let password = match (&raw.password, &raw.password_file) {
            (Some(_), Some(file)) => {
                self.err(
                    position(file),
                    "give either `password` or `password_file`, not both",
                );
                None
            }
            (Some(pw), None) => match expand(&pw.value, self.env) {
                Ok(v) if v.is_empty() => {
                    self.err(
                        position(pw),
                        "`password` is empty; remove it, or write `password: ${VAR}`",
                    );
                    None
                }
                Ok(v) => Some(Secret::new(v)),
                Err(e) => {
                    self.err(position(pw), format!("`password`: {e}"));
                    None
                }
            },
            (None, Some(file)) => {
                let path = self.path("password_file", Some(file));
                path.and_then(|p| match read_password_file(&p) {
                    Ok(s) => Some(s),
                    Err(msg) => {
                        self.err(
                            position(file),
                            format!("`password_file` {}: {msg}", p.display()),
                        );
                        None
                    }
                })
            }
            (None, None) => None,
        };
        let client_cert = self.readable_file("client_cert", raw.client_cert.as_ref());
        let client_key = self.readable_file("client_key", raw.client_key.as_ref());
        match (&raw.client_cert, &raw.client_key) {
            (Some(_), None) => self.err(
                at,
                "`client_cert` is given without `client_key`; give both (PEM files)",
            ),
            (None, Some(_)) => self.err(
                at,
                "`client_key` is given without `client_cert`; give both (PEM files)",
            ),
            _ => {}
        }

        // Wiring and limits.
        let phases = self
            .opt("phases", raw.phases.as_ref(), |t| match t {
                "1" => Ok(1),
                "3" => Ok(3),
                _ => Err(format!(
                    "`{t}`: a wallbox is wired with 1 or 3 phases; write 1 or 3"
                )),
            })
            .unwrap_or(3);
        let voltage = self
            .opt("voltage", raw.voltage.as_ref(), |t| match parse_f64(t)? {
                v if v > 0.0 && v <= 1000.0 => Ok(v),
                _ => Err(format!(
                    "{t} V is not a phase voltage; write the nominal voltage, e.g. 230"
                )),
            })
            .unwrap_or(DEFAULT_VOLTAGE);
        let limit = device
            .as_ref()
            .and_then(|m| m.control.current_limit.clone());
        let max_explicit = self.opt(
            "max_current",
            raw.max_current.as_ref(),
            |t| match parse_f64(t)? {
                v if v > 0.0 => Ok(v),
                _ => Err(format!(
                    "{t} A: the installer limit must be above 0 A, e.g. 16"
                )),
            },
        );
        if let (Some(max), Some(limit), Some(s), Some(map)) =
            (max_explicit, &limit, raw.max_current.as_ref(), &device)
        {
            if max > limit.max {
                self.err(
                    position(s),
                    format!(
                        "`max_current`: {max} A is above what the wallbox accepts ({} A, \
                         `control.current_limit.max` of device map `{}`); write at most {}",
                        limit.max, map.name, limit.max
                    ),
                );
            } else if max < limit.min {
                self.err(
                    position(s),
                    format!(
                        "`max_current`: {max} A is below the wallbox's minimum charging current \
                         ({} A, device map `{}`), so it could never charge",
                        limit.min, map.name
                    ),
                );
            }
        }
        let max_current = max_explicit
            .or(limit.as_ref().map(|l| l.max))
            .unwrap_or(DEFAULT_MAX_CURRENT);
        let failsafe_current =
            self.opt(
                "failsafe_current",
                raw.failsafe_current.as_ref(),
                |t| match parse_f64(t)? {
                    v if v >= 0.0 => Ok(v),
                    _ => Err(format!("{t} A: a current cannot be negative")),
                },
            );
        if let (Some(fs), Some(s)) = (failsafe_current, raw.failsafe_current.as_ref())
            && fs > max_current
        {
            self.err(
                position(s),
                format!(
                    "`failsafe_current`: {fs} A is above `max_current` ({max_current} A); \
                     the failsafe must not exceed the installer limit"
                ),
            );
        }
        let poll_interval = self
            .opt(
                "poll_interval",
                raw.poll_interval.as_ref(),
                |t| match crate::duration::parse(t)? {
                    d if d.is_zero() => Err("must be longer than 0, e.g. 1s".to_owned()),
                    d => Ok(d),
                },
            )
            .unwrap_or(DEFAULT_POLL_INTERVAL);
        let authorization = self.authorization(raw.authorization.as_ref(), id.as_deref(), id_at);

        Draft {
            at,
            id,
            id_at,
            device_map,
            device_map_at,
            device,
            link,
            link_at,
            endpoint_key,
            unit,
            unit_at: raw.unit.as_ref().map(position),
            password,
            client_cert,
            client_key,
            phases,
            voltage,
            max_current,
            failsafe_current,
            poll_interval,
            authorization,
        }
    }

    fn authorization(
        &mut self,
        raw: Option<&Spanned<RawAuthorization>>,
        id: Option<&str>,
        id_at: Pos,
    ) -> Authorization {
        let raw = raw.map(|r| &r.value);
        let mode = self
            .opt("mode", raw.and_then(|r| r.mode.as_ref()), |t| match t {
                "free" => Ok(AuthMode::Free),
                "remote" => Ok(AuthMode::Remote),
                _ => Err(format!(
                    "`{t}` is not an authorization mode; use free or remote"
                )),
            })
            .unwrap_or(AuthMode::Free);
        let id_tag = match raw.and_then(|r| r.id_tag.as_ref()) {
            Some(s) => self.opt("id_tag", Some(s), check_id_tag),
            None => {
                let id = id.unwrap_or_default().to_owned();
                // The default only matters when it is sent: in free mode (behaviour.md).
                if mode == AuthMode::Free && id.chars().count() > MAX_ID_TAG_LEN {
                    self.err(
                        id_at,
                        format!(
                            "the id is longer than {MAX_ID_TAG_LEN} characters, so it cannot be \
                             the default idTag (OCPP IdToken); set `authorization: {{ id_tag: ... }}`"
                        ),
                    );
                }
                Some(id)
            }
        };
        Authorization {
            mode,
            id_tag: id_tag.unwrap_or_default(),
        }
    }

    /// Charger ids name the charge point at the central system and key its stored state; two
    /// ids that differ only in case are one identity to many central systems (OCPP CiString).
    fn check_unique_ids(&mut self, drafts: &[Draft]) {
        let mut seen: HashMap<String, Pos> = HashMap::new();
        for d in drafts {
            let Some(id) = &d.id else { continue };
            match seen.get(&id.to_lowercase()) {
                Some(first) => {
                    let line = first.0;
                    self.err(
                        d.id_at,
                        format!(
                            "charger id `{id}` is already used at line {line} (ids are compared \
                             ignoring case); give every charger its own id"
                        ),
                    );
                }
                None => {
                    seen.insert(id.to_lowercase(), d.id_at);
                }
            }
        }
    }

    /// Two chargers answering to one unit on one line (or one TCP endpoint) would read each
    /// other's registers.
    fn check_unique_units(&mut self, drafts: &[Draft]) {
        let mut seen: HashMap<(String, u8), Pos> = HashMap::new();
        for d in drafts {
            let Some(unit) = d.unit else { continue };
            let key = match (&d.link, &d.endpoint_key) {
                (Some(Link::Bus(b)), _) => format!("bus {b}"),
                (Some(Link::Tcp(_)), Some(k)) => format!("tcp {k}"),
                _ => continue,
            };
            let where_ = d.unit_at.unwrap_or(d.link_at);
            match seen.get(&(key.clone(), unit)) {
                Some(first) => {
                    let line = first.0;
                    let what = match &d.link {
                        Some(Link::Bus(b)) => format!("bus `{b}`"),
                        Some(Link::Tcp(t)) => format!("endpoint `{t}`"),
                        None => String::new(),
                    };
                    let default_note = if d.unit_at.is_none() {
                        " (the device map's default unit)"
                    } else {
                        ""
                    };
                    self.err(
                        where_,
                        format!(
                            "unit {unit}{default_note} on {what} is already used by the charger \
                             at line {line}; give each wallbox on one line its own `unit:`"
                        ),
                    );
                }
                None => {
                    seen.insert((key, unit), d.at);
                }
            }
        }
    }

    /// The maps' serial defaults fill the fields a bus leaves out; maps that disagree on one
    /// of them leave the bus undefined, so the installer must choose.
    fn check_serial(&mut self, buses: &[BusDraft], drafts: &[Draft]) {
        for bus in buses {
            let on_bus: Vec<(&Draft, &Arc<DeviceMap>)> = drafts
                .iter()
                .filter(|d| matches!(&d.link, Some(Link::Bus(b)) if *b == bus.name))
                .filter_map(|d| d.device.as_ref().map(|m| (d, m)))
                .filter(|(_, m)| m.modbus.serial.is_some())
                .collect();
            let fields = [
                ("baud", bus.config.baud.is_some()),
                ("parity", bus.config.parity.is_some()),
                ("data_bits", bus.config.data_bits.is_some()),
                ("stop_bits", bus.config.stop_bits.is_some()),
            ];
            for (field, explicit) in fields {
                if explicit {
                    continue;
                }
                let Some((first, first_map)) = on_bus.first() else {
                    continue;
                };
                let want = serial_field(first_map, field);
                for (d, map) in on_bus.iter().skip(1) {
                    let other = serial_field(map, field);
                    if other != want {
                        self.err(
                            d.device_map_at,
                            format!(
                                "bus `{}` sets no `{field}`, and its device maps disagree: `{}` \
                                 (line {}) wants {want}, `{}` wants {other}; set `{field}:` on \
                                 the bus",
                                bus.name, first_map.name, first.device_map_at.0, map.name
                            ),
                        );
                    }
                }
            }
        }
    }

    /// Profile 3 authenticates each charge point by its own certificate (security whitepaper
    /// §1.3.3), so every charger needs one.
    fn check_profile3(&mut self, csms: &Option<CsmsConfig>, drafts: &[Draft]) {
        if csms.as_ref().map(|c| c.security_profile) != Some(3) {
            return;
        }
        for d in drafts {
            if d.client_cert.is_none() || d.client_key.is_none() {
                // Only when neither was given: one without the other is reported already.
                if d.client_cert.is_none() && d.client_key.is_none() {
                    self.err(
                        d.at,
                        "security profile 3 authenticates with a client certificate: give this \
                         charger `client_cert:` and `client_key:` (PEM files)",
                    );
                }
            }
        }
    }
}

fn parse_bool(t: &str) -> Result<bool, String> {
    match t.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("`{t}` is not true or false")),
    }
}

fn parse_f64(t: &str) -> Result<f64, String> {
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("`{t}` is not a number")),
    }
}

fn parse_parity(t: &str) -> Result<Parity, String> {
    match t {
        "none" => Ok(Parity::None),
        "even" => Ok(Parity::Even),
        "odd" => Ok(Parity::Odd),
        _ => Err(format!("`{t}` is not a parity; use none, even or odd")),
    }
}

/// One serial setting of a map, as written in YAML (for comparison and messages).
fn serial_field(map: &DeviceMap, field: &str) -> String {
    let Some(s) = map.modbus.serial else {
        return String::new();
    };
    match field {
        "baud" => s.baud.to_string(),
        "parity" => parity_name(s.parity).to_owned(),
        "data_bits" => s.data_bits.to_string(),
        _ => s.stop_bits.to_string(),
    }
}

fn parity_name(p: Parity) -> &'static str {
    match p {
        Parity::None => "none",
        Parity::Even => "even",
        Parity::Odd => "odd",
    }
}

/// The identity is one URL path segment (percent-encoded, so most characters are fine) and,
/// with Basic Auth, the user name.
fn check_charger_id(t: &str, profile: u8) -> Result<String, String> {
    if t.is_empty() {
        return Err("is empty; write the charge point identity the central system knows".into());
    }
    let len = t.chars().count();
    if len > MAX_CHARGER_ID_LEN {
        return Err(format!(
            "is {len} characters long; a charge point identity has at most {MAX_CHARGER_ID_LEN}"
        ));
    }
    if t.chars().any(char::is_control) {
        return Err("contains a control character; use printable characters only".into());
    }
    // RFC 7617 §2: the user-id of Basic Auth cannot contain a colon.
    if profile != 3 && t.contains(':') {
        return Err(
            "contains `:`, which Basic Auth (security profiles 1 and 2) cannot send as a user name"
                .into(),
        );
    }
    Ok(t.to_owned())
}

fn check_id_tag(t: &str) -> Result<String, String> {
    let len = t.chars().count();
    if t.is_empty() {
        Err("is empty; write the idTag to send, or remove the line".into())
    } else if len > MAX_ID_TAG_LEN {
        Err(format!(
            "is {len} characters long; an OCPP idTag has at most {MAX_ID_TAG_LEN}"
        ))
    } else if t.chars().any(char::is_control) {
        Err("contains a control character".into())
    } else {
        Ok(t.to_owned())
    }
}

/// `ws://` or `wss://`, a host, no credentials (they would end up in logs), no query or
/// fragment (the charger id is appended as a path segment).
fn check_csms_url(t: &str) -> Result<String, String> {
    let lower = t.to_ascii_lowercase();
    let rest = if lower.starts_with("wss://") {
        &t[6..]
    } else if lower.starts_with("ws://") {
        &t[5..]
    } else {
        return Err(format!(
            "`{t}` is not a WebSocket URL; write wss://HOST/PATH (or ws:// with security profile 1)"
        ));
    };
    if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains spaces or control characters".into());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(
            "contains credentials (`user:password@`); remove them and give each charger \
             `password:` or `password_file:` instead"
                .into(),
        );
    }
    if authority.is_empty() || authority.starts_with(':') {
        return Err(format!("`{t}` has no host name"));
    }
    if rest.contains(['?', '#']) {
        return Err(format!(
            "`{t}` has a query or fragment; the charger id is appended as a path segment, so \
             the URL must end with its path"
        ));
    }
    Ok(t.to_owned())
}

/// `host:port` or `[v6]:port`; returns the text as written and a normalised key.
fn parse_endpoint(t: &str) -> Result<(String, String), String> {
    let usage = "write HOST:PORT, e.g. 192.168.10.21:502";
    if t.contains("://") {
        return Err(format!("`{t}` has a scheme; {usage}"));
    }
    let (host, port) = if let Some(rest) = t.strip_prefix('[') {
        rest.split_once("]:")
            .ok_or_else(|| format!("`{t}` is not [IPv6]:PORT; e.g. [fd00::21]:502"))?
    } else {
        let (h, p) = t
            .rsplit_once(':')
            .ok_or_else(|| format!("`{t}` has no port; {usage}"))?;
        if h.contains(':') {
            return Err(format!(
                "`{t}`: write an IPv6 address in brackets, e.g. [fd00::21]:502"
            ));
        }
        (h, p)
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{t}` has no valid host; {usage}"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((t.to_owned(), format!("{}:{p}", host.to_ascii_lowercase()))),
        _ => Err(format!("`{port}` is not a TCP port (1..=65535); {usage}")),
    }
}

/// The whole file minus one trailing newline (interfaces.md §2). Errors never include content.
fn read_password_file(path: &Path) -> Result<Secret, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot be read: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_PASSWORD_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot be read: {e}"))?;
    if bytes.len() as u64 > MAX_PASSWORD_FILE_BYTES {
        return Err(format!(
            "is larger than {MAX_PASSWORD_FILE_BYTES} bytes; it should hold only the password"
        ));
    }
    let mut text = String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_owned())?;
    if text.ends_with('\n') {
        text.pop();
        // An editor on Windows ends the line with CR LF; that is still one newline.
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.is_empty() {
        return Err("is empty; write the password into it".into());
    }
    Ok(Secret::new(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_normalised_for_comparison() {
        assert_eq!(
            parse_endpoint("Box.LAN:502"),
            Ok(("Box.LAN:502".into(), "box.lan:502".into()))
        );
        assert_eq!(
            parse_endpoint("[fd00::21]:502").map(|e| e.1),
            Ok("fd00::21:502".into())
        );
        assert!(parse_endpoint("box.lan").is_err());
        assert!(parse_endpoint("fd00::21:502").is_err());
        assert!(parse_endpoint("box:0").is_err());
        assert!(parse_endpoint(":502").is_err());
        assert!(parse_endpoint("tcp://box:502").is_err());
    }

    #[test]
    fn csms_urls_need_scheme_host_and_no_credentials() {
        assert!(check_csms_url("wss://csms.example.com/ocpp").is_ok());
        assert!(check_csms_url("WS://10.0.0.1:8180/steve/websocket/CentralSystemService").is_ok());
        assert!(check_csms_url("https://csms.example.com/ocpp").is_err());
        assert!(check_csms_url("wss:///ocpp").is_err());
        assert!(check_csms_url("wss://u:p@csms.example.com/ocpp").is_err());
        assert!(check_csms_url("wss://csms.example.com/ocpp?x=1").is_err());
    }

    #[test]
    fn yaml_errors_drop_the_location_suffix() {
        let e = serde_saphyr::from_str::<RawConfig>("nope: 1\n").unwrap_err();
        let d = yaml_error("f.yaml", &e);
        assert_eq!((d.line, d.column), (1, 1));
        assert!(
            d.message.starts_with("unknown field `nope`"),
            "{}",
            d.message
        );
        assert!(!d.message.contains("at line"), "{}", d.message);
    }
}
