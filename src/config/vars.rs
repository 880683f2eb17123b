//! Every variable this program reads, declared once: its name, its default, whether it is
//! secret, and what it means. The reader (`super::read`), the unknown-variable warning,
//! the `check-config` report (`super::report`) and the documentation's table
//! (docs/configuration.md, checked against this one by a test) all come from here.

/// One variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Var {
    /// The name; `<NAME>_...` for the per-user variables.
    pub name: &'static str,
    /// The value used when it is unset, if there is one.
    pub default: Option<&'static str>,
    /// Without a `default`: what being unset means, as the documentation says it.
    pub unset: &'static str,
    /// Its value is never printed (a URL's password is masked).
    pub secret: bool,
    pub meaning: &'static str,
}

const fn var(name: &'static str, default: &'static str, meaning: &'static str) -> Var {
    Var { name, default: Some(default), unset: "", secret: false, meaning }
}

const fn unset(name: &'static str, unset: &'static str, meaning: &'static str) -> Var {
    Var { name, default: None, unset, secret: false, meaning }
}

const fn secret(name: &'static str, unset: &'static str, meaning: &'static str) -> Var {
    Var { name, default: None, unset, secret: true, meaning }
}

// The seed's variables.
pub const FLASK_SECRET_KEY: Var = secret(
    "FLASK_SECRET_KEY",
    "generated into `data/secret.key`",
    "key from which the at-rest encryption keys are derived (Argon2id, 64 MiB, with a salt of the database's, \
     then HKDF-SHA256); use 32+ random characters",
);
pub const SECRET_KEY: Var =
    secret("SECRET_KEY", "`FLASK_SECRET_KEY`", "the same key under our name; set one of the two");
pub const RATE_LIMIT: Var = var(
    "RATE_LIMIT",
    "120 per minute",
    "per-client-IP limit on `/request-otp` and `/verify`, Flask-Limiter notation, several joined by `;`; `off` disables",
);
pub const USER_SECRET: Var =
    secret("<NAME>_SECRET", "—", "defines user `name` (lower-cased) with this base32 TOTP secret");
pub const USER_EMAIL: Var = unset("<NAME>_EMAIL", "—", "where that user's sent codes go by email");
pub const USER_TELEGRAM_ID: Var = unset("<NAME>_TELEGRAM_ID", "—", "the Telegram chat that user's sent codes go to");
pub const TELEGRAM_TOKEN: Var = secret("TELEGRAM_TOKEN", "—", "the bot's token; enables the Telegram channel");
pub const EMAIL_SMTP_SERVER: Var = unset("EMAIL_SMTP_SERVER", "—", "SMTP relay host; enables the email channel");
pub const EMAIL_SMTP_PORT: Var =
    unset("EMAIL_SMTP_PORT", "`587` (`465` with `EMAIL_SMTP_SECURITY=tls`)", "465: TLS, 587: STARTTLS, other: plain");
pub const EMAIL_SENDER: Var = unset(
    "EMAIL_SENDER",
    "—",
    "From address, `login@acme.example` or `Acme Login <login@acme.example>`; the address is the SMTP login \
     (required with `EMAIL_SMTP_SERVER`)",
);
pub const EMAIL_PASSWORD: Var = secret("EMAIL_PASSWORD", "—", "SMTP password; unset: no AUTH");

// Ours.
pub const MFA_ENV_USERS: Var = unset(
    "MFA_ENV_USERS",
    "none",
    "names whose `<NAME>_SECRET` is read from the process environment too, comma-separated, or `*` for every one \
     (`.env` needs none: each `<NAME>_SECRET` there is a user)",
);
pub const MFA_BIND: Var = var("MFA_BIND", "127.0.0.1:6000", "listen address; `0.0.0.0:6000` for every interface");
pub const MFA_DATA_DIR: Var = var("MFA_DATA_DIR", "./data", "database, generated key, notifications log");
pub const DATABASE_URL: Var = Var {
    secret: true,
    ..unset(
        "DATABASE_URL",
        "`sqlite://$MFA_DATA_DIR/mfa.db`",
        "the database: `sqlite://PATH`, or `postgres://USER:PASSWORD@HOST:PORT/DB` for several instances",
    )
};
pub const DATABASE_MAX_CONNECTIONS: Var =
    var("DATABASE_MAX_CONNECTIONS", "10", "PostgreSQL connections each `mfa` process opens at most");
pub const DATABASE_TIMEOUT_SECONDS: Var = var(
    "DATABASE_TIMEOUT_SECONDS",
    "2",
    "longest wait for a PostgreSQL connection (decimals allowed, at most 60); past it the request answers 503, so \
     clients learn at once that the database is down (it does not bound a query already running). Start-up keeps \
     trying for 10 s, or this long if longer",
);
pub const MFA_API_BEHIND_PROXY: Var = var(
    "MFA_API_BEHIND_PROXY",
    "false",
    "`true`: a proxy or network policy in front decides who may call `/verify` and `/request-otp`, so a non-loopback `MFA_BIND` needs no `MFA_API_KEYS`",
);
pub const ALLOWED_HOSTS: Var = unset(
    "ALLOWED_HOSTS",
    "none",
    "host names a request's `Host` may carry besides IP addresses and `localhost`, comma-separated (both services; others get 421)",
);
pub const TRUSTED_PROXIES: Var =
    unset("TRUSTED_PROXIES", "none", "IPs of reverse proxies whose `X-Forwarded-For` is believed");
pub const MFA_API_KEYS: Var = secret(
    "MFA_API_KEYS",
    "none",
    "comma-separated keys (16+ printable ASCII characters each); when set, `/request-otp` and `/verify` need `Authorization: Bearer <key>`",
);
pub const ADMIN_TOKEN: Var =
    secret("ADMIN_TOKEN", "none", "enables the admin API under `/admin/` (16+ printable ASCII characters)");
pub const OTP_DIGITS: Var = var("OTP_DIGITS", "6", "digits of new users' codes (6–8)");
pub const OTP_PERIOD: Var = var("OTP_PERIOD", "30", "TOTP step in seconds");
pub const OTP_ALGORITHM: Var = var("OTP_ALGORITHM", "SHA1", "`SHA1`, `SHA256` or `SHA512` (most apps only do SHA1)");
pub const OTP_VALID_WINDOW: Var =
    var("OTP_VALID_WINDOW", "1", "TOTP steps accepted each side of the current one (0–10)");
pub const OTP_ISSUER: Var = var("OTP_ISSUER", "MFA", "the name authenticator apps show");
pub const ENROLL_CONFIRM_SECONDS: Var = var(
    "ENROLL_CONFIRM_SECONDS",
    "600",
    "a new authenticator (added or from a rotation) is removed unless a first code confirms it within this many seconds (1–86400)",
);
pub const HOTP_LOOKAHEAD: Var =
    var("HOTP_LOOKAHEAD", "10", "HOTP counters accepted past the expected one, for presses never sent (0–100)");
pub const HOTP_RESYNC_WINDOW: Var = var(
    "HOTP_RESYNC_WINDOW",
    "1000",
    "how far a resynchronisation searches for two consecutive codes: HOTP counters ahead, TOTP steps each side (2–100000)",
);
pub const MAX_FAILED_ATTEMPTS: Var = var(
    "MAX_FAILED_ATTEMPTS",
    "5",
    "failures that lock a user, each time the count reaches 5, 10, 15, …; a right code does not reset the count, time does",
);
pub const LOCKOUT_SECONDS: Var =
    var("LOCKOUT_SECONDS", "300", "how long the first lock lasts; each further level doubles it");
pub const LOCKOUT_MAX_SECONDS: Var = unset(
    "LOCKOUT_MAX_SECONDS",
    "`86400` (or `LOCKOUT_SECONDS` if longer)",
    "the longest lock; failures fade at `MAX_FAILED_ATTEMPTS` per twice this without a failure",
);
pub const OTP_RESEND_SECONDS: Var = var(
    "OTP_RESEND_SECONDS",
    "30",
    "minimum interval between two sends per user; a request within half a code's lifetime resends the same code",
);
pub const OTP_CODE_TTL: Var = var("OTP_CODE_TTL", "300", "lifetime of a sent code (at most 600)");
pub const OTP_DELIVERY: Var = var(
    "OTP_DELIVERY",
    "all",
    "`all`: a code goes to every channel of the user; `first`: to the user's first channel (their `channels` order: Telegram, then email), and to the next when it fails for good or has not delivered within `OTP_FAILOVER_SECONDS`",
);
pub const OTP_FAILOVER_SECONDS: Var =
    var("OTP_FAILOVER_SECONDS", "10", "`OTP_DELIVERY=first`: how long a channel has before the next is tried (1–600)");
pub const OTP_SEND_WAIT_MS: Var = var(
    "OTP_SEND_WAIT_MS",
    "1500",
    "how long `/request-otp` waits for the first delivery attempts before answering `queued` (delivery goes on from the database's outbox)",
);
pub const OTP_SENDS_PER_HOUR: Var = var(
    "OTP_SENDS_PER_HOUR",
    "10",
    "codes `/request-otp` sends one user per hour, at most (resends included), spread evenly after the first ones",
);
pub const OTP_MESSAGE_TEMPLATE: Var = var(
    "OTP_MESSAGE_TEMPLATE",
    super::template::DEFAULT_TEMPLATE,
    "text of a sent code; `{code}` (required), `{expires}`, `{issuer}`, `{username}`",
);
// Security alerts to the user (`crate::alerts`).
pub const SECURITY_ALERTS: Var = var(
    "SECURITY_ALERTS",
    "on",
    "`off`: no security alerts (lockout, unlock, authenticator and recovery-code changes) to the user's own channels; \
     at most one of each kind per user per hour",
);
const fn alert_template(name: &'static str, what: &'static str) -> Var {
    unset(name, "built in ([Security alerts](#security-alerts))", what)
}
pub const ALERT_TEMPLATE_LOCKED_OUT: Var = alert_template(
    "ALERT_TEMPLATE_LOCKED_OUT",
    "the alert that the user was locked out: `{until}`, `{addresses}` (where the failures came from), and every \
     alert's `{issuer}`, `{username}`, `{time}`; a first line `Subject: ...` is the email's subject",
);
pub const ALERT_TEMPLATE_AUTHENTICATOR_ADDED: Var =
    alert_template("ALERT_TEMPLATE_AUTHENTICATOR_ADDED", "the alert that an authenticator was added: `{name}`");
pub const ALERT_TEMPLATE_AUTHENTICATOR_CONFIRMED: Var =
    alert_template("ALERT_TEMPLATE_AUTHENTICATOR_CONFIRMED", "the alert that an authenticator was confirmed: `{name}`");
pub const ALERT_TEMPLATE_AUTHENTICATOR_REMOVED: Var =
    alert_template("ALERT_TEMPLATE_AUTHENTICATOR_REMOVED", "the alert that an authenticator was removed: `{name}`");
pub const ALERT_TEMPLATE_RECOVERY_CODE_USED: Var = alert_template(
    "ALERT_TEMPLATE_RECOVERY_CODE_USED",
    "the alert that a recovery code was used: `{remaining}` (codes left)",
);
pub const ALERT_TEMPLATE_RECOVERY_CODES_GENERATED: Var = alert_template(
    "ALERT_TEMPLATE_RECOVERY_CODES_GENERATED",
    "the alert that new recovery codes were generated: `{count}`",
);
pub const ALERT_TEMPLATE_UNLOCKED: Var =
    alert_template("ALERT_TEMPLATE_UNLOCKED", "the alert that an operator unlocked the user");
pub const ALERT_TEMPLATE_TELEGRAM_LINKED: Var =
    alert_template("ALERT_TEMPLATE_TELEGRAM_LINKED", "the alert that a Telegram chat was linked: `{chat}`");

pub const NOTIFY_BIND: Var =
    var("NOTIFY_BIND", "127.0.0.1:6001", "notification service address (non-loopback needs `NOTIFY_API_TOKEN`)");
pub const NOTIFY_API_TOKEN: Var = secret(
    "NOTIFY_API_TOKEN",
    "—",
    "bearer token `/send` requires (16+ printable ASCII characters); the MFA server sends it",
);
pub const NOTIFICATION_URL: Var = unset(
    "NOTIFICATION_URL",
    "`http://127.0.0.1:6001` (under `mfa serve`, the address it bound)",
    "where the MFA server finds the notification service",
);
pub const NOTIFY_RETRY_BASE_MS: Var = var("NOTIFY_RETRY_BASE_MS", "500", "first retry delay; doubles each retry");
pub const NOTIFY_STARTUP_CHECK: Var = var(
    "NOTIFY_STARTUP_CHECK",
    "warn",
    "each channel is checked at start-up without sending (SMTP connect, TLS and AUTH; Telegram `getMe`): `warn` logs a failure and shows it in `/healthcheck`, `require` stops start-up, `off` checks nothing",
);
pub const NOTIFY_CHECK_SECONDS: Var =
    var("NOTIFY_CHECK_SECONDS", "300", "the channels are checked again this often (`0`: only at start-up)");
pub const EMAIL_SMTP_SECURITY: Var = unset("EMAIL_SMTP_SECURITY", "from the port", "`tls`, `starttls` or `none`");
pub const EMAIL_SMTP_CA_FILE: Var =
    unset("EMAIL_SMTP_CA_FILE", "—", "extra CA certificate (PEM) to trust, for a private relay");
pub const EMAIL_USERNAME: Var =
    unset("EMAIL_USERNAME", "`EMAIL_SENDER`'s address", "SMTP login name, when the relay wants another");
pub const EMAIL_HELO_NAME: Var = unset(
    "EMAIL_HELO_NAME",
    "`EMAIL_SENDER`'s domain",
    "the name the SMTP client greets the relay with (EHLO); relays may refuse one that is not fully qualified",
);
pub const EMAIL_TIMEOUT_SECONDS: Var = var("EMAIL_TIMEOUT_SECONDS", "10", "limit per attempt (decimals allowed)");
pub const EMAIL_MAX_RETRIES: Var = var("EMAIL_MAX_RETRIES", "3", "retries after the first attempt");
pub const TELEGRAM_API_URL: Var =
    var("TELEGRAM_API_URL", "https://api.telegram.org", "Bot API base URL (a self-hosted Bot API server)");
pub const TELEGRAM_TIMEOUT_SECONDS: Var = var("TELEGRAM_TIMEOUT_SECONDS", "10", "limit per attempt");
pub const TELEGRAM_MAX_RETRIES: Var = var("TELEGRAM_MAX_RETRIES", "3", "retries after the first attempt");
pub const TELEGRAM_RETRY_AFTER_MAX: Var =
    var("TELEGRAM_RETRY_AFTER_MAX", "10", "longest Telegram `retry_after` (s) waited out");
pub const TELEGRAM_UPDATES: Var = unset(
    "TELEGRAM_UPDATES",
    "`webhook` when `TELEGRAM_WEBHOOK_URL` is set, else `poll`",
    "how the notification service receives the bot's messages (for chats linking themselves with `/start`): `poll` (long polling `getUpdates`), `webhook`, or `off` (another program reads them)",
);
pub const TELEGRAM_WEBHOOK_URL: Var = unset(
    "TELEGRAM_WEBHOOK_URL",
    "—",
    "the public https:// address Telegram posts updates to, forwarded to the notification service at that same path",
);
pub const TELEGRAM_WEBHOOK_SECRET_TOKEN: Var = secret(
    "TELEGRAM_WEBHOOK_SECRET_TOKEN",
    "random at each start",
    "the webhook's secret token (1–256 of `A-Z a-z 0-9 _ -`), checked in every update's `X-Telegram-Bot-Api-Secret-Token`",
);
pub const LOG_FORMAT: Var = var("LOG_FORMAT", "pretty", "`pretty` or `json` (one JSON object per line)");
pub const MFA_ENV_FILE: Var = var("MFA_ENV_FILE", "./.env", "read another file instead (it must exist)");
pub const RUST_LOG: Var = var("RUST_LOG", "info,sqlx=warn", "log filter (commands: `warn,audit=info,database=info`)");
pub const HTTP_HEADER_TIMEOUT_SECONDS: Var = var(
    "HTTP_HEADER_TIMEOUT_SECONDS",
    "10",
    "a connection's request head must arrive within this; also ends idle keep-alive connections (both services)",
);
pub const HTTP_BODY_TIMEOUT_SECONDS: Var =
    var("HTTP_BODY_TIMEOUT_SECONDS", "10", "a request body must arrive within this of its head, else 408");
pub const HTTP_WRITE_TIMEOUT_SECONDS: Var = var(
    "HTTP_WRITE_TIMEOUT_SECONDS",
    "10",
    "a response that cannot be written for this long (the client stopped reading) closes the connection",
);
pub const HTTP_MAX_CONNECTIONS: Var =
    var("HTTP_MAX_CONNECTIONS", "1024", "connections served at once per service; more wait in the backlog");

/// Every variable, in the documentation's order.
pub const ALL: &[Var] = &[
    FLASK_SECRET_KEY,
    SECRET_KEY,
    RATE_LIMIT,
    USER_SECRET,
    USER_EMAIL,
    USER_TELEGRAM_ID,
    MFA_ENV_USERS,
    TELEGRAM_TOKEN,
    EMAIL_SMTP_SERVER,
    EMAIL_SMTP_PORT,
    EMAIL_SENDER,
    EMAIL_PASSWORD,
    MFA_BIND,
    MFA_DATA_DIR,
    DATABASE_URL,
    DATABASE_MAX_CONNECTIONS,
    DATABASE_TIMEOUT_SECONDS,
    TRUSTED_PROXIES,
    MFA_API_KEYS,
    MFA_API_BEHIND_PROXY,
    ALLOWED_HOSTS,
    ADMIN_TOKEN,
    OTP_DIGITS,
    OTP_PERIOD,
    OTP_ALGORITHM,
    OTP_VALID_WINDOW,
    OTP_ISSUER,
    ENROLL_CONFIRM_SECONDS,
    HOTP_LOOKAHEAD,
    HOTP_RESYNC_WINDOW,
    MAX_FAILED_ATTEMPTS,
    LOCKOUT_SECONDS,
    LOCKOUT_MAX_SECONDS,
    OTP_RESEND_SECONDS,
    OTP_CODE_TTL,
    OTP_DELIVERY,
    OTP_FAILOVER_SECONDS,
    OTP_SEND_WAIT_MS,
    OTP_SENDS_PER_HOUR,
    OTP_MESSAGE_TEMPLATE,
    SECURITY_ALERTS,
    ALERT_TEMPLATE_LOCKED_OUT,
    ALERT_TEMPLATE_AUTHENTICATOR_ADDED,
    ALERT_TEMPLATE_AUTHENTICATOR_CONFIRMED,
    ALERT_TEMPLATE_AUTHENTICATOR_REMOVED,
    ALERT_TEMPLATE_RECOVERY_CODE_USED,
    ALERT_TEMPLATE_RECOVERY_CODES_GENERATED,
    ALERT_TEMPLATE_UNLOCKED,
    ALERT_TEMPLATE_TELEGRAM_LINKED,
    NOTIFY_BIND,
    NOTIFY_API_TOKEN,
    NOTIFICATION_URL,
    NOTIFY_RETRY_BASE_MS,
    NOTIFY_STARTUP_CHECK,
    NOTIFY_CHECK_SECONDS,
    EMAIL_SMTP_SECURITY,
    EMAIL_SMTP_CA_FILE,
    EMAIL_USERNAME,
    EMAIL_HELO_NAME,
    EMAIL_TIMEOUT_SECONDS,
    EMAIL_MAX_RETRIES,
    TELEGRAM_API_URL,
    TELEGRAM_TIMEOUT_SECONDS,
    TELEGRAM_MAX_RETRIES,
    TELEGRAM_RETRY_AFTER_MAX,
    TELEGRAM_UPDATES,
    TELEGRAM_WEBHOOK_URL,
    TELEGRAM_WEBHOOK_SECRET_TOKEN,
    LOG_FORMAT,
    MFA_ENV_FILE,
    RUST_LOG,
    HTTP_HEADER_TIMEOUT_SECONDS,
    HTTP_BODY_TIMEOUT_SECONDS,
    HTTP_WRITE_TIMEOUT_SECONDS,
    HTTP_MAX_CONNECTIONS,
];

impl Var {
    /// A per-user variable (`<NAME>_SECRET` and its companions), read by pattern.
    pub fn is_per_user(&self) -> bool {
        self.name.starts_with('<')
    }

    /// The default as the documentation's table states it.
    pub fn documented_default(&self) -> String {
        self.default.map_or_else(|| self.unset.to_string(), |value| format!("`{value}`"))
    }
}

/// Whether a variable of ours has this name.
pub fn is_known(name: &str) -> bool {
    ALL.iter().any(|v| v.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documentation's row for a variable.
    fn row(var: &Var) -> String {
        format!("| `{}` | {} | {} |", var.name, var.documented_default(), var.meaning)
    }

    /// The rows of every Markdown table in `text` that name a variable in their first cell.
    fn variable_rows(text: &str) -> Vec<&str> {
        text.lines().filter(|line| line.starts_with("| `")).collect()
    }

    #[test]
    fn names_are_unique() {
        for (i, var) in ALL.iter().enumerate() {
            assert!(!ALL.iter().skip(i + 1).any(|other| other.name == var.name), "{} twice", var.name);
        }
    }

    /// docs/configuration.md's table is this table, row for row; the README names no
    /// variable with another default or meaning.
    #[test]
    fn the_documentation_states_every_variable_as_declared() {
        let expected: Vec<String> = ALL.iter().map(row).collect();
        let docs = include_str!("../../docs/configuration.md");
        let documented: Vec<&str> = variable_rows(docs);
        assert!(documented == expected, "docs/configuration.md's table should be:\n{}\n(end)", expected.join("\n"));
        for line in variable_rows(include_str!("../../README.md")) {
            assert!(
                expected.iter().any(|row| row == line)
                    || !ALL.iter().any(|v| line.starts_with(&format!("| `{}` |", v.name))),
                "README: {line}"
            );
        }
    }

    /// `.env.example` has a line for every variable: `#NAME=default` where there is one.
    #[test]
    fn env_example_lists_every_variable_with_its_default() {
        let example = include_str!("../../.env.example");
        for var in ALL {
            let line = match (var.is_per_user(), var.default) {
                (true, _) => var.name.replace("<NAME>", "DAIR") + "=",
                (false, Some(default)) => format!("{}={default}", var.name),
                (false, None) => format!("{}=", var.name),
            };
            assert!(
                example.lines().any(|l| l.trim_start_matches('#').starts_with(&line)),
                ".env.example has no line `#{line}`"
            );
        }
    }
}
