//! The bottle's DNS query budget: a token bucket shared by every listener of one proxy.

use std::time::Instant;

/// `rate` tokens a second, at most `rate` held (a burst of one second's worth). Starts full.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket refilling `per_second` tokens a second (at least one).
    pub fn new(per_second: u32, now: Instant) -> Self {
        let rate = f64::from(per_second.max(1));
        TokenBucket {
            rate,
            tokens: rate,
            last: now,
        }
    }

    /// Takes one token if there is one. `now` earlier than a previous call counts as no
    /// time passed.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(2, t0);
        assert!(bucket.take(t0));
        assert!(bucket.take(t0));
        assert!(!bucket.take(t0));
        // Half a second refills one token at 2/s.
        let t1 = t0 + Duration::from_millis(500);
        assert!(bucket.take(t1));
        assert!(!bucket.take(t1));
        // A long pause refills only up to the burst.
        let t2 = t1 + Duration::from_secs(60);
        assert!(bucket.take(t2));
        assert!(bucket.take(t2));
        assert!(!bucket.take(t2));
        // Time going backwards refills nothing.
        assert!(!bucket.take(t0));
    }

    #[test]
    fn zero_rate_still_answers_one_a_second() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(0, t0);
        assert!(bucket.take(t0));
        assert!(!bucket.take(t0));
        assert!(bucket.take(t0 + Duration::from_secs(1)));
    }
}
