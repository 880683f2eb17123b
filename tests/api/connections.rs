//! Connections are released in bounded time and left in a defined state, whatever the
//! client does: it stops reading its responses, it announces a body too large, or its
//! request is refused before the body is read. All on 127.0.0.1, bounded in time.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::*;

/// Everything the server sends on `stream` until it closes it or `wait` passes.
async fn read_all(stream: &mut TcpStream, wait: Duration) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    let deadline = Instant::now() + wait;
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline.into(), stream.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn clients_that_never_read_their_responses_give_their_connections_back() {
    let app = TestApp::builder()
        .envs(&[
            ("HTTP_MAX_CONNECTIONS", "4"),
            ("HTTP_HEADER_TIMEOUT_SECONDS", "1"),
            ("HTTP_WRITE_TIMEOUT_SECONDS", "1"),
        ])
        .start()
        .await;
    // Every slot taken by a client that pipelines requests and never reads an answer.
    let mut hogs = Vec::new();
    for _ in 0..4 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket.connect(app.addr).await.unwrap();
        hogs.push(tokio::spawn(async move {
            let requests = "GET /healthcheck HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".repeat(1000);
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(20) {
                if stream.write_all(requests.as_bytes()).await.is_err() {
                    return started.elapsed(); // the server closed the connection
                }
            }
            started.elapsed()
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();

    let health = tokio::time::timeout(Duration::from_secs(10), app.client.get(app.url("/healthcheck")).send()).await;

    assert!(health.is_ok_and(|r| r.is_ok_and(|r| r.status() == 200)), "no slot came free");
    assert!(started.elapsed() < Duration::from_secs(5), "a slot came free only after {:?}", started.elapsed());
    for hog in hogs {
        let held = hog.await.unwrap();
        assert!(held < Duration::from_secs(10), "a client that never reads held its connection {held:?}");
    }
}

#[tokio::test]
async fn a_body_announced_too_large_is_refused_without_inviting_it() {
    let app = TestApp::builder().start().await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let head = "POST /verify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                Content-Length: 1000000\r\nExpect: 100-continue\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();

    let answer = read_all(&mut stream, Duration::from_secs(3)).await;

    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    assert!(!answer.contains("100 Continue"), "the body was invited: {answer:?}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer:?}");
}

#[tokio::test]
async fn a_request_refused_before_its_body_is_read_leaves_the_connection_defined() {
    let app = TestApp::builder().env("MFA_API_KEYS", "backend-key-0123456789abcdef").start().await;
    let verify = |body: &str| {
        format!(
            "POST /verify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let next = "GET /healthcheck HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    for size in [0usize, 2_000, 15_000] {
        let body = format!("{{\"username\":\"dair\",\"token\":\"123456\"{}}}", " ".repeat(size));
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        stream.write_all(format!("{}{next}", verify(&body)).as_bytes()).await.unwrap();

        let answers = read_all(&mut stream, Duration::from_secs(2)).await;

        // Refused by the key gate, the body drained: the request behind it is answered too.
        assert!(answers.starts_with("HTTP/1.1 401"), "{size}: {answers:?}");
        assert_eq!(answers.matches("HTTP/1.1 200").count(), 1, "{size}: the pipelined request: {answers:?}");
    }
    // Over the limit: refused at once, and the connection says it closes, and does.
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let body = format!("{{\"username\":\"dair\",\"token\":\"123456\"{}}}", " ".repeat(20_000));
    stream.write_all(format!("{}{next}", verify(&body)).as_bytes()).await.unwrap();
    let answers = read_all(&mut stream, Duration::from_secs(2)).await;
    assert!(answers.starts_with("HTTP/1.1 413"), "{answers:?}");
    assert!(answers.to_ascii_lowercase().contains("connection: close"), "{answers:?}");
    assert!(!answers.contains("HTTP/1.1 200"), "{answers:?}");
}
