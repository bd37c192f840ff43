//! Rate limit for repeated warnings of the same kind, so a dead device does not flood the log.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// An identical warning for the same unit is repeated at most this often.
const REPEAT_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Last {
    key: String,
    logged_at: Instant,
    suppressed: u64,
}

/// Remembers the last warning per unit.
#[derive(Debug, Default)]
pub(crate) struct WarnLimiter {
    last: HashMap<u8, Last>,
}

impl WarnLimiter {
    /// Whether to log a warning of kind `key` for `unit` now; `Some(n)` means log it, noting
    /// that `n` warnings of the same kind were suppressed since the last one logged.
    pub(crate) fn check(&mut self, unit: u8, key: &str, now: Instant) -> Option<u64> {
        match self.last.get_mut(&unit) {
            Some(last) if last.key == key && now.duration_since(last.logged_at) < REPEAT_EVERY => {
                last.suppressed = last.suppressed.saturating_add(1);
                None
            }
            Some(last) if last.key == key => {
                let suppressed = last.suppressed;
                last.logged_at = now;
                last.suppressed = 0;
                Some(suppressed)
            }
            _ => {
                self.last.insert(
                    unit,
                    Last {
                        key: key.to_owned(),
                        logged_at: now,
                        suppressed: 0,
                    },
                );
                Some(0)
            }
        }
    }

    /// The unit answered: its next warning is logged at once.
    pub(crate) fn clear(&mut self, unit: u8) {
        self.last.remove(&unit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_warnings_are_logged_once_a_minute_with_a_count() {
        let now = Instant::now();
        let mut limiter = WarnLimiter::default();
        assert_eq!(limiter.check(1, "timeout", now), Some(0));
        assert_eq!(
            limiter.check(1, "timeout", now + Duration::from_secs(1)),
            None
        );
        assert_eq!(
            limiter.check(1, "timeout", now + Duration::from_secs(2)),
            None
        );
        assert_eq!(
            limiter.check(1, "timeout", now + Duration::from_secs(61)),
            Some(2)
        );
    }

    #[test]
    fn a_different_warning_or_unit_is_logged_at_once() {
        let now = Instant::now();
        let mut limiter = WarnLimiter::default();
        assert_eq!(limiter.check(1, "timeout", now), Some(0));
        assert_eq!(limiter.check(2, "timeout", now), Some(0));
        assert_eq!(limiter.check(1, "connection refused", now), Some(0));
        limiter.clear(1);
        assert_eq!(limiter.check(1, "connection refused", now), Some(0));
    }
}
