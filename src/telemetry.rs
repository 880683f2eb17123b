//! Logging: human-readable or JSON lines on stderr (stdout is for command output).
//! `RUST_LOG` overrides the default filter.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// For the servers.
pub const SERVER_FILTER: &str = "info,sqlx=warn";
/// For one-shot commands, whose output is on stdout: warnings, the audit trail, and which
/// database a user command opened.
pub const COMMAND_FILTER: &str = "warn,audit=info,database=info";

/// Installs the global subscriber; a second call (tests) is a no-op.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Pretty => builder.with_ansi(false).try_init(),
    };
}

/// `text` as it may go into a log line or an error body: at most `max_chars` characters
/// (then `…`), with every control character escaped (`\n`, `\u{1b}`), so that no text from
/// a client or an upstream server can forge a line or flood the log.
pub fn printable(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars) + 4);
    for (i, c) in text.chars().enumerate() {
        if i == max_chars {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_text_is_one_short_line() {
        assert_eq!(printable("a\nb\r\u{1b}[31mc\u{0}", 100), "a\\nb\\r\\u{1b}[31mc\\u{0}");
        assert_eq!(printable("abcdef", 3), "abc…");
        assert_eq!(printable("ééé", 2), "éé…");
        assert_eq!(printable("", 5), "");
    }
}
