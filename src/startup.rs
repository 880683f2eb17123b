//! The one start-up path. `mfa serve`, `mfa server`, `mfa notifier` and the integration
//! tests all build an [`Application`]: it opens the store, derives the keys, syncs `.env`
//! users, builds the notifier, the services, metrics and routers, binds, and reports the
//! bound addresses; [`Application::run_until_stopped`] serves until a signal. The `mfa user`
//! commands open the same store and keys through [`open_users`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::alerts::Alerts;
use crate::api::{self, AppState};
use crate::clock::Clock;
use crate::config::{DatabaseConfig, Sensitive, Settings, StartupCheck, TelegramUpdates, mask_url_password};
use crate::crypto::{KeyError, KeyOrigin, Keys, MasterKey};
use crate::http::{BoundRouter, open_files_limit, shutdown_signal};
use crate::keyring::{self, KeyringError};
use crate::metrics::Metrics;
use crate::notify::api::{BotUpdates, NotifyState};
use crate::notify::check::ChannelChecks;
use crate::notify::email::EmailChannel;
use crate::notify::retry::RetryPolicy;
use crate::notify::telegram::TelegramChannel;
use crate::notify::{self, Channels, FileNotifier, HttpNotifier, Notifier};
use crate::store::{self, KeyRecord, Store, StoreError};
use crate::users::{SyncReport, UserError, UserService};
use crate::verify::VerifyService;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The database could not be opened, migrated or written at start-up; `hint` says what
    /// to check when the cause is the storage (disk full, read-only, server down).
    #[error("cannot open the database {database}: {source}{hint}")]
    Database { database: String, source: StoreError, hint: &'static str },
    #[error("{0}")]
    Keys(#[from] KeyError),
    #[error(
        "the database was encrypted with another key: SECRET_KEY (or FLASK_SECRET_KEY, or data/secret.key) \
         changed since users were enrolled. Restore the old key; a new key cannot read the stored secrets"
    )]
    KeyMismatch,
    /// The database has keys recorded, but what made them is not here: generating a new
    /// key file now would only make a key that cannot read it.
    #[error("{0}")]
    KeyMissing(String),
    #[error("{0}")]
    Users(UserError),
    #[error("{0}")]
    Notifier(String),
    #[error("cannot listen on {addr} ({var}): {source}")]
    Listen { var: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("server stopped: {0}")]
    Stopped(String),
}

impl StartupError {
    /// Whether the configuration is at fault (rather than the machine): exit code 2.
    pub fn is_configuration(&self) -> bool {
        matches!(self, Self::Users(_) | Self::KeyMismatch | Self::KeyMissing(_) | Self::Notifier(_))
    }
}

/// Which services one process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Services {
    pub mfa: bool,
    pub notifier: bool,
}

impl Services {
    /// `mfa serve`: both.
    pub const ALL: Self = Self { mfa: true, notifier: true };
    /// `mfa server`.
    pub const MFA: Self = Self { mfa: true, notifier: false };
    /// `mfa notifier`.
    pub const NOTIFIER: Self = Self { mfa: false, notifier: true };
}

/// The MFA server, bound, and what stays reachable of it while it serves.
struct MfaServer {
    router: BoundRouter,
    addr: SocketAddr,
    users: UserService,
    store: Arc<dyn Store>,
    alerts: Alerts,
    /// Delivers what `/request-otp` queued (`crate::outbox`).
    outbox: Arc<crate::outbox::Outbox>,
    /// Sends codes; takes the bot's `/start`s (`crate::users::link_chats`).
    notifier: Arc<dyn Notifier>,
}

/// The services of one process, bound and ready to serve.
pub struct Application {
    mfa: Option<MfaServer>,
    notifier: Option<NotificationService>,
}

impl Application {
    /// Everything `mfa serve` runs: the MFA server and the notification service.
    pub async fn build(settings: Settings, clock: Arc<dyn Clock>) -> Result<Self, StartupError> {
        Self::build_services(settings, clock, Services::ALL).await
    }

    /// Only the services asked for.
    pub async fn build_services(
        settings: Settings,
        clock: Arc<dyn Clock>,
        services: Services,
    ) -> Result<Self, StartupError> {
        let settings = Arc::new(settings);
        warn_about_open_files(&settings, services);
        let notifier = if services.notifier { Some(bind_notifier(&settings).await?) } else { None };
        let mfa = if services.mfa {
            Some(bind_mfa(&settings, clock, notifier.as_ref().map(|n| n.addr)).await?)
        } else {
            None
        };
        Ok(Self { mfa, notifier })
    }

    /// Where the MFA server listens, when it runs.
    pub fn mfa_addr(&self) -> Option<SocketAddr> {
        self.mfa.as_ref().map(|m| m.addr)
    }

    /// Where the notification service listens, when it runs.
    pub fn notifier_addr(&self) -> Option<SocketAddr> {
        self.notifier.as_ref().map(|n| n.addr)
    }

    /// The user administration of the MFA server's database, when it runs.
    pub fn users(&self) -> Option<UserService> {
        self.mfa.as_ref().map(|m| m.users.clone())
    }

    /// Serves until SIGINT or SIGTERM, then finishes the requests in flight.
    pub async fn run_until_stopped(self) -> Result<(), StartupError> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `stop` completes (or one service fails, which stops the other too),
    /// lets the requests in flight finish, and closes the database.
    pub async fn run_until(self, stop: impl Future<Output = ()> + Send + 'static) -> Result<(), StartupError> {
        let (stopping, stopped) = tokio::sync::watch::channel(false);
        let stopping = Arc::new(stopping);
        let until_stopped = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        };
        let mut servers = tokio::task::JoinSet::new();
        if let Some(n) = self.notifier {
            servers.spawn(n.router.run_until(until_stopped()));
            if let Some(every) = n.check_every {
                tokio::spawn(check_channels(n.channels, n.checks, every, until_stopped()));
            }
            match n.receive {
                Some(Receive::Poll(telegram, starts)) => {
                    tokio::spawn(notify::updates::poll(telegram, starts, until_stopped()));
                }
                Some(Receive::Webhook(telegram, url, secret)) => {
                    let secret = secret.expose().to_string();
                    tokio::spawn(notify::updates::set_webhook(telegram, url, secret, until_stopped()));
                }
                None => {}
            }
        }
        let store = self.mfa.map(|mfa| {
            servers.spawn(mfa.router.run_until(until_stopped()));
            tokio::spawn(crate::users::link_chats(mfa.users.clone(), mfa.notifier, until_stopped()));
            tokio::spawn(sweep_pending(mfa.users, until_stopped()));
            tokio::spawn(mfa.outbox.work(until_stopped()));
            (mfa.store, mfa.alerts)
        });
        let on_stop = stopping.clone();
        tokio::spawn(async move {
            stop.await;
            let _ = on_stop.send(true);
        });
        let mut outcome = Ok(());
        while let Some(finished) = servers.join_next().await {
            let result = finished.map_err(|e| e.to_string()).and_then(|served| served.map_err(|e| e.to_string()));
            if let Err(e) = result {
                let _ = stopping.send(true); // one server failed: stop the other too
                outcome = Err(StartupError::Stopped(e));
            }
        }
        if let Some((store, alerts)) = store {
            alerts.settled_within(ALERTS_AT_SHUTDOWN).await;
            store.close().await;
        }
        info!("stopped");
        outcome
    }
}

/// How often the pending authenticators past their confirmation time are removed. (They
/// stop working at that time whenever the sweep runs: verification skips them.)
const PENDING_SWEEP: std::time::Duration = std::time::Duration::from_secs(60);

/// Removes expired pending authenticators every [`PENDING_SWEEP`] until `stop`.
async fn sweep_pending(users: UserService, stop: impl Future<Output = ()>) {
    let mut tick = tokio::time::interval(PENDING_SWEEP);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => match users.expire_pending().await {
                Ok(0) => {}
                Ok(removed) => info!(removed, "removed pending authenticators that were not confirmed in time"),
                Err(e) => warn!(error = %e, "could not remove expired pending authenticators"),
            },
        }
    }
}

/// Makes sure a crash writes no core dump: the process holds the keys, every secret it has
/// read and the codes it sends, and a core file would put them on disk. The core size
/// limit goes to 0 and the process is marked not dumpable (which also keeps other processes
/// of the same user from reading its memory through `ptrace` and `/proc/PID/mem`).
pub fn forbid_core_dumps() {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit};
        if let Err(e) = setrlimit(Resource::Core, Rlimit { current: Some(0), maximum: Some(0) }) {
            warn!(error = %e, "cannot turn core dumps off (RLIMIT_CORE)");
        }
        if let Err(e) = set_dumpable_behavior(DumpableBehavior::NotDumpable) {
            warn!(error = %e, "cannot mark the process not dumpable");
        }
    }
}

/// The names the notification service answers to besides addresses and `localhost`:
/// `ALLOWED_HOSTS`, the host of `NOTIFICATION_URL` (the MFA server, reading the same
/// configuration, calls it by that name), and the host of `TELEGRAM_WEBHOOK_URL` (a proxy
/// passing Telegram's posts on keeps their `Host`).
fn notifier_hosts(settings: &Settings) -> Vec<String> {
    let mut hosts = settings.allowed_hosts.clone();
    let webhook = settings.notification.telegram.as_ref().and_then(|t| match &t.updates {
        TelegramUpdates::Webhook { url, .. } => Some(url.as_str()),
        _ => None,
    });
    for url in [settings.notification.url.as_deref(), webhook].into_iter().flatten() {
        if let Some(host) = reqwest::Url::parse(url).ok().as_ref().and_then(|url| url.host_str()) {
            hosts.push(host.to_ascii_lowercase());
        }
    }
    hosts
}

/// Opens the database and the keys as the MFA server does (checking that they match, and
/// bringing `.env` users into the database), for the `mfa user` commands; their alerts go
/// through the notifier the MFA server would use, which also names the Telegram bot for links.
pub async fn open_users(settings: Arc<Settings>, clock: Arc<dyn Clock>) -> Result<UserService, StartupError> {
    let (store, users, _) = open_data(settings.clone(), clock.clone()).await?;
    let notifier = mfa_notifier(&settings, None)?;
    let alerts = security_alerts(&settings, store, notifier.clone(), clock, Arc::new(Metrics::mfa()));
    Ok(users.with_alerts(alerts).with_notifier(notifier))
}

/// How long a stopping server waits for the security alerts still being sent.
const ALERTS_AT_SHUTDOWN: Duration = Duration::from_secs(5);

/// The security alerts (`SECURITY_ALERTS`), through the notifier that sends codes.
fn security_alerts(
    settings: &Arc<Settings>,
    store: Arc<dyn Store>,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
) -> Alerts {
    let alerts = Alerts::new(store, notifier, clock, settings.clone(), metrics);
    if !alerts.is_enabled() {
        info!("SECURITY_ALERTS=off: users are not told of lockouts and changes to their accounts");
    }
    alerts
}

/// The store, the keys and the user administration over them, with `.env` users synced.
async fn open_data(
    settings: Arc<Settings>,
    clock: Arc<dyn Clock>,
) -> Result<(Arc<dyn Store>, UserService, Arc<Keys>), StartupError> {
    let (store, keys) = open_keys(&settings).await?;
    let keys = Arc::new(keys);
    let users = UserService::new(store.clone(), keys.clone(), settings.clone(), clock);
    let report = users.sync_env_users().await.map_err(|e| match e {
        UserError::Store(e) => database_error(&settings, e),
        other => StartupError::Users(other),
    })?;
    if report != SyncReport::default() {
        info!(added = ?report.added, updated = ?report.updated, removed = ?report.removed, "synced users from the environment");
    }
    let bound = users.bind_secrets_to_authenticators().await.map_err(|e| match e {
        UserError::Store(e) => database_error(&settings, e),
        other => StartupError::Users(other),
    })?;
    if bound > 0 {
        info!(resealed = bound, "sealed the secrets of an earlier version again, bound to their authenticators");
    }
    Ok((store, users, keys))
}

/// The store (migrated) and its keys, checked against the database's record of them.
pub async fn open_keys(settings: &Settings) -> Result<(Arc<dyn Store>, Keys), StartupError> {
    let store = store::open(&settings.database).await.map_err(|e| database_error(settings, e))?;
    let keys = match store.key_record().await {
        Ok(record) => match master_key(settings, &record) {
            Ok(master) => keyring::open(&store, master, record).await.map_err(|e| keyring_error(settings, e)),
            Err(e) => Err(e),
        },
        Err(e) => Err(database_error(settings, e)),
    };
    match keys {
        Ok(keys) => Ok((store, keys)),
        Err(e) => {
            store.close().await;
            Err(e)
        }
    }
}

/// The key a database with `record` is opened with: `SECRET_KEY`, or the key file, which is
/// generated only for a database that has no keys yet. `record` is read before this looks
/// for the file: a process starting beside this one on a new database writes its key file
/// first, then the record.
pub fn master_key(settings: &Settings, record: &KeyRecord) -> Result<MasterKey, StartupError> {
    if settings.secret_key.is_none() && record.check.is_some() && !settings.key_file().exists() {
        return Err(StartupError::KeyMissing(match record.kdf.as_deref() {
            Some(kdf) if kdf.starts_with("$argon2") => "the database was made with SECRET_KEY, which is not set: set \
                 the SECRET_KEY it was made with (a generated key file could not read it)"
                .to_string(),
            Some(_) => format!(
                "the database was made with the key file {}, which is missing: restore it (from the backup, or the \
                 data volume it was on); a new key file could not read it",
                settings.key_file().display()
            ),
            // Made before the record said which (schema 1 without `kdf`).
            None => format!(
                "the database was made with SECRET_KEY or with the key file {}, and neither is here: set that \
                 SECRET_KEY, or restore the key file",
                settings.key_file().display()
            ),
        }));
    }
    let master = MasterKey::load(settings.secret_key.as_ref().map(|k| k.expose()), &settings.key_file())?;
    if master.origin == KeyOrigin::GeneratedFile {
        warn!(
            key_file = %settings.key_file().display(),
            "no SECRET_KEY set: generated a random key file to encrypt TOTP secrets; back it up with the \
             database, or set SECRET_KEY"
        );
    }
    Ok(master)
}

pub fn keyring_error(settings: &Settings, e: KeyringError) -> StartupError {
    match e {
        KeyringError::Keys(e) => StartupError::Keys(e),
        KeyringError::Store(e) => database_error(settings, e),
        KeyringError::Mismatch => StartupError::KeyMismatch,
        KeyringError::NotRecorded => StartupError::KeyMissing(e.to_string()),
    }
}

async fn bind_mfa(
    settings: &Arc<Settings>,
    clock: Arc<dyn Clock>,
    notifier_addr: Option<SocketAddr>,
) -> Result<MfaServer, StartupError> {
    let notifier = mfa_notifier(settings, notifier_addr)?;
    info!(notifier = notifier.name(), "codes from /request-otp are delivered by the {} notifier", notifier.name());
    let (store, users, keys) = open_data(settings.clone(), clock.clone()).await?;
    let enrolled = users.count().await.map_err(StartupError::Users)?;
    let metrics = Arc::new(Metrics::mfa());
    let alerts = security_alerts(settings, store.clone(), notifier.clone(), clock.clone(), metrics.clone());
    let users = users.with_alerts(alerts.clone()).with_notifier(notifier.clone());
    let verify = VerifyService::new(
        store.clone(),
        notifier.clone(),
        clock,
        keys,
        settings.clone(),
        metrics,
        users.recent_locks(),
    )
    .with_alerts(alerts.clone());
    let outbox = verify.outbox();
    let state = AppState::new(verify, users.clone(), settings.clone());
    let router = BoundRouter::bind(settings.bind, api::router(state))
        .await
        .map_err(|source| StartupError::Listen { var: "MFA_BIND", addr: settings.bind, source })?
        .with_limits(settings.http);
    let addr = local_addr(&router, "MFA_BIND", settings.bind)?;
    info!(address = %addr, "MFA server listening on http://{addr}");
    info!(
        users = enrolled,
        "{enrolled} user(s) enrolled; enroll one with `mfa user add NAME --email ADDRESS` \
         (or `cargo run --release -- user add NAME --email ADDRESS`), then scan its QR code"
    );
    Ok(MfaServer { router, addr, users, store, alerts, outbox, notifier })
}

async fn bind_notifier(settings: &Settings) -> Result<NotificationService, StartupError> {
    let n = &settings.notification;
    let channels = Arc::new(channels(settings)?);
    info!(email = channels.email.is_some(), telegram = channels.telegram.is_some(), "notification channels");
    if n.api_token.is_none() {
        warn!("NOTIFY_API_TOKEN is not set: /send accepts any caller that can reach {}", n.bind);
    }
    let checks = Arc::new(ChannelChecks::default());
    if n.startup_check != StartupCheck::Off {
        let failures = checks.run(&channels).await;
        if n.startup_check == StartupCheck::Require
            && let Some((channel, why)) = failures.into_iter().next()
        {
            return Err(StartupError::Notifier(format!(
                "the {channel} channel failed its start-up check: {}; fix it, or set NOTIFY_STARTUP_CHECK=warn to \
                 start anyway",
                why.log
            )));
        }
    }
    let updates = n.telegram.as_ref().map(|t| &t.updates);
    let webhook = match updates {
        Some(TelegramUpdates::Webhook { url, path, secret }) => {
            let secret = secret.clone().unwrap_or_else(|| Sensitive::new(notify::updates::random_secret()));
            Some((url.clone(), path.clone(), secret))
        }
        _ => None,
    };
    let bot_updates = Arc::new(BotUpdates {
        receiving: updates.is_some_and(|u| !matches!(u, TelegramUpdates::Off)),
        webhook_secret: webhook.as_ref().map(|(_, _, secret)| secret.clone()),
        ..BotUpdates::default()
    });
    let state = NotifyState {
        updates: bot_updates.clone(),
        checks: checks.clone(),
        channels: channels.clone(),
        api_token: n.api_token.clone(),
        auth_failures: Arc::default(),
        allowed_hosts: notifier_hosts(settings),
        default_subject: format!("{} notification", settings.issuer),
        metrics: Arc::new(Metrics::notifier()),
    };
    let webhook_path = webhook.as_ref().map(|(_, path, _)| path.as_str());
    let router = BoundRouter::bind(n.bind, notify::api::router(state, n.bind, webhook_path))
        .await
        .map_err(|source| StartupError::Listen { var: "NOTIFY_BIND", addr: n.bind, source })?
        .with_limits(settings.http);
    let addr = local_addr(&router, "NOTIFY_BIND", n.bind)?;
    info!(address = %addr, "notification service listening on http://{addr}");
    let receive = match (&channels.telegram, updates) {
        (Some(telegram), Some(TelegramUpdates::Poll)) => {
            Some(Receive::Poll(telegram.clone(), bot_updates.starts.clone()))
        }
        (Some(telegram), Some(TelegramUpdates::Webhook { .. })) => {
            webhook.map(|(url, _, secret)| Receive::Webhook(telegram.clone(), url, secret))
        }
        _ => None,
    };
    Ok(NotificationService { router, addr, channels, checks, check_every: n.check_every, receive })
}

/// How the bot's messages reach the service, started with it.
enum Receive {
    Poll(Arc<TelegramChannel>, Arc<notify::updates::LinkStarts>),
    Webhook(Arc<TelegramChannel>, String, Sensitive),
}

/// The notification service, bound, with what its periodic checks need.
struct NotificationService {
    router: BoundRouter,
    addr: SocketAddr,
    channels: Arc<Channels>,
    checks: Arc<ChannelChecks>,
    check_every: Option<std::time::Duration>,
    receive: Option<Receive>,
}

/// Checks the channels again every `every` until `stop`.
async fn check_channels(
    channels: Arc<Channels>,
    checks: Arc<ChannelChecks>,
    every: std::time::Duration,
    stop: impl Future<Output = ()>,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => { checks.run(&channels).await; }
        }
    }
}

fn local_addr(router: &BoundRouter, var: &'static str, addr: SocketAddr) -> Result<SocketAddr, StartupError> {
    router.local_addr().map_err(|source| StartupError::Listen { var, addr, source })
}

/// Past the open-files limit new connections fail instead of waiting: say so at start-up.
fn warn_about_open_files(settings: &Settings, run: Services) {
    let services = u64::from(run.mfa) + u64::from(run.notifier);
    let needed = services * settings.http.max_connections as u64 + 128;
    if let Some(limit) = open_files_limit().filter(|limit| *limit < needed) {
        warn!(
            "the open-files limit (ulimit -n) is {limit}, below the {needed} that HTTP_MAX_CONNECTIONS={} needs \
             for {services} service(s): past it new connections fail instead of waiting; raise the limit \
             (LimitNOFILE= in systemd, --ulimit nofile= in Docker) or lower HTTP_MAX_CONNECTIONS",
            settings.http.max_connections
        );
    }
}

/// A start-up failure of the database, naming it (password masked) and, when the storage
/// itself failed, what to check.
fn database_error(settings: &Settings, source: StoreError) -> StartupError {
    let (database, hint) = match &settings.database {
        DatabaseConfig::Sqlite { path } => (
            std::path::absolute(path).unwrap_or_else(|_| path.clone()).display().to_string(),
            "; check that this user can write to its directory (MFA_DATA_DIR) and that its disk has free space",
        ),
        DatabaseConfig::Postgres { url, .. } => {
            (mask_url_password(url.expose()), "; check that PostgreSQL is running, reachable and has free disk space")
        }
    };
    StartupError::Database { database, hint: if source.is_unavailable() { hint } else { "" }, source }
}

/// How long the MFA server waits for the notification service: its worst case plus slack.
fn notification_timeout(settings: &Settings) -> Duration {
    let n = &settings.notification;
    let policies = [
        n.email.as_ref().map(|e| RetryPolicy::for_email(e, n.retry_base)),
        n.telegram.as_ref().map(|t| RetryPolicy::for_telegram(t, n.retry_base)),
    ];
    let worst = policies.iter().flatten().map(RetryPolicy::worst_case).max().unwrap_or(Duration::from_secs(60));
    worst + Duration::from_secs(5)
}

/// The MFA server's way to send codes: the notification service when a channel is configured
/// or `NOTIFICATION_URL` is set (at `service_addr` when it runs in this process and no URL
/// was given), otherwise the file notifier.
fn mfa_notifier(settings: &Settings, service_addr: Option<SocketAddr>) -> Result<Arc<dyn Notifier>, StartupError> {
    let n = &settings.notification;
    if n.url.is_none() && !n.any_channel() {
        return Ok(Arc::new(FileNotifier::new(settings.notifications_log())));
    }
    let url = match (&n.url, service_addr) {
        (Some(url), _) => url.clone(),
        (None, Some(addr)) => format!("http://{addr}"),
        (None, None) => n.url_or_default().to_string(),
    };
    let client =
        HttpNotifier::new(&url, n.api_token.clone(), notification_timeout(settings)).map_err(StartupError::Notifier)?;
    Ok(Arc::new(client))
}

/// The notification service's channels, built once (the SMTP pool lives in them).
fn channels(settings: &Settings) -> Result<Channels, StartupError> {
    let n = &settings.notification;
    let email = n.email.as_ref().map(|e| EmailChannel::new(e, n.retry_base)).transpose();
    let telegram = n.telegram.as_ref().map(|t| TelegramChannel::new(t, n.retry_base).map(Arc::new)).transpose();
    let (email, telegram) = (email.map_err(StartupError::Notifier)?, telegram.map_err(StartupError::Notifier)?);
    // No channel at all: the development file, here as in the MFA server's own notifier.
    let file = (email.is_none() && telegram.is_none()).then(|| FileNotifier::new(settings.notifications_log()));
    if file.is_some() {
        info!(
            "no email or Telegram channel is configured: /send writes every message to {} (development)",
            settings.notifications_log().display()
        );
    }
    Ok(Channels { email, telegram, file })
}
