//! The `mfa` command line: each subcommand parses its arguments and calls one library
//! function. Exit codes: 0 success, 1 failure, 2 bad configuration or usage.

mod user;

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tracing::warn;

use crate::backup::KeySource;
use crate::clock::{Clock, SystemClock};
use crate::config::{DatabaseConfig, EnvMap, Settings};
use crate::startup::{Application, Services, StartupError};
use crate::{notify, telemetry};
pub use user::{AddArgs, UserCommand};

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
    /// Manage users: add, list, show, remove, rotate, unlock, import.
    User {
        /// The server's data directory (as MFA_DATA_DIR): where its SQLite database is, or
        /// is created.
        #[arg(long, global = true, value_name = "DIR")]
        data_dir: Option<std::path::PathBuf>,
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Copy the SQLite database, live, with its key file into one archive (a new file).
    Backup {
        /// The archive to write; it must not exist. It holds the key file when there is
        /// one: keep it as safe as the key.
        file: std::path::PathBuf,
        /// The server's data directory (as MFA_DATA_DIR).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<std::path::PathBuf>,
    },
    /// Restore a backup into a data directory that holds no database yet.
    Restore {
        /// An archive `mfa backup` wrote.
        file: std::path::PathBuf,
        /// The data directory to restore into (as MFA_DATA_DIR).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<std::path::PathBuf>,
    },
    /// Validate the configuration and print what was found (secrets masked).
    CheckConfig,
    /// Ask a running server's /healthcheck; exit 0 when healthy (for container health checks).
    Healthcheck {
        /// Default: the MFA server at MFA_BIND.
        #[arg(long)]
        url: Option<String>,
    },
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

/// A start-up failure: bad configuration is a usage error (2), anything else a failure (1).
fn startup_failure(e: StartupError) -> Failure {
    if e.is_configuration() { usage(e.to_string()) } else { e.into() }
}

pub fn run(cli: Cli) -> ExitCode {
    let data_dir = match &cli.command {
        Command::User { data_dir, .. } | Command::Backup { data_dir, .. } | Command::Restore { data_dir, .. } => {
            data_dir.clone()
        }
        _ => None,
    };
    let outcome = load_settings(data_dir).and_then(|(env, settings)| {
        // As `Runtime::new()`, but an idle blocking thread exits after 1 s instead of 10.
        // mimalloc gives freed memory back to the OS lazily, at its next collection after a
        // purge delay, and a thread's exit runs one: so Argon2id's 64 MiB (`crate::keyring`)
        // leave the RSS a second after start-up, not ten (tests/api/kdf.rs).
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_keep_alive(std::time::Duration::from_secs(1))
            .build()?;
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

fn load_settings(data_dir: Option<std::path::PathBuf>) -> Result<(EnvMap, Settings), Failure> {
    let mut env = EnvMap::load().map_err(|e| usage(e.to_string()))?;
    if let Some(dir) = data_dir {
        env.set(crate::config::vars::MFA_DATA_DIR.name, dir.display().to_string());
    }
    let settings = Settings::from_env(&env).map_err(|e| usage(e.to_string()))?;
    Ok((env, settings))
}

async fn dispatch(command: Command, env: EnvMap, settings: Settings) -> Result<(), Failure> {
    let is_server = matches!(command, Command::Serve | Command::Server | Command::Notifier);
    let (filter, writer) = if is_server {
        (telemetry::SERVER_FILTER, telemetry::LogWriter::Thread)
    } else {
        (telemetry::COMMAND_FILTER, telemetry::LogWriter::Direct)
    };
    // Held to the end of the command, so that its last lines are written before it exits.
    let _logs = telemetry::init(settings.log_format, filter, writer);
    crate::startup::forbid_core_dumps();
    if !matches!(command, Command::CheckConfig) {
        for warning in &settings.warnings {
            warn!("{warning}");
        }
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match command {
        Command::Serve => serve(settings, clock, Services::ALL).await,
        Command::Server => serve(settings, clock, Services::MFA).await,
        Command::Notifier => serve(settings, clock, Services::NOTIFIER).await,
        Command::CheckConfig => {
            check_config(&env, &settings);
            Ok(())
        }
        Command::Healthcheck { url } => healthcheck(&settings, url).await,
        Command::User { command, .. } => user::run(command, &env, settings, clock).await,
        Command::Backup { file, .. } => {
            tracing::info!(target: "database", "{}", user::which_database(&env, &settings)?);
            backup(&settings, &file, clock.now()).await
        }
        Command::Restore { file, .. } => {
            user::which_database(&env, &settings)?;
            restore(&settings, &file).await
        }
    }
}

async fn serve(settings: Settings, clock: Arc<dyn Clock>, services: Services) -> Result<(), Failure> {
    let application = Application::build_services(settings, clock, services).await.map_err(startup_failure)?;
    application.run_until_stopped().await.map_err(startup_failure)
}

async fn backup(settings: &Settings, file: &std::path::Path, now: u64) -> Result<(), Failure> {
    let manifest = crate::backup::backup(settings, file, now).await?;
    println!("backed up {} (schema {}) to {}", users(manifest.users), manifest.schema, file.display());
    match manifest.keys {
        KeySource::KeyFile => println!("it holds the key file: whoever has it can read every secret; keep it as safe"),
        KeySource::SecretKey => {
            println!("the keys come from SECRET_KEY, which it does not hold: a restore needs the same SECRET_KEY")
        }
    }
    Ok(())
}

async fn restore(settings: &Settings, file: &std::path::Path) -> Result<(), Failure> {
    let manifest = crate::backup::restore(settings, file).await?;
    let when =
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(manifest.created_at));
    let place = match &settings.database {
        DatabaseConfig::Sqlite { path } => path.display().to_string(),
        DatabaseConfig::Postgres { .. } => String::new(), // refused by restore
    };
    println!("restored {} (made by mfa {} at {when}) into {place}", users(manifest.users), manifest.version);
    Ok(())
}

fn users(n: u64) -> String {
    if n == 1 { "1 user".into() } else { format!("{n} users") }
}

async fn healthcheck(settings: &Settings, url: Option<String>) -> Result<(), Failure> {
    let url = url.unwrap_or_else(|| {
        let addr = settings.bind;
        // A server listening on every interface is reached through loopback.
        let host = if addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { addr.ip().to_string() };
        format!("http://{host}:{}/healthcheck", addr.port())
    });
    let client = notify::http_client(std::time::Duration::from_secs(5))?;
    let response = client.get(&url).send().await.map_err(|e| {
        let cause = deepest_cause(&e);
        if e.is_connect() {
            format!("the server is not reachable at {url} ({cause}): is it running there? (MFA_BIND, or --url)")
        } else if e.is_timeout() {
            format!("the server at {url} did not answer within 5 s")
        } else {
            format!("{url}: {cause}")
        }
    })?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    println!("{body}");
    if status.is_success() { Ok(()) } else { Err(Failure::from(format!("{url} answered {status}"))) }
}

/// The innermost error's message: "Connection refused (os error 111)" rather than
/// "error sending request".
fn deepest_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
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
