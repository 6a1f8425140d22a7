//! When a refused client may try again, as the services say it and the clients read it: to the
//! millisecond in the JSON body, and in whole seconds in `Retry-After` for clients that read
//! only the header.

use std::time::Duration;

/// The field of an error answer's body that says when to retry, to the millisecond.
pub const RETRY_AFTER_MS: &str = "retry_after_ms";

/// `Retry-After` for a pause: whole seconds rounded up and at least one, so that a client that
/// reads only the header never comes back early, nor at once.
pub fn header_secs(after: Duration) -> u64 {
    u64::try_from(after.as_millis()).unwrap_or(u64::MAX).div_ceil(1000).max(1)
}

/// When to try again by what an answer said: the body's `retry_after_ms`, which is exact, else
/// the `Retry-After` header's seconds (its date form is not used by the services).
pub fn retry_after(body_millis: Option<u64>, header: Option<&str>) -> Option<Duration> {
    body_millis.map(Duration::from_millis).or_else(|| header?.trim().parse().ok().map(Duration::from_secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_exact_and_the_header_rounds_up() {
        assert_eq!(header_secs(Duration::from_millis(1500)), 2);
        assert_eq!(header_secs(Duration::ZERO), 1);
        assert_eq!(retry_after(Some(1500), Some("2")), Some(Duration::from_millis(1500)));
        assert_eq!(retry_after(None, Some("3")), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(None, Some("Wed, 21 Oct 2026 07:28:00 GMT")), None);
        assert_eq!(retry_after(None, None), None);
    }
}
