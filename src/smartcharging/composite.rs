//! GetCompositeSchedule.conf (§5.7, §6.30): the composite limit over a time range as one schedule.
//!
//! Built by walking [`super::limit`]'s evaluation from boundary to boundary, so a period that
//! starts inside the requested range is never missed (EVerest/libocpp #609) and the schedule
//! agrees with what [`super::limit_at`] applies. Without a transaction, Relative schedules start
//! at `scheduleStart`, as if a transaction started now (as libocpp does), so the answer shows
//! their periods; [`super::limit_at`] keeps them at their first period instead, which is what a
//! transaction starting at that instant gets. Gaps where no profile applies report the
//! charger's `max_current`. In W the limit is `A × voltage × phases` with the phases and nominal
//! voltage the A value was derived with (§5.7). Limits are rounded down to 0.1 (schema
//! `multipleOf: 0.1`); the schedule omits `startSchedule` and uses `scheduleStart`
//! (errata 3.24).

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use serde_json::{Value, json};

use super::limit::{evaluate, floor_tenth};
use super::profile::RateUnit;
use super::{CONNECTORS, Electrical, ProfileSet, Reject, TxContext, timestamp};

/// At most this many periods are reported; a longer schedule is cut short and its `duration`
/// says where (only reachable with a recurring profile and a request of many weeks).
pub const MAX_COMPOSITE_PERIODS: usize = 1024;

/// At most this many boundaries are examined (most change nothing when a profile is masked by
/// a lower one), so a request for `u32::MAX` seconds stays cheap; the schedule is cut short as
/// with [`MAX_COMPOSITE_PERIODS`].
const MAX_STEPS: usize = 16 * MAX_COMPOSITE_PERIODS;

/// The GetCompositeSchedule.conf payload for `connector` from `now` for `duration_s` seconds.
///
/// `unit` forces the unit; without it the unit of the profile that sets the limit at `now` is
/// used (a central system that sent W expects W back, sap-labs-france/ev-server #1837), else A.
/// `now` is truncated to whole seconds so that every `startPeriod` is an integer.
///
/// # Errors
/// [`Reject::Status`] `Rejected` for an unknown connector.
pub fn composite_schedule(
    set: &ProfileSet,
    connector: u32,
    now: DateTime<Utc>,
    duration_s: u32,
    unit: Option<RateUnit>,
    tx: Option<&TxContext>,
    el: &Electrical,
) -> Result<Value, Reject> {
    if connector > CONNECTORS {
        return Err(Reject::rejected(format!(
            "connector {connector} is unknown"
        )));
    }
    let start = now.trunc_subsecs(0);
    let end = start.checked_add_signed(TimeDelta::seconds(i64::from(duration_s)));
    let mut periods: Vec<(u32, f64, u8)> = Vec::new();
    let mut unit_used = unit;
    let mut duration = duration_s;
    let mut t = start;
    for step in 0.. {
        if step == MAX_STEPS {
            duration = u32::try_from((t - start).num_seconds()).unwrap_or(duration);
            break;
        }
        let e = evaluate(set, connector, t, tx, Some(start), el);
        let unit = *unit_used.get_or_insert(e.source_unit.unwrap_or(RateUnit::A));
        let amps = e.amps.unwrap_or_else(|| el.max_current.max(0.0));
        let limit = match unit {
            RateUnit::A => floor_tenth(amps),
            RateUnit::W => floor_tenth(amps * el.voltage.max(0.0) * f64::from(e.phases)),
        };
        let offset = u32::try_from((t - start).num_seconds()).unwrap_or(u32::MAX);
        // Two boundaries inside the same second: the later one wins that second.
        if periods.last().is_some_and(|p| p.0 == offset) {
            periods.pop();
        }
        if periods
            .last()
            .is_none_or(|p| (p.1, p.2) != (limit, e.phases))
        {
            if periods.len() == MAX_COMPOSITE_PERIODS {
                duration = offset;
                break;
            }
            periods.push((offset, limit, e.phases));
        }
        match (e.next_change, end) {
            (Some(next), Some(end)) if next < end => t = next,
            _ => break,
        }
    }
    let periods: Vec<Value> = periods
        .into_iter()
        .map(|(start_period, limit, phases)| {
            json!({ "startPeriod": start_period, "limit": limit, "numberPhases": phases })
        })
        .collect();
    Ok(json!({
        "status": "Accepted",
        "connectorId": connector,
        "scheduleStart": timestamp::format(start),
        "chargingSchedule": {
            "duration": duration,
            "chargingRateUnit": unit_used.unwrap_or(RateUnit::A).as_str(),
            "chargingSchedulePeriod": periods,
        },
    }))
}
