use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn five_failures_lock_the_user_even_against_the_right_code() {
    let app = TestApp::builder().start().await;
    let secret = app.enroll("alice", None, None).await;
    let bad = wrong(&app.totp(&secret, 0));
    for _ in 0..5 {
        assert_eq!(app.verify("alice", &bad).await.status, 401);
    }

    let locked = app.verify("alice", &app.totp(&secret, 0)).await;

    assert_eq!(locked.status, 429);
    assert_eq!(locked.body, json!({"error": "too_many_attempts", "retry_after": 300}));
    assert_eq!(locked.retry_after(), Some(300));
}

#[tokio::test]
async fn the_lock_ends_after_lockout_seconds() {
    let app = TestApp::builder().envs(&[("MAX_FAILED_ATTEMPTS", "2"), ("LOCKOUT_SECONDS", "120")]).start().await;
    let secret = app.enroll("alice", None, None).await;
    for _ in 0..2 {
        app.verify("alice", "000000").await;
    }
    app.clock().advance(119);
    let still = app.verify("alice", &app.totp(&secret, 0)).await;
    assert_eq!((still.status, still.retry_after()), (429, Some(1)));

    app.clock().advance(1);

    assert_eq!(app.verify("alice", &app.totp(&secret, 0)).await.status, 200);
}

#[tokio::test]
async fn a_success_does_not_reset_the_count_time_does() {
    let app = TestApp::builder().envs(&[("MAX_FAILED_ATTEMPTS", "3")]).start().await;
    let secret = app.enroll("alice", None, None).await;
    for _ in 0..2 {
        assert_eq!(app.verify("alice", "000000").await.status, 401);
    }
    assert_eq!(app.verify("alice", &app.totp(&secret, 0)).await.status, 200);
    let third = app.verify("alice", "000000").await;
    assert_eq!(third.status, 401);
    let locked = app.verify("alice", "000000").await;
    assert_eq!((locked.status, locked.retry_after()), (429, Some(300)), "the login did not wipe the two failures");

    // Failures fade at 3 per 2 × 86,400 s: one per 57,600 s without a failure.
    app.clock().advance(300 + 3 * 57_600);
    for _ in 0..2 {
        assert_eq!(app.verify("alice", "000000").await.status, 401);
    }
    app.clock().advance(30);
    assert_eq!(app.verify("alice", &app.totp(&secret, 0)).await.status, 200, "faded away: two do not lock");
    let summary = app.users().find(&mfa::domain::Username::parse("alice").unwrap()).await.unwrap();
    assert_eq!(summary.failed_attempts, 2, "the count the operator sees is the one that still counts");
}

#[tokio::test]
async fn a_code_submitted_again_is_a_replay_and_costs_nothing() {
    let app = TestApp::builder().start().await;
    let secret = app.enroll("alice", Some("alice@example.com"), None).await;
    let code = app.totp(&secret, 0);

    // A double click, a retried request, an impatient user: 30 at once.
    let replies = join_all((0..30).map(|_| app.verify_task("alice", &code))).await;
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 29, "{statuses:?}");
    assert!(replies.iter().filter(|r| r.status == 401).all(|r| r.body["error"] == "invalid_token"));
    // The code of the step before is older than the one used: refused, and free as well.
    assert_eq!(app.verify("alice", &app.totp(&secret, -1)).await.status, 401);

    // A sent code, twice.
    assert_eq!(app.request_otp("alice").await.status, 200);
    let sent = app.last_code_sent_to("alice@example.com");
    assert_eq!(app.verify("alice", &sent).await.status, 200);
    assert_eq!(app.verify("alice", &sent).await.status, 401);

    // None of that counted: the user still has all five attempts.
    for _ in 0..4 {
        assert_eq!(app.verify("alice", "000000").await.status, 401);
    }
    app.clock().advance(30);
    assert_eq!(app.verify("alice", &app.totp(&secret, 0)).await.status, 200, "4 failures so far, not 5");
}

#[tokio::test]
async fn retry_after_tells_nothing_of_the_users_logins() {
    let app = TestApp::builder().start().await;
    let alice = app.enroll("alice", None, None).await;
    app.enroll("bob", None, None).await;
    // The same attack on both; only alice logs in, between the guesses.
    for round in 0..3 {
        for user in ["alice", "bob"] {
            assert_eq!(app.verify(user, "000000").await.status, 401, "{user} round {round}");
        }
        app.clock().advance(30);
        assert_eq!(app.verify("alice", &app.totp(&alice, 0)).await.status, 200);
    }
    for user in ["alice", "bob"] {
        assert_eq!(app.verify(user, "000000").await.status, 401);
    }
    let (a, b) = (app.verify("alice", "000000").await, app.verify("bob", "000000").await);
    assert_eq!((a.status, b.status), (401, 401));
    let (a, b) = (app.verify("alice", "000000").await, app.verify("bob", "000000").await);
    assert_eq!((a.status, a.body.clone()), (b.status, b.body.clone()));
    assert_eq!(a.status, 429);
}

#[tokio::test]
async fn a_burst_of_parallel_guesses_gets_only_max_attempts_checked() {
    let app = TestApp::builder().start().await;
    app.enroll("alice", None, None).await;

    let replies = join_all((0..40).map(|i| app.verify_task("alice", &format!("{:06}", 100_000 + i)))).await;

    let checked = replies.iter().filter(|r| r.status == 401).count();
    let refused = replies.iter().filter(|r| r.status == 429).count();
    assert_eq!(checked, 5, "only MAX_FAILED_ATTEMPTS guesses may be checked");
    assert_eq!(refused, 35);
}

#[tokio::test]
async fn failed_sent_codes_count_against_the_same_lockout() {
    let app = TestApp::builder().envs(&[("MAX_FAILED_ATTEMPTS", "3")]).start().await;
    let secret = app.enroll("alice", Some("alice@example.com"), None).await;
    assert_eq!(app.request_otp("alice").await.status, 200);
    let sent = app.last_code_sent_to("alice@example.com");
    for _ in 0..3 {
        assert_eq!(app.verify("alice", &wrong(&sent)).await.status, 401);
    }

    assert_eq!(app.verify("alice", &sent).await.status, 429, "the sent code is refused while locked");
    assert_eq!(app.verify("alice", &app.totp(&secret, 0)).await.status, 429);
    let otp = app.request_otp("alice").await;
    assert_eq!(otp.status, 429, "no codes are sent to a locked user");
    assert_eq!(otp.body["error"], "too_many_attempts");
}

#[tokio::test]
async fn an_operator_unlock_lets_the_user_in_again() {
    let app = TestApp::builder().envs(&[("MAX_FAILED_ATTEMPTS", "1")]).start().await;
    let secret = app.enroll("alice", None, None).await;
    app.verify("alice", "000000").await;
    assert_eq!(app.verify("alice", &app.totp(&secret, 0)).await.status, 429);

    let name = mfa::domain::Username::parse("alice").unwrap();
    app.users().unlock(&name).await.unwrap();

    assert_eq!(app.verify("alice", &app.totp(&secret, 0)).await.status, 200);
}

#[tokio::test]
async fn lockout_survives_a_restart() {
    let first = TestApp::builder().envs(&[("MAX_FAILED_ATTEMPTS", "1")]).start().await;
    let secret = first.enroll("alice", None, None).await;
    first.verify("alice", "000000").await;
    let dir = first.stop().await;

    let second = TestApp::builder().dir(dir).envs(&[("MAX_FAILED_ATTEMPTS", "1")]).start().await;

    assert_eq!(second.verify("alice", &second.totp(&secret, 0)).await.status, 429);
}
