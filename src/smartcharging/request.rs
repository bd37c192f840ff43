//! Reading the smart-charging CALL payloads: SetChargingProfile, RemoteStartTransaction's
//! `chargingProfile`, ClearChargingProfile and GetCompositeSchedule (§5.16, §5.11, §5.5, §5.7).
//!
//! Lenient in (ocpp16-facts §4.5): limits that are not multiples of 0.1 (evcc #8116 sends
//! 8.228260869565219), enum values in any ASCII case, integral numbers written as `8.0`,
//! timestamps with offsets or without any. Strict where the spec is: a payload of the wrong shape
//! is a CALLERROR (errata 3.38, 3.39: invalid enum value or connectorId ⇒
//! PropertyConstraintViolation); a well-formed profile that breaks a rule of §3.13 / §5.16 is
//! answered with status `Rejected` and changes nothing.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::profile::{
    ChargingProfile, ChargingSchedule, Kind, Period, Purpose, RateUnit, Recurrency,
};
use super::{
    ALLOWED_CHARGING_RATE_UNITS, CHARGE_PROFILE_MAX_STACK_LEVEL, CHARGING_SCHEDULE_MAX_PERIODS,
    CONNECTORS, TxContext, timestamp,
};
use crate::ocpp::rpc::ErrorCode;

/// Why a request is refused, and how to answer it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Reject {
    /// Answer with a CALLERROR: the payload is malformed.
    #[error("{code}: {text}")]
    CallError {
        /// The OCPP-J error code.
        code: ErrorCode,
        /// `errorDescription`, naming the offending field (never echoes values at length).
        text: String,
    },
    /// Answer with a CALLRESULT carrying this `status` (e.g. `Rejected`).
    #[error("{status}: {why}")]
    Status {
        /// The wire status.
        status: &'static str,
        /// Why, for the log.
        why: String,
    },
}

impl Reject {
    fn call_error(code: ErrorCode, text: impl Into<String>) -> Reject {
        Reject::CallError {
            code,
            text: text.into(),
        }
    }

    /// A `Rejected` status with a reason for the log.
    pub fn rejected(why: impl Into<String>) -> Reject {
        Reject::Status {
            status: "Rejected",
            why: why.into(),
        }
    }

    /// The answer: `Ok(payload)` for a CALLRESULT (`{"status": …}`), or `Err((code, text))` for a
    /// CALLERROR.
    pub fn reply(&self) -> Result<Value, (ErrorCode, String)> {
        match self {
            Reject::CallError { code, text } => Err((*code, text.clone())),
            Reject::Status { status, .. } => Ok(json!({ "status": status })),
        }
    }
}

/// What SetChargingProfile needs to know about the charge point at the moment it arrives.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SetContext {
    /// The instant the request arrived; an Absolute profile without `startSchedule` starts here.
    pub now: DateTime<Utc>,
    /// The transaction running on connector 1, if any.
    pub transaction: Option<TxContext>,
}

/// The filter of a ClearChargingProfile.req (§6.7), all optional.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClearRequest {
    /// `id`: when given, the other fields are ignored (errata 3.25).
    pub id: Option<i32>,
    /// `connectorId` (0 = profiles installed for the whole charge point).
    pub connector: Option<u32>,
    /// `chargingProfilePurpose`.
    pub purpose: Option<Purpose>,
    /// `stackLevel`.
    pub stack_level: Option<u32>,
}

/// A GetCompositeSchedule.req (§6.29).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompositeRequest {
    /// `connectorId`; 0 = the whole charge point. Not checked against the connector count here:
    /// an unknown connector is answered with status Rejected, not a CALLERROR (§5.7).
    pub connector: u32,
    /// `duration` in seconds.
    pub duration_s: u32,
    /// `chargingRateUnit`, if forced.
    pub unit: Option<RateUnit>,
}

/// Reads and checks a SetChargingProfile.req payload.
///
/// Returns the connector and the profile to install. A TxProfile without `transactionId` is bound
/// to the running transaction; an Absolute profile without `startSchedule` starts at `ctx.now`.
///
/// # Errors
/// [`Reject::CallError`] for a malformed payload (shape, types, enum values, connectorId);
/// [`Reject::Status`] `Rejected` for a profile this charge point does not accept (see the list of
/// rules in the module docs of [`crate::smartcharging`]).
pub fn parse_set_charging_profile(
    payload: &Value,
    ctx: &SetContext,
) -> Result<(u32, ChargingProfile), Reject> {
    let obj = object(payload, "payload")?;
    let connector = connector_id(obj)?;
    let mut profile = parse_profile(required(obj, "csChargingProfiles")?, "csChargingProfiles")?;
    check_profile(&mut profile, ctx.now)?;
    match profile.purpose {
        Purpose::ChargePointMaxProfile if connector != 0 => {
            return Err(Reject::rejected(
                "a ChargePointMaxProfile may only be set on connector 0",
            ));
        }
        Purpose::TxProfile => {
            if connector == 0 {
                return Err(Reject::rejected("a TxProfile needs a connector > 0"));
            }
            let Some(tx) = ctx.transaction else {
                return Err(Reject::rejected(
                    "a TxProfile needs a transaction running on the connector",
                ));
            };
            match (profile.transaction_id, tx.id) {
                (None, running) => profile.transaction_id = running,
                (Some(given), Some(running)) if given == running => {}
                (Some(given), _) => {
                    return Err(Reject::rejected(format!(
                        "transactionId {given} is not the running transaction"
                    )));
                }
            }
        }
        _ => {}
    }
    Ok((connector, profile))
}

/// Reads and checks the `chargingProfile` of a RemoteStartTransaction.req (§5.11).
///
/// Its purpose must be TxProfile and it carries no `transactionId` (errata 3.41); install it on
/// connector 1 when the transaction starts.
///
/// # Errors
/// As [`parse_set_charging_profile`]; the caller answers RemoteStartTransaction accordingly.
pub fn parse_remote_start_profile(
    profile: &Value,
    now: DateTime<Utc>,
) -> Result<ChargingProfile, Reject> {
    let mut profile = parse_profile(profile, "chargingProfile")?;
    check_profile(&mut profile, now)?;
    if profile.purpose != Purpose::TxProfile {
        return Err(Reject::rejected(
            "the profile of a RemoteStartTransaction must be a TxProfile",
        ));
    }
    if profile.transaction_id.is_some() {
        return Err(Reject::rejected(
            "the profile of a RemoteStartTransaction must not carry a transactionId",
        ));
    }
    Ok(profile)
}

/// Reads a ClearChargingProfile.req payload.
///
/// # Errors
/// [`Reject::CallError`] for a malformed payload.
pub fn parse_clear_charging_profile(payload: &Value) -> Result<ClearRequest, Reject> {
    let obj = object(payload, "payload")?;
    Ok(ClearRequest {
        id: optional_i32(obj, "id")?,
        connector: optional_u32(obj, "connectorId")?,
        purpose: optional_enum(obj, "chargingProfilePurpose", Purpose::from_wire)?,
        stack_level: optional_u32(obj, "stackLevel")?,
    })
}

/// Reads a GetCompositeSchedule.req payload.
///
/// # Errors
/// [`Reject::CallError`]; a `chargingRateUnit` other than A or W is PropertyConstraintViolation
/// (§5.7).
pub fn parse_get_composite_schedule(payload: &Value) -> Result<CompositeRequest, Reject> {
    let obj = object(payload, "payload")?;
    let connector = optional_u32(obj, "connectorId")?.ok_or_else(|| missing("connectorId"))?;
    let duration_s = optional_u32(obj, "duration")?.ok_or_else(|| missing("duration"))?;
    Ok(CompositeRequest {
        connector,
        duration_s,
        unit: optional_enum(obj, "chargingRateUnit", RateUnit::from_wire)?,
    })
}

fn connector_id(obj: &Map<String, Value>) -> Result<u32, Reject> {
    let connector = optional_u32(obj, "connectorId")?.ok_or_else(|| missing("connectorId"))?;
    if connector > CONNECTORS {
        return Err(Reject::call_error(
            ErrorCode::PropertyConstraintViolation,
            format!("connectorId {connector} does not exist (this charge point has {CONNECTORS})"),
        ));
    }
    Ok(connector)
}

/// The shape of `csChargingProfiles` (§7.8): types, required fields, enum values.
fn parse_profile(value: &Value, path: &str) -> Result<ChargingProfile, Reject> {
    let obj = object(value, path)?;
    let id = optional_i32(obj, "chargingProfileId")?
        .ok_or_else(|| missing(&format!("{path}.chargingProfileId")))?;
    let transaction_id = optional_i32(obj, "transactionId")?;
    let stack_level =
        optional_u32(obj, "stackLevel")?.ok_or_else(|| missing(&format!("{path}.stackLevel")))?;
    let purpose = optional_enum(obj, "chargingProfilePurpose", Purpose::from_wire)?
        .ok_or_else(|| missing(&format!("{path}.chargingProfilePurpose")))?;
    let kind = optional_enum(obj, "chargingProfileKind", Kind::from_wire)?
        .ok_or_else(|| missing(&format!("{path}.chargingProfileKind")))?;
    let recurrency = optional_enum(obj, "recurrencyKind", Recurrency::from_wire)?;
    let valid_from = optional_time(obj, "validFrom")?;
    let valid_to = optional_time(obj, "validTo")?;
    let schedule = parse_schedule(required(obj, "chargingSchedule")?)?;
    Ok(ChargingProfile {
        id,
        transaction_id,
        stack_level,
        purpose,
        kind,
        recurrency,
        valid_from,
        valid_to,
        schedule,
    })
}

fn parse_schedule(value: &Value) -> Result<ChargingSchedule, Reject> {
    let obj = object(value, "chargingSchedule")?;
    let unit = optional_enum(obj, "chargingRateUnit", RateUnit::from_wire)?
        .ok_or_else(|| missing("chargingSchedule.chargingRateUnit"))?;
    let Value::Array(items) = required(obj, "chargingSchedulePeriod")? else {
        return Err(type_error("chargingSchedulePeriod", "an array"));
    };
    let mut periods = Vec::with_capacity(items.len().min(CHARGING_SCHEDULE_MAX_PERIODS + 1));
    for item in items {
        let p = object(item, "chargingSchedulePeriod[]")?;
        let start_period = optional_u32(p, "startPeriod")?.ok_or_else(|| missing("startPeriod"))?;
        let limit = optional_number(p, "limit")?.ok_or_else(|| missing("limit"))?;
        let number_phases = match optional_u32(p, "numberPhases")? {
            None => None,
            Some(n @ 1..=3) => u8::try_from(n).ok(),
            Some(n) => {
                return Err(Reject::call_error(
                    ErrorCode::PropertyConstraintViolation,
                    format!("numberPhases {n} is not 1, 2 or 3"),
                ));
            }
        };
        periods.push(Period {
            start_period,
            limit,
            number_phases,
        });
    }
    Ok(ChargingSchedule {
        duration: optional_u32(obj, "duration")?,
        start_schedule: optional_time(obj, "startSchedule")?,
        unit,
        periods,
        min_charging_rate: optional_number(obj, "minChargingRate")?,
    })
}

/// The rules of §3.13, §5.16 and §7.8–7.14 that a well-formed profile can still break.
fn check_profile(p: &mut ChargingProfile, now: DateTime<Utc>) -> Result<(), Reject> {
    if p.stack_level > CHARGE_PROFILE_MAX_STACK_LEVEL {
        return Err(Reject::rejected(format!(
            "stackLevel {} exceeds ChargeProfileMaxStackLevel {CHARGE_PROFILE_MAX_STACK_LEVEL}",
            p.stack_level
        )));
    }
    if p.transaction_id.is_some() && p.purpose != Purpose::TxProfile {
        return Err(Reject::rejected(
            "transactionId is only allowed on a TxProfile",
        ));
    }
    if let (Some(from), Some(to)) = (p.valid_from, p.valid_to)
        && to <= from
    {
        return Err(Reject::rejected("validTo is not after validFrom"));
    }
    match (p.kind, p.recurrency) {
        (Kind::Recurring, None) => {
            return Err(Reject::rejected("a Recurring profile needs recurrencyKind"));
        }
        // errata 3.56: recurrencyKind only with kind Recurring.
        (Kind::Absolute | Kind::Relative, Some(_)) => {
            return Err(Reject::rejected(
                "recurrencyKind is only allowed with chargingProfileKind Recurring",
            ));
        }
        _ => {}
    }
    match p.kind {
        Kind::Relative if p.schedule.start_schedule.is_some() => {
            return Err(Reject::rejected(
                "a Relative profile must not have a startSchedule",
            ));
        }
        // Errata 3.78 anchors the recurrence at startSchedule: without it there is no time of day.
        Kind::Recurring if p.schedule.start_schedule.is_none() => {
            return Err(Reject::rejected(
                "a Recurring profile needs a startSchedule",
            ));
        }
        // §7.13 leaves startSchedule optional; an Absolute schedule without one starts when it
        // arrives, fixed here so that the stored profile means the same after a restart.
        Kind::Absolute if p.schedule.start_schedule.is_none() => {
            p.schedule.start_schedule = Some(now);
        }
        _ => {}
    }
    let s = &p.schedule;
    if !ALLOWED_CHARGING_RATE_UNITS.contains(&s.unit) {
        return Err(Reject::rejected(format!(
            "chargingRateUnit {} is not in ChargingScheduleAllowedChargingRateUnit",
            s.unit.as_str()
        )));
    }
    if s.periods.is_empty() {
        return Err(Reject::rejected("chargingSchedulePeriod is empty"));
    }
    if s.periods.len() > CHARGING_SCHEDULE_MAX_PERIODS {
        return Err(Reject::rejected(format!(
            "{} periods exceed ChargingScheduleMaxPeriods {CHARGING_SCHEDULE_MAX_PERIODS}",
            s.periods.len()
        )));
    }
    // errata 3.45, 3.69: the first startPeriod SHALL be 0.
    if s.periods.first().map(|p| p.start_period) != Some(0) {
        return Err(Reject::rejected("the first startPeriod must be 0"));
    }
    if s.periods
        .windows(2)
        .any(|w| w[1].start_period <= w[0].start_period)
    {
        return Err(Reject::rejected("startPeriod values must be ascending"));
    }
    if s.periods.iter().any(|p| p.limit < 0.0) {
        return Err(Reject::rejected("a limit is negative"));
    }
    if s.min_charging_rate.is_some_and(|r| r < 0.0) {
        return Err(Reject::rejected("minChargingRate is negative"));
    }
    Ok(())
}

fn missing(name: &str) -> Reject {
    Reject::call_error(
        ErrorCode::OccurenceConstraintViolation,
        format!("{name} is required"),
    )
}

fn type_error(name: &str, want: &str) -> Reject {
    Reject::call_error(
        ErrorCode::TypeConstraintViolation,
        format!("{name} must be {want}"),
    )
}

fn object<'a>(value: &'a Value, name: &str) -> Result<&'a Map<String, Value>, Reject> {
    match value {
        Value::Object(m) => Ok(m),
        _ if name == "payload" => Err(Reject::call_error(
            ErrorCode::FormationViolation,
            "the payload must be a JSON object",
        )),
        _ => Err(type_error(name, "an object")),
    }
}

/// A field; JSON `null` counts as absent (lenient in).
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

fn required<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<&'a Value, Reject> {
    field(obj, name).ok_or_else(|| missing(name))
}

/// An integer, also accepted when written as an integral float (`8.0`).
fn optional_int(obj: &Map<String, Value>, name: &str) -> Result<Option<i64>, Reject> {
    let Some(v) = field(obj, name) else {
        return Ok(None);
    };
    if let Some(i) = v.as_i64() {
        return Ok(Some(i));
    }
    let out_of_range = || {
        Reject::call_error(
            ErrorCode::PropertyConstraintViolation,
            format!("{name} is out of range"),
        )
    };
    if v.is_u64() {
        return Err(out_of_range());
    }
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
        Some(f) if f.fract() == 0.0 => Err(out_of_range()),
        _ => Err(type_error(name, "an integer")),
    }
}

fn optional_i32(obj: &Map<String, Value>, name: &str) -> Result<Option<i32>, Reject> {
    optional_int(obj, name)?
        .map(|i| {
            i32::try_from(i).map_err(|_| {
                Reject::call_error(
                    ErrorCode::PropertyConstraintViolation,
                    format!("{name} is out of range"),
                )
            })
        })
        .transpose()
}

fn optional_u32(obj: &Map<String, Value>, name: &str) -> Result<Option<u32>, Reject> {
    optional_int(obj, name)?
        .map(|i| {
            u32::try_from(i).map_err(|_| {
                Reject::call_error(
                    ErrorCode::PropertyConstraintViolation,
                    format!("{name} must be a non-negative integer"),
                )
            })
        })
        .transpose()
}

fn optional_number(obj: &Map<String, Value>, name: &str) -> Result<Option<f64>, Reject> {
    match field(obj, name) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or_else(|| type_error(name, "a number")),
    }
}

fn optional_enum<T>(
    obj: &Map<String, Value>,
    name: &str,
    from_wire: fn(&str) -> Option<T>,
) -> Result<Option<T>, Reject> {
    match field(obj, name) {
        None => Ok(None),
        Some(Value::String(s)) => from_wire(s.trim()).map(Some).ok_or_else(|| {
            Reject::call_error(
                ErrorCode::PropertyConstraintViolation,
                format!("{name} has an unknown value"),
            )
        }),
        Some(_) => Err(type_error(name, "a string")),
    }
}

fn optional_time(obj: &Map<String, Value>, name: &str) -> Result<Option<DateTime<Utc>>, Reject> {
    match field(obj, name) {
        None => Ok(None),
        Some(Value::String(s)) => timestamp::parse(s)
            .map(Some)
            .ok_or_else(|| type_error(name, "an ISO 8601 date-time")),
        Some(_) => Err(type_error(name, "a date-time string")),
    }
}
