//! One poll's worth of decoded data, in OCPP terms.

use crate::devicemap::{DeviceMap, Iec61851State, RegisterImage, StatusKey, codec};

/// One measurand value (one phase of it, where the map gives phases).
#[derive(Clone, Debug, PartialEq)]
pub struct MeasuredValue {
    /// OCPP measurand, e.g. `Power.Active.Import`.
    pub measurand: String,
    /// OCPP phase, e.g. `L1` or `L1-N`; `None` for a total.
    pub phase: Option<String>,
    /// Value in the OCPP unit of the measurand.
    pub value: f64,
}

/// What the wallbox reported in one poll.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Reading {
    /// IEC 61851 state; `Err(raw)` for a value the status map does not list; `None` if unread.
    pub state: Option<Result<Iec61851State, String>>,
    /// The raw status value as text (vendorErrorCode for faults).
    pub raw_status: Option<String>,
    /// Every measurand value the map provides and the device answered.
    pub values: Vec<MeasuredValue>,
}

/// The measurand that carries the energy register.
pub const ENERGY: &str = "Energy.Active.Import.Register";
/// Active power drawn.
pub const POWER: &str = "Power.Active.Import";

/// The status register's raw value as text (a number or the text it holds), as shown for
/// vendorErrorCode and in probe reports; `None` if it was not read or does not decode.
#[must_use]
pub fn raw_status(map: &DeviceMap, image: &RegisterImage) -> Option<String> {
    let status_reg = map.register(map.status.register);
    image
        .words(status_reg)
        .and_then(|w| codec::status_key(status_reg, &w).ok().flatten())
        .map(|k| match k {
            StatusKey::Number(n) => n.to_string(),
            StatusKey::Text(t) => t,
        })
}

impl Reading {
    /// Decodes a reading from the words read this cycle.
    #[must_use]
    pub fn from_image(map: &DeviceMap, image: &RegisterImage) -> Self {
        let raw_status = raw_status(map, image);
        let values = map
            .measurands
            .iter()
            .flat_map(|m| {
                m.sources.iter().filter_map(|(phase, id)| {
                    Some(MeasuredValue {
                        measurand: m.measurand.clone(),
                        phase: phase.clone(),
                        value: image.number(map, *id)?,
                    })
                })
            })
            .collect();
        Self {
            state: image.iec_state(map),
            raw_status,
            values,
        }
    }

    /// The total of one measurand: its phase-less value, or the sum of its phases for
    /// additive measurands (power, current is per phase and is not summed).
    #[must_use]
    pub fn total(&self, measurand: &str) -> Option<f64> {
        let mut total = None;
        for v in self.values.iter().filter(|v| v.measurand == measurand) {
            if v.phase.is_none() {
                return Some(v.value);
            }
            total = Some(total.unwrap_or(0.0) + v.value);
        }
        total
    }

    /// The energy register in Wh.
    #[must_use]
    pub fn energy_wh(&self) -> Option<f64> {
        self.total(ENERGY)
    }

    /// Active power in W; derived from currents and voltages when the map has no power register.
    #[must_use]
    pub fn power_w(&self) -> Option<f64> {
        if let Some(p) = self.total(POWER) {
            return Some(p);
        }
        let currents: Vec<&MeasuredValue> = self
            .values
            .iter()
            .filter(|v| v.measurand == "Current.Import")
            .collect();
        if currents.is_empty() {
            return None;
        }
        let voltage_of = |phase: Option<&str>| {
            self.values
                .iter()
                .filter(|v| v.measurand == "Voltage")
                .find(|v| match (v.phase.as_deref(), phase) {
                    (Some(vp), Some(cp)) => vp.starts_with(cp),
                    _ => true,
                })
                .map(|v| v.value)
        };
        let mut sum = 0.0;
        for c in currents {
            sum += c.value * voltage_of(c.phase.as_deref())?;
        }
        Some(sum)
    }
}

/// The OCPP unit of a measurand, where the spec defines one.
#[must_use]
pub fn unit_of(measurand: &str) -> Option<&'static str> {
    Some(match measurand {
        m if m.starts_with("Energy.Active") => "Wh",
        m if m.starts_with("Energy.Reactive") => "varh",
        m if m.starts_with("Power.Active") || m == "Power.Offered" => "W",
        m if m.starts_with("Power.Reactive") => "var",
        m if m.starts_with("Current") => "A",
        "Voltage" => "V",
        "Temperature" => "Celsius",
        "SoC" => "Percent",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(m: &str, phase: Option<&str>, value: f64) -> MeasuredValue {
        MeasuredValue {
            measurand: m.into(),
            phase: phase.map(Into::into),
            value,
        }
    }

    #[test]
    fn power_is_derived_from_currents_and_voltages_when_missing() {
        let r = Reading {
            values: vec![
                v("Current.Import", Some("L1"), 10.0),
                v("Current.Import", Some("L2"), 10.0),
                v("Voltage", Some("L1-N"), 230.0),
                v("Voltage", Some("L2-N"), 220.0),
            ],
            ..Reading::default()
        };
        assert_eq!(r.power_w(), Some(4500.0));
        let with_power = Reading {
            values: vec![v(POWER, None, 11000.0)],
            ..Reading::default()
        };
        assert_eq!(with_power.power_w(), Some(11000.0));
    }

    #[test]
    fn units_follow_the_spec() {
        assert_eq!(unit_of(ENERGY), Some("Wh"));
        assert_eq!(unit_of("Temperature"), Some("Celsius"));
        assert_eq!(unit_of("Frequency"), None);
    }
}
