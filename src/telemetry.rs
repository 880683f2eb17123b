//! Logging: human-readable or JSON lines on stderr (stdout is for command output).
//! `RUST_LOG` overrides the default filter.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// For the servers.
pub const SERVER_FILTER: &str = "info,sqlx=warn";
/// For one-shot commands, whose output is on stdout.
pub const COMMAND_FILTER: &str = "warn,audit=info";

/// Installs the global subscriber; a second call (tests) is a no-op.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Pretty => builder.with_ansi(false).try_init(),
    };
}
