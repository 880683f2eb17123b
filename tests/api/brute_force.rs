//! Brute force, with numbers: an attacker guesses one user's code as fast as the server
//! allows, from 64 source addresses, for 30 days of the test clock, against the default
//! lockout and the default rate limit. docs/SECURITY.md quotes the figures it prints.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use mfa::clock::Clock;
use mfa::lockout::{self, ATTACK_SPAN_SECONDS, TARGET_CHANCE};
use serde_json::json;

use crate::helpers::*;

/// 127.0.0.2 ..= 127.0.0.65: every one of them is the loopback interface on Linux.
const ADDRESSES: u8 = 64;
/// Addresses that guess at once in each round, taking turns: 16 already outnumber the
/// guesses a lock lets through (5), and the 2,432 requests of all 64 every round would
/// only add refusals (and seconds) to the run.
const WAVE: usize = 16;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_days_of_guessing_from_64_addresses_stays_below_1_in_1000() {
    let app = TestApp::builder()
        .envs(&[("RATE_LIMIT", mfa::config::vars::RATE_LIMIT.default.unwrap()), ("ADMIN_TOKEN", ADMIN_TOKEN)])
        .start()
        .await;
    let policy = app.settings.lockout;
    let secret = app.enroll("alice", None, None).await;
    let clients: Vec<(Ipv4Addr, reqwest::Client)> = (2..2 + ADDRESSES)
        .map(|last| Ipv4Addr::new(127, 0, 0, last))
        .map(|address| (address, client_from(address)))
        .collect();
    let started = std::time::Instant::now();
    let end = app.clock().now() + ATTACK_SPAN_SECONDS;

    // Each round 16 addresses send one guess each at once; whatever the server lets through
    // is checked, the rest are refused with the time left on the lock, which the clock skips.
    let (mut sent, mut checked, mut lock_refusals, mut rounds) = (0u64, 0u64, 0u64, 0usize);
    let (mut sent_from, mut checked_from) = (HashSet::new(), HashSet::new());
    let mut next_guess = 0u32;
    let last_lock = loop {
        // Never one of the codes that would win now: the test must not depend on luck.
        let winning: HashSet<String> = (-1..=1).map(|offset| app.totp(&secret, offset)).collect();
        let mut tasks = Vec::new();
        for (address, client) in clients.iter().cycle().skip(rounds * WAVE % clients.len()).take(WAVE) {
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
        let mut wait = 0;
        for task in tasks {
            let (address, reply) = task.await.unwrap();
            sent += 1;
            sent_from.insert(address);
            match (reply.status, reply.body["error"].as_str()) {
                (401, Some("invalid_token")) => {
                    checked += 1;
                    checked_from.insert(address);
                }
                (429, Some("too_many_attempts")) => {
                    lock_refusals += 1;
                    wait = wait.max(reply.retry_after().unwrap());
                }
                (status, _) => panic!("{address}: unexpected {status} {}", reply.body),
            }
        }
        rounds += 1;
        assert!(wait > 0, "{WAVE} guesses at once always end in a lock");
        if app.clock().now() + wait >= end {
            break wait;
        }
        app.clock().advance(wait);
    };
    let lockouts = scrape(&app, "mfa_lockouts_total").await as u64;
    let rate_limited = scrape(&app, "mfa_rate_limited_total").await as u64;
    let winning = lockout::winning_codes(app.settings.valid_window);
    let digits = app.settings.otp.digits;
    let chance = lockout::break_in_chance(checked, winning, digits);
    println!(
        "brute force, {} addresses ({WAVE} at once), 30 days of test clock in {:.1} s: {sent} guesses sent, \
         {checked} reached a comparison, {lockouts} lockouts, {lock_refusals} refused as locked, \
         {rate_limited} rate limited; \
         30-day chance 1 - (1 - {winning}/10^{digits})^{checked} = {chance:.2e} ({})",
        sent_from.len(),
        started.elapsed().as_secs_f64(),
        lockout::describe_chance(chance)
    );

    assert!(chance < TARGET_CHANCE, "30-day chance {chance}");
    assert_eq!(checked, policy.attack_budget(ATTACK_SPAN_SECONDS, u64::MAX).guesses, "the server is the model");
    assert_eq!((checked, lockouts, rounds), (190, 38, 38));
    assert_eq!(scrape(&app, "mfa_verifications_total{outcome=\"invalid\"}").await as u64, checked);
    // The rate limit did not save us: the default one was on, it refused nothing, and the
    // guesses still stopped at 190. Spread over 64 addresses, its quota (120 a minute each)
    // would have allowed more guesses in the first minute than the lockout allows in 30 days.
    assert_eq!(sent_from.len(), usize::from(ADDRESSES));
    assert_eq!(rate_limited, 0);
    assert!(checked_from.len() > 1, "guesses from several addresses reached a comparison");

    // The user is locked for the last 24 hours, even with the right code ...
    let locked = app.verify("alice", &app.totp(&secret, 0)).await;
    assert_eq!((locked.status, locked.retry_after()), (429, Some(last_lock)));
    assert_eq!(last_lock, 86_400);
    // ... and gets in once it ends; the success resets the ladder to a 5-minute first lock.
    app.clock().advance(last_lock);
    assert_eq!(app.verify("alice", &app.totp(&secret, 0)).await.status, 200);
    for _ in 0..policy.max_failed_attempts {
        assert_eq!(app.verify("alice", "000000").await.status, 401);
    }
    let relocked = app.verify("alice", "000000").await;
    assert_eq!((relocked.status, relocked.retry_after()), (429, Some(300)), "a fresh run starts short");

    // An operator unlock lets the user in at once, and the lockouts are all on /metrics.
    let unlock = app.client.post(app.url("/admin/users/alice/unlock")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(unlock.status(), 200);
    app.clock().advance(30); // the next time step: the previous code was used
    assert_eq!(app.verify("alice", &app.totp(&secret, 0)).await.status, 200);
    assert_eq!(scrape(&app, "mfa_lockouts_total").await as u64, lockouts + 1);
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

    let logs = server.kill9().await;

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
