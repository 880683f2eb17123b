//! The `mfa` command line: each subcommand parses its arguments and calls one library
//! function. Exit codes: 0 success, 1 failure, 2 bad configuration or usage.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use tracing::{info, warn};

use crate::clock::{Clock, SystemClock};
use crate::config::{EnvMap, Settings};
use crate::domain::{EmailAddress, TelegramChat, Username};
use crate::http::shutdown_signal;
use crate::notify::api::NotifyState;
use crate::notify::{FileNotifier, Notifier};
use crate::otp::OtpParams;
use crate::otp::{Algorithm, parse_digits};
use crate::startup::{self as app, StartupError};
use crate::store::UserRecord;
use crate::users::{self, Enrollment, NewEnrollment};
use crate::{api as server, notify, telemetry, verify as service};

#[derive(Debug, Parser)]
#[command(name = "mfa", version, about = "Self-hosted multi-factor authentication: TOTP and one-time codes")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything: the MFA server (MFA_BIND, 127.0.0.1:6000) and the notification
    /// service (NOTIFY_BIND, 127.0.0.1:6001) in one process.
    Serve,
    /// Run only the MFA server.
    Server,
    /// Run only the notification service.
    Notifier,
    /// Manage users: add, list, show, remove, rotate, unlock.
    #[command(subcommand)]
    User(UserCommand),
    /// Validate the configuration and print what was found (secrets masked).
    CheckConfig,
    /// Ask a running server's /healthcheck; exit 0 when healthy (for container health checks).
    Healthcheck {
        /// Default: the MFA server at MFA_BIND.
        #[arg(long)]
        url: Option<String>,
    },
}

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
    /// Give a user a new secret; the old one stops working at once.
    Rotate {
        name: String,
        /// Do not draw the QR code.
        #[arg(long)]
        no_qr: bool,
    },
    /// Clear a user's failed attempts and lockout.
    Unlock { name: String },
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

/// An error for the user of the command, printed as `mfa: <message>`.
struct Failure {
    message: String,
    code: u8,
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Self { message: e.to_string(), code: 1 }
    }
}

fn usage(message: impl Into<String>) -> Failure {
    Failure { message: message.into(), code: 2 }
}

pub fn run(cli: Cli) -> ExitCode {
    let outcome = load_settings().and_then(|(env, settings)| {
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(dispatch(cli.command, env, settings))
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("mfa: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

fn load_settings() -> Result<(EnvMap, Settings), Failure> {
    let env = EnvMap::load().map_err(|e| usage(e.to_string()))?;
    let settings = Settings::from_env(&env).map_err(|e| usage(e.to_string()))?;
    Ok((env, settings))
}

async fn dispatch(command: Command, env: EnvMap, settings: Settings) -> Result<(), Failure> {
    let is_server = matches!(command, Command::Serve | Command::Server | Command::Notifier);
    let filter = if is_server { telemetry::SERVER_FILTER } else { telemetry::COMMAND_FILTER };
    telemetry::init(settings.log_format, filter);
    if !matches!(command, Command::CheckConfig) {
        for warning in &settings.warnings {
            warn!("{warning}");
        }
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match command {
        Command::Serve => serve(&settings, clock, Services { mfa: true, notifier: true }).await,
        Command::Server => serve(&settings, clock, Services { mfa: true, notifier: false }).await,
        Command::Notifier => serve(&settings, clock, Services { mfa: false, notifier: true }).await,
        Command::CheckConfig => {
            check_config(&env, &settings);
            Ok(())
        }
        Command::Healthcheck { url } => healthcheck(&settings, url).await,
        Command::User(cmd) => user(cmd, &settings, clock).await,
    }
}

async fn open(
    settings: &Settings,
    clock: Arc<dyn Clock>,
    notifier: Arc<dyn Notifier>,
) -> Result<service::MfaService, Failure> {
    app::open_service(settings, clock, notifier).await.map_err(startup_failure)
}

fn startup_failure(e: StartupError) -> Failure {
    match e {
        StartupError::Users(_) | StartupError::KeyMismatch | StartupError::Notifier(_) => usage(e.to_string()),
        other => other.into(),
    }
}

/// Which services one process runs.
#[derive(Debug, Clone, Copy)]
struct Services {
    mfa: bool,
    notifier: bool,
}

async fn serve(settings: &Settings, clock: Arc<dyn Clock>, run: Services) -> Result<(), Failure> {
    let services = u64::from(run.mfa) + u64::from(run.notifier);
    let needed = services * settings.http.max_connections as u64 + 128;
    if let Some(limit) = crate::http::open_files_limit().filter(|limit| *limit < needed) {
        warn!(
            "the open-files limit (ulimit -n) is {limit}, below the {needed} that HTTP_MAX_CONNECTIONS={} needs \
             for {services} service(s): past it new connections fail instead of waiting; raise the limit \
             (LimitNOFILE= in systemd, --ulimit nofile= in Docker) or lower HTTP_MAX_CONNECTIONS",
            settings.http.max_connections
        );
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stop = Arc::new(stop);
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let mut servers = tokio::task::JoinSet::new();

    let mut notifier_addr = None;
    if run.notifier {
        let channels = app::channels(settings).map_err(startup_failure)?;
        let n = &settings.notification;
        info!(email = channels.email.is_some(), telegram = channels.telegram.is_some(), "notification channels");
        if n.api_token.is_none() {
            warn!("NOTIFY_API_TOKEN is not set: /send accepts any caller that can reach {}", n.bind);
        }
        let state = NotifyState {
            channels: Arc::new(channels),
            api_token: n.api_token.clone(),
            default_subject: format!("{} notification", settings.issuer),
            metrics: Arc::new(crate::metrics::Metrics::notifier()),
        };
        let app = notify::api::bind(n.bind, state)
            .await
            .map_err(|e| format!("cannot listen on {} (NOTIFY_BIND): {e}", n.bind))?
            .with_limits(settings.http);
        let addr = app.local_addr()?;
        info!(address = %addr, "notification service listening on http://{addr}");
        notifier_addr = Some(addr);
        servers.spawn(app.run_until(until_stopped()));
    }

    let mut service = None;
    if run.mfa {
        let notifier = app::mfa_notifier(settings, notifier_addr).map_err(startup_failure)?;
        info!(notifier = notifier.name(), "codes from /request-otp are delivered by the {} notifier", notifier.name());
        let mfa = open(settings, clock, notifier).await?;
        let users = mfa.store.count_users().await?;
        let app = server::bind(settings, mfa.clone())
            .await
            .map_err(|e| format!("cannot listen on {} (MFA_BIND): {e}", settings.bind))?;
        let addr = app.local_addr()?;
        info!(address = %addr, "MFA server listening on http://{addr}");
        info!(
            users,
            "{users} user(s) enrolled; enroll one with `mfa user add NAME --email ADDRESS` \
             (or `cargo run --release -- user add NAME --email ADDRESS`), then scan its QR code"
        );
        servers.spawn(app.run_until(until_stopped()));
        service = Some(mfa);
    }

    let on_signal = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = on_signal.send(true);
    });
    let mut outcome = Ok(());
    while let Some(finished) = servers.join_next().await {
        let result = finished.map_err(|e| e.to_string()).and_then(|served| served.map_err(|e| e.to_string()));
        if let Err(e) = result {
            let _ = stop.send(true); // one server failed: stop the other too
            outcome = Err(Failure::from(format!("server stopped: {e}")));
        }
    }
    if let Some(mfa) = service {
        mfa.store.close().await;
    }
    info!("stopped");
    outcome
}

async fn healthcheck(settings: &Settings, url: Option<String>) -> Result<(), Failure> {
    let url = url.unwrap_or_else(|| {
        let addr = settings.bind;
        // A server listening on every interface is reached through loopback.
        let host = if addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { addr.ip().to_string() };
        format!("http://{host}:{}/healthcheck", addr.port())
    });
    let client = notify::http_client(std::time::Duration::from_secs(5))?;
    let response = client.get(&url).send().await.map_err(|e| format!("{url}: {}", e.without_url()))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    println!("{body}");
    if status.is_success() { Ok(()) } else { Err(Failure::from(format!("{url} answered {status}"))) }
}

fn check_config(env: &EnvMap, settings: &Settings) {
    match &env.dotenv_path {
        Some(path) => println!("Read {}", path.display()),
        None => println!("No .env file; using the environment and defaults"),
    }
    let rows = settings.report(env);
    let width = rows.iter().map(|(k, _, _)| k.len()).max().unwrap_or(0);
    for (var, value, source) in rows {
        println!("  {var:width$}  {value}  [{source}]");
    }
    if settings.warnings.is_empty() {
        println!("Configuration OK");
    } else {
        println!("Configuration OK, with {} warning(s):", settings.warnings.len());
        for w in &settings.warnings {
            println!("  - {w}");
        }
    }
}

fn parse_name(raw: &str) -> Result<Username, Failure> {
    Username::parse(raw).map_err(|e| usage(format!("'{raw}': {e}")))
}

async fn user(cmd: UserCommand, settings: &Settings, clock: Arc<dyn Clock>) -> Result<(), Failure> {
    let files: Arc<dyn Notifier> = Arc::new(FileNotifier::new(settings.notifications_log()));
    let service = open(settings, clock.clone(), files).await?;
    let store = service.store.as_ref();
    match cmd {
        UserCommand::Add(args) => {
            let new = NewEnrollment {
                username: parse_name(&args.name)?,
                email: args
                    .email
                    .as_deref()
                    .map(EmailAddress::parse)
                    .transpose()
                    .map_err(|e| usage(format!("--email: {e}")))?,
                telegram: args
                    .telegram_id
                    .as_deref()
                    .map(TelegramChat::parse)
                    .transpose()
                    .map_err(|e| usage(format!("--telegram-id: {e}")))?,
                params: OtpParams {
                    algorithm: args
                        .algorithm
                        .as_deref()
                        .map(Algorithm::parse)
                        .transpose()
                        .map_err(|e| usage(format!("--algorithm: {e}")))?
                        .unwrap_or(settings.otp.algorithm),
                    digits: args
                        .digits
                        .as_deref()
                        .map(parse_digits)
                        .transpose()
                        .map_err(|e| usage(format!("--digits: {e}")))?
                        .unwrap_or(settings.otp.digits),
                    period: settings.otp.period,
                },
            };
            let enrolled = users::add(store, &service.keys, settings, new, clock.now()).await?;
            tracing::info!(target: "audit", event = "enroll", username = %enrolled.username, via = "cli");
            print_enrollment("Enrolled", &enrolled, !args.no_qr);
        }
        UserCommand::List => {
            let all = store.users().await?;
            if all.is_empty() {
                println!("No users. Add one with `mfa user add NAME --email ADDRESS`.");
            }
            println!("{:<24} {:<6} {:<8} {:<32} {:<16} STATE", "USERNAME", "SOURCE", "OTP", "EMAIL", "TELEGRAM");
            for u in &all {
                println!(
                    "{:<24} {:<6} {:<8} {:<32} {:<16} {}",
                    u.profile.username.as_str(),
                    u.profile.source.as_str(),
                    format!("{}/{}", u.profile.params.algorithm, u.profile.params.digits),
                    u.profile.email.as_deref().unwrap_or("-"),
                    u.profile.telegram_id.as_deref().unwrap_or("-"),
                    lock_state(settings, u, clock.now()),
                );
            }
        }
        UserCommand::Show { name } => {
            let username = parse_name(&name)?;
            let u = store.user(&username).await?.ok_or_else(|| format!("no user '{username}'"))?;
            println!("username:        {}", u.profile.username);
            println!("source:          {}", u.profile.source.as_str());
            println!("algorithm:       {}", u.profile.params.algorithm);
            println!("digits:          {}", u.profile.params.digits);
            println!("period:          {} s", u.profile.params.period);
            println!("email:           {}", u.profile.email.as_deref().unwrap_or("-"));
            println!("telegram id:     {}", u.profile.telegram_id.as_deref().unwrap_or("-"));
            println!("failed attempts: {}", u.lock.failed_attempts);
            println!("state:           {}", lock_state(settings, &u, clock.now()));
            println!("created at:      {} (unix)", u.created_at);
        }
        UserCommand::Remove { name } => {
            let username = parse_name(&name)?;
            users::remove(store, settings, &username).await?;
            tracing::info!(target: "audit", event = "remove_user", username = %username, via = "cli");
            println!("Removed user '{username}'.");
        }
        UserCommand::Rotate { name, no_qr } => {
            let username = parse_name(&name)?;
            let enrolled = users::rotate(store, &service.keys, settings, &username, clock.now()).await?;
            tracing::info!(target: "audit", event = "rotate_secret", username = %username, via = "cli");
            print_enrollment("Rotated the secret of", &enrolled, !no_qr);
        }
        UserCommand::Import { file } => {
            let text = if file == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file).map_err(|e| format!("{file}: {e}"))?
            };
            let report = users::import(store, &service.keys, settings, &text, clock.now()).await?;
            tracing::info!(target: "audit", event = "import", imported = report.imported, via = "cli");
            println!(
                "Imported {} user(s); {} already existed and were left as they were.",
                report.imported, report.existing
            );
        }
        UserCommand::Unlock { name } => {
            let username = parse_name(&name)?;
            users::unlock(store, &username).await?;
            tracing::info!(target: "audit", event = "unlock", username = %username, via = "cli");
            println!("Unlocked user '{username}': failed attempts reset.");
        }
    }
    service.store.close().await;
    Ok(())
}

fn lock_state(settings: &Settings, user: &UserRecord, now: u64) -> String {
    match settings.lockout.locked_for(user.lock, now) {
        Some(seconds) => format!("locked for {seconds} s"),
        None => "active".into(),
    }
}

fn print_enrollment(verb: &str, e: &Enrollment, qr: bool) {
    println!(
        "{verb} user '{}' ({}, {} digits, {} s period).",
        e.username, e.params.algorithm, e.params.digits, e.params.period
    );
    println!();
    println!("Secret (shown only now): {}", e.secret.to_base32());
    println!("otpauth URI: {}", e.otpauth_uri);
    if qr {
        match qrcode::QrCode::new(e.otpauth_uri.as_bytes()) {
            Ok(code) => {
                let art = code
                    .render::<qrcode::render::unicode::Dense1x2>()
                    .dark_color(qrcode::render::unicode::Dense1x2::Light)
                    .light_color(qrcode::render::unicode::Dense1x2::Dark)
                    .quiet_zone(true)
                    .build();
                println!("\n{art}\n");
            }
            Err(err) => println!("(cannot draw a QR code: {err})"),
        }
    }
    println!("Scan the QR code (or enter the secret) in Google Authenticator or any RFC 6238 app.");
}
