//! When a failed notification is tried again: exponential backoff with jitter, and a channel's
//! `Retry-After` honoured.

use std::time::Duration;

/// The longest a `Retry-After` may make the worker wait.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The delay before attempt `attempts + 1`, after `attempts` failed ones (`attempts >= 1`):
/// `base · 2^(attempts-1)` capped at `max`, then "equal jitter" (a uniform draw in the upper
/// half, `unit` in `[0, 1)`), so replicas and receivers recovering together do not retry in
/// lockstep while the delay still grows. A `Retry-After` longer than that wins (capped at
/// [`MAX_RETRY_AFTER`]).
pub fn delay(
    attempts: u32,
    base: Duration,
    max: Duration,
    retry_after: Option<Duration>,
    unit: f64,
) -> Duration {
    let exp = attempts.saturating_sub(1).min(30);
    let full = base.saturating_mul(1u32 << exp).min(max);
    let unit = unit.clamp(0.0, 1.0);
    let jittered = full / 2 + full.mul_f64(unit / 2.0);
    match retry_after {
        Some(r) => jittered.max(r.min(MAX_RETRY_AFTER)),
        None => jittered,
    }
}

/// A `Retry-After` header's value: delay-seconds, or an HTTP-date (RFC 9110 §10.2.3) read
/// against `now_millis` (the gateway's clock). Unreadable: `None`.
pub fn retry_after(value: &str, now_millis: i64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let at = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as i64;
    Some(Duration::from_millis(
        at.saturating_sub(now_millis).max(0) as u64
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_stay_within_jitter_and_cap_and_honour_retry_after() {
        let (b, m) = (Duration::from_secs(1), Duration::from_secs(60));
        for (n, full) in [(1, 1), (2, 2), (3, 4), (7, 60), (40, 60)] {
            let full = Duration::from_secs(full);
            assert_eq!(delay(n, b, m, None, 0.0), full / 2);
            assert!(delay(n, b, m, None, 0.999) <= full);
            assert!(delay(n, b, m, None, 0.5) > full / 2);
        }
        assert_eq!(
            delay(1, b, m, Some(Duration::from_secs(30)), 0.9),
            Duration::from_secs(30)
        );
        assert_eq!(
            delay(1, b, m, Some(Duration::from_secs(86_400)), 0.9),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(retry_after(" 7 ", 0), Some(Duration::from_secs(7)));
        // Sun, 06 Nov 1994 08:49:37 GMT = 784111777 s.
        let now = 784_111_770_000;
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now + 60_000),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", 0), None);
        assert_eq!(retry_after("-1", 0), None);
    }
}
