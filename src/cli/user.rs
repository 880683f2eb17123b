//! `mfa user ...`: user administration from the command line, through the same
//! [`UserService`] as the admin API.

use std::io::IsTerminal as _;
use std::sync::Arc;

use clap::{Args, Subcommand};

use super::{Failure, startup_failure, usage};
use crate::clock::Clock;
use crate::config::{DatabaseConfig, EnvMap, Settings, Source, mask_url_password, vars};
use crate::domain::{EmailAddress, OtpCode, TelegramChat, Username};
use crate::otp::{Algorithm, parse_digits};
use crate::startup;
use crate::users::{
    AuthenticatorRecord, Enrollment, Factor, NewAuthenticator, NewUser, ResyncCodes, UserService, UserSource,
    UserSummary, parse_authenticator_name,
};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user with a fresh 160-bit secret; prints the otpauth URI and a QR code.
    Add(AddArgs),
    /// List every user.
    List,
    /// Show one user (never the secret).
    Show { name: String },
    /// Delete a user.
    Remove { name: String },
    /// Give a user a new secret, as a pending authenticator: the old one keeps working until a
    /// code of the new one is accepted, which retires it.
    Rotate {
        name: String,
        /// Do not draw the QR code.
        #[arg(long)]
        no_qr: bool,
    },
    /// Clear a user's failed attempts and lockout.
    Unlock { name: String },
    /// List a user's authenticators (never a secret).
    Authenticators { name: String },
    /// Add an authenticator (pending until its first code is accepted); prints its secret,
    /// otpauth URI and QR code.
    AddAuthenticator(AddAuthenticatorArgs),
    /// Remove one of a user's authenticators; its codes stop working at once.
    RemoveAuthenticator { name: String, id: String },
    /// Resynchronise an authenticator from two consecutive codes (an HOTP token pressed too
    /// often, a TOTP app whose clock is far off).
    Resync { name: String, id: String, first: String, second: String },
    /// Generate a new set of 10 recovery codes (replacing any earlier ones) and print them, once.
    RecoveryCodes {
        name: String,
        /// Only say how many unused codes the user has; generate none.
        #[arg(long)]
        remaining: bool,
    },
    /// Print a one-time Telegram link for a user: opened in Telegram, its Start links that
    /// chat to the user (works once, for 10 minutes; the running server does the linking).
    TelegramLink { name: String },
    /// Import users with their existing secrets from CSV: username,base32secret[,email[,telegram_id]]
    /// ("-" reads standard input). Names that exist are skipped.
    Import { file: String },
}

#[derive(Debug, Args)]
pub struct AddArgs {
    pub name: String,
    /// Address that receives codes from /request-otp.
    #[arg(long)]
    pub email: Option<String>,
    /// Telegram chat id (or @channel) that receives codes.
    #[arg(long)]
    pub telegram_id: Option<String>,
    /// SHA1 (the default, what every app supports), SHA256 or SHA512. Default: OTP_ALGORITHM.
    #[arg(long)]
    pub algorithm: Option<String>,
    /// 6, 7 or 8. Default: OTP_DIGITS.
    #[arg(long)]
    pub digits: Option<String>,
    /// Do not draw the QR code.
    #[arg(long)]
    pub no_qr: bool,
}

#[derive(Debug, Args)]
pub struct AddAuthenticatorArgs {
    /// The user.
    pub user: String,
    /// totp (an authenticator app) or hotp (a counter-based token).
    #[arg(long, default_value = "totp")]
    pub kind: String,
    /// What the user calls it: "iPhone", "YubiKey".
    #[arg(long)]
    pub name: String,
    /// SHA1, SHA256 or SHA512. Default: OTP_ALGORITHM (TOTP), SHA1 (HOTP).
    #[arg(long)]
    pub algorithm: Option<String>,
    /// 6, 7 or 8. Default: OTP_DIGITS.
    #[arg(long)]
    pub digits: Option<String>,
    /// TOTP: seconds per step. Default: OTP_PERIOD.
    #[arg(long)]
    pub period: Option<u64>,
    /// HOTP: the token's counter now. Default: 0.
    #[arg(long)]
    pub counter: Option<u64>,
    /// Do not draw the QR code.
    #[arg(long)]
    pub no_qr: bool,
}

impl AddAuthenticatorArgs {
    fn new_authenticator(&self) -> Result<NewAuthenticator, Failure> {
        let name = parse_authenticator_name(&self.name).map_err(|e| usage(format!("--name: {e}")))?;
        let algorithm = self
            .algorithm
            .as_deref()
            .map(Algorithm::parse)
            .transpose()
            .map_err(|e| usage(format!("--algorithm: {e}")))?;
        let digits =
            self.digits.as_deref().map(parse_digits).transpose().map_err(|e| usage(format!("--digits: {e}")))?;
        match self.kind.as_str() {
            "totp" if self.counter.is_some() => Err(usage("--counter: only an hotp authenticator has a counter")),
            "totp" => {
                if let Some(p) = self.period.filter(|p| !(1..=300).contains(p)) {
                    return Err(usage(format!("--period: {p} is not from 1 to 300")));
                }
                Ok(NewAuthenticator::Totp { name, algorithm, digits, period: self.period })
            }
            "hotp" if self.period.is_some() => Err(usage("--period: only a totp authenticator has a period")),
            "hotp" => Ok(NewAuthenticator::Hotp { name, algorithm, digits, counter: self.counter }),
            other => Err(usage(format!("--kind: '{other}' is not totp or hotp"))),
        }
    }
}

impl AddArgs {
    fn new_user(&self) -> Result<NewUser, Failure> {
        fn option<T>(
            raw: Option<&str>,
            flag: &str,
            parse: impl Fn(&str) -> Result<T, String>,
        ) -> Result<Option<T>, Failure> {
            raw.map(parse).transpose().map_err(|e| usage(format!("{flag}: {e}")))
        }
        Ok(NewUser {
            username: parse_name(&self.name)?,
            email: option(self.email.as_deref(), "--email", EmailAddress::parse)?,
            telegram: option(self.telegram_id.as_deref(), "--telegram-id", TelegramChat::parse)?,
            algorithm: option(self.algorithm.as_deref(), "--algorithm", Algorithm::parse)?,
            digits: option(self.digits.as_deref(), "--digits", parse_digits)?,
        })
    }
}

fn parse_name(raw: &str) -> Result<Username, Failure> {
    Username::parse(raw).map_err(|e| usage(format!("'{raw}': {e}")))
}

pub(super) async fn run(
    cmd: UserCommand,
    env: &EnvMap,
    settings: Settings,
    clock: Arc<dyn Clock>,
) -> Result<(), Failure> {
    let database = which_database(env, &settings)?;
    tracing::info!(target: "database", "{database}");
    let users = startup::open_users(Arc::new(settings), clock).await.map_err(startup_failure)?;
    let outcome = command(cmd, &users).await;
    users.close().await;
    outcome
}

/// Which database the command opens, said before it opens it. A SQLite database that does
/// not exist yet is only created where the operator said so (a `.env` here, `--data-dir` or
/// `MFA_DATA_DIR`): a command run in the wrong directory would otherwise make a new, empty
/// database and key beside the server's, and its changes would reach no server.
pub(super) fn which_database(env: &EnvMap, settings: &Settings) -> Result<String, Failure> {
    match &settings.database {
        DatabaseConfig::Sqlite { path } if path.exists() => Ok(format!("using the SQLite database {}", path.display())),
        DatabaseConfig::Sqlite { path } => {
            let chosen = env.dotenv_path.is_some() || env.source(vars::MFA_DATA_DIR.name) != Source::Default;
            if chosen {
                Ok(format!("creating a new SQLite database {}", path.display()))
            } else {
                Err(usage(format!(
                    "there is no database at {} and no .env in this directory: run this where the server runs, or \
                     name the server's data directory with --data-dir DIR (or MFA_DATA_DIR=DIR); a new database is \
                     created only there",
                    path.display()
                )))
            }
        }
        DatabaseConfig::Postgres { url, .. } => {
            Ok(format!("using the PostgreSQL database {}", mask_url_password(url.expose())))
        }
    }
}

async fn command(cmd: UserCommand, users: &UserService) -> Result<(), Failure> {
    match cmd {
        UserCommand::Add(args) => {
            let enrolled = users.add(args.new_user()?, UserSource::Cli).await?;
            let username = &enrolled.user.record.profile.username;
            tracing::info!(target: "audit", event = "enroll", username = %username, via = "cli");
            print_enrollment("Enrolled", &enrolled, !args.no_qr);
        }
        UserCommand::List => {
            let all = users.all().await?;
            if all.is_empty() {
                println!("No users. Add one with `mfa user add NAME --email ADDRESS`.");
            }
            println!("{:<24} {:<6} {:<8} {:<32} {:<16} STATE", "USERNAME", "SOURCE", "OTP", "EMAIL", "TELEGRAM");
            for u in &all {
                let p = &u.record.profile;
                println!(
                    "{:<24} {:<6} {:<8} {:<32} {:<16} {}",
                    p.username.as_str(),
                    p.source.as_str(),
                    format!("{}/{}", u.params.algorithm, u.params.digits),
                    p.email.as_deref().unwrap_or("-"),
                    p.telegram_id.as_deref().unwrap_or("-"),
                    lock_state(u),
                );
            }
        }
        UserCommand::Show { name } => {
            let u = users.find(&parse_name(&name)?).await?;
            let p = &u.record.profile;
            println!("username:        {}", p.username);
            println!("source:          {}", p.source.as_str());
            println!("algorithm:       {}", u.params.algorithm);
            println!("digits:          {}", u.params.digits);
            println!("period:          {} s", u.params.period);
            println!("authenticators:  {} (`mfa user authenticators {}`)", u.authenticators, p.username);
            println!("email:           {}", p.email.as_deref().unwrap_or("-"));
            println!("telegram id:     {}", p.telegram_id.as_deref().unwrap_or("-"));
            println!("failed attempts: {} (they fade with time)", u.failed_attempts);
            let state = match u.record.lock.locked_until.filter(|_| u.locked_for.is_some()) {
                Some(until) => format!("{} (until {})", lock_state(&u), when(until)),
                None => lock_state(&u),
            };
            println!("state:           {state}");
            println!("created at:      {}", when(u.record.created_at));
            println!("changed at:      {}", when(u.record.updated_at));
        }
        UserCommand::Remove { name } => {
            let username = parse_name(&name)?;
            users.remove(&username).await?;
            tracing::info!(target: "audit", event = "remove_user", username = %username, via = "cli");
            println!("Removed user '{username}'.");
        }
        UserCommand::Rotate { name, no_qr } => {
            let username = parse_name(&name)?;
            let enrolled = users.rotate(&username).await?;
            tracing::info!(target: "audit", event = "rotate_secret", username = %username, via = "cli");
            print_enrollment("Rotated the secret of", &enrolled, !no_qr);
        }
        UserCommand::Authenticators { name } => {
            let list = users.authenticators(&parse_name(&name)?).await?;
            if list.is_empty() {
                println!("No authenticators. Add one with `mfa user add-authenticator {name} --name NAME`.");
            }
            for a in &list {
                println!("{}", describe(a));
            }
        }
        UserCommand::AddAuthenticator(args) => {
            let username = parse_name(&args.user)?;
            let enrolled = users.add_authenticator(&username, args.new_authenticator()?).await?;
            let id = &enrolled.authenticator.id;
            tracing::info!(target: "audit", event = "add_authenticator", username = %username, authenticator = %id, via = "cli");
            print_enrollment("Added an authenticator to", &enrolled, !args.no_qr);
        }
        UserCommand::RemoveAuthenticator { name, id } => {
            let username = parse_name(&name)?;
            let removed = users.remove_authenticator(&username, &id).await?;
            tracing::info!(target: "audit", event = "remove_authenticator", username = %username, authenticator = %id, via = "cli");
            println!("Removed authenticator {id} ('{}') of user '{username}'.", removed.name);
        }
        UserCommand::Resync { name, id, first, second } => {
            let username = parse_name(&name)?;
            let code = |raw: &str| OtpCode::parse(raw).map_err(|e| usage(format!("'{raw}': {e}")));
            let codes = ResyncCodes([code(&first)?, code(&second)?]);
            let synced = users.resync(&username, &id, &codes).await?;
            tracing::info!(target: "audit", event = "resync_authenticator", username = %username, authenticator = %id, via = "cli");
            println!("Resynchronised: {}", describe(&synced));
        }
        UserCommand::RecoveryCodes { name, remaining } => {
            let username = parse_name(&name)?;
            if remaining {
                println!("{} unused recovery code(s).", users.recovery_codes_remaining(&username).await?);
            } else {
                let codes = users.new_recovery_codes(&username).await?;
                tracing::info!(target: "audit", event = "new_recovery_codes", username = %username, via = "cli");
                println!(
                    "Recovery codes of '{username}' (shown only now; each works once; earlier ones no longer work):"
                );
                println!();
                for code in &codes {
                    println!("  {}", code.display());
                }
                println!();
                println!("Keep them where the user's phone is not: on paper, or in a password manager.");
            }
        }
        UserCommand::TelegramLink { name } => {
            let username = parse_name(&name)?;
            let link = users.telegram_link(&username).await?;
            tracing::info!(target: "audit", event = "telegram_link", username = %username, via = "cli");
            println!("{}", link.url);
            println!();
            println!(
                "Give this link to {username} only: opening it in Telegram and pressing Start links that chat to \
                 them. It works once, for {} minutes; a new link replaces it.",
                link.expires_in / 60
            );
        }
        UserCommand::Import { file } => {
            let text = if file == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file).map_err(|e| format!("{file}: {e}"))?
            };
            let report = users.import(&text).await?;
            tracing::info!(target: "audit", event = "import", imported = report.imported, via = "cli");
            println!(
                "Imported {} user(s); {} already existed and were left as they were.",
                report.imported, report.existing
            );
        }
        UserCommand::Unlock { name } => {
            let username = parse_name(&name)?;
            users.unlock(&username).await?;
            tracing::info!(target: "audit", event = "unlock", username = %username, via = "cli");
            println!("Unlocked user '{username}': failed attempts reset.");
        }
    }
    Ok(())
}

fn lock_state(user: &UserSummary) -> String {
    match user.locked_for {
        Some(seconds) => format!("locked for {seconds} s"),
        None => "active".into(),
    }
}

/// A Unix time as people read it, with the number beside: `2026-12-02T03:41:00Z (1796182860)`.
fn when(unix: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix);
    format!("{} ({unix})", humantime::format_rfc3339_seconds(time))
}

/// One authenticator on a line: id, kind, status, name, parameters, drift and use.
fn describe(a: &AuthenticatorRecord) -> String {
    let details = match a.factor {
        Factor::Totp { params, drift_steps, .. } => format!(
            "{}, {} digits, {} s, drift {} s",
            params.algorithm,
            params.digits,
            params.period,
            drift_steps.saturating_mul(i64::try_from(params.period).unwrap_or(i64::MAX))
        ),
        Factor::Hotp { algorithm, digits, counter } => format!("{algorithm}, {digits} digits, counter {counter}"),
    };
    let used = a.last_used_at.map_or_else(|| "never used".to_string(), |at| format!("last used {}", when(at)));
    let pending = a.expires_at.map(|at| format!(", unless confirmed removed {}", when(at))).unwrap_or_default();
    format!("{} {} {:<7} '{}' ({details}); {used}{pending}", a.id, a.factor.kind(), a.status.as_str(), a.name)
}

fn print_enrollment(verb: &str, e: &Enrollment, qr: bool) {
    let p = &e.user.record.profile;
    println!("{verb} user '{}': authenticator {}.", p.username, describe(&e.authenticator));
    if e.authenticator.expires_at.is_some() {
        println!("It becomes active with its first accepted code; until then the user's other authenticators work.");
    }
    println!();
    println!("Secret (shown only now): {}", e.secret.to_base32());
    println!("otpauth URI: {}", e.otpauth_uri);
    if qr {
        match qr_lines(&e.otpauth_uri, std::io::stdout().is_terminal()) {
            Ok(lines) => println!("\n{}\n", lines.join("\n")),
            Err(err) => println!("(cannot draw a QR code: {err})"),
        }
        println!("Scan the QR code (or enter the secret) in Google Authenticator or any RFC 6238/4226 app.");
    } else {
        println!("Enter the secret (or open the otpauth URI) in Google Authenticator or any RFC 6238/4226 app.");
    }
}

/// The QR code as text: dark modules as blocks, two rows a line. On a terminal each line is
/// black on white (ANSI colours), so it scans whatever the terminal's own colours are; a
/// code drawn in the terminal's colours is inverted on a light or a dark theme, and many
/// scanners refuse an inverted code. Written to a file or a pipe, it has no escapes and
/// reads right on a light page.
fn qr_lines(uri: &str, ansi: bool) -> Result<Vec<String>, qrcode::types::QrError> {
    use qrcode::render::unicode::Dense1x2;
    let art = qrcode::QrCode::new(uri.as_bytes())?
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Dark)
        .light_color(Dense1x2::Light)
        .quiet_zone(true)
        .build();
    Ok(art.lines().map(|line| if ansi { format!("\x1b[30;107m{line}\x1b[0m") } else { line.to_string() }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dark modules drawn as blocks: the count of half-blocks is the count of dark modules,
    /// and the quiet zone around the code is blank (an inverted code would be solid there).
    #[test]
    fn the_terminal_qr_code_draws_dark_modules_dark_on_a_light_ground() {
        let uri = "otpauth://totp/MFA:dair?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=MFA";
        let code = qrcode::QrCode::new(uri.as_bytes()).unwrap();
        let dark = code.to_colors().iter().filter(|c| **c == qrcode::Color::Dark).count();
        let plain = qr_lines(uri, false).unwrap();
        let halves: usize = plain
            .iter()
            .flat_map(|l| l.chars())
            .map(|c| match c {
                '█' => 2,
                '▀' | '▄' => 1,
                _ => 0,
            })
            .sum();
        assert_eq!(halves, dark);
        assert!(plain[0].chars().all(|c| c == ' '), "the quiet zone is blank: {:?}", plain[0]);

        let coloured = qr_lines(uri, true).unwrap();
        assert_eq!(coloured.len(), plain.len());
        for (c, p) in coloured.iter().zip(&plain) {
            assert_eq!(c, &format!("\u{1b}[30;107m{p}\u{1b}[0m"), "black on bright white, reset at each line's end");
        }
    }
}
