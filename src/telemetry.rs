//! Logging: human-readable or JSON lines on stderr (stdout is for command output).
//! `RUST_LOG` overrides the default filter.

use std::io::BufWriter;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
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
    let installed = match format {
        // json-subscriber writes the lines tracing-subscriber's `json()` wrote, keeping each
        // span's fields as values: tracing-subscriber kept them as JSON text and parsed it
        // again for every line (a locked user's refusal took 90,600 instructions, now 61,000).
        LogFormat::Json => json_subscriber::fmt()
            .with_timer(Rfc3339Micros)
            .with_env_filter(filter)
            .with_writer(writer)
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => {
            tracing_subscriber::fmt().with_timer(Rfc3339Micros).with_env_filter(filter).with_writer(writer).try_init()
        }
    };
    LogGuard { _writer: guard.filter(|_| installed.is_ok()) }
}

/// A line's time as tracing-subscriber's own `SystemTime` writes it (RFC 3339 in UTC, to the
/// microsecond), made by humantime in one write: tracing-subscriber's took about 2,300
/// instructions a line, nearly a third of a line's cost (docs/BENCHMARKS.md, finding 31).
struct Rfc3339Micros;

impl FormatTime for Rfc3339Micros {
    #[expect(clippy::disallowed_methods, reason = "a line's time is the wall clock's, not a test clock's")]
    fn format_time(&self, writer: &mut Writer<'_>) -> std::fmt::Result {
        write!(writer, "{}", humantime::format_rfc3339_micros(std::time::SystemTime::now()))
    }
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
    #[expect(clippy::disallowed_methods, reason = "the wall clock the lines are stamped with")]
    fn timestamps_are_rfc3339_utc_to_the_microsecond() {
        let before = std::time::SystemTime::now();
        let mut written = String::new();
        Rfc3339Micros.format_time(&mut Writer::new(&mut written)).unwrap();
        let after = std::time::SystemTime::now();

        // As tracing-subscriber's own timer wrote them: `2026-12-07T14:02:03.162994Z`.
        let shape = written.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T',
            13 | 16 => b == b':',
            19 => b == b'.',
            26 => b == b'Z',
            _ => b.is_ascii_digit(),
        });
        assert!(written.len() == 27 && shape, "{written}");
        let read = humantime::parse_rfc3339(&written).unwrap();
        let to_micros = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_micros();
        assert!((to_micros(before)..=to_micros(after)).contains(&to_micros(read)), "{written}");
    }

    #[test]
    fn printable_text_is_one_short_line() {
        assert_eq!(printable("a\nb\r\u{1b}[31mc\u{0}", 100), "a\\nb\\r\\u{1b}[31mc\\u{0}");
        assert_eq!(printable("abcdef", 3), "abc…");
        assert_eq!(printable("ééé", 2), "éé…");
        assert_eq!(printable("", 5), "");
    }
}
