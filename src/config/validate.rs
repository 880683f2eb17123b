//! Validation: every variable read from an [`EnvMap`], checked, cross-checked, and gathered
//! into [`Settings`], with every problem found reported at once.

use std::path::PathBuf;

use super::MessageTemplate;
use super::env::EnvMap;
use super::error::ConfigErrors;
use super::parse::{
    Reader, no_control, number_in, parse_bind, parse_bool, parse_database, parse_hosts, parse_proxies, parse_token,
    seconds,
};
use super::settings::{DatabaseConfig, LogFormat, MAX_CODE_TTL_SECONDS, Sensitive, Settings};
use super::vars;
use crate::lockout::{self, LockoutPolicy};
use crate::otp::{Algorithm, OtpParams, parse_digits};

/// Placeholders that documentation and sample files put in `SECRET_KEY`.
const PLACEHOLDER_KEYS: &[&str] = &["your-secret-key", "changeme", "change-me", "secret", "secret-key", "supersecret"];

/// A key an offline guesser finds first: under 16 characters, or a known placeholder.
fn is_weak_key(key: &str) -> bool {
    key.chars().count() < 16 || PLACEHOLDER_KEYS.iter().any(|p| key.eq_ignore_ascii_case(p))
}

impl Settings {
    /// Reads and validates everything; returns every error at once.
    pub fn from_env(env: &EnvMap) -> Result<Self, ConfigErrors> {
        let mut r = Reader { env, errors: Vec::new(), warnings: Vec::new() };
        let mut warnings = Vec::new();

        if !env.bad_dotenv_lines.is_empty() {
            let lines: Vec<String> = env.bad_dotenv_lines.iter().map(ToString::to_string).collect();
            warnings.push(format!(".env: could not parse line(s) {}; they were skipped", lines.join(", ")));
        }

        let bind = r.parse(&vars::MFA_BIND, parse_bind);
        let data_dir = PathBuf::from(r.value(&vars::MFA_DATA_DIR));
        // The default is a path, not a URL built from one: a data directory named `a?b` or
        // `:memory:x` is a directory, not a query or an in-memory database.
        let database = match env.get(vars::DATABASE_URL.name) {
            Some(_) => r.optional(&vars::DATABASE_URL, parse_database),
            None => Some(DatabaseConfig::Sqlite { path: data_dir.join("mfa.db") }),
        };
        let pool_size = r.parse(&vars::DATABASE_MAX_CONNECTIONS, number_in(1..=1000u32));
        let db_timeout = r.parse(&vars::DATABASE_TIMEOUT_SECONDS, seconds(0.0, 60.0));
        let database = database.map(|db| match (db, pool_size, db_timeout) {
            (DatabaseConfig::Postgres { url, .. }, Some(n), Some(timeout)) => {
                DatabaseConfig::Postgres { url, max_connections: n, acquire_timeout: timeout }
            }
            (db, _, _) => db,
        });

        let secret_key = match (env.get(vars::SECRET_KEY.name), env.get(vars::FLASK_SECRET_KEY.name)) {
            (Some(a), Some(b)) if a != b => {
                r.fail(vars::SECRET_KEY.name, "SECRET_KEY and FLASK_SECRET_KEY are both set and differ; keep one");
                None
            }
            (Some(key), _) | (None, Some(key)) => Some(Sensitive::new(key.to_string())),
            (None, None) => None,
        };
        if let Some(key) = &secret_key {
            let var =
                if env.get(vars::SECRET_KEY.name).is_some() { vars::SECRET_KEY } else { vars::FLASK_SECRET_KEY }.name;
            if is_weak_key(key.expose()) {
                let weak = format!(
                    "{var} is short or a placeholder; the key that encrypts TOTP secrets is derived from it, \
                     so use 32 or more random characters (e.g. `openssl rand -hex 32`), or unset it to use a \
                     generated key file"
                );
                match bind {
                    Some(addr) if !addr.ip().is_loopback() => {
                        r.fail(var, format!("{weak}; MFA_BIND is reachable from other machines"));
                    }
                    _ => warnings.push(weak),
                }
            }
        }

        let api_keys = r
            .optional(&vars::MFA_API_KEYS, |keys| {
                let keys = keys.split(',').filter(|k| !k.trim().is_empty());
                keys.enumerate().map(|(i, k)| parse_token(k).map_err(|e| format!("key {} {e}", i + 1))).collect()
            })
            .unwrap_or_default();
        let admin_token = r.optional(&vars::ADMIN_TOKEN, parse_token);
        let rate_limits = r.parse(&vars::RATE_LIMIT, super::rate_limit::parse_rate_limits);
        let trusted_proxies = r.parse(&vars::TRUSTED_PROXIES, parse_proxies);
        let digits = r.parse(&vars::OTP_DIGITS, parse_digits);
        let period = r.parse(&vars::OTP_PERIOD, number_in(1..=300u64));
        let algorithm = r.parse(&vars::OTP_ALGORITHM, Algorithm::parse);
        let valid_window = r.parse(&vars::OTP_VALID_WINDOW, number_in(0..=10u16));
        let issuer = r.parse(&vars::OTP_ISSUER, |s| {
            if s.contains(':') { Err("must not contain ':'".into()) } else { no_control(false)(s) }
        });
        let enroll_confirm_seconds = r.parse(&vars::ENROLL_CONFIRM_SECONDS, number_in(1..=86_400u64));
        let hotp_lookahead = r.parse(&vars::HOTP_LOOKAHEAD, number_in(0..=100u32));
        let resync_window = r.parse(&vars::HOTP_RESYNC_WINDOW, number_in(2..=100_000u32));
        let allowed_hosts = r.optional(&vars::ALLOWED_HOSTS, parse_hosts).unwrap_or_default();
        let behind_proxy = r.parse(&vars::MFA_API_BEHIND_PROXY, parse_bool);
        if let (Some(addr), Some(false)) = (bind, behind_proxy)
            && !addr.ip().is_loopback()
            && env.get(vars::MFA_API_KEYS.name).is_none()
        {
            r.fail(
                vars::MFA_BIND.name,
                format!(
                    "{addr} is reachable from other machines but MFA_API_KEYS is not set: anyone could try codes \
                     and send them; set MFA_API_KEYS, bind to 127.0.0.1, or set MFA_API_BEHIND_PROXY=true if a \
                     proxy or network policy in front decides who may call /verify and /request-otp"
                ),
            );
        }
        let max_failed_attempts = r.parse(&vars::MAX_FAILED_ATTEMPTS, number_in(1..=1_000_000u32));
        let lockout_seconds = r.parse(&vars::LOCKOUT_SECONDS, number_in(1..=31_536_000u64));
        let max_lockout_seconds = r.optional(&vars::LOCKOUT_MAX_SECONDS, number_in(1..=31_536_000u64));
        let lockout = match (max_failed_attempts, lockout_seconds, max_lockout_seconds) {
            (Some(_), Some(base), Some(cap)) if cap < base => {
                r.fail(
                    vars::LOCKOUT_MAX_SECONDS.name,
                    format!("{cap} is below LOCKOUT_SECONDS ({base}); set them equal for a flat lockout"),
                );
                None
            }
            (Some(max_failed_attempts), Some(lockout_seconds), cap) => Some(LockoutPolicy {
                max_failed_attempts,
                lockout_seconds,
                max_lockout_seconds: cap.unwrap_or(LockoutPolicy::DEFAULT.max_lockout_seconds.max(lockout_seconds)),
            }),
            _ => None,
        };
        let resend_seconds = r.parse(&vars::OTP_RESEND_SECONDS, number_in(0..=86_400u64));
        let sends_per_hour = r.parse(&vars::OTP_SENDS_PER_HOUR, number_in(1..=3_600u32));
        let send_wait =
            r.parse(&vars::OTP_SEND_WAIT_MS, number_in(0..=60_000u64)).map(std::time::Duration::from_millis);
        let first = r.parse(&vars::OTP_DELIVERY, |raw| match raw.trim().to_ascii_lowercase().as_str() {
            "all" => Ok(false),
            "first" => Ok(true),
            other => Err(format!("'{other}' is not all or first")),
        });
        let failover = r.parse(&vars::OTP_FAILOVER_SECONDS, number_in(1..=600u64));
        let code_ttl_seconds = r.parse(&vars::OTP_CODE_TTL, |raw| {
            number_in(1..=MAX_CODE_TTL_SECONDS)(raw).map_err(|e| format!("{e} (OWASP ASVS: at most 10 minutes)"))
        });
        let log_format = r.parse(&vars::LOG_FORMAT, |raw| match raw.trim().to_ascii_lowercase().as_str() {
            "pretty" | "text" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("'{other}' is not 'pretty' or 'json'")),
        });

        let notification = super::notify::read(&mut r);
        let http = super::http_limits::read(&mut r);
        let message_template = r.parse(&vars::OTP_MESSAGE_TEMPLATE, MessageTemplate::parse);
        let alerts = super::alerts::read(&mut r);

        let exposed = bind.is_some_and(|addr| !addr.ip().is_loopback());
        let users = super::env_users::read(&mut r, &mut warnings, exposed);
        warnings.append(&mut r.warnings);

        if let (Some(policy), Some(digits), Some(window)) = (lockout, digits, valid_window) {
            let chance = policy.chance_in(lockout::ATTACK_SPAN_SECONDS, digits, window);
            if chance >= lockout::TARGET_CHANCE {
                warnings.push(format!(
                    "MAX_FAILED_ATTEMPTS, LOCKOUT_SECONDS and LOCKOUT_MAX_SECONDS let an attacker guessing for 30 days \
                     break a user's {digits}-digit code with a chance of {}; the defaults keep it below 1 in 1,000",
                    lockout::describe_chance(chance)
                ));
            }
        }

        for key in env.keys() {
            let ours = ["MFA_", "OTP_"].iter().any(|p| key.starts_with(p));
            let meant = if ours || env.in_dotenv(key) { super::spelling::meant(key) } else { None };
            if let Some(meant) = meant {
                warnings.push(format!("{key} is not a variable this program knows: did you mean {meant}?"));
            } else if ours && !vars::is_known(key) {
                warnings.push(format!("{key} is not a variable this program knows; check its spelling"));
            }
        }

        if !r.errors.is_empty() {
            return Err(ConfigErrors(r.errors));
        }
        // Every `None` above pushed an error, so with no errors all of these are present.
        let settings = (|| {
            Some(Self {
                bind: bind?,
                data_dir,
                database: database?,
                secret_key,
                rate_limits: rate_limits?,
                trusted_proxies: trusted_proxies?,
                allowed_hosts,
                api_keys,
                admin_token,
                otp: OtpParams { algorithm: algorithm?, digits: digits?, period: period? },
                valid_window: valid_window?,
                issuer: issuer?,
                enroll_confirm_seconds: enroll_confirm_seconds?,
                hotp_lookahead: hotp_lookahead?,
                resync_window: resync_window?,
                lockout: lockout?,
                resend_seconds: resend_seconds?,
                sends_per_hour: sends_per_hour?,
                send_wait: send_wait?,
                failover_after: if first? { Some(failover?) } else { None },
                code_ttl_seconds: code_ttl_seconds?,
                message_template: message_template?,
                log_format: log_format?,
                users,
                notification: notification?,
                http: http?,
                // A warning may name a variable from the environment: one line each.
                warnings: warnings.iter().map(|w| crate::telemetry::printable(w, 2_000)).collect(),
                alerts: alerts?,
            })
        })();
        settings.ok_or_else(|| ConfigErrors::one("configuration", "a value failed to parse"))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{SmtpSecurity, Source, dotenv, mask_url_password};

    fn env(pairs: &[(&str, &str)]) -> EnvMap {
        EnvMap::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())), [])
    }

    #[test]
    fn defaults_without_any_variable() {
        let s = Settings::from_env(&env(&[])).unwrap();
        assert_eq!(s.bind.to_string(), "127.0.0.1:6000");
        assert_eq!(s.database, DatabaseConfig::Sqlite { path: PathBuf::from("./data/mfa.db") });
        assert_eq!(s.otp, OtpParams::default());
        assert_eq!(s.valid_window, 1);
        assert_eq!(s.lockout, LockoutPolicy::DEFAULT);
        assert_eq!((s.resend_seconds, s.code_ttl_seconds), (30, 300));
        assert_eq!(s.rate_limits.len(), 1);
        assert!(s.users.is_empty() && s.secret_key.is_none());
    }

    #[test]
    fn the_seed_env_gives_two_users_with_warnings_that_name_them() {
        let file = dotenv::parse(include_str!("../../tests/fixtures/seed.env"), &|_| None);
        let s = Settings::from_env(&EnvMap::from_pairs(file.entries, [])).unwrap();
        let names: Vec<&str> = s.users.iter().map(|u| u.username.as_str()).collect();
        assert_eq!(names, ["bob", "dair"]);
        let dair = &s.users[1];
        assert_eq!(dair.email.as_ref().unwrap().as_str(), "dair@example.com");
        assert_eq!(dair.telegram.as_ref().unwrap().as_str(), "123456789");
        assert_eq!(s.rate_limits[0].to_string(), "200 per day");
        assert_eq!(s.secret_key.as_ref().unwrap().expose(), "your-secret-key");
        let email = s.notification.email.as_ref().unwrap();
        assert_eq!((email.port, email.security), (465, SmtpSecurity::Tls));
        assert_eq!(email.username, "your@email.com");
        assert_eq!(s.notification.telegram.as_ref().unwrap().api_url, "https://api.telegram.org");
        let short: Vec<&String> = s.warnings.iter().filter(|w| w.contains("80-bit")).collect();
        assert_eq!(short.len(), 2);
        assert!(short.iter().all(|w| !w.contains("base32secret3232")));
        assert!(s.warnings.iter().any(|w| w.contains("FLASK_SECRET_KEY is short or a placeholder")));
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        let map = EnvMap::from_pairs(
            [("OTP_DIGITS".to_string(), "6".to_string())],
            [("OTP_DIGITS".to_string(), "8".to_string())],
        );
        assert_eq!(Settings::from_env(&map).unwrap().otp.digits, 8);
        assert_eq!(map.source("OTP_DIGITS"), Source::Environment);
    }

    #[test]
    fn every_bad_value_is_reported_by_name_without_secret_values() {
        let err = Settings::from_env(&env(&[
            ("RATE_LIMIT", "lots"),
            ("MFA_BIND", "127.0.0.1:70000"),
            ("DAIR_SECRET", "s3cr3t-not-base32!"),
            ("OTP_DIGITS", "12"),
            ("OTP_CODE_TTL", "3600"),
            ("BOB_SECRET", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"),
            ("BOB_EMAIL", "bob-at-example"),
        ]))
        .unwrap_err();
        let vars: Vec<&str> = err.0.iter().map(|e| e.var.as_str()).collect();
        assert_eq!(vars, ["MFA_BIND", "RATE_LIMIT", "OTP_DIGITS", "OTP_CODE_TTL", "BOB_EMAIL", "DAIR_SECRET"]);
        let text = err.to_string();
        assert!(text.contains("RATE_LIMIT: cannot read 'lots'"), "{text}");
        assert!(!text.contains("s3cr3t"), "{text}");
    }

    #[test]
    fn a_single_error_is_one_line() {
        let err = Settings::from_env(&env(&[("RATE_LIMIT", "lots")])).unwrap_err();
        assert_eq!(err.to_string().lines().count(), 1);
        assert!(err.to_string().starts_with("invalid configuration: RATE_LIMIT:"));
    }

    #[test]
    fn secret_key_aliases() {
        let s = Settings::from_env(&env(&[("SECRET_KEY", "k1")])).unwrap();
        assert_eq!(s.secret_key.unwrap().expose(), "k1");
        assert!(Settings::from_env(&env(&[("SECRET_KEY", "a"), ("FLASK_SECRET_KEY", "b")])).is_err());
    }

    #[test]
    fn database_urls() {
        assert!(parse_database("sqlite:///var/lib/mfa/mfa.db").is_ok());
        assert!(parse_database("sqlite:data.db").is_ok());
        assert!(parse_database("sqlite::memory:").is_err());
        assert!(matches!(parse_database("postgres://u:p@h/db"), Ok(DatabaseConfig::Postgres { .. })));
        assert_eq!(mask_url_password("postgres://mfa:s3cret@db:5432/mfa"), "postgres://mfa:********@db:5432/mfa");
        assert_eq!(mask_url_password("postgres://db/mfa"), "postgres://db/mfa");
        assert!(parse_database("mysql://x").is_err());
    }

    #[test]
    fn the_postgres_connection_wait_is_short_by_default_and_configurable() {
        let url = ("DATABASE_URL", "postgres://u:p@h/db");
        let wait = |vars: &[(&str, &str)]| match Settings::from_env(&env(vars)).map(|s| s.database) {
            Ok(DatabaseConfig::Postgres { acquire_timeout, .. }) => Ok(acquire_timeout),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.to_string()),
        };
        assert_eq!(wait(&[url]), Ok(Duration::from_secs(2)));
        assert_eq!(wait(&[url, ("DATABASE_TIMEOUT_SECONDS", "0.5")]), Ok(Duration::from_millis(500)));
        for bad in ["0", "-1", "61", "soon"] {
            let err = wait(&[url, ("DATABASE_TIMEOUT_SECONDS", bad)]).unwrap_err();
            assert!(err.contains("DATABASE_TIMEOUT_SECONDS"), "{err}");
        }
    }

    #[test]
    fn unknown_mfa_variables_are_warned_about() {
        let s = Settings::from_env(&env(&[("MFA_BINDD", "x")])).unwrap();
        assert!(s.warnings.iter().any(|w| w.contains("MFA_BINDD") && w.contains("did you mean MFA_BIND?")));
    }

    #[test]
    fn misspelt_variables_in_dotenv_name_the_one_meant_and_the_environment_is_not_searched() {
        let dotenv = "RATE_LIMT=5/minute\nADMIN_TOKN=abc\nDAIR_SECERT=JBSWY3DPEHPK3PXP\nPOSTGRES_PASSWORD=x\n";
        let s =
            Settings::from_env(&EnvMap::from_dotenv_text(dotenv, vec![("RATE_LIMT_X".into(), "1".into())])).unwrap();
        for (typed, meant) in
            [("RATE_LIMT", "RATE_LIMIT"), ("ADMIN_TOKN", "ADMIN_TOKEN"), ("DAIR_SECERT", "DAIR_SECRET")]
        {
            let expected = format!("{typed} is not a variable this program knows: did you mean {meant}?");
            assert!(s.warnings.contains(&expected), "{expected}: {:?}", s.warnings);
        }
        assert!(
            !s.warnings.iter().any(|w| w.contains("POSTGRES_PASSWORD") || w.contains("RATE_LIMT_X")),
            "{:?}",
            s.warnings
        );
    }

    #[test]
    fn the_lockout_cap_follows_a_long_first_lock_and_cannot_be_below_it() {
        let long = Settings::from_env(&env(&[("LOCKOUT_SECONDS", "172800")])).unwrap();
        assert_eq!(long.lockout.max_lockout_seconds, 172_800, "the default cap never shortens the first lock");
        let flat = Settings::from_env(&env(&[("LOCKOUT_MAX_SECONDS", "300")])).unwrap();
        assert_eq!(flat.lockout.lock_seconds(9), 300);

        let err = Settings::from_env(&env(&[("LOCKOUT_SECONDS", "600"), ("LOCKOUT_MAX_SECONDS", "300")])).unwrap_err();

        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].var, "LOCKOUT_MAX_SECONDS");
    }

    #[test]
    fn a_lockout_weaker_than_the_goal_is_warned_about_with_its_figure() {
        let defaults = Settings::from_env(&env(&[])).unwrap();
        assert!(!defaults.warnings.iter().any(|w| w.contains("LOCKOUT")), "{:?}", defaults.warnings);

        let flat = Settings::from_env(&env(&[("LOCKOUT_MAX_SECONDS", "300")])).unwrap();

        let warning = flat.warnings.iter().find(|w| w.contains("LOCKOUT_MAX_SECONDS")).expect("a warning");
        assert!(warning.contains("chance of 1 in 10"), "{warning}");
    }

    #[test]
    fn an_api_reachable_from_other_machines_needs_keys_or_a_stated_guard() {
        let err = Settings::from_env(&env(&[("MFA_BIND", "0.0.0.0:6000")])).unwrap_err();
        assert_eq!(err.0[0].var, "MFA_BIND");
        assert!(err.0[0].reason.contains("MFA_API_KEYS") && err.0[0].reason.contains("MFA_API_BEHIND_PROXY"), "{err}");
        let keyed = [("MFA_BIND", "0.0.0.0:6000"), ("MFA_API_KEYS", "backend-key-0123456789")];
        assert!(Settings::from_env(&env(&keyed)).is_ok());
        let guarded = [("MFA_BIND", "[::]:6000"), ("MFA_API_BEHIND_PROXY", "true")];
        assert!(Settings::from_env(&env(&guarded)).is_ok());
        assert!(Settings::from_env(&env(&[("MFA_BIND", "127.0.0.1:6000")])).is_ok(), "loopback stays open");
    }

    #[test]
    fn values_that_end_up_in_headers_or_messages_have_no_control_characters() {
        for (var, value) in [
            ("OTP_ISSUER", "ACME\r\nBcc x@example.com"),
            ("OTP_ISSUER", "A\u{7}"),
            ("OTP_MESSAGE_TEMPLATE", "{code}\u{1b}[2J"),
            ("EMAIL_USERNAME", "relay\u{0}"),
        ] {
            let mut vars = vec![(var, value)];
            if var.starts_with("EMAIL") {
                vars.extend([("EMAIL_SMTP_SERVER", "smtp.example.com"), ("EMAIL_SENDER", "a@example.com")]);
            }
            let err = Settings::from_env(&env(&vars)).unwrap_err();
            assert_eq!(err.0[0].var, var, "{err}");
            assert!(err.0[0].reason.contains("control character"), "{err}");
        }
        let multiline = Settings::from_env(&env(&[("OTP_MESSAGE_TEMPLATE", "Code:\n{code}\tbye")])).unwrap();
        assert_eq!(multiline.message_template.as_str(), "Code:\n{code}\tbye");
    }

    #[test]
    fn an_smtp_password_is_never_sent_in_clear_unless_asked_for() {
        let base = [
            ("EMAIL_SMTP_SERVER", "smtp.example.com"),
            ("EMAIL_SENDER", "a@example.com"),
            ("EMAIL_PASSWORD", "pw"),
            ("EMAIL_SMTP_PORT", "2525"),
        ];
        let err = Settings::from_env(&env(&base)).unwrap_err();
        assert_eq!(err.0[0].var, "EMAIL_SMTP_SECURITY", "{err}");
        let mut explicit = base.to_vec();
        explicit.push(("EMAIL_SMTP_SECURITY", "none"));
        let s = Settings::from_env(&env(&explicit)).unwrap();
        assert!(s.warnings.iter().any(|w| w.contains("travels in clear")), "{:?}", s.warnings);
        let mut tls = base.to_vec();
        tls[3] = ("EMAIL_SMTP_PORT", "465");
        assert!(Settings::from_env(&env(&tls)).unwrap().warnings.iter().all(|w| !w.contains("clear")));
    }

    #[test]
    fn allowed_hosts_are_names() {
        let s = Settings::from_env(&env(&[("ALLOWED_HOSTS", "MFA.example.com, notifier")])).unwrap();
        assert_eq!(s.allowed_hosts, ["mfa.example.com", "notifier"]);
        for bad in ["http://x", "x:6000", "a..b"] {
            assert_eq!(Settings::from_env(&env(&[("ALLOWED_HOSTS", bad)])).unwrap_err().0[0].var, "ALLOWED_HOSTS");
        }
    }
}
