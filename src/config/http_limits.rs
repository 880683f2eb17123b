//! Limits on HTTP connections, shared by both services: how long a client may take to send
//! its headers and its body and to take a response, and how many connections are served at
//! once.

use std::time::Duration;

use super::{Reader, number_in, seconds, vars};

/// Defences against slow and greedy clients (slowloris and the like).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// `HTTP_HEADER_TIMEOUT_SECONDS`: a connection that has not sent a complete request head
    /// this long after it opened (or after its previous response) is closed. Also bounds how
    /// long an idle keep-alive connection is kept.
    pub header_timeout: Duration,
    /// `HTTP_BODY_TIMEOUT_SECONDS`: the whole request body must arrive within this time of the
    /// head; otherwise 408.
    pub body_timeout: Duration,
    /// `HTTP_WRITE_TIMEOUT_SECONDS`: a response that cannot be written for this long (the
    /// client stopped reading) closes the connection.
    pub write_timeout: Duration,
    /// `HTTP_MAX_CONNECTIONS`: connections served at once, per service. At the cap the
    /// server stops accepting; new connections wait in the kernel's backlog until one closes.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        let ten = Duration::from_secs(10);
        Self { header_timeout: ten, body_timeout: ten, write_timeout: ten, max_connections: 1024 }
    }
}

pub(super) fn read(r: &mut Reader) -> Option<HttpLimits> {
    let header_timeout = r.parse(&vars::HTTP_HEADER_TIMEOUT_SECONDS, seconds(0.1, 3600.0));
    let body_timeout = r.parse(&vars::HTTP_BODY_TIMEOUT_SECONDS, seconds(0.1, 3600.0));
    let write_timeout = r.parse(&vars::HTTP_WRITE_TIMEOUT_SECONDS, seconds(0.1, 3600.0));
    let max_connections = r.parse(&vars::HTTP_MAX_CONNECTIONS, number_in(1..=1_000_000usize));
    Some(HttpLimits {
        header_timeout: header_timeout?,
        body_timeout: body_timeout?,
        write_timeout: write_timeout?,
        max_connections: max_connections?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::settings_of as settings;

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(settings(&[]).unwrap().http, HttpLimits::default());
        let s = settings(&[
            ("HTTP_HEADER_TIMEOUT_SECONDS", "0.5"),
            ("HTTP_BODY_TIMEOUT_SECONDS", "2"),
            ("HTTP_MAX_CONNECTIONS", "64"),
        ])
        .unwrap();
        assert_eq!(s.http.header_timeout, Duration::from_millis(500));
        assert_eq!(s.http.body_timeout, Duration::from_secs(2));
        assert_eq!(s.http.max_connections, 64);
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in
            [("HTTP_HEADER_TIMEOUT_SECONDS", "0"), ("HTTP_BODY_TIMEOUT_SECONDS", "soon"), ("HTTP_MAX_CONNECTIONS", "0")]
        {
            let errors = settings(&[(var, value)]).unwrap_err();
            assert_eq!(errors.0[0].var, var, "{errors}");
        }
    }
}
