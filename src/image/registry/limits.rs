//! How long and how much a registry may take: read once from the environment into [`Limits`].
//!
//! A registry that stops sending, trickles, or never stops must not hold a pull (and so a
//! `run` that pulls) forever or fill the host's memory: every request has a stall timeout, the
//! token and manifest requests a deadline in all, and every document a size cap checked as it
//! streams in.

use std::time::Duration;

use crate::{Error, Result};

/// A manifest or index body larger than this is refused as it streams in.
pub const MAX_MANIFEST: u64 = 4 << 20;
/// An image config larger than this is refused (real ones are a few KiB).
pub const MAX_CONFIG: u64 = 8 << 20;
/// A token answer or an error body larger than this is cut (they are a few hundred bytes).
pub const MAX_SMALL_BODY: u64 = 64 << 10;
/// How long connecting (TCP and TLS) may take at most.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Environment variable: seconds without a byte before a request is given up.
pub const STALL_ENV: &str = "DEVOXX_PULL_STALL_TIMEOUT";
/// Environment variable: seconds for the token and manifest requests in all, and for the
/// retries of one blob after its first failure.
pub const REQUEST_ENV: &str = "DEVOXX_PULL_REQUEST_TIMEOUT";
const DEFAULT_STALL: Duration = Duration::from_secs(30);
const DEFAULT_REQUEST: Duration = Duration::from_secs(60);

/// The time limits of one pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// No byte received for this long ends a request.
    pub stall: Duration,
    /// Resolving a reference (token, index, manifest) takes at most this in all; so do the
    /// retries of one blob after it first failed.
    pub request: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            stall: DEFAULT_STALL,
            request: DEFAULT_REQUEST,
        }
    }
}

impl Limits {
    /// The defaults, overridden by [`STALL_ENV`] and [`REQUEST_ENV`] (seconds, fractions
    /// allowed); a value that does not parse is a usage error, not a silent default.
    pub fn from_env() -> Result<Limits> {
        let read = |name: &str, default: Duration| match std::env::var(name) {
            Ok(v) => parse_seconds(name, &v),
            Err(_) => Ok(default),
        };
        Ok(Limits {
            stall: read(STALL_ENV, DEFAULT_STALL)?,
            request: read(REQUEST_ENV, DEFAULT_REQUEST)?,
        })
    }

    /// How long connecting may take: never longer than a stall.
    pub fn connect(&self) -> Duration {
        CONNECT_TIMEOUT.min(self.stall)
    }
}

/// `30`, `0.5` → a positive duration of at most a day.
fn parse_seconds(name: &str, v: &str) -> Result<Duration> {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            Error::Usage(format!(
                "{name}={v:?}: expected a number of seconds between 0 and 86400"
            ))
        })
}

/// `30 s`, `0.5 s`: a duration as the error lines show it.
pub fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{s:.1} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_parse_whole_or_fractional_and_positive() {
        assert_eq!(parse_seconds("X", "30").unwrap(), Duration::from_secs(30));
        assert_eq!(
            parse_seconds("X", " 0.25 ").unwrap(),
            Duration::from_millis(250)
        );
        for bad in ["0", "-1", "abc", "", "inf", "NaN", "100000"] {
            let e = parse_seconds("X", bad).unwrap_err().to_string();
            assert!(e.starts_with("X="), "{bad}: {e}");
        }
    }

    #[test]
    fn durations_read_as_seconds() {
        assert_eq!(seconds(Duration::from_secs(30)), "30 s");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5 s");
    }

    #[test]
    fn connecting_never_outlasts_a_stall() {
        let l = Limits {
            stall: Duration::from_secs(2),
            request: Duration::from_secs(60),
        };
        assert_eq!(l.connect(), Duration::from_secs(2));
        assert_eq!(Limits::default().connect(), CONNECT_TIMEOUT);
    }
}
