//! The one syntax of durations in settings and flags: humantime's `60s`, `100ms`, `1m 30s`.

use std::time::Duration;

/// Why a setting is not a duration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{input}` is not a duration such as 10s or 250ms: {source}")]
pub struct DurationError {
    input: String,
    #[source]
    source: humantime::DurationError,
}

/// Parses a human duration such as `60s`, `100ms` or `1m 30s` (a clap value parser).
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    humantime::parse_duration(input).map_err(|source| DurationError { input: input.to_owned(), source })
}

/// A duration as settings spell it (`10s`, `1m 30s`): the text of a flag's default when the
/// default is a `Duration` constant.
pub fn text(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_human_form() {
        assert_eq!(parse("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse("100ms").unwrap(), Duration::from_millis(100));
        assert!(parse("60").unwrap_err().to_string().contains("not a duration"));
    }

    #[test]
    fn the_text_of_a_duration_parses_back_to_it() {
        for duration in [Duration::from_secs(10), Duration::from_millis(250), Duration::from_secs(90)] {
            assert_eq!(parse(&text(duration)).unwrap(), duration, "{}", text(duration));
        }
        assert_eq!(text(Duration::from_secs(5)), "5s");
    }
}
