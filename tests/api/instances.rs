//! Several `mfa server` processes on one database (the SQLite file, or PostgreSQL in the
//! second pass): every guarantee holds across instances, and a killed instance loses nothing.

use std::time::Duration;

use mfa::otp::OtpParams;
use serde_json::json;

use crate::helpers::TestApp;
use crate::process::{cli, now_code, secret_from_cli};

const KEY: (&str, &str) = ("SECRET_KEY", "multi-instance-test-key-0123456789");

async fn enroll(dir: &std::path::Path, name: &str, extra: &[(&str, &str)]) -> mfa::otp::SecretBytes {
    let mut env = vec![KEY];
    env.extend_from_slice(extra);
    let out = cli(dir, &env, &["user", "add", name, "--no-qr"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    secret_from_cli(&out.stdout)
}

#[tokio::test]
async fn a_code_accepted_by_one_instance_is_refused_by_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let secret = enroll(dir.path(), "alice", &[]).await;
    let a = crate::process::start_server(dir.path(), &[KEY]).await;
    let b = crate::process::start_server(dir.path(), &[KEY]).await;
    let code = now_code(&secret, OtpParams::default());

    assert_eq!(a.verify("alice", &code).await.status, 200);
    let replay = b.verify("alice", &code).await;

    assert_eq!((replay.status, replay.body["error"].as_str()), (401, Some("invalid_token")));
}

#[tokio::test]
async fn a_lockout_earned_on_one_instance_holds_on_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let env = [KEY, ("MAX_FAILED_ATTEMPTS", "3")];
    let secret = enroll(dir.path(), "alice", &env).await;
    let a = crate::process::start_server(dir.path(), &env).await;
    let b = crate::process::start_server(dir.path(), &env).await;
    let right = now_code(&secret, OtpParams::default());
    let wrong = crate::helpers::wrong(&right);
    for _ in 0..3 {
        assert_eq!(a.verify("alice", &wrong).await.status, 401);
    }

    let refused = b.verify("alice", &right).await;

    assert_eq!((refused.status, refused.body["error"].as_str()), (429, Some("too_many_attempts")));
}

/// Both instances get the same right code at the same moment, many times over: exactly
/// one 200 each time.
#[tokio::test]
async fn simultaneous_verifications_on_two_instances_succeed_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let rounds = 12;
    let mut secrets = Vec::new();
    for i in 0..rounds {
        secrets.push(enroll(dir.path(), &format!("user{i}"), &[]).await);
    }
    let a = crate::process::start_server(dir.path(), &[KEY]).await;
    let b = crate::process::start_server(dir.path(), &[KEY]).await;

    for (i, secret) in secrets.iter().enumerate() {
        let user = format!("user{i}");
        let code = now_code(secret, OtpParams::default());
        let (r1, r2, r3, r4) = tokio::join!(
            a.verify(&user, &code),
            b.verify(&user, &code),
            a.verify(&user, &code),
            b.verify(&user, &code)
        );
        let statuses = [r1.status, r2.status, r3.status, r4.status];
        assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "round {i}: {statuses:?}");
        assert!(statuses.iter().all(|s| *s == 200 || *s == 401), "round {i}: {statuses:?}");
    }
}

#[tokio::test]
async fn killing_one_instance_under_load_leaves_the_other_answering_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let env = [KEY, ("MAX_FAILED_ATTEMPTS", "1000000"), ("RATE_LIMIT", "off")];
    let secret = enroll(dir.path(), "alice", &env).await;
    let a = crate::process::start_server(dir.path(), &env).await;
    let b = crate::process::start_server(dir.path(), &env).await;
    let used = now_code(&secret, OtpParams::default());
    assert_eq!(a.verify("alice", &used).await.status, 200);

    // Load on both instances: 150 wrong guesses each, bounded in count; A dies midway.
    let load = |server: &TestApp| {
        let client = crate::helpers::http_client();
        let url = format!("http://{}/verify", server.addr);
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..150 {
                let sent = client.post(&url).json(&json!({"username": "alice", "token": "00000000"})).send().await;
                statuses.push(sent.map(|r| r.status().as_u16()).unwrap_or(0));
            }
            statuses
        })
    };
    let load_a = load(&a);
    let load_b = load(&b);
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.kill9().await;

    let on_b = load_b.await.unwrap();
    let on_a = load_a.await.unwrap();
    assert!(on_b.iter().all(|s| *s == 401), "B answered every request: {on_b:?}");
    assert!(on_a.contains(&0), "A did die under load");

    let restarted = crate::process::start_server(dir.path(), &env).await;
    assert_eq!(restarted.verify("alice", &used).await.status, 401, "the used step is still used");
    let wrong = restarted.verify("alice", "00000000").await;
    assert_eq!(wrong.status, 401, "the user is still there");
}
