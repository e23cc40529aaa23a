//! When a blob download that failed is tried again: a connection reset, a stall, a 5xx or a
//! 429 is (the registry or the network may do better), anything else is final. Waits double
//! from one second, or are what `Retry-After` asks when that is longer; a few tries at most,
//! and all of them within the request timeout after the first failure, so a registry that
//! keeps failing ends the pull within stall + request timeout (90 s with the defaults).

use std::time::{Duration, Instant, SystemTime};

use super::limits::Limits;
use super::transport::{Clock, Failure};
use crate::image::ratelimit;

/// Tries after the first one.
pub(super) const MAX_RETRIES: u32 = 4;
/// The first wait; each next one doubles.
const FIRST_WAIT: Duration = Duration::from_secs(1);

/// The retries of one blob.
pub(super) struct Retry {
    limits: Limits,
    /// When every retry must be over: set at the first failure.
    deadline: Option<Instant>,
    /// Retries made so far.
    pub(super) done: u32,
}

impl Retry {
    pub(super) fn new(limits: Limits) -> Retry {
        Retry {
            limits,
            deadline: None,
            done: 0,
        }
    }

    /// The clock of the next try: the stall timeout, and the retry deadline once one failed.
    pub(super) fn clock(&self) -> Clock {
        let clock = Clock::stall(&self.limits);
        match self.deadline {
            Some(at) => clock.until(at, self.limits.request),
            None => clock,
        }
    }

    /// How long to wait before trying again after `failure`, or `None` when it is final: not
    /// transient, out of tries, or the wait would end past the deadline.
    pub(super) fn after(&mut self, failure: &Failure) -> Option<Duration> {
        if !failure.is_transient() || self.done >= MAX_RETRIES {
            return None;
        }
        let now = Instant::now();
        let deadline = *self.deadline.get_or_insert(now + self.limits.request);
        let backoff = FIRST_WAIT * 2u32.pow(self.done);
        let asked = failure
            .headers()
            .and_then(|h| ratelimit::reset_time(h, SystemTime::now()))
            .map(|at| at.duration_since(SystemTime::now()).unwrap_or_default());
        let wait = asked.map_or(backoff, |a| a.max(backoff));
        // A wait that ends past the deadline leaves no time to try: giving up now says more.
        if wait >= deadline.saturating_duration_since(now) {
            return None;
        }
        self.done += 1;
        Some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderMap;

    fn limits(request_s: u64) -> Limits {
        Limits {
            stall: Duration::from_secs(30),
            request: Duration::from_secs(request_s),
        }
    }

    fn status(code: u16, headers: &[(&'static str, &str)]) -> Failure {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, v.parse().unwrap());
        }
        Failure::Status {
            code,
            headers: Box::new(h),
            body: Vec::new(),
        }
    }

    #[test]
    fn transient_failures_wait_longer_each_time_up_to_a_few_tries() {
        let mut r = Retry::new(limits(600));
        let reset = Failure::Interrupted("connection reset".into());
        let waits: Vec<_> = (0..6).map_while(|_| r.after(&reset)).collect();
        assert_eq!(waits, [1, 2, 4, 8].map(Duration::from_secs));
        assert_eq!(r.done, MAX_RETRIES);
    }

    #[test]
    fn final_failures_are_never_retried() {
        let mut r = Retry::new(limits(60));
        for f in [status(404, &[]), status(401, &[]), Failure::TooLarge(1)] {
            assert_eq!(r.after(&f), None);
        }
        assert_eq!(r.done, 0);
    }

    #[test]
    fn retry_after_is_honoured_when_it_fits_in_the_deadline() {
        let mut r = Retry::new(limits(60));
        let wait = r.after(&status(503, &[("retry-after", "7")])).unwrap();
        assert!((Duration::from_secs(6)..=Duration::from_secs(7)).contains(&wait));
        // A reset beyond the deadline: giving up now says more than waiting for nothing.
        let mut r = Retry::new(limits(60));
        assert_eq!(r.after(&status(429, &[("retry-after", "3600")])), None);
    }

    #[test]
    fn no_wait_ends_past_the_deadline() {
        let mut r = Retry::new(limits(3));
        let stalled = Failure::Stalled(Duration::from_secs(1));
        assert_eq!(r.after(&stalled), Some(Duration::from_secs(1)));
        assert_eq!(r.after(&stalled), Some(Duration::from_secs(2)));
        assert_eq!(
            r.after(&stalled),
            None,
            "4 s would end past the 3 s deadline"
        );
    }
}
