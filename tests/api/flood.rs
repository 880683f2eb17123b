//! Nothing a client sends grows memory, metrics or the log without bound, and no text from a
//! client or an upstream server forges a log line: tens of thousands of distinct hostile
//! values (methods, paths, request ids, usernames), against the real binary.

use std::sync::Arc;

use serde_json::json;

use crate::helpers::*;
use crate::support::telegram::{BotApi, Scripted};

/// A service's `/metrics`: its size, and its series (each line without its value).
async fn metrics(client: &reqwest::Client, addr: std::net::SocketAddr) -> (usize, Vec<String>) {
    let text = client.get(format!("http://{addr}/metrics")).send().await.unwrap().text().await.unwrap();
    let series =
        text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.rsplit_once(' ')).map(|(s, _)| s.to_string());
    let mut series: Vec<String> = series.collect();
    series.sort();
    (text.len(), series)
}

/// Request `i` of the flood: a made-up method, an unknown path, an oversized or odd request
/// id, or an unknown user, each one distinct, at one of the two services.
fn hostile(
    client: &reqwest::Client,
    mfa: std::net::SocketAddr,
    notifier: std::net::SocketAddr,
    i: usize,
) -> reqwest::RequestBuilder {
    let addr = if i.is_multiple_of(2) { mfa } else { notifier };
    match i % 4 {
        0 | 1 => {
            let method = reqwest::Method::from_bytes(format!("X{i:06}AAAA").as_bytes()).unwrap();
            client.request(method, format!("http://{addr}/x/{i}"))
        }
        2 => {
            let id =
                if i % 8 == 2 { format!("{i}-{}", "r".repeat(30_000)) } else { format!("id with spaces {i} ééé") };
            client.get(format!("http://{addr}/nowhere/{i}?q={i}")).header("x-request-id", id)
        }
        _ => client
            .post(format!("http://{mfa}/verify"))
            .json(&json!({"username": format!("nobody{i}"), "token": "123456"})),
    }
}

async fn flood(app: &TestApp, from: usize, count: usize) {
    let (mfa, notifier) = (app.addr, app.notify_addr.unwrap());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(from));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (client, next) = (http_client(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= from + count {
                        break;
                    }
                    let status = hostile(&client, mfa, notifier, i).send().await.unwrap().status().as_u16();
                    assert!((400..500).contains(&status), "request {i}: {status}");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn distinct_hostile_values_leave_memory_metrics_and_the_log_flat() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::builder().shared_dir(dir.path()).env("RATE_LIMIT", "off").start_binary("serve").await;
    let client = http_client();
    flood(&app, 0, 400).await; // every kind of request once, and the buffers warmed up
    for addr in [app.addr, app.notify_addr.unwrap()] {
        metrics(&client, addr).await; // so that `/metrics` itself is counted already
    }
    let (rss_before, _) = memory_kib(app.pid());
    let metrics_before = [metrics(&client, app.addr).await, metrics(&client, app.notify_addr.unwrap()).await];
    let log_before = app.logs().len();

    let count = 24_000;
    flood(&app, 400, count).await;

    let (rss_after, peak) = memory_kib(app.pid());
    let metrics_after = [metrics(&client, app.addr).await, metrics(&client, app.notify_addr.unwrap()).await];
    let logs = app.logged().await;
    app.kill9().await;
    let logged = logs.len() - log_before;
    eprintln!(
        "{count} hostile requests: RSS {rss_before} -> {rss_after} KiB (peak {peak}); /metrics {} and {} -> {} and {} \
         bytes; {logged} bytes of log ({} per request)",
        metrics_before[0].0,
        metrics_before[1].0,
        metrics_after[0].0,
        metrics_after[1].0,
        logged / count
    );
    for ((size_before, series_before), (size_after, series_after)) in metrics_before.iter().zip(&metrics_after) {
        // Counters grow in digits, never in series.
        assert_eq!(series_after, series_before, "new series");
        assert!(*size_after < size_before + size_before / 2, "/metrics grew from {size_before} to {size_after} bytes");
    }
    assert!(rss_after < rss_before + 8 * 1024, "RSS grew by {} KiB", rss_after.saturating_sub(rss_before));
    assert!(logged / count < 600, "{} bytes of log per request", logged / count);
    assert!(
        logs.lines().all(|l| l.len() < 2_000),
        "a log line of {} bytes",
        logs.lines().map(str::len).max().unwrap_or(0)
    );
    assert!(!logs.contains("rrrrrrrrrr") && !logs.contains("id with spaces"), "a client's bad request id was logged");
    assert!(!logs.contains("X000401AAAA"), "a made-up method was logged as sent");
}

#[tokio::test]
async fn upstream_text_is_cut_short_and_escaped_in_bodies_and_logs() {
    let bot = BotApi::start().await;
    let description: &'static str = Box::leak(
        format!("Bad Request: chat not found\nFORGED log line\u{1b}[31m{}", "y".repeat(10_000)).into_boxed_str(),
    );
    bot.script([Scripted::Error(400, description)]);
    let dir = tempfile::tempdir().unwrap();
    let mut vars = bot.env();
    vars.push(("DAIR_SECRET".into(), "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP".into()));
    vars.push(("MFA_ENV_USERS".into(), "dair".into()));
    vars.push(("DAIR_TELEGRAM_ID".into(), "42".into()));
    let app = TestApp::builder().shared_dir(dir.path()).envs(vars).start_binary("serve").await;

    let failed = app.request_otp("dair").await;

    assert_eq!((failed.status, failed.body["error"].as_str()), (502, Some("delivery_failed")));
    let detail = failed.body["detail"].as_str().unwrap();
    assert!(detail.contains("chat not found"), "{detail}");
    assert!(detail.len() < 400 && !detail.contains('\n') && !detail.contains('\u{1b}'), "{detail}");
    let logs = app.logged().await;
    app.kill9().await;
    assert!(logs.lines().all(|l| !l.starts_with("FORGED")), "an upstream newline forged a log line:\n{logs}");
    assert!(!logs.contains(&"y".repeat(400)), "the upstream text was logged whole");
    assert!(logs.contains("chat not found"), "the operator still reads why:\n{logs}");
}

#[tokio::test]
async fn a_caller_is_not_told_where_the_notification_service_is() {
    let port = crate::support::closed_port();
    let app = TestApp::builder().env("NOTIFICATION_URL", &format!("http://127.0.0.1:{port}")).start().await;
    app.enroll("dair", Some("dair@example.com"), None).await;

    let queued = app.request_otp("dair").await;

    assert_eq!((queued.status, queued.body["status"].as_str()), (200, Some("queued")), "{:?}", queued.body);
    let body = queued.body.to_string();
    assert!(!body.contains(&port.to_string()) && !body.contains("127.0.0.1"), "{body}");
}
