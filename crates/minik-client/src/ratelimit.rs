//! A token bucket that answers how long to wait rather than yes or no, as Go's `rate.Limiter`
//! `Reserve().Delay()` does: client-go's `BucketRateLimiter` (the overall limit of a work
//! queue's retries) and kube-scheduler's client-side write limit are both built on it. Pure: the
//! caller passes `now`.

use std::time::{Duration, Instant};

/// `rate` tokens per second on average, up to `burst` at once.
#[derive(Clone, Debug)]
pub struct RateLimit {
    rate: f64,
    burst: f64,
    /// May go negative: tokens already promised beyond the bucket, each waiting its turn.
    tokens: f64,
    at: Option<Instant>,
}

impl RateLimit {
    /// A limit of `rate` per second with bursts of `burst`; a rate of 0 means no limit.
    pub fn new(rate: u32, burst: u32) -> RateLimit {
        let burst = f64::from(burst.max(1));
        RateLimit {
            rate: f64::from(rate),
            burst,
            tokens: burst,
            at: None,
        }
    }

    /// Takes a token and says how long to wait before using it.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        if self.rate <= 0.0 {
            return Duration::ZERO;
        }
        if let Some(at) = self.at {
            let refill = now.saturating_duration_since(at).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + refill).min(self.burst);
        }
        self.at = Some(now);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_pass_then_tokens_are_spaced() {
        let t = Instant::now();
        let mut limit = RateLimit::new(10, 3);
        let waits: Vec<u128> = (0..5).map(|_| limit.reserve(t).as_millis()).collect();
        assert_eq!(waits, [0, 0, 0, 100, 200]);
        // A second later the debt is paid and the bucket is full again.
        assert_eq!(limit.reserve(t + Duration::from_secs(1)), Duration::ZERO);
        assert_eq!(limit.reserve(t + Duration::from_secs(1)), Duration::ZERO);
    }

    #[test]
    fn the_bucket_never_holds_more_than_the_burst() {
        let t = Instant::now();
        let mut limit = RateLimit::new(10, 2);
        limit.reserve(t);
        let later = t + Duration::from_secs(60);
        let waits: Vec<u128> = (0..3).map(|_| limit.reserve(later).as_millis()).collect();
        assert_eq!(waits, [0, 0, 100]);
    }

    #[test]
    fn a_zero_rate_means_no_limit() {
        let t = Instant::now();
        let mut limit = RateLimit::new(0, 1);
        for _ in 0..1000 {
            assert_eq!(limit.reserve(t), Duration::ZERO);
        }
    }
}
