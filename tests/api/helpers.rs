//! The test harness: one [`TestApp`] builder. It starts the services as `mfa serve` does,
//! either in this process through `Application::build` (with a clock the test moves) or as
//! the built `mfa` binary (for restarts, signals, `kill -9`, logs), always on 127.0.0.1
//! ports chosen by the kernel, in a data directory of its own, with typed helpers for each
//! endpoint.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mfa::clock::{Clock, ManualClock, SystemClock};
use mfa::config::{EnvMap, Settings};
use mfa::domain::{EmailAddress, TelegramChat, Username};
use mfa::otp::{self, Algorithm, OtpParams, SecretBytes};
use mfa::startup::{Application, StartupError};
use mfa::users::{NewUser, UserService, UserSource};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

/// 2027-01-15T08:00:10Z: ten seconds into a 30-second step.
pub const START: u64 = 1_800_000_010;

/// The `SECRET_KEY` every test app has unless it sets another (or `""`: the key file).
pub const TEST_SECRET_KEY: &str = "integration-test-key-0123456789abcdef";

/// The `ADMIN_TOKEN` of [`TestAppBuilder::admin`].
pub const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef";

/// A variable for the app: `("NAME", "value")` or a reference to one, borrowed or owned.
pub trait Var {
    fn pair(&self) -> (String, String);
}

impl<K: AsRef<str>, V: AsRef<str>> Var for (K, V) {
    fn pair(&self) -> (String, String) {
        (self.0.as_ref().to_string(), self.1.as_ref().to_string())
    }
}

impl<T: Var> Var for &T {
    fn pair(&self) -> (String, String) {
        (*self).pair()
    }
}

/// Where an app keeps its data: a directory it owns, or one the test owns and shares (with
/// the CLI, or with the next process started in it).
enum Dir {
    Owned(TempDir),
    Shared(PathBuf),
}

impl Dir {
    fn path(&self) -> &Path {
        match self {
            Self::Owned(dir) => dir.path(),
            Self::Shared(path) => path,
        }
    }
}

pub struct TestAppBuilder {
    vars: Vec<(String, String)>,
    dir: Option<Dir>,
    /// Where the test clock starts (Unix seconds); [`START`] unless set.
    start_at: u64,
    /// A binary's log is not read from its start-up until [`TestApp::terminate`] (see
    /// [`Self::stall_log_reader`]).
    stall_log_reader: bool,
}

impl TestAppBuilder {
    /// One more variable; a later one overrides an earlier one and the test defaults.
    #[must_use]
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.vars.push((name.to_string(), value.to_string()));
        self
    }

    /// More variables (see [`Self::env`]).
    #[must_use]
    pub fn envs<I>(mut self, vars: I) -> Self
    where
        I: IntoIterator,
        I::Item: Var,
    {
        self.vars.extend(vars.into_iter().map(|v| v.pair()));
        self
    }

    /// With the admin API, behind [`ADMIN_TOKEN`].
    #[must_use]
    pub fn admin(self) -> Self {
        self.env("ADMIN_TOKEN", ADMIN_TOKEN)
    }

    /// In this data directory (one a stopped app returned: a restart).
    #[must_use]
    pub fn dir(mut self, dir: TempDir) -> Self {
        self.dir = Some(Dir::Owned(dir));
        self
    }

    /// With the test clock at `unix` (a database made at another time: its codes and locks).
    #[must_use]
    pub fn clock_at(mut self, unix: u64) -> Self {
        self.start_at = unix;
        self
    }

    /// In a directory the test keeps (to run the CLI in it, or start another process).
    #[must_use]
    pub fn shared_dir(mut self, path: &Path) -> Self {
        self.dir = Some(Dir::Shared(path.to_path_buf()));
        self
    }

    /// A binary whose log nobody reads once it has started, as with a stuck pipe: its
    /// lines fill the pipe and then queue in the process, until [`TestApp::terminate`] has
    /// sent SIGTERM and reads them.
    #[must_use]
    pub fn stall_log_reader(mut self) -> Self {
        self.stall_log_reader = true;
        self
    }

    fn into_parts(self) -> (Dir, Vec<(String, String)>) {
        let dir = self.dir.unwrap_or_else(|| Dir::Owned(tempfile::tempdir().unwrap()));
        (dir, self.vars)
    }

    /// The services of `mfa serve`, in this process, on the test clock.
    pub async fn start(self) -> TestApp {
        match self.try_start().await {
            Ok(app) => app,
            Err(e) => panic!("the app did not start: {e}"),
        }
    }

    /// As [`Self::start`], giving back a start-up failure.
    pub async fn try_start(self) -> Result<TestApp, StartupError> {
        let start_at = self.start_at;
        let (dir, vars) = self.into_parts();
        let settings = settings_for(dir.path(), &vars);
        let clock = ManualClock::new(start_at);
        let application = Application::build(settings.clone(), Arc::new(clock.clone())).await?;
        let addr = application.mfa_addr().expect("the MFA server runs");
        let notify_addr = application.notifier_addr();
        let users = application.users().expect("the MFA server runs");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(application.run_until(async move {
            let _ = stopped.await;
        }));
        let running = Running::InProcess { clock, users, stop, served };
        Ok(TestApp { addr, notify_addr, client: http_client(), settings, dir, running })
    }

    /// The built `mfa` binary running `subcommand` (`serve` or `server`), once the MFA server
    /// listens. Its clock is the system's.
    pub async fn start_binary(self, subcommand: &str) -> TestApp {
        self.start_binary_via(subcommand, &[]).await
    }

    /// As [`Self::start_binary`], started through `wrapper` (a program and its arguments,
    /// given the binary's path and the subcommand after them).
    pub async fn start_binary_via(self, subcommand: &str, wrapper: &[&str]) -> TestApp {
        let stalled = self.stall_log_reader.then(|| Arc::new(tokio::sync::Notify::new()));
        let (dir, extra) = self.into_parts();
        let mut vars = vec![("MFA_BIND".to_string(), "127.0.0.1:0".to_string())];
        vars.push(("NOTIFY_BIND".into(), "127.0.0.1:0".into()));
        vars.extend(extra);
        let settings = binary_settings(dir.path(), &vars);
        let mut child = crate::process::mfa_via(dir.path(), &vars, wrapper)
            .arg(subcommand)
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let logs = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Standard output is kept too (it should stay empty for a server): everything the
        // process writes is in `logs`.
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let sink = logs.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = out.next_line().await {
                let mut logs = sink.lock().unwrap();
                logs.push_str(&line);
                logs.push('\n');
            }
        });
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = logs.clone();
        let mut stall = stalled.clone();
        tokio::spawn(async move {
            let mut tx = Some(tx);
            let mut notifier = None;
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = listening(&line, "notification service listening on http://") {
                    notifier = Some(addr);
                }
                if let Some(addr) = listening(&line, "MFA server listening on http://")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send((addr, notifier));
                }
                {
                    let mut logs = sink.lock().unwrap();
                    logs.push_str(&line);
                    logs.push('\n');
                }
                if tx.is_none()
                    && let Some(resume) = stall.take()
                {
                    resume.notified().await;
                }
            }
        });
        let (addr, notify_addr) = match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(addrs)) => addrs,
            _ => panic!("the server did not start; logs:\n{}", logs.lock().unwrap()),
        };
        let pid = child.id().expect("the server runs");
        let running = Running::Binary { child, logs, pid, stalled };
        TestApp { addr, notify_addr, client: http_client(), settings, dir, running }
    }
}

/// The settings a binary started in `dir` with `vars` reads: its `.env`, the database of
/// the directory, then `vars`, with its data directory resolved against `dir`.
fn binary_settings(dir: &Path, vars: &[(String, String)]) -> Settings {
    let dotenv = std::fs::read_to_string(dir.join(".env")).unwrap_or_default();
    let file = mfa::config::dotenv::parse(&dotenv, &|_| None);
    let mut environment = database_vars(dir);
    environment.extend(vars.iter().cloned());
    let mut settings = Settings::from_env(&EnvMap::from_pairs(file.entries, environment)).expect("valid settings");
    settings.data_dir = dir.join(&settings.data_dir);
    settings
}

/// The address in a log line `... <marker>IP:PORT ...`.
fn listening(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = line.split(marker).nth(1)?;
    rest.chars().take_while(|c| !c.is_whitespace() && *c != '"').collect::<String>().parse().ok()
}

enum Running {
    InProcess {
        clock: ManualClock,
        users: UserService,
        stop: tokio::sync::oneshot::Sender<()>,
        served: tokio::task::JoinHandle<Result<(), StartupError>>,
    },
    Binary {
        child: Child,
        logs: Arc<Mutex<String>>,
        pid: u32,
        /// Set to read the log again, if its reader was stalled.
        stalled: Option<Arc<tokio::sync::Notify>>,
    },
}

/// Running services and a client for them.
pub struct TestApp {
    pub addr: SocketAddr,
    /// The notification service.
    pub notify_addr: Option<SocketAddr>,
    pub client: reqwest::Client,
    /// The settings the app was started with.
    pub settings: Settings,
    dir: Dir,
    running: Running,
}

pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    /// The response's status, headers and JSON body (`null` for a 204); any other body that
    /// is not JSON fails the test.
    pub async fn read(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if status == 204 && text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("status {status}: body is not JSON: {text:?}"))
        };
        Self { status, body, headers }
    }

    pub fn retry_after(&self) -> Option<u64> {
        self.headers.get("retry-after")?.to_str().ok()?.parse().ok()
    }
}

impl TestApp {
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder { vars: Vec::new(), dir: None, start_at: START, stall_log_reader: false }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn post_json(&self, path: &str, body: Value) -> Reply {
        Reply::read(self.client.post(self.url(path)).json(&body).send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        Reply::read(self.client.get(self.url(path)).send().await.unwrap()).await
    }

    pub async fn verify(&self, username: &str, token: &str) -> Reply {
        self.post_json("/verify", json!({"username": username, "token": token})).await
    }

    /// `/verify` as a spawned task, for firing many at once.
    pub fn verify_task(&self, username: &str, token: &str) -> tokio::task::JoinHandle<Reply> {
        let request = self.client.post(self.url("/verify")).json(&json!({"username": username, "token": token}));
        tokio::spawn(async move { Reply::read(request.send().await.unwrap()).await })
    }

    pub async fn request_otp(&self, username: &str) -> Reply {
        self.post_json("/request-otp", json!({"username": username})).await
    }

    /// A request to the admin API with the app's `ADMIN_TOKEN`.
    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Reply {
        let token = self.settings.admin_token.as_ref().expect("the app was started with ADMIN_TOKEN");
        let mut request = self.client.request(method, self.url(path)).bearer_auth(token.expose());
        if let Some(body) = body {
            request = request.json(&body);
        }
        Reply::read(request.send().await.unwrap()).await
    }

    /// `POST /admin/users`: the new user's secret.
    pub async fn admin_enroll(&self, body: Value) -> SecretBytes {
        let created = self.admin(reqwest::Method::POST, "/admin/users", Some(body)).await;
        assert_eq!(created.status, 201, "{:?}", created.body);
        SecretBytes::from_base32(created.body["secret"].as_str().unwrap()).unwrap()
    }

    pub fn notifier_url(&self, path: &str) -> String {
        let addr = self.notify_addr.expect("the notification service runs");
        format!("http://{addr}{path}")
    }

    /// `POST /send` on the notification service, with an optional bearer token.
    pub async fn send(&self, body: Value, token: Option<&str>) -> Reply {
        let mut request = self.client.post(self.notifier_url("/send")).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Reply::read(request.send().await.unwrap()).await
    }

    pub async fn notify_health(&self) -> Reply {
        Reply::read(self.client.get(self.notifier_url("/healthcheck")).send().await.unwrap()).await
    }

    /// Each user's `name:source`, as the admin API lists them (by name), space-separated.
    pub async fn user_sources(&self) -> String {
        let listed = self.admin(reqwest::Method::GET, "/admin/users", None).await;
        let users = listed.body["users"].as_array().unwrap_or_else(|| panic!("{:?}", listed.body));
        let pairs: Vec<String> = users
            .iter()
            .map(|u| format!("{}:{}", u["username"].as_str().unwrap(), u["source"].as_str().unwrap()))
            .collect();
        pairs.join(" ")
    }

    /// The clock the app runs on (in this process only: a binary reads the system's).
    pub fn clock(&self) -> &ManualClock {
        match &self.running {
            Running::InProcess { clock, .. } => clock,
            Running::Binary { .. } => panic!("a binary runs on the system clock"),
        }
    }

    pub fn now(&self) -> u64 {
        match &self.running {
            Running::InProcess { clock, .. } => clock.now(),
            Running::Binary { .. } => SystemClock.now(),
        }
    }

    /// The user administration the app runs with (the one `mfa user` uses).
    pub fn users(&self) -> &UserService {
        match &self.running {
            Running::InProcess { users, .. } => users,
            Running::Binary { .. } => panic!("a binary's users are reached through the CLI or the admin API"),
        }
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
        assert_eq!(params.period, self.settings.otp.period, "a user's period is OTP_PERIOD");
        let new = NewUser {
            username: Username::parse(name).unwrap(),
            email: email.map(|e| EmailAddress::parse(e).unwrap()),
            telegram: telegram.map(|t| TelegramChat::parse(t).unwrap()),
            algorithm: Some(params.algorithm),
            digits: Some(params.digits),
        };
        self.users().add(new, UserSource::Cli).await.unwrap().secret
    }

    /// The authenticator-app code for `secret` at the app's time plus `offset` steps.
    pub fn totp(&self, secret: &SecretBytes, offset_steps: i64) -> String {
        self.totp_with(secret, self.settings.otp, offset_steps)
    }

    pub fn totp_with(&self, secret: &SecretBytes, params: OtpParams, offset_steps: i64) -> String {
        let t = self.now() as i64 + offset_steps * params.period as i64;
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

    /// The code in the last message sent to `recipient` (a code's message, not a security
    /// alert: those are subjected "... security alert: ...").
    pub fn last_code_sent_to(&self, recipient: &str) -> String {
        let message = self
            .notifications()
            .into_iter()
            .rev()
            .find(|n| n["recipient"] == recipient && !n["subject"].as_str().unwrap_or("").contains("security alert"))
            .unwrap_or_else(|| panic!("nothing was sent to {recipient}"));
        extract_code(message["message"].as_str().unwrap())
    }

    /// Stops the app in this process as SIGTERM stops `mfa serve` (requests in flight
    /// finish, the database is closed) and gives back its data directory, for a restart.
    pub async fn stop(self) -> TempDir {
        let Running::InProcess { stop, served, .. } = self.running else { panic!("stop a binary with terminate") };
        let _ = stop.send(());
        served.await.unwrap().unwrap();
        match self.dir {
            Dir::Owned(dir) => dir,
            Dir::Shared(_) => panic!("the test owns a shared directory"),
        }
    }

    fn child(&mut self) -> &mut Child {
        match &mut self.running {
            Running::Binary { child, .. } => child,
            Running::InProcess { .. } => panic!("not a binary"),
        }
    }

    /// Everything the binary has written so far.
    pub fn logs(&self) -> String {
        match &self.running {
            Running::Binary { logs, .. } => logs.lock().unwrap().clone(),
            Running::InProcess { .. } => panic!("an app in this process logs to the test's subscriber"),
        }
    }

    /// Everything the binary logged before this call. Its lines reach stderr from a writer
    /// thread (docs/operations.md), so an answer can arrive before the lines of its request
    /// are written (on a loaded machine, several answers can): this asks for a 404 with a
    /// request id of its own and waits for that line, which the thread writes after them.
    pub async fn logged(&self) -> String {
        let mark = format!("log-mark-{:016x}", rand::random::<u64>());
        let url = format!("http://{}/log-mark", self.addr);
        let reply = self.client.get(url).header("x-request-id", &mark).send().await.expect("the server answers");
        assert_eq!(reply.status(), 404);
        until("the marker's log line", || {
            let logs = self.logs();
            logs.contains(&mark).then_some(logs)
        })
        .await
    }

    /// The binary's process id, to read its memory use from `/proc`.
    pub fn pid(&self) -> u32 {
        match &self.running {
            Running::Binary { pid, .. } => *pid,
            Running::InProcess { .. } => std::process::id(),
        }
    }

    /// SIGTERM, then the exit code and everything the binary wrote.
    pub async fn terminate(mut self) -> (i32, String) {
        let pid = self.pid().to_string();
        let sent = tokio::process::Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
        assert!(sent.success());
        if let Running::Binary { stalled: Some(resume), .. } = &self.running {
            // The process has its SIGTERM, and its lines are still queued behind the pipe.
            tokio::time::sleep(Duration::from_millis(300)).await;
            resume.notify_one();
        }
        let child = self.child();
        let status = tokio::time::timeout(Duration::from_secs(20), child.wait()).await.expect("exits").unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await; // let the log readers drain
        (status.code().unwrap_or(-1), self.logs())
    }

    /// SIGKILL: no chance to flush or clean up. Gives back everything the binary wrote, which
    /// may lack the lines of its last moments, as in production: read [`Self::logged`] first.
    pub async fn kill9(mut self) -> String {
        let child = self.child();
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await; // let the log readers drain
        self.logs()
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
pub fn database_vars(dir: &Path) -> Vec<(String, String)> {
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

/// The settings of an app in `dir`: the test defaults, then `vars` over them.
pub fn settings_for<I>(dir: &Path, vars: I) -> Settings
where
    I: IntoIterator,
    I::Item: Var,
{
    let mut all: Vec<(String, String)> = database_vars(dir);
    all.extend::<Vec<(String, String)>>(vec![
        ("MFA_BIND".into(), "127.0.0.1:0".into()),
        ("NOTIFY_BIND".into(), "127.0.0.1:0".into()),
        ("NOTIFY_RETRY_BASE_MS".into(), "10".into()),
        ("MFA_DATA_DIR".into(), dir.join("data").display().to_string()),
        ("SECRET_KEY".into(), TEST_SECRET_KEY.into()),
        ("RATE_LIMIT".into(), "off".into()),
    ]);
    all.extend(vars.into_iter().map(|v| v.pair()));
    Settings::from_env(&EnvMap::from_pairs([], all)).expect("test settings are valid")
}

/// Polls `probe` until it gives a value (every 20 ms, 20 s at most).
pub async fn until<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    until_async(what, || std::future::ready(probe())).await
}

/// As [`until`], for a probe that must await (an HTTP call).
pub async fn until_async<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
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
    mfa::notify::http_client(Duration::from_secs(60)).unwrap()
}

/// Resident and peak memory of a process, in KiB, from `/proc/PID/status`.
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {status}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}
