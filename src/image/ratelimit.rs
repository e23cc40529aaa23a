//! When a rate-limited registry says to come back: the headers of a 429 answer, read into a
//! phrase for the one-line error (`resets in 37 s (at 2026-11-25 10:12:03 UTC)`).
//!
//! `Retry-After` is seconds or an HTTP date (RFC 9110); `RateLimit-Reset` and
//! `X-RateLimit-Reset` are seconds to wait (the IETF draft) or, as GitHub and Docker Hub's
//! CDN send them, a Unix time: a value past 10^9 can only be the latter.
//! `RateLimit-Remaining` (`0;w=21600` on Docker Hub) is shown as it is.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;

/// Seconds values this large are Unix times (2001-09-09 onwards), not delays.
const EPOCH_THRESHOLD: u64 = 1_000_000_000;

/// The reset phrase for a 429 answer's `headers`, `None` when it carries no reset time.
pub fn describe(headers: &HeaderMap, now: SystemTime) -> Option<String> {
    let at = reset_time(headers, now)?;
    let wait = at.duration_since(now).unwrap_or(Duration::ZERO);
    let remaining = header(headers, "ratelimit-remaining")
        .or_else(|| header(headers, "x-ratelimit-remaining"))
        .map(|r| r.split(';').next().unwrap_or_default().trim().to_owned())
        .filter(|r| !r.is_empty())
        .map(|r| format!(", {r} pulls left"))
        .unwrap_or_default();
    Some(format!(
        "resets in {} (at {}){remaining}",
        human_wait(wait),
        utc(at)
    ))
}

/// The first reset time the headers give, in order of authority: the HTTP standard's
/// `Retry-After`, then the rate-limit headers.
pub fn reset_time(headers: &HeaderMap, now: SystemTime) -> Option<SystemTime> {
    if let Some(v) = header(headers, "retry-after") {
        if let Some(at) = http_date(&v).or_else(|| seconds(&v, now)) {
            return Some(at);
        }
    }
    ["ratelimit-reset", "x-ratelimit-reset"]
        .iter()
        .find_map(|name| seconds(&header(headers, name)?, now))
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    Some(headers.get(name)?.to_str().ok()?.trim().to_owned())
}

/// `37` → now + 37 s; `1795000000` → that Unix time.
fn seconds(v: &str, now: SystemTime) -> Option<SystemTime> {
    let n: u64 = v.parse().ok()?;
    if n >= EPOCH_THRESHOLD {
        UNIX_EPOCH.checked_add(Duration::from_secs(n))
    } else {
        now.checked_add(Duration::from_secs(n))
    }
}

/// An HTTP date (`Wed, 25 Nov 2026 10:12:03 GMT`, the form RFC 9110 requires senders to use).
fn http_date(v: &str) -> Option<SystemTime> {
    chrono::DateTime::parse_from_rfc2822(v)
        .ok()
        .map(|d| SystemTime::from(d.with_timezone(&chrono::Utc)))
}

fn utc(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}

/// `37 s`, `12 min`, `5 h 4 min`: exact seconds while they matter.
fn human_wait(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min", s.div_ceil(60)),
        _ => format!("{} h {} min", s / 3600, (s % 3600).div_ceil(60)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    /// 2026-11-25 10:00:00 UTC.
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_600_800)
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(
            describe(&headers(&[("retry-after", "37")]), now()).as_deref(),
            Some("resets in 37 s (at 2026-11-25 10:00:37 UTC)")
        );
        assert_eq!(
            describe(
                &headers(&[("retry-after", "Wed, 25 Nov 2026 10:12:03 GMT")]),
                now()
            )
            .as_deref(),
            Some("resets in 13 min (at 2026-11-25 10:12:03 UTC)")
        );
    }

    #[test]
    fn ratelimit_headers_as_delays_or_unix_times() {
        let docker_hub = headers(&[
            ("ratelimit-remaining", "0;w=21600"),
            ("x-ratelimit-reset", "1795619400"),
        ]);
        assert_eq!(
            describe(&docker_hub, now()).as_deref(),
            Some("resets in 5 h 10 min (at 2026-11-25 15:10:00 UTC), 0 pulls left")
        );
        assert_eq!(
            describe(&headers(&[("ratelimit-reset", "90")]), now()).as_deref(),
            Some("resets in 90 s (at 2026-11-25 10:01:30 UTC)")
        );
        // An unreadable Retry-After does not hide a usable reset header.
        let both = headers(&[("retry-after", "soon"), ("ratelimit-reset", "5")]);
        assert!(describe(&both, now()).is_some_and(|d| d.starts_with("resets in 5 s")));
    }

    #[test]
    fn no_reset_time_no_phrase() {
        assert_eq!(describe(&headers(&[]), now()), None);
        assert_eq!(
            describe(&headers(&[("ratelimit-remaining", "0")]), now()),
            None
        );
        assert_eq!(describe(&headers(&[("retry-after", "later")]), now()), None);
        // A reset already past reads as now, not as a negative wait.
        assert!(
            describe(&headers(&[("x-ratelimit-reset", "1700000000")]), now())
                .is_some_and(|d| d.starts_with("resets in 0 s"))
        );
    }
}
