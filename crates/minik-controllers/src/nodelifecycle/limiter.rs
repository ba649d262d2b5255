//! The token bucket that paces evictions per zone, as Kubernetes' `RateLimitedTimedQueue` does
//! with `flowcontrol.NewTokenBucketRateLimiter(qps, 1)`: a burst of one, then one node every
//! `1 / qps` seconds; a rate of zero lets nothing through.

use std::time::Instant;

#[derive(Clone, Debug)]
pub(crate) struct TokenBucket {
    qps: f64,
    tokens: f64,
    last: Instant,
}

/// The bucket holds at most one token: evictions never come in bursts.
const BURST: f64 = 1.0;

impl TokenBucket {
    /// A full bucket refilled at `qps` tokens per second.
    pub(crate) fn new(qps: f64, now: Instant) -> TokenBucket {
        let qps = if qps.is_finite() { qps.max(0.0) } else { 0.0 };
        TokenBucket {
            qps,
            tokens: if qps > 0.0 { BURST } else { 0.0 },
            last: now,
        }
    }

    pub(crate) fn qps(&self) -> f64 {
        self.qps
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.qps).min(BURST);
        self.last = now;
    }

    /// Takes a token if one is there.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.qps > 0.0 && self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_at_once_then_one_per_period() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(0.1, start);
        assert!(
            bucket.try_take(start),
            "a full bucket lets the first through"
        );
        assert!(!bucket.try_take(start));
        assert!(!bucket.try_take(start + Duration::from_secs(9)));
        assert!(bucket.try_take(start + Duration::from_secs(10)));
        // A long quiet time still allows only one at once.
        assert!(bucket.try_take(start + Duration::from_secs(1000)));
        assert!(!bucket.try_take(start + Duration::from_secs(1000)));
    }

    #[test]
    fn a_zero_rate_stops_everything() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(0.0, start);
        assert!(!bucket.try_take(start));
        assert!(!bucket.try_take(start + Duration::from_secs(3600)));
        let mut nan = TokenBucket::new(f64::NAN, start);
        assert!(!nan.try_take(start));
    }
}
