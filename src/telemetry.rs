//! Logging: human-readable or JSON lines on stderr (stdout is for command output).
//! `RUST_LOG` overrides the default filter.

use std::io::BufWriter;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use crate::config::LogFormat;

/// For the servers.
pub const SERVER_FILTER: &str = "info,sqlx=warn";
/// For one-shot commands, whose output is on stdout: warnings, the audit trail, and which
/// database a user command opened.
pub const COMMAND_FILTER: &str = "warn,audit=info,database=info";

/// Most lines waiting for the log writer; past it, a request that logs waits for the
/// writer (as it waited for stderr before), so no line is dropped and memory stays bounded.
const QUEUED_LINES: usize = 8192;

/// Keeps the log writer's thread, if there is one: dropping it writes out every line still
/// queued.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    _writer: Option<WorkerGuard>,
}

/// Where log lines are written from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogWriter {
    /// A thread of its own, which writes whatever has queued in one `write` and flushes
    /// whenever the queue is empty: for the servers. Written directly, each line was a
    /// `write` on the request's thread, under the stderr lock that every worker takes
    /// (finding 30 in docs/BENCHMARKS.md: at the default level, with a line per request,
    /// `/healthcheck` answered about a seventh more requests a second with this writer
    /// alone, two runs).
    Thread,
    /// The calling thread, at once: for one-shot commands, whose lines must come in order
    /// with what they print on stdout.
    Direct,
}

/// Installs the global subscriber; a second call (tests) is a no-op.
pub fn init(format: LogFormat, default_filter: &str, writer: LogWriter) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let (writer, guard) = match writer {
        LogWriter::Thread => {
            let (writer, guard) = NonBlockingBuilder::default()
                .lossy(false)
                .buffered_lines_limit(QUEUED_LINES)
                .thread_name("mfa-log")
                .finish(BufWriter::with_capacity(64 * 1024, std::io::stderr()));
            (BoxMakeWriter::new(writer), Some(guard))
        }
        LogWriter::Direct => (BoxMakeWriter::new(std::io::stderr), None),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    let installed = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Pretty => builder.with_ansi(false).try_init(),
    };
    LogGuard { _writer: guard.filter(|_| installed.is_ok()) }
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
