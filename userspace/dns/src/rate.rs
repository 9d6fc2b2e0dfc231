//! The bottle's DNS query budget: a token bucket shared by every listener of one proxy,
//! read against a clock the proxy is given (the monotonic clock in production; tests
//! drive their own, so nothing they assert depends on how fast the machine is).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// Where the rate limit reads the time.
pub(crate) type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// The monotonic clock.
pub(crate) fn system_clock() -> Clock {
    Arc::new(Instant::now)
}

/// A [`TokenBucket`] and the clock it is read against, shared by every task of a proxy.
pub(crate) struct RateLimit {
    bucket: Mutex<TokenBucket>,
    clock: Clock,
}

impl RateLimit {
    /// A full bucket of `per_second` tokens (at least one) as of `clock`'s now.
    pub(crate) fn new(per_second: u32, clock: Clock) -> Self {
        RateLimit {
            bucket: Mutex::new(TokenBucket::new(per_second, clock())),
            clock,
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn take(&self) -> bool {
        let now = (self.clock)();
        // A panic elsewhere must not stop DNS (and so the bottle) for good.
        let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        bucket.take(now)
    }
}

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

    #[test]
    fn the_limit_reads_its_own_clock() {
        let t0 = Instant::now();
        let now = Arc::new(Mutex::new(t0));
        let reading = Arc::clone(&now);
        let limit = RateLimit::new(1, Arc::new(move || *reading.lock().expect("clock lock")));
        assert!(limit.take());
        assert!(!limit.take(), "no time passed on the given clock");
        *now.lock().expect("clock lock") = t0 + Duration::from_secs(1);
        assert!(limit.take());
    }
}
