//! Where one profile's schedule stands at an instant: which period runs, and when that can next
//! change. Pure; every date computation is checked, so no stored profile can make it panic.
//!
//! Time axis per kind (§7.9, §7.13):
//! - Absolute: from `startSchedule`. A profile without one (only from a hand-edited store; the
//!   parser fills it in) never runs.
//! - Recurring: restarts every 24 h (Daily) or 7 days (Weekly) at the time of day (and weekday)
//!   of `startSchedule` (errata 3.78; SAP simulator PR #634: not at 00:00). The recurrence is
//!   anchored, not started, by `startSchedule`: an instant before it belongs to the occurrence
//!   one period earlier (validFrom is what delays a profile). Periods and duration beyond the
//!   recurrence period are not executed (errata 3.43, 3.44).
//! - Relative: from the transaction start. Without a transaction it is evaluated as if starting
//!   at the instant asked about (what a transaction starting then gets), so the limit stays at
//!   its first period for as long as nothing starts; the composite schedule anchors it at
//!   `scheduleStart` instead.
//!
//! `duration` ends the schedule; past it the profile is inactive and a lower stack level (or no
//! profile) applies (errata 3.43, 3.44). Without `duration` the last period holds forever
//! (errata 3.7), or until the recurrence restarts.

use chrono::{DateTime, TimeDelta, Utc};

use super::profile::{ChargingProfile, Kind, Period};

/// The running occurrence of a schedule: its start and, if bounded, its length in seconds.
struct Occurrence {
    start: DateTime<Utc>,
    length_s: Option<i64>,
    /// Whether `start` is a real instant (false for a Relative profile without a transaction,
    /// whose start moves along with the instant asked about).
    anchored: bool,
    /// The next restart of a Recurring schedule.
    restart: Option<DateTime<Utc>>,
}

fn plus(t: DateTime<Utc>, secs: i64) -> Option<DateTime<Utc>> {
    t.checked_add_signed(TimeDelta::try_seconds(secs)?)
}

fn occurrence(
    p: &ChargingProfile,
    t: DateTime<Utc>,
    tx_start: Option<DateTime<Utc>>,
) -> Option<Occurrence> {
    let duration = p.schedule.duration.map(i64::from);
    match (p.kind, p.recurrency) {
        (Kind::Relative, _) => Some(Occurrence {
            start: tx_start.unwrap_or(t),
            length_s: duration,
            anchored: tx_start.is_some(),
            restart: None,
        }),
        (Kind::Recurring, Some(r)) => {
            let anchor = p.schedule.start_schedule?;
            let period_s = r.period_s();
            let since_ms = (t - anchor).num_milliseconds();
            let k = since_ms.div_euclid(period_s * 1000);
            let start = plus(anchor, k.checked_mul(period_s)?)?;
            Some(Occurrence {
                start,
                length_s: Some(duration.map_or(period_s, |d| d.min(period_s))),
                anchored: true,
                restart: plus(start, period_s),
            })
        }
        // Absolute, or Recurring without recurrencyKind (rejected by the parser): a single run.
        _ => Some(Occurrence {
            start: p.schedule.start_schedule?,
            length_s: duration,
            anchored: true,
            restart: None,
        }),
    }
}

fn valid_at(p: &ChargingProfile, t: DateTime<Utc>) -> bool {
    p.valid_from.is_none_or(|f| f <= t) && p.valid_to.is_none_or(|v| t < v)
}

/// The period of `p` running at `t`, or `None` when the profile does not apply at `t`.
pub(crate) fn active_period(
    p: &ChargingProfile,
    t: DateTime<Utc>,
    tx_start: Option<DateTime<Utc>>,
) -> Option<&Period> {
    if !valid_at(p, t) {
        return None;
    }
    let occ = occurrence(p, t, tx_start)?;
    let offset_ms = (t - occ.start).num_milliseconds();
    if offset_ms < 0 {
        return None;
    }
    if let Some(len) = occ.length_s
        && offset_ms >= len.saturating_mul(1000)
    {
        return None;
    }
    p.schedule
        .periods
        .iter()
        .filter(|q| i64::from(q.start_period) * 1000 <= offset_ms)
        .max_by_key(|q| q.start_period)
}

/// The earliest instant after `t` at which [`active_period`] of `p` may change.
pub(crate) fn next_boundary(
    p: &ChargingProfile,
    t: DateTime<Utc>,
    tx_start: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    let mut candidates: Vec<DateTime<Utc>> = Vec::new();
    candidates.extend(p.valid_from);
    candidates.extend(p.valid_to);
    if let Some(occ) = occurrence(p, t, tx_start)
        && occ.anchored
    {
        candidates.push(occ.start);
        candidates.extend(occ.restart);
        if let Some(len) = occ.length_s {
            candidates.extend(plus(occ.start, len));
        }
        for q in &p.schedule.periods {
            let s = i64::from(q.start_period);
            if occ.length_s.is_none_or(|len| s < len) {
                candidates.extend(plus(occ.start, s));
            }
        }
    }
    candidates.into_iter().filter(|c| *c > t).min()
}
