use crate::helpers::*;

#[tokio::test]
async fn an_accepted_code_is_refused_the_second_time() {
    let app = TestApp::builder().start().await;
    let secret = app.enroll("alice", None, None).await;
    let code = app.totp(&secret, 0);

    assert_eq!(app.verify("alice", &code).await.status, 200);
    let replay = app.verify("alice", &code).await;

    assert_eq!(replay.status, 401);
    assert_eq!(replay.body["error"], "invalid_token");
}

#[tokio::test]
async fn after_a_step_is_used_earlier_steps_are_refused_too() {
    let app = TestApp::builder().start().await;
    let secret = app.enroll("alice", None, None).await;
    let previous = app.totp(&secret, -1);
    let current = app.totp(&secret, 0);

    assert_eq!(app.verify("alice", &current).await.status, 200);

    assert_eq!(app.verify("alice", &previous).await.status, 401, "an older step is refused");
    app.clock().advance(30);
    assert_eq!(app.verify("alice", &app.totp(&secret, 0)).await.status, 200, "the next step works");
}

#[tokio::test]
async fn concurrent_uses_of_one_code_succeed_exactly_once() {
    let app = TestApp::builder().start().await;
    let secret = app.enroll("alice", None, None).await;
    let code = app.totp(&secret, 0);

    let replies = join_all((0..20).map(|_| app.verify_task("alice", &code))).await;

    let ok = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(ok, 1, "statuses: {:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
}

/// Writes that arrive together are committed together (group commit on both backends, with
/// a savepoint for each write of several statements): each request must still get its own
/// write's outcome, and a write whose condition failed must be undone alone.
#[tokio::test]
async fn concurrent_codes_of_many_users_are_each_accepted_once_and_each_answer_is_its_own() {
    let app = TestApp::builder().start().await;
    let mut users = Vec::new();
    for i in 0..12 {
        let name = format!("user{i}");
        let secret = app.enroll(&name, None, None).await;
        let window: Vec<String> = (-1..=1).map(|step| app.totp(&secret, step)).collect();
        let wrong = (0..).map(|n| format!("{:06}", 100_000 + n)).find(|c| !window.contains(c)).unwrap();
        users.push((name, secret, window[1].clone(), wrong));
    }

    // Each user's right code three times and a wrong one twice, all at once, interleaved.
    let mut tasks = Vec::new();
    for round in 0..5 {
        for (name, _, right, wrong) in &users {
            let code = if round % 2 == 0 { right } else { wrong };
            tasks.push((name.clone(), code == right, app.verify_task(name, code)));
        }
    }
    let (meta, handles): (Vec<_>, Vec<_>) = tasks.into_iter().map(|(name, right, task)| ((name, right), task)).unzip();
    let replies = join_all(handles.into_iter()).await;

    for (name, _, _, _) in &users {
        let statuses: Vec<(bool, u16)> = meta
            .iter()
            .zip(&replies)
            .filter(|((n, _), _)| n == name)
            .map(|((_, right), r)| (*right, r.status))
            .collect();
        let accepted: Vec<bool> =
            statuses.iter().filter(|(_, status)| *status == 200).map(|(right, _)| *right).collect();
        assert_eq!(accepted, [true], "{name}: exactly one right code accepted, no wrong one: {statuses:?}");
        assert!(statuses.iter().all(|(_, status)| [200, 401].contains(status)), "{name}: {statuses:?}");
    }
    // Each user's two wrong codes were counted, no more and no fewer: the lock comes with
    // the failure that brings the count to MAX_FAILED_ATTEMPTS, not one sooner or later.
    let max = app.settings.lockout.max_failed_attempts;
    for (name, secret, _, wrong) in &users {
        for _ in 2..max - 1 {
            assert_eq!(app.verify(name, wrong).await.status, 401, "{name}");
        }
        app.clock().advance(30);
        assert_eq!(app.verify(name, &app.totp(secret, 0)).await.status, 200, "{name}: not locked yet");
        assert_eq!(app.verify(name, wrong).await.status, 401, "{name}");
        app.clock().advance(30);
        assert_eq!(app.verify(name, &app.totp(secret, 0)).await.status, 429, "{name}: locked now");
    }
}

#[tokio::test]
async fn replay_state_survives_a_restart_of_the_server() {
    let first = TestApp::builder().start().await;
    let secret = first.enroll("alice", None, None).await;
    let code = first.totp(&secret, 0);
    assert_eq!(first.verify("alice", &code).await.status, 200);
    let dir = first.stop().await;

    let second = TestApp::builder().dir(dir).start().await;

    assert_eq!(second.verify("alice", &code).await.status, 401);
}

/// The store's half of accepting a code, on both databases: the replay guard moves only
/// while the lockout state is still the one the code was checked against (a failure
/// counted in between makes the caller read again), and each TOTP step or HOTP counter
/// moves it once.
#[tokio::test]
async fn the_store_accepts_a_code_only_against_the_lockout_state_it_was_checked_against_and_once() {
    use mfa::lockout::LockState;
    use mfa::otp::{Algorithm, OtpParams};
    use mfa::store::{Advance, AuthenticatorRecord, AuthenticatorStatus, Factor, UserProfile, UserSource};

    let dir = tempfile::tempdir().unwrap();
    let settings = settings_for(dir.path(), [("RUST_LOG", "warn")]);
    let store = mfa::store::open(&settings.database).await.unwrap();
    let alice = mfa::domain::Username::parse("alice").unwrap();
    let profile = UserProfile { username: alice.clone(), email: None, telegram_id: None, source: UserSource::Cli };
    let authenticator = |id: &str, factor| AuthenticatorRecord {
        id: id.into(),
        name: id.into(),
        sealed_secret: vec![1; 40],
        factor,
        status: AuthenticatorStatus::Active,
        replaces: None,
        created_at: 1,
        last_used_at: None,
        expires_at: None,
    };
    let totp = Factor::Totp { params: OtpParams::default(), last_step: None, drift_steps: 0 };
    store.insert_user(&profile, &authenticator("app", totp), 1).await.unwrap();
    let hotp = Factor::Hotp { algorithm: Algorithm::Sha1, digits: 6, counter: 5 };
    assert!(store.add_authenticator(&alice, &authenticator("token", hotp), 1).await.unwrap());
    let read = LockState::default();
    let failed = LockState { failed_attempts: 1, locked_until: None, last_failed_at: Some(50) };
    assert!(store.swap_lock(&alice, read, failed, &["192.0.2.1".to_string()]).await.unwrap());
    let factors = || async {
        let user = store.user(&alice).await.unwrap().unwrap();
        user.authenticators.iter().map(|a| (a.id.clone(), a.factor, a.last_used_at)).collect::<Vec<_>>()
    };
    let untouched = factors().await;
    let step = |step| Advance::Totp { step, drift_steps: 1 };
    let counter = Advance::Hotp { expected: 5, next: 6 };

    for stale in
        [read, LockState { last_failed_at: Some(49), ..failed }, LockState { locked_until: Some(99), ..failed }]
    {
        assert!(!store.accept_code(&alice, "app", step(100), None, stale, 60).await.unwrap(), "{stale:?}");
        assert!(!store.accept_code(&alice, "token", counter, None, stale, 60).await.unwrap(), "{stale:?}");
    }
    assert_eq!(factors().await, untouched, "nothing moved against a lockout state that changed");

    assert!(store.accept_code(&alice, "app", step(100), None, failed, 60).await.unwrap());
    assert!(store.accept_code(&alice, "token", counter, None, failed, 61).await.unwrap());
    let used = factors().await;
    assert_eq!(
        used,
        vec![
            (
                "app".into(),
                Factor::Totp { params: OtpParams::default(), last_step: Some(100), drift_steps: 1 },
                Some(60)
            ),
            ("token".into(), Factor::Hotp { algorithm: Algorithm::Sha1, digits: 6, counter: 6 }, Some(61)),
        ]
    );
    assert!(!store.accept_code(&alice, "app", step(100), None, failed, 62).await.unwrap(), "a step once");
    assert!(!store.accept_code(&alice, "app", step(99), None, failed, 62).await.unwrap(), "nor an earlier one");
    assert!(!store.accept_code(&alice, "token", counter, None, failed, 62).await.unwrap(), "a counter once");
    assert_eq!(factors().await, used);
    assert_eq!(store.user(&alice).await.unwrap().unwrap().lock, failed, "accepting changed no lockout state");
    store.close().await;
}
