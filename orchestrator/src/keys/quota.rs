//! Quotas as token buckets, pure: every method takes the time, so tests drive it.
//!
//! Requests per minute: a bucket of `rate` requests that refills at `rate / 60` per
//! second; a request takes one. Generated tokens per day: a bucket of `tokens_per_day`
//! that refills at `tokens_per_day / 86400` per second; a request is admitted while the
//! bucket holds any credit, and what the model generated is charged when the result
//! arrives (it cannot be known before), so a long answer may leave the bucket in debt.

/// A token bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    capacity: f64,
    per_s: f64,
    level: f64,
    at: f64,
}

/// Refused: retry after this many whole seconds (at least 1, as `Retry-After` counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

impl Bucket {
    /// A full bucket of `capacity` that refills completely in `period_s`.
    pub fn new(capacity: u64, period_s: f64, now: f64) -> Bucket {
        let capacity = capacity as f64;
        Bucket {
            capacity,
            per_s: capacity / period_s,
            level: capacity,
            at: now,
        }
    }

    pub fn per_minute(rate: u64, now: f64) -> Bucket {
        Bucket::new(rate, 60.0, now)
    }

    pub fn per_day(amount: u64, now: f64) -> Bucket {
        Bucket::new(amount, 86_400.0, now)
    }

    fn refill(&mut self, now: f64) {
        // A clock that steps back must not drain the bucket.
        let dt = (now - self.at).max(0.0);
        self.level = (self.level + dt * self.per_s).min(self.capacity);
        self.at = self.at.max(now);
    }

    /// Seconds until the level reaches `want`, rounded up, at least 1.
    fn wait_for(&self, want: f64) -> RetryAfter {
        if self.per_s <= 0.0 {
            return RetryAfter(86_400);
        }
        let s = ((want - self.level) / self.per_s).ceil();
        RetryAfter(if s.is_finite() {
            (s as u64).max(1)
        } else {
            86_400
        })
    }

    /// Takes `n` if the bucket holds that much.
    pub fn take(&mut self, n: f64, now: f64) -> Result<(), RetryAfter> {
        self.refill(now);
        if self.level >= n {
            self.level -= n;
            Ok(())
        } else {
            Err(self.wait_for(n))
        }
    }

    /// Admits while any credit is left, taking nothing.
    pub fn has_credit(&mut self, now: f64) -> Result<(), RetryAfter> {
        self.refill(now);
        if self.level > 0.0 {
            Ok(())
        } else {
            // Strictly above zero: a hair more than the debt.
            Err(self.wait_for(self.per_s.min(1.0)))
        }
    }

    /// Charges `n` after the fact; the level may go below zero.
    pub fn charge(&mut self, n: f64, now: f64) {
        self.refill(now);
        self.level -= n;
    }

    pub fn level(&mut self, now: f64) -> f64 {
        self.refill(now);
        self.level
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_refuses_the_request_past_the_burst_then_refills() {
        let mut b = Bucket::per_minute(3, 1000.0);
        for _ in 0..3 {
            assert_eq!(b.take(1.0, 1000.0), Ok(()));
        }
        // 3 per minute: one request every 20 s.
        assert_eq!(b.take(1.0, 1000.0), Err(RetryAfter(20)));
        assert_eq!(b.take(1.0, 1010.0), Err(RetryAfter(10)));
        assert_eq!(b.take(1.0, 1020.0), Ok(()));
        assert_eq!(b.take(1.0, 1020.0), Err(RetryAfter(20)));
        // A long idle time refills to the burst, never beyond.
        assert_eq!(b.level(5000.0), 3.0);
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        let mut b = Bucket::per_minute(6000, 0.0);
        for _ in 0..6000 {
            b.take(1.0, 0.0).unwrap();
        }
        assert_eq!(b.take(1.0, 0.0), Err(RetryAfter(1)));
    }

    #[test]
    fn daily_tokens_admit_while_in_credit_and_charge_afterwards() {
        let mut b = Bucket::per_day(86_400, 0.0); // one token per second
        assert_eq!(b.has_credit(0.0), Ok(()));
        b.charge(86_000.0, 0.0);
        assert_eq!(b.has_credit(0.0), Ok(()));
        b.charge(500.0, 0.0); // a long answer: 100 in debt
        assert_eq!(b.has_credit(0.0), Err(RetryAfter(101)));
        assert_eq!(b.has_credit(100.0), Err(RetryAfter(1)));
        assert_eq!(b.has_credit(101.0), Ok(()));
    }

    #[test]
    fn a_clock_stepping_back_changes_nothing() {
        let mut b = Bucket::per_minute(2, 100.0);
        b.take(2.0, 100.0).unwrap();
        assert!(b.take(1.0, 50.0).is_err());
        assert_eq!(b.level(100.0), 0.0);
    }
}
