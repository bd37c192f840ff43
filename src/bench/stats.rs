//! Percentiles of measured durations (pure).

use std::time::Duration;

/// A summary of samples: count, p50, p99, max.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Median.
    pub p50: Duration,
    /// 99th percentile (nearest rank).
    pub p99: Duration,
    /// Largest sample.
    pub max: Duration,
}

/// The nearest-rank `q`-quantile (0 < q <= 1) of sorted samples.
fn nearest_rank(sorted: &[Duration], q: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.clamp(1, sorted.len()) - 1)
        .copied()
        .unwrap_or_default()
}

/// Summarises `samples`; `None` when there are none.
#[must_use]
pub fn summarize(samples: &[Duration]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    Some(Summary {
        n: sorted.len(),
        p50: nearest_rank(&sorted, 0.50),
        p99: nearest_rank(&sorted, 0.99),
        max: sorted.last().copied().unwrap_or_default(),
    })
}

/// Milliseconds with one decimal, for tables.
#[must_use]
pub fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|m| Duration::from_millis(*m)).collect()
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<u64> = (1..=100).rev().collect();
        let s = summarize(&millis(&samples)).expect("samples");
        assert_eq!(s.n, 100);
        assert_eq!(s.p50, Duration::from_millis(50));
        assert_eq!(s.p99, Duration::from_millis(99));
        assert_eq!(s.max, Duration::from_millis(100));
    }

    #[test]
    fn one_sample_is_every_percentile() {
        let s = summarize(&millis(&[7])).expect("samples");
        let seven = Duration::from_millis(7);
        assert_eq!((s.p50, s.p99, s.max), (seven, seven, seven));
    }

    #[test]
    fn no_samples_no_summary() {
        assert_eq!(summarize(&[]), None);
    }
}
