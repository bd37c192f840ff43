//! The limit a connector may draw at one instant: the composite of §3.13.3.
//!
//! Per purpose the prevailing profile is the one with the highest stackLevel that applies at that
//! instant (§3.13.2; see [`super::schedule`] for "applies"). The composite is the minimum of the
//! ChargePointMaxProfile (connector 0, shared by the whole charge point) and the TxProfile of the
//! running transaction, or else the TxDefaultProfile, where one set on the connector itself beats
//! one set on connector 0 (§3.13.1).
//!
//! Units: A is per phase and taken as given; W is the total and becomes A as
//! `limit / (voltage × phases)`, `phases = min(numberPhases or 3, wired phases)` with the nominal
//! voltage (§7.12, errata 3.34, 3.68, 3.70).
//!
//! minChargingRate (§7.13) is the lowest rate the EV can charge at. When the composite is above 0
//! but below the minChargingRate of a profile that applies, the EV cannot use it, and the limit
//! becomes 0 (pause) rather than rising to the minimum, which would break the lower limit.

use chrono::{DateTime, Utc};

use super::profile::{ChargingProfile, Purpose, RateUnit};
use super::schedule::{active_period, next_boundary};
use super::{CONNECTORS, ProfileSet};

/// The electrical facts of one wallbox the conversion and clamping need.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Electrical {
    /// Phases wired to the wallbox: 1 or 3.
    pub phases: u8,
    /// Nominal line-to-neutral voltage (230 V), not a measured one (errata 3.68).
    pub voltage: f64,
    /// The charger's maximum current per phase; every limit is clamped to it.
    pub max_current: f64,
    /// The device map's minimum current; limits below it are the caller's to turn into `off`.
    pub min_current: f64,
}

/// The transaction running on the connector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxContext {
    /// The transactionId from StartTransaction.conf; `None` while not yet known.
    pub id: Option<i32>,
    /// When it started: the origin of Relative schedules.
    pub started: DateTime<Utc>,
}

/// The result of [`limit_at`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limit {
    /// Amperes per phase, in [0, max_current], rounded down to 0.1 A; `None` when no profile
    /// applies (the caller uses `max_current`).
    pub amps: Option<f64>,
    /// The purpose and id of the profile that set the limit (the lowest one).
    pub source: Option<(Purpose, i32)>,
    /// The next instant at which the limit may change; `None` = never, unless profiles or the
    /// transaction change. Between `now` and this instant the result is constant.
    pub next_change: Option<DateTime<Utc>>,
}

/// What to write to the wallbox (behaviour.md §Smart charging).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Setpoint {
    /// Below the device map's minimum current: write the map's `off` value.
    Off,
    /// Write this current per phase, in [min_current, max_current].
    Amps(f64),
}

impl Limit {
    /// The set-point for the wallbox: no profile ⇒ `max_current`; a limit below the map's
    /// `min_current` (including 0) ⇒ [`Setpoint::Off`], since the wallbox cannot run slower.
    pub fn setpoint(&self, el: &Electrical) -> Setpoint {
        let amps = self
            .amps
            .unwrap_or_else(|| floor_tenth(el.max_current.max(0.0)));
        if amps < el.min_current || amps <= 0.0 {
            Setpoint::Off
        } else {
            Setpoint::Amps(amps)
        }
    }
}

/// One profile's say at an instant, in A.
#[derive(Clone, Copy, Debug)]
struct Contribution {
    amps: f64,
    phases: u8,
    min_amps: Option<f64>,
    purpose: Purpose,
    id: i32,
    unit: RateUnit,
}

/// The unrounded composite at one instant, for [`limit_at`] and the composite schedule.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Evaluation {
    /// Clamped to [0, max_current], not rounded.
    pub(crate) amps: Option<f64>,
    /// Phases the limit is for (the fewest any applying period allows, capped at the wiring).
    pub(crate) phases: u8,
    pub(crate) source: Option<(Purpose, i32)>,
    /// The unit of the profile that set the limit.
    pub(crate) source_unit: Option<RateUnit>,
    pub(crate) next_change: Option<DateTime<Utc>>,
}

/// Rounds down to 0.1, the resolution OCPP limits have (§7.14, schema `multipleOf: 0.1`).
///
/// The tiny tolerance keeps values that are 0.1-multiples up to float noise (e.g. a W limit
/// converted to A and back) from losing a whole step.
pub(crate) fn floor_tenth(x: f64) -> f64 {
    ((x * 10.0) + 1e-9).floor() / 10.0
}

fn to_amps(value: f64, unit: RateUnit, phases: u8, el: &Electrical) -> f64 {
    match unit {
        RateUnit::A => value,
        RateUnit::W => {
            let volts_total = el.voltage * f64::from(phases);
            // A broken voltage must not turn a power limit into "unlimited": fail safe to 0 A.
            if volts_total > 0.0 && volts_total.is_finite() {
                value / volts_total
            } else {
                0.0
            }
        }
    }
}

fn wired_phases(el: &Electrical) -> u8 {
    el.phases.clamp(1, 3)
}

fn contribution(
    p: &ChargingProfile,
    t: DateTime<Utc>,
    tx_start: Option<DateTime<Utc>>,
    el: &Electrical,
) -> Option<Contribution> {
    let period = active_period(p, t, tx_start)?;
    let phases = period
        .number_phases
        .unwrap_or(3)
        .clamp(1, 3)
        .min(wired_phases(el));
    let unit = p.schedule.unit;
    Some(Contribution {
        amps: to_amps(period.limit, unit, phases, el),
        phases,
        min_amps: p
            .schedule
            .min_charging_rate
            .map(|r| to_amps(r, unit, phases, el)),
        purpose: p.purpose,
        id: p.id,
        unit,
    })
}

/// The prevailing profile among `candidates` at `t`: highest stackLevel among those that apply.
fn prevailing<'a>(
    candidates: impl Iterator<Item = &'a ChargingProfile>,
    t: DateTime<Utc>,
    tx_start: Option<DateTime<Utc>>,
    el: &Electrical,
) -> Option<Contribution> {
    candidates
        .filter_map(|p| contribution(p, t, tx_start, el).map(|c| (p.stack_level, c)))
        .max_by_key(|(level, _)| *level)
        .map(|(_, c)| c)
}

/// The composite at `t`. `relative_origin` is where Relative schedules start when no
/// transaction runs (`None`: at `t` itself).
pub(crate) fn evaluate(
    set: &ProfileSet,
    connector: u32,
    t: DateTime<Utc>,
    tx: Option<&TxContext>,
    relative_origin: Option<DateTime<Utc>>,
    el: &Electrical,
) -> Evaluation {
    // Connector 0 is the whole charge point; with one connector it draws what connector 1 does.
    let connector = if connector == 0 {
        CONNECTORS
    } else {
        connector
    };
    let tx_start = tx.map(|x| x.started).or(relative_origin);
    let of = |purpose: Purpose, on: u32| {
        set.profiles()
            .filter(move |(c, p)| *c == on && p.purpose == purpose)
            .map(|(_, p)| p)
    };
    let tx_profiles = || {
        of(Purpose::TxProfile, connector)
            .filter(|p| tx.is_some_and(|x| p.transaction_id.is_none() || p.transaction_id == x.id))
    };

    let max = prevailing(of(Purpose::ChargePointMaxProfile, 0), t, tx_start, el);
    let ev = prevailing(tx_profiles(), t, tx_start, el)
        .or_else(|| prevailing(of(Purpose::TxDefaultProfile, connector), t, tx_start, el))
        .or_else(|| prevailing(of(Purpose::TxDefaultProfile, 0), t, tx_start, el));

    let next_change = of(Purpose::ChargePointMaxProfile, 0)
        .chain(tx_profiles())
        .chain(of(Purpose::TxDefaultProfile, connector))
        .chain(of(Purpose::TxDefaultProfile, 0))
        .filter_map(|p| next_boundary(p, t, tx_start))
        .min();

    let mut lowest: Option<Contribution> = None;
    for c in [ev, max].into_iter().flatten() {
        if lowest.is_none_or(|l| c.amps < l.amps) {
            lowest = Some(c);
        }
    }
    let phases = [ev, max]
        .into_iter()
        .flatten()
        .map(|c| c.phases)
        .min()
        .unwrap_or_else(|| wired_phases(el));
    let min_rate = [ev, max]
        .into_iter()
        .flatten()
        .filter_map(|c| c.min_amps)
        .fold(None, |acc: Option<f64>, m| {
            Some(acc.map_or(m, |a| a.max(m)))
        });

    let amps = lowest.map(|l| {
        let mut a = l.amps;
        if min_rate.is_some_and(|m| a > 0.0 && a < m) {
            a = 0.0;
        }
        // max/min (not clamp) so that a NaN or an inverted range cannot panic.
        a.max(0.0).min(el.max_current.max(0.0))
    });
    Evaluation {
        amps,
        phases,
        source: lowest.map(|l| (l.purpose, l.id)),
        source_unit: lowest.map(|l| l.unit),
        next_change,
    }
}

/// The composite limit for `connector` at `now` (connector 0 = the whole charge point).
///
/// `tx` is the transaction running on the connector, `None` when none runs.
pub fn limit_at(
    set: &ProfileSet,
    connector: u32,
    now: DateTime<Utc>,
    tx: Option<&TxContext>,
    el: &Electrical,
) -> Limit {
    let e = evaluate(set, connector, now, tx, None, el);
    Limit {
        amps: e.amps.map(floor_tenth),
        source: e.source,
        next_change: e.next_change,
    }
}
