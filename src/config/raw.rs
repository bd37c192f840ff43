//! The YAML shapes of `chargebridge.yaml`, before validation.
//!
//! Every leaf is read as a located string (`Spanned<String>`): serde-saphyr accepts any YAML
//! scalar there, so `${VAR}` may stand anywhere and every value problem (a bad number, an
//! unknown choice) is found by the validator, which reports all of them with their position
//! instead of stopping at the first. Structure problems (unknown fields, a list where a map
//! belongs, YAML syntax) stop the parse: serde cannot continue past them.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_saphyr::{Location, Spanned};

// No `Debug` on these shapes: they hold passwords as written, and nothing should print them.

/// A scalar with its position.
pub(super) type Str = Spanned<String>;

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub state_dir: Option<Str>,
    pub http: Option<Spanned<RawHttp>>,
    pub log: Option<Spanned<RawLog>>,
    pub device_map_dirs: Option<Spanned<Vec<Str>>>,
    pub csms: Option<Spanned<RawCsms>>,
    pub buses: Option<Spanned<EntryList<Spanned<RawBus>>>>,
    pub chargers: Option<Spanned<Vec<Spanned<RawCharger>>>>,
}

/// `http:`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub listen: Option<Str>,
    pub allow_remote: Option<Str>,
}

/// `log:`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub format: Option<Str>,
    pub filter: Option<Str>,
}

/// `csms:`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCsms {
    pub url: Option<Str>,
    pub security_profile: Option<Str>,
    pub ca_file: Option<Str>,
    pub allow_insecure: Option<Str>,
}

/// One entry of `buses:`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBus {
    pub port: Option<Str>,
    pub baud: Option<Str>,
    pub parity: Option<Str>,
    pub data_bits: Option<Str>,
    pub stop_bits: Option<Str>,
    pub timeout: Option<Str>,
    pub request_delay: Option<Str>,
}

/// One entry of `chargers:`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCharger {
    pub id: Option<Str>,
    pub device_map: Option<Str>,
    pub bus: Option<Str>,
    pub tcp: Option<Str>,
    pub unit: Option<Str>,
    pub password: Option<Str>,
    pub password_file: Option<Str>,
    pub client_cert: Option<Str>,
    pub client_key: Option<Str>,
    pub phases: Option<Str>,
    pub voltage: Option<Str>,
    pub max_current: Option<Str>,
    pub failsafe_current: Option<Str>,
    pub poll_interval: Option<Str>,
    pub authorization: Option<Spanned<RawAuthorization>>,
}

/// `authorization:` of a charger.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuthorization {
    pub mode: Option<Str>,
    pub id_tag: Option<Str>,
}

/// A YAML mapping kept as a list of located keys and values, in file order.
///
/// `Spanned` keys cannot go into a hash map; a list also keeps the order installers wrote.
pub(super) struct EntryList<V>(pub Vec<(Str, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for EntryList<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntryVisitor<V>(PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for EntryVisitor<V> {
            type Value = EntryList<V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of names to settings")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<Str, V>()? {
                    entries.push(entry);
                }
                Ok(EntryList(entries))
            }
        }

        d.deserialize_map(EntryVisitor(PhantomData))
    }
}

/// Line and column (1-based) of where a value is used.
pub(super) fn position<T>(s: &Spanned<T>) -> (u64, u64) {
    loc(&s.referenced)
}

/// Line and column (1-based) of a location.
pub(super) fn loc(l: &Location) -> (u64, u64) {
    (l.line(), l.column())
}
