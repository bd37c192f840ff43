//! Reconnect delays: exponential back-off with jitter (pure; the randomness is passed in).
//!
//! A gateway with 100 charge points loses all its connections at once when the central system
//! restarts. Without jitter they would all come back in the same instant, every time (a
//! self-made reconnect storm, see ocpp16-facts §4.3), so:
//! - the first attempt after start or after a connection that stayed up waits a random
//!   `0..min`;
//! - every further attempt waits `base * (1 + r/2)` with `r` in `0..1`, where `base` doubles from
//!   `min` and stops at two thirds of `max`, so that even at the cap the delays stay spread over
//!   `max*2/3 ..= max` instead of all landing on `max`.
//!
//! A refused upgrade (HTTP 401/404, TLS failure) is an attempt like any other, so it can never
//! become a hot loop (J-errata 3.3).

use std::time::Duration;

/// The shortest delay ever returned, whatever the configuration says: a misconfigured
/// `backoff_min` of zero must not turn into a hot loop.
pub const FLOOR: Duration = Duration::from_millis(10);

/// The longest delay ever returned: keeps the arithmetic far from `Duration` overflow
/// whatever the configuration says.
pub const CEILING: Duration = Duration::from_secs(24 * 3600);

/// The back-off state of one charge point's connection.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A back-off from `min` doubling up to `max` (both kept within [`FLOOR`]..=[`CEILING`]).
    pub fn new(min: Duration, max: Duration) -> Self {
        let min = min.clamp(FLOOR, CEILING);
        let max = max.min(CEILING);
        Backoff {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// Forget earlier failures: the next delay is the short random first one again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// How many delays were handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The delay before the next attempt; `r` is a random number in `0.0..1.0`.
    pub fn next_delay(&mut self, r: f64) -> Duration {
        let r = if r.is_finite() {
            r.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let attempt = self.attempt;
        self.attempt = self.attempt.saturating_add(1);
        if attempt == 0 {
            return self.min.mul_f64(r).max(FLOOR);
        }
        let cap = self.max.mul_f64(2.0 / 3.0);
        // 2^(attempt-1) with the exponent bounded so the multiplication cannot overflow.
        let factor = 1u32 << (attempt - 1).min(20);
        let base = self.min.saturating_mul(factor).min(cap).max(self.min);
        base.mul_f64(1.0 + r / 2.0).min(self.max).max(FLOOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn the_first_delay_is_random_below_min() {
        let mut b = Backoff::new(S, 300 * S);
        assert_eq!(b.next_delay(0.5), Duration::from_millis(500));
        let mut b = Backoff::new(S, 300 * S);
        assert_eq!(b.next_delay(0.0), FLOOR);
    }

    #[test]
    fn delays_double_from_min_with_up_to_half_jitter() {
        let mut b = Backoff::new(S, 300 * S);
        b.next_delay(0.0);
        assert_eq!(b.next_delay(0.0), S);
        assert_eq!(b.next_delay(0.0), 2 * S);
        assert_eq!(b.next_delay(1.0), 4 * S + 2 * S);
        assert_eq!(b.next_delay(0.0), 8 * S);
    }

    #[test]
    fn delays_never_exceed_max_and_stay_spread_at_the_cap() {
        let mut b = Backoff::new(S, 300 * S);
        for _ in 0..100 {
            b.next_delay(0.7);
        }
        assert_eq!(b.next_delay(0.0), 200 * S);
        assert_eq!(b.next_delay(1.0), 300 * S);
        assert_eq!(b.next_delay(0.5), 250 * S);
        for _ in 0..1000 {
            assert!(b.next_delay(0.99) <= 300 * S);
        }
    }

    #[test]
    fn reset_returns_to_the_short_first_delay() {
        let mut b = Backoff::new(S, 300 * S);
        for _ in 0..10 {
            b.next_delay(0.5);
        }
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert!(b.next_delay(0.99) < S);
    }

    #[test]
    fn huge_bounds_do_not_overflow() {
        let mut b = Backoff::new(Duration::MAX, Duration::MAX);
        for _ in 0..100 {
            assert!(b.next_delay(1.0) <= CEILING);
        }
    }

    #[test]
    fn zero_or_inverted_bounds_never_give_a_hot_loop() {
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO);
        for _ in 0..10 {
            assert!(b.next_delay(0.0) >= FLOOR);
        }
        let mut b = Backoff::new(10 * S, S);
        b.next_delay(0.0);
        assert_eq!(b.next_delay(0.0), 10 * S);
        assert_eq!(b.next_delay(f64::NAN), 10 * S);
    }
}
