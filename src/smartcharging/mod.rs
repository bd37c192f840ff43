//! Smart charging (OCPP 1.6 §3.13, §5.5, §5.7, §5.16), the pure part: charging profiles, their
//! installation rules, and the limit they impose at any instant. Everything here is a function
//! of `now` passed in; nothing reads a clock or does I/O. The charge-point state machine stores
//! the [`ProfileSet`], writes [`limit_at`]'s amps to the wallbox and sets one timer to
//! [`Limit::next_change`].
//!
//! SetChargingProfile is answered `Rejected` (nothing changes) when: stackLevel >
//! [`CHARGE_PROFILE_MAX_STACK_LEVEL`]; more than [`CHARGING_SCHEDULE_MAX_PERIODS`] periods or
//! none; the first startPeriod is not 0 or the periods are not ascending; a limit or
//! minChargingRate is negative; a ChargePointMaxProfile is not on connector 0; a TxProfile is on
//! connector 0, without a running transaction, or names another transaction; a transactionId is
//! given on another purpose; recurrencyKind comes without kind Recurring or Recurring without
//! recurrencyKind or startSchedule; a Relative profile has a startSchedule; validTo is not after
//! validFrom; the set would exceed [`MAX_CHARGING_PROFILES_INSTALLED`].
//!
//! This gateway presents one wallbox as a charge point with one connector ([`CONNECTORS`]).

mod composite;
mod installed;
mod limit;
mod profile;
mod request;
mod schedule;
pub mod timestamp;

pub use composite::{MAX_COMPOSITE_PERIODS, composite_schedule};
pub use installed::ProfileSet;
pub use limit::{Electrical, Limit, Setpoint, TxContext, limit_at};
pub use profile::{ChargingProfile, ChargingSchedule, Kind, Period, Purpose, RateUnit, Recurrency};
pub use request::{
    ClearRequest, CompositeRequest, Reject, SetContext, parse_clear_charging_profile,
    parse_get_composite_schedule, parse_remote_start_profile, parse_set_charging_profile,
};

/// Connectors per charge point: one wallbox, connector 1 (connector 0 = the whole charge point).
pub const CONNECTORS: u32 = 1;

/// `ChargeProfileMaxStackLevel` (read-only key, §9.4.1).
pub const CHARGE_PROFILE_MAX_STACK_LEVEL: u32 = 8;

/// `ChargingScheduleAllowedChargingRateUnit` as the key's value (§9.4.2).
pub const CHARGING_SCHEDULE_ALLOWED_CHARGING_RATE_UNIT: &str = "Current,Power";

/// The units [`CHARGING_SCHEDULE_ALLOWED_CHARGING_RATE_UNIT`] allows.
pub const ALLOWED_CHARGING_RATE_UNITS: [RateUnit; 2] = [RateUnit::A, RateUnit::W];

/// `ChargingScheduleMaxPeriods` (read-only key, §9.4.3).
pub const CHARGING_SCHEDULE_MAX_PERIODS: usize = 24;

/// `MaxChargingProfilesInstalled` (read-only key, §9.4.5).
pub const MAX_CHARGING_PROFILES_INSTALLED: usize = 10;
