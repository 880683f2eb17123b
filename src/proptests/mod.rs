//! Property tests for every parser of outside input (issue 6): what a client sends (JSON
//! bodies, bearer tokens, `X-Forwarded-For`), what an operator writes (the `.env` grammar,
//! every variable of the `Settings` reader, `RATE_LIMIT`, `OTP_MESSAGE_TEMPLATE`), and the
//! values inside both (usernames, codes, email addresses, Telegram chats, base32 secrets,
//! `otpauth://` URIs). Each parser must never panic, must give either a value or a clear
//! error, and, where a round trip is natural, must give back what it was built from.
//!
//! proptest's default of 256 cases each; the whole module runs in a few seconds. A failure
//! prints its minimal input, and proptest keeps it in `proptest-regressions/` to replay
//! first on the next run. The cargo-fuzz targets in `fuzz/` drive the same entry points
//! (`crate::input_checks`) with coverage-guided input.

mod config;
mod dotenv;
mod inputs;
mod requests;

use proptest::prelude::*;

/// Any string at all: control characters, other scripts, lone combining marks, NULs.
pub(super) fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[ -~]{0,40}", "\\PC{0,40}"]
}
