//! From the raw YAML shapes to a [`Config`], collecting every problem with its position.
//!
//! Each value is checked where it is read; values that fail are replaced by their default so
//! the rest of the file is still checked (one typo must not hide the next). Checks between
//! values (duplicates, buses, serial settings, security profile) run after all chargers are
//! read. A [`Config`] is returned only when no problem was found.

mod charger;
mod cross;
mod sections;
mod values;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use serde_saphyr::Spanned;

use super::raw::{RawConfig, Str, position};
use super::{
    Authorization, BusConfig, ChargerConfig, Config, DEFAULT_DEVICE_MAP_DIR, DEFAULT_STATE_DIR,
    Link, ResolveMapIn, Secret, expand,
};
use crate::devicemap::DeviceMap;
use crate::diag::{Diagnostic, Diagnostics};

/// A line and column.
type Pos = (u64, u64);

/// The map resolver as the charger code uses it (the search directories already bound).
type Resolver<'a> = &'a dyn Fn(&str) -> Result<Arc<DeviceMap>, String>;

pub(super) fn load_str(
    file_label: &str,
    yaml: &str,
    env: &dyn Fn(&str) -> Option<String>,
    resolve_map: ResolveMapIn<'_>,
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
    password_file: Option<PathBuf>,
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
            password_file: self.password_file,
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
    /// Where `port:` is written (the bus name when it is missing).
    port_at: Pos,
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
        let readable = values::check_regular_file(&path)
            .and_then(|()| std::fs::File::open(&path).map_err(|e| format!("cannot be read: {e}")));
        if let (Err(msg), Some(s)) = (readable, s) {
            self.err(position(s), format!("`{field}` {}: {msg}", path.display()));
        }
        Some(path)
    }

    fn config(&mut self, raw: &Spanned<RawConfig>, resolve: ResolveMapIn<'_>) -> Option<Config> {
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
                let resolve = |name: &str| resolve(name, &device_map_dirs);
                let bus_names: Vec<String> = buses.iter().map(|b| b.name.clone()).collect();
                list.value
                    .iter()
                    .map(|c| self.charger(c, csms.as_ref(), &bus_names, &resolve, &mut cache))
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
        self.check_profile3(csms.as_ref(), &drafts);
        self.check_bus_ports(&buses);

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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_errors_drop_the_location_suffix() {
        let Err(e) = serde_saphyr::from_str::<RawConfig>("nope: 1\n") else {
            panic!("unknown field accepted");
        };
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
