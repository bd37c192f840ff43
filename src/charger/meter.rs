//! MeterValues payloads from a reading (OCPP §3.16, §7.43; errata 3.77).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::reading::{ENERGY, MeasuredValue, Reading, unit_of};

/// RFC 3339 in UTC with millisecond precision, as every JSON-schema validator accepts.
#[must_use]
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The value as sent: energy registers as integer Wh, everything else with at most 2 decimals.
fn format_value(v: &MeasuredValue) -> String {
    if v.measurand.starts_with("Energy") {
        format!("{:.0}", v.value.round())
    } else {
        let rounded = (v.value * 100.0).round() / 100.0;
        let s = format!("{rounded:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// Where a measurand is taken: the outlet, the wallbox's own meter.
fn location_of(measurand: &str) -> &'static str {
    if measurand == "Temperature" {
        "Body"
    } else {
        "Outlet"
    }
}

/// The sampled values of the requested measurands (entries may name a phase, `Voltage.L1`).
#[must_use]
pub fn sampled_values(reading: &Reading, measurands: &[String], context: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for requested in measurands {
        let (name, phase) = split_phase(requested);
        for v in reading.values.iter().filter(|v| v.measurand == name) {
            if let Some(p) = phase
                && !v
                    .phase
                    .as_deref()
                    .is_some_and(|vp| vp == p || vp.starts_with(&format!("{p}-")))
            {
                continue;
            }
            let mut sv = json!({
                "value": format_value(v),
                "context": context,
                "measurand": v.measurand,
                "location": location_of(&v.measurand),
            });
            if let Some(unit) = unit_of(&v.measurand) {
                sv["unit"] = json!(unit);
            }
            if let Some(p) = &v.phase {
                sv["phase"] = json!(p);
            }
            out.push(sv);
        }
        // A map without a power register still reports power, derived from I x U.
        if name == super::reading::POWER
            && phase.is_none()
            && !reading.values.iter().any(|v| v.measurand == name)
            && let Some(p) = reading.power_w()
        {
            out.push(json!({
                "value": format!("{:.0}", p.round()),
                "context": context,
                "measurand": name,
                "location": "Outlet",
                "unit": "W",
            }));
        }
    }
    out
}

/// Splits `Voltage.L1` into (`Voltage`, `L1`); measurand names themselves contain dots, so
/// only a known phase suffix counts.
fn split_phase(entry: &str) -> (&str, Option<&str>) {
    for phase in [
        "L1-N", "L2-N", "L3-N", "L1-L2", "L2-L3", "L3-L1", "L1", "L2", "L3", "N",
    ] {
        if let Some(name) = entry.strip_suffix(phase).and_then(|n| n.strip_suffix('.')) {
            return (name, Some(phase));
        }
    }
    (entry, None)
}

/// One `meterValue` element.
#[must_use]
pub fn meter_value(at: DateTime<Utc>, sampled: Vec<Value>) -> Value {
    json!({ "timestamp": timestamp(at), "sampledValue": sampled })
}

/// The energy register as integer Wh (meterStart / meterStop are JSON integers).
#[must_use]
#[allow(clippy::cast_possible_truncation)]
pub fn energy_int(reading: &Reading) -> Option<i64> {
    reading.energy_wh().map(|e| e.round() as i64)
}

/// Whether a reading carries the energy register.
#[must_use]
pub fn has_energy(reading: &Reading) -> bool {
    reading.values.iter().any(|v| v.measurand == ENERGY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading() -> Reading {
        let v = |m: &str, p: Option<&str>, value| MeasuredValue {
            measurand: m.into(),
            phase: p.map(Into::into),
            value,
        };
        Reading {
            values: vec![
                v(ENERGY, None, 12345.6),
                v("Power.Active.Import", None, 11040.0),
                v("Voltage", Some("L1-N"), 231.0),
                v("Voltage", Some("L2-N"), 229.5),
                v("Current.Import", Some("L1"), 16.04),
            ],
            ..Reading::default()
        }
    }

    #[test]
    fn energy_is_integer_wh_with_unit_and_context() {
        let sv = sampled_values(&reading(), &[ENERGY.to_owned()], "Sample.Periodic");
        assert_eq!(sv.len(), 1);
        assert_eq!(sv[0]["value"], "12346");
        assert_eq!(sv[0]["unit"], "Wh");
        assert_eq!(sv[0]["context"], "Sample.Periodic");
        assert_eq!(sv[0]["location"], "Outlet");
        assert!(sv[0].get("phase").is_none());
    }

    #[test]
    fn every_phase_is_reported_and_a_phase_entry_filters() {
        let all = sampled_values(&reading(), &["Voltage".to_owned()], "Trigger");
        assert_eq!(all.len(), 2);
        assert_eq!(all[1]["phase"], "L2-N");
        assert_eq!(all[1]["value"], "229.5");
        let one = sampled_values(&reading(), &["Voltage.L1".to_owned()], "Trigger");
        assert_eq!(one.len(), 1);
        assert_eq!(one[0]["value"], "231");
    }

    #[test]
    fn timestamps_are_utc_with_milliseconds() {
        let t = DateTime::parse_from_rfc3339("2026-12-01T10:00:00.123456+02:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(timestamp(t), "2026-12-01T08:00:00.123Z");
    }
}
