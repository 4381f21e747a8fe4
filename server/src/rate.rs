//! Token buckets for rate limits.

use tokio::time::Instant;

/// Holds up to `capacity` tokens, refilled at `per_second`; each allowed event takes one.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    pub(crate) fn full(capacity: f64, per_second: f64, now: Instant) -> Self {
        Self {
            capacity,
            per_second,
            tokens: capacity,
            refilled_at: now,
        }
    }

    /// Takes a token if one is available.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes `count` tokens if that many are available.
    pub(crate) fn try_take_many(&mut self, count: f64, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= count {
            self.tokens -= count;
            true
        } else {
            false
        }
    }

    /// True when `count` tokens are available, without taking them.
    pub(crate) fn has(&mut self, count: f64, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= count
    }

    /// True when a token is available, without taking it.
    pub(crate) fn has_token(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= 1.0
    }

    /// True when the bucket has refilled completely, so forgetting it loses nothing.
    pub(crate) fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.capacity
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.refilled_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn token_bucket_allows_a_burst_then_the_sustained_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::full(3.0, 2.0, start);
        assert!((0..3).all(|_| bucket.try_take(start)));
        assert!(!bucket.try_take(start));
        assert!(bucket.try_take(start + Duration::from_millis(500)));
        assert!(!bucket.try_take(start + Duration::from_millis(500)));
        assert!(bucket.is_full(start + Duration::from_secs(10)));
    }

    #[test]
    fn byte_quota_refuses_what_exceeds_the_remaining_budget() {
        let start = Instant::now();
        let mut bucket = TokenBucket::full(1000.0, 100.0, start);
        assert!(bucket.try_take_many(800.0, start));
        assert!(!bucket.try_take_many(300.0, start));
        assert!(bucket.try_take_many(300.0, start + Duration::from_secs(1)));
    }
}
