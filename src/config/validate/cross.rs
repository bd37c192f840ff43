//! Checks between chargers and buses, after every entry is read.

use std::collections::HashMap;
use std::sync::Arc;

use super::values::serial_field;
use super::{BusDraft, Draft, Pos, Validator};
use crate::config::{CsmsConfig, Link};
use crate::devicemap::DeviceMap;

impl Validator<'_> {
    /// Charger ids name the charge point at the central system and key its stored state; two
    /// ids that differ only in case are one identity to many central systems (OCPP CiString).
    pub(super) fn check_unique_ids(&mut self, drafts: &[Draft]) {
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
    pub(super) fn check_unique_units(&mut self, drafts: &[Draft]) {
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
    pub(super) fn check_serial(&mut self, buses: &[BusDraft], drafts: &[Draft]) {
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

    /// Profile 3 authenticates each charge point by its own client certificate (OCPP 1.6
    /// security whitepaper, security profile 3), so every charger needs one.
    pub(super) fn check_profile3(&mut self, csms: Option<&CsmsConfig>, drafts: &[Draft]) {
        if csms.map(|c| c.security_profile) != Some(3) {
            return;
        }
        for d in drafts {
            // Only when neither is given: one without the other is reported already.
            if d.client_cert.is_none() && d.client_key.is_none() {
                self.err(
                    d.at,
                    "security profile 3 authenticates with a client certificate: give this \
                     charger `client_cert:` and `client_key:` (PEM files)",
                );
            }
        }
    }

    /// One serial port is one bus: two bus entries on one port would be two tasks fighting
    /// over the line.
    pub(super) fn check_bus_ports(&mut self, buses: &[BusDraft]) {
        for (i, bus) in buses.iter().enumerate() {
            if bus.config.port.is_empty() {
                continue;
            }
            if let Some(first) = buses[..i].iter().find(|b| b.config.port == bus.config.port) {
                self.err(
                    bus.port_at,
                    format!(
                        "`port`: {} is already the port of bus `{}`; put every charger on that \
                         line under one bus",
                        bus.config.port, first.name
                    ),
                );
            }
        }
    }
}
