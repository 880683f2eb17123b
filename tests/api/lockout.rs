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
async fn a_success_resets_the_failure_count() {
    let app = TestApp::builder().envs(&[("MAX_FAILED_ATTEMPTS", "3")]).start().await;
    let secret = app.enroll("alice", None, None).await;
    for _ in 0..2 {
        assert_eq!(app.verify("alice", "000000").await.status, 401);
    }
    assert_eq!(app.verify("alice", &app.totp(&secret, 0)).await.status, 200);
    for _ in 0..2 {
        assert_eq!(app.verify("alice", "000000").await.status, 401);
    }
    app.clock().advance(30);
    assert_eq!(app.verify("alice", &app.totp(&secret, 0)).await.status, 200, "two failures after a reset do not lock");
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
