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
