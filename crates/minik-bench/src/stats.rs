//! Latency samples reduced to the figures the report prints (nearest-rank percentiles).

use std::time::Duration;

/// The percentiles of a set of latency samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Summary {
    /// Summarizes `samples`; `None` when there are none.
    pub fn of(samples: &[Duration]) -> Option<Summary> {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        Some(Summary {
            count: sorted.len(),
            p50: percentile(&sorted, 50.0)?,
            p99: percentile(&sorted, 99.0)?,
            max: *sorted.last()?,
        })
    }

    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "count": self.count,
            "p50_ms": ms(self.p50),
            "p99_ms": ms(self.p99),
            "max_ms": ms(self.max),
        })
    }
}

/// The nearest-rank percentile `p` (0 < p ≤ 100) of sorted samples: the smallest sample that at
/// least `p` percent of the samples are less than or equal to.
fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// The median of some samples (for the few-sample start-up figures).
pub fn median(samples: &[Duration]) -> Option<Duration> {
    Summary::of(samples).map(|s| s.p50)
}

/// A duration in milliseconds, as the report prints them.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|v| Duration::from_millis(*v)).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let cases: &[(&[u64], u64, u64, u64)] = &[
            (&[7], 7, 7, 7),
            (&[1, 2], 1, 2, 2),
            (&[5, 1, 4, 2, 3], 3, 5, 5),
        ];
        for (values, p50, p99, max) in cases {
            let s = Summary::of(&millis(values)).unwrap();
            assert_eq!(
                (s.p50, s.p99, s.max),
                (
                    Duration::from_millis(*p50),
                    Duration::from_millis(*p99),
                    Duration::from_millis(*max)
                ),
                "{values:?}"
            );
        }
        let hundred: Vec<u64> = (1..=100).collect();
        let s = Summary::of(&millis(&hundred)).unwrap();
        assert_eq!(s.p50, Duration::from_millis(50));
        assert_eq!(s.p99, Duration::from_millis(99));
        assert_eq!(s.count, 100);
    }

    #[test]
    fn no_samples_no_summary() {
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(median(&[]), None);
    }
}
