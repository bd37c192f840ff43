//! One `chargers:` entry: identity, device map, link and unit, secrets, limits, authorization.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_saphyr::Spanned;

use super::values::{
    check_charger_id, check_id_tag, parse_endpoint, parse_f64, read_password_file,
};
use super::{Draft, Pos, Resolver, Validator};
use crate::config::raw::{RawAuthorization, RawCharger, position};
use crate::config::{
    AuthMode, Authorization, CsmsConfig, DEFAULT_MAX_CURRENT, DEFAULT_POLL_INTERVAL,
    DEFAULT_SECURITY_PROFILE, DEFAULT_VOLTAGE, Link, MAX_ID_TAG_LEN, Secret, expand,
};
use crate::devicemap::{CurrentLimitSpec, DeviceMap};

/// Device maps resolved so far, by the name passed to the resolver.
pub(super) type MapCache = HashMap<String, Option<Arc<DeviceMap>>>;

/// What the link part of an entry yields.
struct LinkDraft {
    link: Option<Link>,
    at: Pos,
    endpoint_key: Option<String>,
    /// Written with `bus:` (even if that bus is unknown): RTU rules apply.
    on_bus: bool,
}

impl Validator<'_> {
    pub(super) fn charger(
        &mut self,
        entry: &Spanned<RawCharger>,
        csms: Option<&CsmsConfig>,
        bus_names: &[String],
        resolve: Resolver<'_>,
        cache: &mut MapCache,
    ) -> Draft {
        let at = position(entry);
        let raw = &entry.value;
        let profile = csms.map_or(DEFAULT_SECURITY_PROFILE, |c| c.security_profile);

        let id = match &raw.id {
            Some(s) => self.opt("id", Some(s), |t| check_charger_id(t, profile)),
            None => {
                self.err(at, "a charger needs `id:` (its OCPP charge point identity)");
                None
            }
        };
        let id_at = raw.id.as_ref().map_or(at, position);
        let device_map_at = raw.device_map.as_ref().map_or(at, position);
        let device_map = self.device_map_name(at, raw);
        let device = device_map
            .as_ref()
            .and_then(|name| self.resolve_map(name, device_map_at, resolve, cache));
        let link = self.link(at, raw, bus_names);
        let unit = self.unit(raw, device.as_deref(), &link, device_map_at);
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
        let (password, password_file) = self.password(raw);
        let (client_cert, client_key) = self.client_certificate(at, raw);

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
        let max_current = self.max_current(raw, device.as_deref());
        let failsafe_current = self.failsafe_current(raw, device.as_deref(), max_current);
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
            link: link.link,
            link_at: link.at,
            endpoint_key: link.endpoint_key,
            unit,
            unit_at: raw.unit.as_ref().map(position),
            password,
            password_file,
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

    /// The name handed to the map resolver. Anything that looks like a path (contains `/`, or
    /// ends in `.yaml`/`.yml`, the device-map loader's rule) is taken relative to the
    /// configuration file; a built-in or search-directory name is passed as written.
    fn device_map_name(&mut self, at: Pos, raw: &RawCharger) -> Option<String> {
        let Some(s) = &raw.device_map else {
            self.err(
                at,
                "a charger needs `device_map:` (a built-in map name or a path to a YAML file)",
            );
            return None;
        };
        let base = self.base_dir.clone();
        self.opt("device_map", Some(s), |t| {
            let is_path = t.contains('/') || t.ends_with(".yaml") || t.ends_with(".yml");
            if t.is_empty() {
                Err("is empty; write a built-in map name or a path".to_owned())
            } else if is_path {
                Ok(base.join(t).display().to_string())
            } else {
                Ok(t.to_owned())
            }
        })
    }

    /// Resolves each map once: chargers of one model share one `Arc`, and a broken map is
    /// reported once, at its first use.
    fn resolve_map(
        &mut self,
        name: &str,
        at: Pos,
        resolve: Resolver<'_>,
        cache: &mut MapCache,
    ) -> Option<Arc<DeviceMap>> {
        if let Some(cached) = cache.get(name) {
            return cached.clone();
        }
        let resolved = match resolve(name) {
            Ok(map) => Some(map),
            Err(msg) => {
                self.err(at, format!("`device_map`: cannot load `{name}`: {msg}"));
                None
            }
        };
        cache.insert(name.to_owned(), resolved.clone());
        resolved
    }

    /// Exactly one of `bus:` (Modbus RTU) and `tcp:` (Modbus TCP).
    fn link(&mut self, at: Pos, raw: &RawCharger, bus_names: &[String]) -> LinkDraft {
        match (&raw.bus, &raw.tcp) {
            (Some(_), Some(tcp)) => {
                self.err(
                    position(tcp),
                    "a charger has either `bus:` (Modbus RTU) or `tcp:` (Modbus TCP), not both",
                );
                LinkDraft {
                    link: None,
                    at: position(tcp),
                    endpoint_key: None,
                    on_bus: false,
                }
            }
            (None, None) => {
                self.err(
                    at,
                    "a charger needs `bus:` (a bus from `buses:`, Modbus RTU) or \
                     `tcp: HOST:PORT` (Modbus TCP)",
                );
                LinkDraft {
                    link: None,
                    at,
                    endpoint_key: None,
                    on_bus: false,
                }
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
                LinkDraft {
                    link: name.map(Link::Bus),
                    at: position(bus),
                    endpoint_key: None,
                    on_bus: true,
                }
            }
            (None, Some(tcp)) => {
                let parsed = self.opt("tcp", Some(tcp), parse_endpoint);
                let (link, endpoint_key) = match parsed {
                    Some((written, key)) => (Some(Link::Tcp(written)), Some(key)),
                    None => (None, None),
                };
                LinkDraft {
                    link,
                    at: position(tcp),
                    endpoint_key,
                    on_bus: false,
                }
            }
        }
    }

    /// The unit, explicit or the map's default. RTU reserves 0 for broadcast (never answered)
    /// and 248..=255 (Modbus over Serial Line V1.02, addressing rules); TCP gateways take any byte.
    fn unit(
        &mut self,
        raw: &RawCharger,
        device: Option<&DeviceMap>,
        link: &LinkDraft,
        device_map_at: Pos,
    ) -> Option<u8> {
        let explicit = self.opt("unit", raw.unit.as_ref(), |t| {
            t.parse::<u8>()
                .map_err(|_| format!("`{t}` is not a Modbus unit id (0..=255)"))
        });
        let unit = match (explicit, device) {
            (Some(u), _) => u,
            (None, Some(map)) if raw.unit.is_none() => map.modbus.unit,
            _ => return None,
        };
        if link.on_bus && !(1..=247).contains(&unit) {
            let (at, source) = match &raw.unit {
                Some(s) => (position(s), "`unit`"),
                None => (device_map_at, "the device map's default unit"),
            };
            self.err(
                at,
                format!(
                    "{source} {unit} cannot be used on an RS-485 bus: Modbus RTU unit ids are \
                     1..=247 (0 is broadcast); set `unit:`"
                ),
            );
        }
        Some(unit)
    }

    /// `password` (may be `${VAR}`) or `password_file`; never both. Messages name variables
    /// and paths, never values.
    fn password(&mut self, raw: &RawCharger) -> (Option<Secret>, Option<PathBuf>) {
        let secret = match (&raw.password, &raw.password_file) {
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
                let Some(path) = self.path("password_file", Some(file)) else {
                    return (None, None);
                };
                match read_password_file(&path) {
                    Ok(s) => return (Some(s), Some(path)),
                    Err(msg) => {
                        self.err(
                            position(file),
                            format!("`password_file` {}: {msg}", path.display()),
                        );
                        None
                    }
                }
            }
            (None, None) => None,
        };
        (secret, None)
    }

    /// `client_cert` and `client_key` come as a pair.
    fn client_certificate(
        &mut self,
        at: Pos,
        raw: &RawCharger,
    ) -> (Option<PathBuf>, Option<PathBuf>) {
        let cert = self.readable_file("client_cert", raw.client_cert.as_ref());
        let key = self.readable_file("client_key", raw.client_key.as_ref());
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
        (cert, key)
    }

    /// The installer limit: explicit (within what the wallbox accepts), else the map's
    /// `current_limit.max`, else 16 A.
    fn max_current(&mut self, raw: &RawCharger, device: Option<&DeviceMap>) -> f64 {
        let explicit = self.opt(
            "max_current",
            raw.max_current.as_ref(),
            |t| match parse_f64(t)? {
                v if v > 0.0 => Ok(v),
                _ => Err(format!(
                    "{t} A: the installer limit must be above 0 A, e.g. 16"
                )),
            },
        );
        let limit: Option<&CurrentLimitSpec> =
            device.and_then(|m| m.control.current_limit.as_ref());
        if let (Some(max), Some(limit), Some(s), Some(map)) =
            (explicit, limit, raw.max_current.as_ref(), device)
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
        explicit
            .or(limit.map(|l| l.max))
            .unwrap_or(DEFAULT_MAX_CURRENT)
    }

    /// At most `max_current`; and 0 (stop) or at least the wallbox's minimum, since IEC 61851
    /// offers no current between 0 and 6 A and the boxes reject such a failsafe value.
    fn failsafe_current(
        &mut self,
        raw: &RawCharger,
        device: Option<&DeviceMap>,
        max_current: f64,
    ) -> Option<f64> {
        let failsafe =
            self.opt(
                "failsafe_current",
                raw.failsafe_current.as_ref(),
                |t| match parse_f64(t)? {
                    v if v >= 0.0 => Ok(v),
                    _ => Err(format!("{t} A: a current cannot be negative")),
                },
            );
        if let (Some(fs), Some(s)) = (failsafe, raw.failsafe_current.as_ref())
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
        let min = device
            .and_then(|m| m.control.current_limit.as_ref())
            .map(|l| l.min);
        if let (Some(fs), Some(min), Some(s)) = (failsafe, min, raw.failsafe_current.as_ref())
            && fs > 0.0
            && fs < min
        {
            self.err(
                position(s),
                format!(
                    "`failsafe_current`: {fs} A is below the wallbox's minimum charging current \
                     ({min} A); write 0 to stop charging, or at least {min}"
                ),
            );
        }
        failsafe
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
                // The default only matters where it is sent: StartTransaction in free mode
                // (behaviour.md); OCPP 1.6 IdToken is CiString20Type.
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
}
