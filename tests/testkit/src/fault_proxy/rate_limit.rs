//! AWS's request throttling as the fault proxy plays it: a token bucket per service
//! (AWS keeps one per account, region and service; a proxy serves one account and
//! region), refilled at a steady rate up to a burst. A call that finds its service's
//! bucket empty is refused with the service's throttling error.

use std::collections::HashMap;

use tokio::time::Instant;

/// The rate and burst every service's bucket gets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct RateLimit {
    /// Tokens added per second.
    pub per_second: f64,
    /// The most tokens a bucket holds, and holds at the start.
    pub burst: f64,
}

/// One bucket per service signing name, each created full on the service's first call.
#[derive(Debug)]
pub(super) struct ServiceBuckets {
    limit: RateLimit,
    buckets: HashMap<String, Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

impl ServiceBuckets {
    /// Full buckets of `limit` for every service.
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: HashMap::new(),
        }
    }

    /// Takes a token from `service`'s bucket at `now`; false when it has none left
    /// (the call is throttled).
    pub fn admit(&mut self, service: &str, now: Instant) -> bool {
        let limit = self.limit;
        let bucket = self
            .buckets
            .entry(service.to_owned())
            .or_insert_with(|| Bucket {
                tokens: limit.burst,
                refilled_at: now,
            });
        let elapsed = now.saturating_duration_since(bucket.refilled_at);
        bucket.tokens = (bucket.tokens + elapsed.as_secs_f64() * limit.per_second).min(limit.burst);
        bucket.refilled_at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
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

    /// How long a bucket of `limit` takes to earn one token.
    fn one_token(limit: RateLimit) -> Duration {
        Duration::from_secs_f64(1.0 / limit.per_second)
    }

    const LIMIT: RateLimit = RateLimit {
        per_second: 2.0,
        burst: 3.0,
    };

    #[test]
    fn a_full_bucket_admits_its_burst_then_refuses() {
        let mut buckets = ServiceBuckets::new(LIMIT);
        let now = Instant::now();
        let admitted: Vec<bool> = (0..5).map(|_| buckets.admit("rds", now)).collect();
        assert_eq!(admitted, [true, true, true, false, false]);
    }

    #[test]
    fn the_bucket_refills_at_its_rate_up_to_the_burst() {
        let mut buckets = ServiceBuckets::new(LIMIT);
        let start = Instant::now();
        while buckets.admit("rds", start) {}
        let later = start + one_token(LIMIT);
        assert!(buckets.admit("rds", later), "one token after 1/rate");
        assert!(!buckets.admit("rds", later), "and only one");
        let much_later = later + Duration::from_secs(60);
        let admitted = (0..10)
            .take_while(|_| buckets.admit("rds", much_later))
            .count();
        assert_eq!(admitted, 3, "never more than the burst");
    }

    #[test]
    fn each_service_has_a_bucket_of_its_own() {
        let mut buckets = ServiceBuckets::new(LIMIT);
        let now = Instant::now();
        while buckets.admit("rds", now) {}
        assert!(
            buckets.admit("ec2", now),
            "EC2 is not throttled by RDS's calls"
        );
        assert!(!buckets.admit("rds", now));
    }
}
