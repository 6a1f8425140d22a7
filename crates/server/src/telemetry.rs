//! `tracing` set-up shared by the binaries. Libraries only emit; binaries install this once.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber: filter from `RUST_LOG` (default `info`), output in `format`.
/// Calling it twice is harmless (the second call does nothing), which keeps tests simple.
pub fn init(format: LogFormat) {
    init_with_default(format, "info");
}

/// [`init`] with another filter for when `RUST_LOG` is not set, in `RUST_LOG`'s syntax.
pub fn init_with_default(format: LogFormat, default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Colours only for a terminal: escape codes make piped or collected logs unreadable.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi);
    let _ = match format {
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// For tests: logs appear only when `TEST_LOG` is set, so a passing run stays quiet.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        init(LogFormat::Pretty);
    }
}
