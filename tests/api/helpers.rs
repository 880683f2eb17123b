//! Test harness: the real server on 127.0.0.1 with a random port and a temporary data
//! directory, a clock the test controls, and typed helpers for each endpoint.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use mfa::clock::{Clock, ManualClock};
use mfa::config::{EnvMap, Settings};
use mfa::domain::{EmailAddress, TelegramChat, Username};
use mfa::notify::api::NotifyState;
use mfa::otp::{self, Algorithm, OtpParams, SecretBytes};
use mfa::startup as app;
use mfa::users::{self, NewEnrollment};
use mfa::verify::MfaService;
use serde_json::{Value, json};
use tempfile::TempDir;

/// 2027-01-15T08:00:10Z: ten seconds into a 30-second step.
pub const START: u64 = 1_800_000_010;

pub struct TestApp {
    pub addr: SocketAddr,
    /// The in-process notification service, when a channel is configured.
    pub notify_addr: Option<SocketAddr>,
    pub client: reqwest::Client,
    pub clock: ManualClock,
    pub service: MfaService,
    pub settings: Settings,
    pub dir: TempDir,
}

pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    pub fn retry_after(&self) -> Option<u64> {
        self.headers.get("retry-after")?.to_str().ok()?.parse().ok()
    }
}

/// Whether this run tests the PostgreSQL store (`scripts/test` sets `MFA_TEST_POSTGRES_URL`
/// to a throw-away cluster for its second pass).
pub fn postgres_mode() -> bool {
    std::env::var("MFA_TEST_POSTGRES_URL").is_ok()
}

/// The database variables for a test directory: nothing for SQLite (the file lives in the
/// directory), or a fresh PostgreSQL database, the same one for every call with that
/// directory (a restarted server must find its data).
pub fn database_vars(dir: &std::path::Path) -> Vec<(String, String)> {
    let Ok(admin) = std::env::var("MFA_TEST_POSTGRES_URL") else { return Vec::new() };
    let marker = dir.join(".test-database-url");
    let url = match std::fs::read_to_string(&marker) {
        Ok(url) => url,
        Err(_) => {
            let name = format!("mfa_test_{:016x}", rand::random::<u64>());
            let status = std::process::Command::new("psql")
                .args(["-q", "-v", "ON_ERROR_STOP=1", &admin, "-c", &format!("CREATE DATABASE {name}")])
                .status()
                .expect("psql runs");
            assert!(status.success(), "cannot create the test database");
            let (base, _) = admin.rsplit_once('/').unwrap();
            let url = format!("{base}/{name}");
            std::fs::write(&marker, &url).unwrap();
            url
        }
    };
    // A generous connection wait: dozens of debug-built servers share two cores here, where
    // opening a connection (a SCRAM handshake, unoptimised) can take seconds under load. The
    // test of the short production wait sets its own.
    vec![
        ("DATABASE_URL".into(), url),
        ("DATABASE_MAX_CONNECTIONS".into(), "4".into()),
        ("DATABASE_TIMEOUT_SECONDS".into(), "10".into()),
    ]
}

pub fn settings_for(dir: &std::path::Path, vars: &[(&str, &str)]) -> Settings {
    let mut all: Vec<(String, String)> = database_vars(dir);
    all.extend::<Vec<(String, String)>>(vec![
        ("MFA_BIND".into(), "127.0.0.1:0".into()),
        ("NOTIFY_BIND".into(), "127.0.0.1:0".into()),
        ("NOTIFY_RETRY_BASE_MS".into(), "10".into()),
        ("MFA_DATA_DIR".into(), dir.join("data").display().to_string()),
        ("SECRET_KEY".into(), "integration-test-key-0123456789abcdef".into()),
        ("RATE_LIMIT".into(), "off".into()),
    ]);
    all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Settings::from_env(&EnvMap::from_pairs([], all)).expect("test settings are valid")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Starts the server with extra variables (they override the test defaults).
pub async fn spawn_app_with(vars: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    spawn_in(dir, vars).await
}

/// Starts the server in `dir`; like `mfa serve`, also the notification service when a
/// channel is configured.
/// As [`spawn_app_with`], for variables built at run time.
pub async fn spawn_app_owned(vars: Vec<(String, String)>) -> TestApp {
    spawn_app_extended(vars, &[]).await
}

/// Variables built at run time (a peer's `env()`), plus a few more.
pub async fn spawn_app_extended(mut vars: Vec<(String, String)>, extra: &[(&str, &str)]) -> TestApp {
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let borrowed: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    spawn_app_with(&borrowed).await
}

pub async fn spawn_in(dir: TempDir, vars: &[(&str, &str)]) -> TestApp {
    let settings = settings_for(dir.path(), vars);
    let clock = ManualClock::new(START);
    let mut notify_addr = None;
    if settings.notification.any_channel() {
        let n = &settings.notification;
        let state = NotifyState {
            channels: Arc::new(app::channels(&settings).unwrap()),
            api_token: n.api_token.clone(),
            default_subject: "MFA notification".into(),
            metrics: Arc::new(mfa::metrics::Metrics::notifier()),
        };
        let notifier = mfa::notify::api::bind(n.bind, state).await.unwrap().with_limits(settings.http);
        notify_addr = Some(notifier.local_addr().unwrap());
        tokio::spawn(notifier.run_until(std::future::pending()));
    }
    let notifier = app::mfa_notifier(&settings, notify_addr).unwrap();
    let service = app::open_service(&settings, Arc::new(clock.clone()), notifier).await.unwrap();
    let application = mfa::api::bind(&settings, service.clone()).await.unwrap();
    let addr = application.local_addr().unwrap();
    tokio::spawn(application.run_until(std::future::pending()));
    TestApp { addr, notify_addr, client: crate::helpers::http_client(), clock, service, settings, dir }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn post_json(&self, path: &str, body: Value) -> Reply {
        let response = self.client.post(self.url(path)).json(&body).send().await.unwrap();
        Reply::from(response).await
    }

    pub async fn verify(&self, username: &str, token: &str) -> Reply {
        self.post_json("/verify", json!({"username": username, "token": token})).await
    }

    /// `/verify` as a spawned task, for firing many at once.
    pub fn verify_task(&self, username: &str, token: &str) -> tokio::task::JoinHandle<Reply> {
        let request = self.client.post(self.url("/verify")).json(&json!({"username": username, "token": token}));
        tokio::spawn(async move { Reply::from(request.send().await.unwrap()).await })
    }

    pub async fn request_otp(&self, username: &str) -> Reply {
        self.post_json("/request-otp", json!({"username": username})).await
    }

    /// `POST /send` on the in-process notification service, with an optional bearer token.
    pub async fn send(&self, body: Value, token: Option<&str>) -> Reply {
        let addr = self.notify_addr.expect("a channel is configured, so the notification service runs");
        let mut request = self.client.post(format!("http://{addr}/send")).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Reply::from(request.send().await.unwrap()).await
    }

    pub async fn notify_health(&self) -> Reply {
        let addr = self.notify_addr.unwrap();
        Reply::from(self.client.get(format!("http://{addr}/healthcheck")).send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        Reply::from(self.client.get(self.url(path)).send().await.unwrap()).await
    }

    /// Enrolls a user as `mfa user add` does and returns the secret.
    pub async fn enroll(&self, name: &str, email: Option<&str>, telegram: Option<&str>) -> SecretBytes {
        self.enroll_with(name, email, telegram, self.settings.otp).await
    }

    pub async fn enroll_with(
        &self,
        name: &str,
        email: Option<&str>,
        telegram: Option<&str>,
        params: OtpParams,
    ) -> SecretBytes {
        let new = NewEnrollment {
            username: Username::parse(name).unwrap(),
            email: email.map(|e| EmailAddress::parse(e).unwrap()),
            telegram: telegram.map(|t| TelegramChat::parse(t).unwrap()),
            params,
        };
        let enrolled =
            users::add(self.service.store.as_ref(), &self.service.keys, &self.settings, new, self.clock.now())
                .await
                .unwrap();
        enrolled.secret
    }

    /// The authenticator-app code for `secret` at the test clock's time plus `offset` steps.
    pub fn totp(&self, secret: &SecretBytes, offset_steps: i64) -> String {
        self.totp_with(secret, self.settings.otp, offset_steps)
    }

    pub fn totp_with(&self, secret: &SecretBytes, params: OtpParams, offset_steps: i64) -> String {
        let t = self.clock.now() as i64 + offset_steps * params.period as i64;
        otp::totp_code(secret, params, t as u64)
    }

    pub fn notifications_log(&self) -> PathBuf {
        self.settings.notifications_log()
    }

    /// Every message the file notifier wrote, oldest first.
    pub fn notifications(&self) -> Vec<Value> {
        std::fs::read_to_string(self.notifications_log())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The code in the last message sent to `recipient`.
    pub fn last_code_sent_to(&self, recipient: &str) -> String {
        let message = self
            .notifications()
            .into_iter()
            .rev()
            .find(|n| n["recipient"] == recipient)
            .unwrap_or_else(|| panic!("nothing was sent to {recipient}"));
        extract_code(message["message"].as_str().unwrap())
    }
}

/// The run of 6 to 8 digits in a message.
pub fn extract_code(message: &str) -> String {
    message
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| (6..=8).contains(&w.len()))
        .unwrap_or_else(|| panic!("no code in {message:?}"))
        .to_string()
}

impl Reply {
    pub async fn from(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("status {status}: body is not JSON: {text:?}"));
        Self { status, body, headers }
    }
}

/// A code guaranteed to differ from `right`.
pub fn wrong(right: &str) -> String {
    right.chars().map(|c| if c == '9' { '0' } else { char::from(c as u8 + 1) }).collect()
}

pub fn sha256_8() -> OtpParams {
    OtpParams { algorithm: Algorithm::Sha256, digits: 8, period: 30 }
}

/// Waits for every task, in order.
pub async fn join_all(tasks: impl Iterator<Item = tokio::task::JoinHandle<Reply>>) -> Vec<Reply> {
    let tasks: Vec<_> = tasks.collect();
    let mut replies = Vec::with_capacity(tasks.len());
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    replies
}

/// reqwest with the crypto provider the crate installs (it is built without a default one).
pub fn http_client() -> reqwest::Client {
    mfa::notify::http_client(std::time::Duration::from_secs(60)).unwrap()
}
