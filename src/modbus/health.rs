//! Per-unit backoff: a unit that keeps timing out is skipped for a while.
//!
//! On a shared RS-485 line a silent unit costs `timeout × (1 + retries)` of line time per
//! request, which starves the other wallboxes on the line. After
//! [`TIMEOUTS_BEFORE_BACKOFF`] requests in a row ended in a timeout, the unit's requests fail
//! at once with a timeout for a backoff period ([`FIRST_BACKOFF`], doubling up to
//! [`MAX_BACKOFF`]). The first request after the period is a probe: it gets one attempt, no
//! retries. Any answer (data or a Modbus exception) ends the backoff and resets the count.
//! Transport errors say nothing about the unit and leave its state alone.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// Requests in a row ending in a timeout before a unit is put in backoff.
pub const TIMEOUTS_BEFORE_BACKOFF: u32 = 3;
/// The first backoff period.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(2);
/// The longest backoff period.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, Default)]
struct UnitState {
    consecutive_timeouts: u32,
    /// Set while in backoff, and kept after it expires until the unit answers (probing).
    backoff_until: Option<Instant>,
    /// The period of the last backoff, doubled for the next one.
    last_backoff: Option<Duration>,
}

/// What the bus should do with a request for a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Serve it with the device's retries.
    Normal,
    /// The backoff has expired: serve it with a single attempt.
    Probe,
    /// In backoff: fail at once with a timeout.
    Skip {
        /// Time left in the backoff.
        remaining: Duration,
    },
}

/// Timeout history of every unit on one bus.
#[derive(Debug, Default)]
pub struct UnitHealth {
    units: HashMap<u8, UnitState>,
}

impl UnitHealth {
    /// How to treat a request for `unit` at `now`.
    #[must_use]
    pub fn admit(&self, unit: u8, now: Instant) -> Admission {
        match self.units.get(&unit).and_then(|s| s.backoff_until) {
            Some(until) if now < until => Admission::Skip {
                remaining: until - now,
            },
            Some(_) => Admission::Probe,
            None => Admission::Normal,
        }
    }

    /// The unit answered (with data or a Modbus exception).
    pub fn record_answer(&mut self, unit: u8) {
        self.units.remove(&unit);
    }

    /// A request for the unit ended in a timeout after all its attempts. Returns the backoff
    /// period if this put the unit in backoff.
    pub fn record_timeout(&mut self, unit: u8, now: Instant) -> Option<Duration> {
        let state = self.units.entry(unit).or_default();
        state.consecutive_timeouts = state.consecutive_timeouts.saturating_add(1);
        let probing = state.backoff_until.is_some();
        if !probing && state.consecutive_timeouts < TIMEOUTS_BEFORE_BACKOFF {
            return None;
        }
        let period = match state.last_backoff {
            Some(last) => last.saturating_mul(2).min(MAX_BACKOFF),
            None => FIRST_BACKOFF,
        };
        state.last_backoff = Some(period);
        state.backoff_until = Some(now + period);
        Some(period)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_is_served_normally_until_it_times_out_repeatedly() {
        let now = Instant::now();
        let mut health = UnitHealth::default();
        assert_eq!(health.admit(1, now), Admission::Normal);
        assert_eq!(health.record_timeout(1, now), None);
        assert_eq!(health.record_timeout(1, now), None);
        assert_eq!(health.admit(1, now), Admission::Normal);
        assert_eq!(health.record_timeout(1, now), Some(FIRST_BACKOFF));
        assert_eq!(
            health.admit(1, now + Duration::from_millis(500)),
            Admission::Skip {
                remaining: FIRST_BACKOFF - Duration::from_millis(500)
            }
        );
        // other units are not affected
        assert_eq!(health.admit(2, now), Admission::Normal);
    }

    #[test]
    fn after_the_backoff_one_probe_and_a_failed_probe_doubles_the_period() {
        let now = Instant::now();
        let mut health = UnitHealth::default();
        for _ in 0..TIMEOUTS_BEFORE_BACKOFF {
            health.record_timeout(7, now);
        }
        let later = now + FIRST_BACKOFF;
        assert_eq!(health.admit(7, later), Admission::Probe);
        assert_eq!(health.record_timeout(7, later), Some(FIRST_BACKOFF * 2));
        let mut at = later;
        let mut period = FIRST_BACKOFF * 2;
        for _ in 0..10 {
            at += period;
            assert_eq!(health.admit(7, at), Admission::Probe);
            period = health.record_timeout(7, at).unwrap_or_default();
        }
        assert_eq!(period, MAX_BACKOFF);
    }

    #[test]
    fn an_answer_ends_the_backoff() {
        let now = Instant::now();
        let mut health = UnitHealth::default();
        for _ in 0..TIMEOUTS_BEFORE_BACKOFF {
            health.record_timeout(3, now);
        }
        health.record_answer(3);
        assert_eq!(health.admit(3, now), Admission::Normal);
        // and the count starts again from zero
        assert_eq!(health.record_timeout(3, now), None);
    }
}
