//! The connector status from the wallbox's state (behaviour.md, status table; OCPP §4.9).

use crate::devicemap::Iec61851State;

/// OCPP ChargePointStatus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Status {
    /// No vehicle, ready.
    Available,
    /// Vehicle plugged, no transaction yet.
    Preparing,
    /// Energy flows.
    Charging,
    /// The EV does not take energy although it is offered (B2, errata 3.55).
    SuspendedEV,
    /// The EVSE offers no energy (limit off, errata 3.64).
    SuspendedEVSE,
    /// Transaction stopped, vehicle still plugged.
    Finishing,
    /// Reserved (not used by this gateway).
    Reserved,
    /// Taken out of service by ChangeAvailability.
    Unavailable,
    /// A fault.
    Faulted,
}

impl Status {
    /// The OCPP wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Available => "Available",
            Status::Preparing => "Preparing",
            Status::Charging => "Charging",
            Status::SuspendedEV => "SuspendedEV",
            Status::SuspendedEVSE => "SuspendedEVSE",
            Status::Finishing => "Finishing",
            Status::Reserved => "Reserved",
            Status::Unavailable => "Unavailable",
            Status::Faulted => "Faulted",
        }
    }
}

/// A status with its error details, as sent in StatusNotification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusReport {
    /// The status.
    pub status: Status,
    /// OCPP ChargePointErrorCode.
    pub error_code: &'static str,
    /// Free text (max 50 characters).
    pub info: Option<String>,
    /// The wallbox's own error code (max 50 characters).
    pub vendor_error_code: Option<String>,
}

impl StatusReport {
    /// A status without error.
    #[must_use]
    pub fn ok(status: Status) -> Self {
        Self {
            status,
            error_code: "NoError",
            info: None,
            vendor_error_code: None,
        }
    }

    fn faulted(vendor_error_code: String, info: Option<String>) -> Self {
        Self {
            status: Status::Faulted,
            error_code: "OtherError",
            info: info.map(|i| truncate(&i, 50)),
            vendor_error_code: Some(truncate(&vendor_error_code, 50)),
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// `vendorErrorCode` while the wallbox does not answer on Modbus.
pub const MODBUS_UNREACHABLE: &str = "ModbusUnreachable";

/// Everything the connector status depends on.
#[derive(Clone, Debug, Default)]
pub struct StatusInputs<'a> {
    /// Last known IEC state (`Err(raw)` = unmapped raw value); `None` = never read.
    pub state: Option<&'a Result<Iec61851State, String>>,
    /// Raw status value as text.
    pub raw_status: Option<&'a str>,
    /// Modbus has been failing long enough to call the wallbox unreachable.
    pub unreachable: Option<&'a str>,
    /// A transaction is running.
    pub transaction: bool,
    /// A transaction ended while the vehicle stayed plugged.
    pub finishing: bool,
    /// Set Inoperative by ChangeAvailability.
    pub unavailable: bool,
}

/// The connector's status per the table in behaviour.md.
#[must_use]
pub fn connector_status(i: &StatusInputs<'_>) -> StatusReport {
    use Iec61851State as S;
    if let Some(err) = i.unreachable {
        return StatusReport::faulted(MODBUS_UNREACHABLE.into(), Some(err.to_owned()));
    }
    let state = match i.state {
        None => {
            // Nothing read yet: report Available only if nothing else is known; the first
            // successful poll corrects it.
            return StatusReport::ok(if i.unavailable {
                Status::Unavailable
            } else {
                Status::Available
            });
        }
        Some(Err(raw)) => return StatusReport::faulted(raw.clone(), None),
        Some(Ok(s)) => *s,
    };
    if matches!(state, S::E | S::F) {
        let raw = i.raw_status.unwrap_or(state.as_str());
        return StatusReport::faulted(
            raw.to_owned(),
            Some(format!("IEC 61851 state {}", state.as_str())),
        );
    }
    if i.unavailable && !i.transaction {
        return StatusReport::ok(Status::Unavailable);
    }
    let status = match (state, i.transaction) {
        (S::A, _) => Status::Available,
        (_, false) if i.finishing => Status::Finishing,
        (S::C2 | S::D2, _) => Status::Charging,
        (S::B1 | S::B2 | S::C1 | S::D1, false) => Status::Preparing,
        // SuspendedEV: current offered, the EV does not take it (B2, errata 3.55);
        // SuspendedEVSE: the EVSE offers nothing (errata 3.64).
        (S::B2, true) => Status::SuspendedEV,
        (S::B1 | S::C1 | S::D1, true) => Status::SuspendedEVSE,
        (S::E | S::F, _) => Status::Faulted,
    };
    StatusReport::ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: Iec61851State, transaction: bool, finishing: bool) -> Status {
        let st = Ok(state);
        connector_status(&StatusInputs {
            state: Some(&st),
            transaction,
            finishing,
            ..StatusInputs::default()
        })
        .status
    }

    #[test]
    fn the_status_table_of_behaviour_md() {
        use Iec61851State as S;
        assert_eq!(status(S::A, false, false), Status::Available);
        assert_eq!(status(S::B1, false, false), Status::Preparing);
        assert_eq!(status(S::B2, false, false), Status::Preparing);
        assert_eq!(status(S::B1, true, false), Status::SuspendedEVSE);
        assert_eq!(status(S::C1, true, false), Status::SuspendedEVSE);
        assert_eq!(status(S::B2, true, false), Status::SuspendedEV);
        assert_eq!(status(S::C2, true, false), Status::Charging);
        assert_eq!(status(S::D2, true, false), Status::Charging);
        assert_eq!(status(S::B1, false, true), Status::Finishing);
        assert_eq!(status(S::A, false, true), Status::Available);
    }

    #[test]
    fn faults_carry_the_raw_value_and_unreachable_wins() {
        let st = Ok(Iec61851State::F);
        let r = connector_status(&StatusInputs {
            state: Some(&st),
            raw_status: Some("10"),
            ..StatusInputs::default()
        });
        assert_eq!(
            (r.status, r.error_code, r.vendor_error_code.as_deref()),
            (Status::Faulted, "OtherError", Some("10"))
        );
        let unmapped = Err("42".to_owned());
        let r = connector_status(&StatusInputs {
            state: Some(&unmapped),
            ..StatusInputs::default()
        });
        assert_eq!(r.vendor_error_code.as_deref(), Some("42"));
        let r = connector_status(&StatusInputs {
            state: Some(&st),
            unreachable: Some("timeout"),
            transaction: true,
            ..StatusInputs::default()
        });
        assert_eq!(r.vendor_error_code.as_deref(), Some(MODBUS_UNREACHABLE));
        assert_eq!(r.info.as_deref(), Some("timeout"));
    }
}
