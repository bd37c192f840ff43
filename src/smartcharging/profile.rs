//! Charging profiles as OCPP 1.6 defines them (§7.8 ChargingProfile, §7.13 ChargingSchedule,
//! §7.14 ChargingSchedulePeriod), with serde in the OCPP JSON shape for persistence.
//!
//! These types hold a profile that already passed [`super::parse_set_charging_profile`] (or was
//! read back from the store); evaluation never assumes more than the types guarantee, so a
//! hand-edited or corrupt store cannot make it panic.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::timestamp;

/// What a profile is for (§7.10 ChargingProfilePurposeType).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Purpose {
    /// The overall limit of the charge point; connector 0 only (§3.13.1).
    ChargePointMaxProfile,
    /// The default for new transactions (connector 0: every connector; N: that connector).
    TxDefaultProfile,
    /// The profile of one running transaction; overrides the TxDefaultProfile.
    TxProfile,
}

impl Purpose {
    /// The OCPP wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::ChargePointMaxProfile => "ChargePointMaxProfile",
            Purpose::TxDefaultProfile => "TxDefaultProfile",
            Purpose::TxProfile => "TxProfile",
        }
    }

    /// Reads a wire string, ignoring ASCII case (lenient in).
    pub fn from_wire(s: &str) -> Option<Purpose> {
        [
            Purpose::ChargePointMaxProfile,
            Purpose::TxDefaultProfile,
            Purpose::TxProfile,
        ]
        .into_iter()
        .find(|p| p.as_str().eq_ignore_ascii_case(s))
    }
}

/// How the schedule's time axis is anchored (§7.9 ChargingProfileKindType).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// Periods are relative to `startSchedule`.
    Absolute,
    /// Restarts every day or week at the time of `startSchedule` (errata 3.78).
    Recurring,
    /// Periods are relative to the transaction start; no `startSchedule`.
    Relative,
}

impl Kind {
    /// The OCPP wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Absolute => "Absolute",
            Kind::Recurring => "Recurring",
            Kind::Relative => "Relative",
        }
    }

    /// Reads a wire string, ignoring ASCII case (lenient in).
    pub fn from_wire(s: &str) -> Option<Kind> {
        [Kind::Absolute, Kind::Recurring, Kind::Relative]
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
    }
}

/// The recurrence of a Recurring profile (§7.40 RecurrencyKindType).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Recurrency {
    /// Every 24 hours from `startSchedule`.
    Daily,
    /// Every 7 days from `startSchedule` (same weekday and time).
    Weekly,
}

impl Recurrency {
    /// The OCPP wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Recurrency::Daily => "Daily",
            Recurrency::Weekly => "Weekly",
        }
    }

    /// Reads a wire string, ignoring ASCII case (lenient in).
    pub fn from_wire(s: &str) -> Option<Recurrency> {
        [Recurrency::Daily, Recurrency::Weekly]
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s))
    }

    /// The length of one recurrence in seconds.
    pub fn period_s(self) -> i64 {
        match self {
            Recurrency::Daily => 86_400,
            Recurrency::Weekly => 7 * 86_400,
        }
    }
}

/// The unit of a schedule's limits (§7.12 ChargingRateUnitType).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RateUnit {
    /// Amperes per phase (errata 3.68: not the sum over phases).
    A,
    /// Watts, the total over all phases (§7.12).
    W,
}

impl RateUnit {
    /// The OCPP wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            RateUnit::A => "A",
            RateUnit::W => "W",
        }
    }

    /// Reads a wire string, ignoring ASCII case (lenient in).
    pub fn from_wire(s: &str) -> Option<RateUnit> {
        [RateUnit::A, RateUnit::W]
            .into_iter()
            .find(|u| u.as_str().eq_ignore_ascii_case(s))
    }
}

/// One period of a schedule (§7.14 ChargingSchedulePeriod).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Period {
    /// Seconds from the start of the schedule at which this period begins.
    pub start_period: u32,
    /// The limit in the schedule's unit, kept exactly as received (may have more than one decimal).
    pub limit: f64,
    /// Phases the limit is meant for; absent means 3 (§7.14).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_phases: Option<u8>,
}

/// The time-limit curve of a profile (§7.13 ChargingSchedule).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargingSchedule {
    /// Seconds the schedule runs; absent means until the profile ends (or the recurrence restarts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u32>,
    /// The instant the schedule starts (Absolute) or its anchor (Recurring).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "timestamp::opt"
    )]
    pub start_schedule: Option<DateTime<Utc>>,
    /// The unit of `limit` and `minChargingRate`.
    #[serde(rename = "chargingRateUnit")]
    pub unit: RateUnit,
    /// The periods, first `startPeriod` 0, ascending.
    #[serde(rename = "chargingSchedulePeriod")]
    pub periods: Vec<Period>,
    /// The lowest rate the EV can charge at, in `unit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_charging_rate: Option<f64>,
}

/// One charging profile (§7.8 ChargingProfile; `csChargingProfiles` on the wire).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargingProfile {
    /// `chargingProfileId`: unique; a profile with the same id replaces this one.
    #[serde(rename = "chargingProfileId")]
    pub id: i32,
    /// The transaction a TxProfile belongs to; `None` = the transaction running on its connector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<i32>,
    /// Higher wins within one purpose (§3.13.2).
    pub stack_level: u32,
    /// `chargingProfilePurpose`.
    #[serde(rename = "chargingProfilePurpose")]
    pub purpose: Purpose,
    /// `chargingProfileKind`.
    #[serde(rename = "chargingProfileKind")]
    pub kind: Kind,
    /// `recurrencyKind`, only with [`Kind::Recurring`].
    #[serde(
        default,
        rename = "recurrencyKind",
        skip_serializing_if = "Option::is_none"
    )]
    pub recurrency: Option<Recurrency>,
    /// The profile is ignored before this instant.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "timestamp::opt"
    )]
    pub valid_from: Option<DateTime<Utc>>,
    /// The profile is ignored from this instant on.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "timestamp::opt"
    )]
    pub valid_to: Option<DateTime<Utc>>,
    /// `chargingSchedule`.
    #[serde(rename = "chargingSchedule")]
    pub schedule: ChargingSchedule,
}
