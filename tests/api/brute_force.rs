//! Brute force, with numbers: an attacker guesses one user's code as fast as the server
//! allows, from 64 source addresses, for 30 days of the test clock, against the default
//! lockout and the default rate limit, while the real user logs in every day (and, in the
//! second test, every hour) at times the attacker knows and uses: a burst of guesses right
//! after each login, and one each time a lock ends. docs/SECURITY.md quotes the figures.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use mfa::clock::{Clock, UnixTime};
use mfa::lockout::{self, ATTACK_SPAN_SECONDS, LockState, LockoutPolicy, TARGET_CHANCE};
use serde_json::json;

use crate::helpers::*;

/// 127.0.0.2 ..= 127.0.0.65: every one of them is the loopback interface on Linux.
const ADDRESSES: u8 = 64;
/// Addresses that guess at once when a lock ends, taking turns: 16 already outnumber the
/// guesses a lock lets through (5), and the 2,432 requests of all 64 every round would
/// only add refusals (and seconds) to the run.
const WAVE: usize = 16;
/// Guesses right after each login: one more than a lock lets through.
const LOGIN_WAVE: usize = 6;
const ADMIN_TOKEN: &str = "brute-force-test-admin-token";

/// A client whose connections come from `address` (the app's client has installed the
/// crypto provider reqwest is built without).
fn client_from(address: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(address))
        .no_proxy()
        .tls_certs_only([]) // plain HTTP: skip loading the system's CA store, 64 times
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn scrape(app: &TestApp, series: &str) -> f64 {
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
}

/// What one burst got: guesses checked, and the longest lock the refusals reported.
#[derive(Debug, Default)]
struct Burst {
    checked: u64,
    wait: u64,
}

/// How the attacker plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attacker {
    /// A burst at the start, at the end of each lock, and right after each login.
    Greedy,
    /// Only right after each login, fewer guesses than lock (`MAX_FAILED_ATTEMPTS` - 1):
    /// the attack that a reset on success invited, unnoticed by the user.
    AfterEachLogin,
}

/// When the attacker guesses and when the user logs in, for `span` seconds.
struct Schedule {
    attacker: Attacker,
    login_every: u64,
    span: u64,
}

impl Schedule {
    /// The first login, then every `login_every` seconds; the attack starts at once.
    fn first_login(&self) -> u64 {
        self.login_every / 2
    }

    /// The guesses of the burst at the start (`None`), at a lock's end, or after a login.
    fn burst(&self, policy: LockoutPolicy, after_login: Option<bool>) -> usize {
        match (self.attacker, after_login) {
            (Attacker::Greedy, Some(true)) => LOGIN_WAVE,
            (Attacker::Greedy, _) => WAVE,
            (Attacker::AfterEachLogin, Some(true)) => policy.max_failed_attempts as usize - 1,
            (Attacker::AfterEachLogin, _) => 0,
        }
    }

    /// The next event after a burst: a login, or (greedy) the end of the lock.
    fn next(&self, next_login: u64, lock_end: u64) -> (u64, bool) {
        if self.attacker == Attacker::AfterEachLogin || next_login <= lock_end {
            (next_login, true)
        } else {
            (lock_end, false)
        }
    }
}

/// The same schedule against the policy alone, one [`LockoutPolicy::charge`] per guess;
/// logins change nothing in the model, and the test shows the server agrees.
fn model(policy: LockoutPolicy, schedule: &Schedule) -> (u64, u64) {
    let (mut state, mut checked, mut lockouts) = (LockState::default(), 0, 0);
    let burst = |state: &mut LockState, now: UnixTime, size: usize, checked: &mut u64, lockouts: &mut u64| {
        let mut wait = 0;
        for _ in 0..size {
            match policy.charge(*state, now) {
                Ok(next) => {
                    *checked += 1;
                    *lockouts += u64::from(next.locked_until.is_some());
                    *state = next;
                }
                Err(remaining) => wait = wait.max(remaining),
            }
        }
        wait
    };
    let mut next_login = schedule.first_login();
    let mut lock_end = burst(&mut state, 0, schedule.burst(policy, None), &mut checked, &mut lockouts).max(1);
    loop {
        let (now, login) = schedule.next(next_login, lock_end);
        if now >= schedule.span {
            return (checked, lockouts);
        }
        let size = schedule.burst(policy, Some(login));
        if login {
            next_login += schedule.login_every;
        }
        let wait = burst(&mut state, now, size, &mut checked, &mut lockouts);
        if wait > 0 || !login {
            lock_end = now + wait.max(1);
        }
    }
}

/// Plays the schedule against the server: the user's logins answered 200 or 429, every
/// guess 401 or 429, the clock skipped from event to event. Returns the guesses checked,
/// the logins that got in, and the app (for the checks after the attack).
async fn play(schedule: &Schedule) -> (TestApp, mfa::otp::SecretBytes, u64, u64) {
    let app = TestApp::builder()
        .envs(&[("RATE_LIMIT", mfa::config::vars::RATE_LIMIT.default.unwrap()), ("ADMIN_TOKEN", ADMIN_TOKEN)])
        .start()
        .await;
    let secret = app.enroll("alice", None, None).await;
    let clients: Vec<(Ipv4Addr, reqwest::Client)> = (2..2 + ADDRESSES)
        .map(|last| Ipv4Addr::new(127, 0, 0, last))
        .map(|address| (address, client_from(address)))
        .collect();
    // The user's logins come through the application's many frontends: addresses of their
    // own, so that the rate limit (on the system clock, which does not jump) sees the few
    // seconds the 720 hourly logins take as what they are, a month.
    let frontends: Vec<reqwest::Client> = (2..=254).map(|last| client_from(Ipv4Addr::new(127, 0, 1, last))).collect();
    let start = app.clock().now();
    let (mut next_guess, mut turn) = (0u32, 0usize);
    let (mut checked, mut logged_in) = (0u64, 0u64);
    let mut checked_from = HashSet::new();
    let mut burst = async |size: usize| -> Burst {
        // Never one of the codes that would win now: the test must not depend on luck.
        let winning: HashSet<String> = (-1..=1).map(|offset| app.totp(&secret, offset)).collect();
        let mut tasks = Vec::new();
        for (address, client) in clients.iter().cycle().skip(turn).take(size) {
            let guess = loop {
                next_guess = (next_guess + 7_919) % 1_000_000;
                let guess = format!("{next_guess:06}");
                if !winning.contains(&guess) {
                    break guess;
                }
            };
            let request = client.post(app.url("/verify")).json(&json!({"username": "alice", "token": guess}));
            let address = *address;
            tasks.push(tokio::spawn(async move { (address, Reply::read(request.send().await.unwrap()).await) }));
        }
        turn = (turn + size) % clients.len();
        let mut result = Burst::default();
        for task in tasks {
            let (address, reply) = task.await.unwrap();
            match (reply.status, reply.body["error"].as_str()) {
                (401, Some("invalid_token")) => {
                    result.checked += 1;
                    checked_from.insert(address);
                }
                (429, Some("too_many_attempts")) => result.wait = result.wait.max(reply.retry_after().unwrap()),
                (status, _) => panic!("{address}: unexpected {status} {}", reply.body),
            }
        }
        result
    };

    let policy = app.settings.lockout;
    let first = burst(schedule.burst(policy, None)).await;
    checked += first.checked;
    let mut next_login = schedule.first_login();
    let mut lock_end = first.wait.max(1);
    loop {
        let (now, login) = schedule.next(next_login, lock_end);
        if now >= schedule.span {
            break;
        }
        app.clock().set(start + now);
        if login {
            next_login += schedule.login_every;
            let frontend = &frontends[(next_login / schedule.login_every) as usize % frontends.len()];
            let body = json!({"username": "alice", "token": app.totp(&secret, 0)});
            let reply = Reply::read(frontend.post(app.url("/verify")).json(&body).send().await.unwrap()).await;
            match reply.status {
                200 => logged_in += 1,
                429 => assert_eq!(reply.body["error"], "too_many_attempts"),
                other => panic!("the user's login: {other} {}", reply.body),
            }
        }
        let got = burst(schedule.burst(policy, Some(login))).await;
        checked += got.checked;
        if got.wait > 0 || !login {
            lock_end = now + got.wait.max(1);
        }
    }
    assert!(checked_from.len() > 1 || checked < 2, "guesses from several addresses reached a comparison");
    (app, secret, checked, logged_in)
}

/// Runs the schedule and checks every figure; returns the app and the user's secret.
async fn attack_with_logins(attacker: Attacker, login_every: u64) -> (TestApp, mfa::otp::SecretBytes) {
    let schedule = Schedule { attacker, login_every, span: ATTACK_SPAN_SECONDS };
    let started = std::time::Instant::now();
    let (app, secret, checked, logged_in) = play(&schedule).await;
    let policy = app.settings.lockout;
    let lockouts = scrape(&app, "mfa_lockouts_total").await as u64;
    let rate_limited = scrape(&app, "mfa_rate_limited_total").await as u64;
    let winning = lockout::winning_codes(app.settings.valid_window);
    let digits = app.settings.otp.digits;
    let chance = lockout::break_in_chance(checked, winning, digits);
    let bound = policy.guess_bound(ATTACK_SPAN_SECONDS);
    println!(
        "brute force ({attacker:?}) with a login every {login_every} s, {ADDRESSES} addresses, 30 days of test clock in \
         {:.1} s: {checked} guesses reached a comparison (bound {bound}), {lockouts} lockouts, {logged_in} of \
         the user's {} logins got in, {rate_limited} rate limited; 30-day chance 1 - (1 - {winning}/10^{digits})^{checked} \
         = {chance:.2e} ({})",
        started.elapsed().as_secs_f64(),
        ATTACK_SPAN_SECONDS.saturating_sub(schedule.first_login()).div_ceil(login_every),
        lockout::describe_chance(chance)
    );

    assert!(chance < TARGET_CHANCE, "30-day chance {chance}");
    assert!(checked <= bound, "{checked} guesses, over the bound {bound}");
    assert_eq!((checked, lockouts), model(policy, &schedule), "the server is the model: logins change nothing");
    assert_eq!(scrape(&app, "mfa_verifications_total{outcome=\"invalid\"}").await as u64, checked);
    // The rate limit did not save us: the default one was on and refused nothing.
    assert_eq!(rate_limited, 0);
    (app, secret)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_days_of_guessing_with_a_daily_login_stay_below_1_in_1000() {
    let (app, secret) = attack_with_logins(Attacker::Greedy, 86_400).await;
    let policy = app.settings.lockout;

    // The user is locked at the end, even with the right code, and gets in once it ends.
    let locked = app.verify("alice", &app.totp(&secret, 0)).await;
    assert_eq!(locked.status, 429);
    app.clock().advance(locked.retry_after().unwrap());
    assert_eq!(app.verify("alice", &app.totp(&secret, 0)).await.status, 200);
    // The price: the failures are remembered, so one typo now locks for a long time ...
    let typo = app.verify("alice", "000000").await;
    assert_eq!(typo.status, 401);
    let long = app.verify("alice", "000000").await;
    assert_eq!((long.status, long.retry_after()), (429, Some(policy.lock_seconds(8))), "{:?}", long.body);
    // ... until an operator unlocks the user, who then starts from a 5-minute first lock.
    let unlock = app.client.post(app.url("/admin/users/alice/unlock")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(unlock.status(), 200);
    app.clock().advance(30); // the next time step: the previous code was used
    assert_eq!(app.verify("alice", &app.totp(&secret, 0)).await.status, 200);
    for _ in 0..policy.max_failed_attempts {
        assert_eq!(app.verify("alice", "000000").await.status, 401);
    }
    let relocked = app.verify("alice", "000000").await;
    assert_eq!((relocked.status, relocked.retry_after()), (429, Some(300)), "a fresh run starts short");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_days_of_guessing_with_an_hourly_login_stay_below_1_in_1000() {
    attack_with_logins(Attacker::Greedy, 3_600).await;
}

/// The attack a reset on success invited: four guesses after each login, never a lock, so
/// the user never notices. Here the fading alone paces it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_only_after_each_login_gains_nothing_from_the_logins() {
    let (daily, _) = attack_with_logins(Attacker::AfterEachLogin, 86_400).await;
    let (hourly, _) = attack_with_logins(Attacker::AfterEachLogin, 3_600).await;
    let daily_invalid = scrape(&daily, "mfa_verifications_total{outcome=\"invalid\"}").await;
    let hourly_invalid = scrape(&hourly, "mfa_verifications_total{outcome=\"invalid\"}").await;
    assert!(hourly_invalid <= daily_invalid * 2.0, "24 times the logins, not 24 times the guesses");
}

/// The operator sees every lock: the real binary logs it with its level, its length, the
/// user and the client's address.
#[tokio::test]
async fn each_lockout_is_logged_with_its_level_length_user_and_address() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("SECRET_KEY", "brute-force-log-key-0123456789abcdef"),
        ("ALICE_SECRET", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"),
        ("MFA_ENV_USERS", "alice"),
        ("LOG_FORMAT", "json"),
    ];
    let server = crate::process::start_server(dir.path(), &env).await;
    for _ in 0..5 {
        assert_eq!(server.verify("alice", "000000").await.status, 401);
    }
    assert_eq!(server.verify("alice", "000000").await.status, 429);

    let logs = server.logged().await;
    server.kill9().await;

    let lockouts: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["event"] == "lockout")
        .collect();
    assert_eq!(lockouts.len(), 1, "{logs}");
    let line = &lockouts[0];
    assert_eq!((line["level"].as_str(), line["lock_level"].as_u64()), (Some("WARN"), Some(1)), "{line}");
    assert_eq!((line["locked_for"].as_u64(), line["failed_attempts"].as_u64()), (Some(300), Some(5)), "{line}");
    assert_eq!(
        (line["span"]["username"].as_str(), line["span"]["client_ip"].as_str()),
        (Some("alice"), Some("127.0.0.1"))
    );
}
