//! A virtual client's bandwidth budget: what all its links send shares one token bucket, so
//! it never crowds out members on the network it runs on.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// A token bucket of bytes; `wait_for` sleeps until the bytes may go.
#[derive(Debug)]
pub struct Throttle {
    bytes_per_second: f64,
    burst: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

impl Throttle {
    /// `bytes_per_second` sustained, with bursts of one second's worth (at least 64 KiB, so a
    /// single largest frame always fits).
    pub fn new(bytes_per_second: u64) -> Self {
        let rate = bytes_per_second.max(1) as f64;
        let burst = rate.max(64.0 * 1024.0);
        Self {
            bytes_per_second: rate,
            burst,
            state: Mutex::new(Bucket {
                tokens: burst,
                refilled_at: Instant::now(),
            }),
        }
    }

    /// Takes `bytes` from the bucket, waiting as long as the rate requires. Debt is allowed,
    /// so a frame larger than the burst waits proportionally instead of forever.
    pub async fn wait_for(&self, bytes: usize) {
        let wait = {
            let mut bucket = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let elapsed = now.duration_since(bucket.refilled_at).as_secs_f64();
            bucket.tokens = (bucket.tokens + elapsed * self.bytes_per_second).min(self.burst);
            bucket.refilled_at = now;
            bucket.tokens -= bytes as f64;
            if bucket.tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-bucket.tokens / self.bytes_per_second)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sending_more_than_the_burst_takes_as_long_as_the_rate_says() {
        let throttle = Throttle::new(100 * 1024);
        let start = Instant::now();
        for _ in 0..4 {
            throttle.wait_for(64 * 1024).await;
        }
        // 256 KiB with a 100 KiB burst at 100 KiB/s: 156 KiB of waiting, 1.56 s of paused time.
        let waited = start.elapsed().as_secs_f64();
        assert!((1.5..1.7).contains(&waited), "waited {waited} s");
    }
}
