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
