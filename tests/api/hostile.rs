//! Slow and hostile clients: slowloris, the connection cap, slow bodies, huge headers, and
//! bodies built to hurt a parser. Every one gets a 4xx or a closed connection, never a 5xx,
//! and a legitimate client keeps being served. Everything runs on 127.0.0.1, bounded in
//! count and time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// How many connections a test may open (each costs a descriptor on both ends here, since
/// the server runs in this process), from `ulimit -n`, keeping room for everything else.
fn connection_budget(wanted: usize) -> usize {
    let limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits.lines().find(|l| l.starts_with("Max open files"))?.to_string();
            line.split_whitespace().nth(3)?.parse::<usize>().ok()
        })
        .unwrap_or(1024);
    let budget = limit.saturating_sub(512) / 2;
    if budget < wanted {
        eprintln!("note: ulimit -n is {limit}; opening {budget} slow connections instead of {wanted}");
    }
    wanted.min(budget)
}

/// A slowloris client: opens a connection and sends a request head one byte a second,
/// never finishing it. Returns how long after connecting the server closed the connection,
/// or `None` if it was still open after `give_up`.
async fn slow_client(addr: SocketAddr, connected: Arc<AtomicUsize>, give_up: Duration) -> Option<Duration> {
    let head = b"POST /verify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Padding: ";
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let opened = Instant::now();
    connected.fetch_add(1, Ordering::SeqCst);
    let mut sent = 0;
    let mut buffer = [0u8; 512];
    while opened.elapsed() < give_up {
        let byte = head.get(sent).copied().unwrap_or(b'a');
        if stream.write_all(&[byte]).await.is_err() {
            return Some(opened.elapsed());
        }
        sent += 1;
        // Wait a second for the next byte, watching for the server closing the connection.
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => return Some(opened.elapsed()),
            Ok(Ok(_)) => {} // a response (431, 408): the close follows
            Err(_) => {}    // a second passed
        }
    }
    None
}

#[tokio::test]
async fn slowloris_does_not_stop_a_legitimate_client_and_is_cut_off_at_the_header_timeout() {
    let slow = connection_budget(500);
    let header_timeout = Duration::from_secs(4);
    let app = TestApp::builder().envs(&[("HTTP_HEADER_TIMEOUT_SECONDS", "4")]).start().await;
    let secret = app.enroll("alice", None, None).await;
    let connected = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> =
        (0..slow).map(|_| tokio::spawn(slow_client(app.addr, connected.clone(), Duration::from_secs(12)))).collect();
    let waiting = Instant::now();
    while connected.load(Ordering::SeqCst) < slow && waiting.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(connected.load(Ordering::SeqCst), slow, "every slow connection was opened");

    let started = Instant::now();
    let reply = app.verify("alice", &app.totp(&secret, 0)).await;
    let latency = started.elapsed();
    assert_eq!(reply.status, 200);
    // Held up by the slow connections, it would wait for the header timeout to cut them; on
    // two loaded cores (the whole suite at once) an unhindered one once took 1.03 s.
    assert!(latency < header_timeout / 2, "/verify took {latency:?} beside {slow} slow connections");
    assert!(waiting.elapsed() < header_timeout, "the slow connections were all still open during that /verify");

    let mut closed_after = Vec::new();
    for client in clients {
        closed_after.push(client.await.unwrap().expect("the server closed the slow connection"));
    }
    let earliest = closed_after.iter().min().unwrap();
    let latest = closed_after.iter().max().unwrap();
    eprintln!(
        "slowloris: {slow} connections sending a byte a second; /verify answered in {latency:?}; \
         the server closed them {earliest:?} to {latest:?} after they opened (header timeout {header_timeout:?})"
    );
    assert!(*earliest >= header_timeout - Duration::from_millis(200), "closed early: {earliest:?}");
    assert!(*latest <= header_timeout + Duration::from_secs(3), "closed late: {latest:?}");
}

#[tokio::test]
async fn at_the_connection_cap_a_new_client_waits_until_an_idle_connection_times_out() {
    let app =
        TestApp::builder().envs(&[("HTTP_MAX_CONNECTIONS", "8"), ("HTTP_HEADER_TIMEOUT_SECONDS", "1")]).start().await;
    // Eight keep-alive connections that made one request each: accepted, now idle.
    let mut idle = Vec::new();
    for _ in 0..8 {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        stream.write_all(b"GET /healthcheck HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
        let mut buffer = [0u8; 1024];
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(buffer[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buffer[..n]));
        idle.push(stream);
    }

    let started = Instant::now();
    let reply = app.get("/healthcheck").await;
    let waited = started.elapsed();

    assert_eq!(reply.status, 200);
    assert!(waited >= Duration::from_millis(500), "served at once ({waited:?}): the cap of 8 was not applied");
    assert!(waited < Duration::from_secs(4), "the idle connections were not closed: waited {waited:?}");
    let mut closed = 0;
    for mut stream in idle {
        let mut buffer = [0u8; 16];
        if matches!(tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buffer)).await, Ok(Ok(0) | Err(_))) {
            closed += 1;
        }
    }
    assert_eq!(closed, 8, "idle keep-alive connections are closed after the header timeout");
}

/// Sends raw bytes, returns what the server answered before closing (or within `wait`).
async fn exchange(addr: SocketAddr, request: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_408() {
    let app = TestApp::builder().envs(&[("HTTP_BODY_TIMEOUT_SECONDS", "1")]).start().await;
    let head =
        "POST /verify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    let started = Instant::now();

    let answer = exchange(app.addr, format!("{head}{{\"username\":").as_bytes(), Duration::from_secs(10)).await;

    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"invalid_request\""), "{answer}");
    let took = started.elapsed();
    assert!((Duration::from_millis(900)..Duration::from_secs(5)).contains(&took), "{took:?}");
}

#[tokio::test]
async fn huge_or_too_many_headers_are_431_and_never_reach_the_handlers() {
    let app = TestApp::builder().start().await;
    let long = format!("GET /healthcheck HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: {}\r\n\r\n", "a".repeat(40 * 1024));
    let many: String = (0..200).map(|i| format!("X-Header-{i}: {i}\r\n")).collect();
    let many = format!("GET /healthcheck HTTP/1.1\r\nHost: 127.0.0.1\r\n{many}\r\n");
    let endless = format!("GET /healthcheck HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: {}", "a".repeat(1 << 20));
    for (case, request) in [("one 40 KiB header", long), ("200 headers", many), ("a 1 MiB header line", endless)] {
        let answer = exchange(app.addr, request.as_bytes(), Duration::from_secs(5)).await;
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431"), "{case}: {answer}");
    }
    let fine = format!(
        "GET /healthcheck HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(8 * 1024)
    );
    assert!(
        exchange(app.addr, fine.as_bytes(), Duration::from_secs(5)).await.starts_with("HTTP/1.1 200"),
        "8 KiB is fine"
    );
}

async fn post_bytes(app: &TestApp, path: &str, content_type: &str, body: Vec<u8>) -> Reply {
    let request = app.client.post(app.url(path)).header("content-type", content_type).body(body);
    Reply::read(request.send().await.unwrap()).await
}

#[tokio::test]
async fn bodies_built_to_hurt_a_parser_are_4xx() {
    let app = TestApp::builder().envs(&[("ADMIN_TOKEN", "admin-token-0123456789abcdef")]).start().await;
    app.enroll("alice", Some("alice@example.com"), None).await;
    let json = "application/json";
    let deep_array = format!("{}{}", "[".repeat(6000), "]".repeat(6000));
    let deep_field =
        format!(r#"{{"username":"alice","token":"123456","extra":{}{}}}"#, "[".repeat(6000), "]".repeat(6000));
    let deep_object = format!(r#"{{"username":{}1{},"token":"123456"}}"#, "{\"a\":".repeat(2000), "}".repeat(2000));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("array nested 6000 deep", deep_array.into_bytes(), "JSON object"),
        ("object nested 2000 deep", deep_object.into_bytes(), "expected a string"),
        (
            "invalid UTF-8 in a string",
            b"{\"username\":\"al\xff\xfeice\",\"token\":\"123456\"}".to_vec(),
            "invalid unicode",
        ),
        ("invalid UTF-8 outside strings", b"{\"username\":\"alice\",\xc3\x28:1}".to_vec(), ""),
        ("a lone surrogate escape", br#"{"username":"\ud800","token":"123456"}"#.to_vec(), ""),
        (
            "duplicate username",
            br#"{"username":"bob","username":"alice","token":"123456"}"#.to_vec(),
            "duplicate field",
        ),
        ("duplicate token", br#"{"username":"alice","token":"000000","token":"123456"}"#.to_vec(), "duplicate field"),
        ("positional array", br#"["alice","123456"]"#.to_vec(), "JSON object"),
        ("a NUL byte", b"{\"username\":\"alice\0\",\"token\":\"123456\"}".to_vec(), ""),
        ("a byte-order mark", b"\xef\xbb\xbf{\"username\":\"alice\",\"token\":\"123456\"}".to_vec(), ""),
        (
            "a number too big for anything",
            format!(r#"{{"username":"alice","token":{}}}"#, "9".repeat(5000)).into_bytes(),
            "",
        ),
    ];
    for (case, body, detail) in cases {
        let reply = post_bytes(&app, "/verify", json, body).await;
        assert_eq!(
            (reply.status, reply.body["error"].as_str()),
            (400, Some("invalid_request")),
            "{case}: {:?}",
            reply.body
        );
        assert!(reply.body["detail"].as_str().unwrap().contains(detail), "{case}: {}", reply.body["detail"]);
    }

    // An unknown field is skipped without recursion (serde_json skips it iteratively, within
    // the 16 KiB body limit), so the request is judged on its fields: a wrong code.
    let skipped = post_bytes(&app, "/verify", json, deep_field.into_bytes()).await;
    assert_eq!((skipped.status, skipped.body["error"].as_str()), (401, Some("invalid_token")));

    let admin = |body: &'static [u8]| {
        app.client
            .patch(app.url("/admin/users/alice"))
            .bearer_auth("admin-token-0123456789abcdef")
            .header("content-type", json)
            .body(body)
    };
    let duplicate = Reply::read(admin(br#"{"email":"bob@example.com","email":null}"#).send().await.unwrap()).await;
    assert_eq!(duplicate.status, 400, "{:?}", duplicate.body);
    assert!(duplicate.body["detail"].as_str().unwrap().contains("duplicate field"), "{}", duplicate.body);
    let unknown = Reply::read(admin(br#"{"emial":"bob@example.com"}"#).send().await.unwrap()).await;
    assert_eq!(unknown.status, 400, "an unknown field is refused on PATCH: {:?}", unknown.body);
    let cleared = Reply::read(admin(br#"{"email":null}"#).send().await.unwrap()).await;
    assert_eq!((cleared.status, &cleared.body["email"]), (200, &json!(null)));
}

#[tokio::test]
async fn wrong_content_types_are_415_and_json_variants_are_read() {
    let app = TestApp::builder().start().await;
    let secret = app.enroll("alice", None, None).await;
    let body = |token: &str| json!({"username": "alice", "token": token}).to_string().into_bytes();
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "json",
        "application/jsonx",
        "text/json",
        "application/+json",
    ] {
        let reply = post_bytes(&app, "/verify", content_type, body("123456")).await;
        assert_eq!(reply.status, 415, "{content_type}: {:?}", reply.body);
    }
    let reply = post_bytes(&app, "/verify", "application/json; charset=utf-8", body(&app.totp(&secret, 0))).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let reply = post_bytes(&app, "/verify", "application/vnd.api+json", body("000000")).await;
    assert_eq!(reply.status, 401, "a +json type is read (and this code is wrong): {:?}", reply.body);
    // RFC 9110 allows whitespace around the parameters' `;`, and media types are case-insensitive.
    for content_type in [
        "application/json ; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        "application/json\t;\tq=1",
        "APPLICATION/Problem+JSON",
    ] {
        let reply = post_bytes(&app, "/verify", content_type, body("000000")).await;
        assert_eq!(reply.status, 401, "{content_type} is JSON (and this code is wrong): {:?}", reply.body);
    }
}

#[tokio::test]
async fn a_burst_of_oversized_bodies_is_refused_with_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server = crate::process::start_server(dir.path(), &[("RATE_LIMIT", "off")]).await;
    let client = http_client();
    let url = format!("http://{}/verify", server.addr);
    // Warm up (first requests allocate pools and buffers), then measure.
    for _ in 0..20 {
        client.post(&url).json(&json!({"username": "x", "token": "123456"})).send().await.unwrap();
    }
    let (rss_before, _) = memory_kib(server.pid());

    let big = Arc::new(vec![b'a'; 4 << 20]);
    let requests = 64;
    let tasks: Vec<_> = (0..requests)
        .map(|i| {
            let (client, url, big, addr) = (client.clone(), url.clone(), big.clone(), server.addr);
            tokio::spawn(async move {
                if i % 2 == 0 {
                    // With a Content-Length.
                    let sent = client.post(&url).header("content-type", "application/json").body(big.to_vec()).send();
                    match sent.await {
                        Ok(response) => response.status().as_u16().to_string(),
                        Err(_) => "connection closed while sending".to_string(),
                    }
                } else {
                    chunked_upload(addr, 64, 64 << 10).await
                }
            })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::new();
    for task in tasks {
        *statuses.entry(task.await.unwrap()).or_insert(0) += 1;
    }
    let (rss_after, peak) = memory_kib(server.pid());
    eprintln!(
        "{requests} bodies of 4 MiB ({} MiB in all): {statuses:?}; server RSS {rss_before} KiB before, \
         {rss_after} KiB after, peak {peak} KiB",
        requests * 4
    );
    assert!(statuses.keys().all(|k| k == "413" || k.starts_with("connection")), "{statuses:?}");
    assert!(statuses.get("413").copied().unwrap_or(0) >= requests / 2, "most were answered 413: {statuses:?}");
    // 64 x 4 MiB = 256 MiB were sent; buffering them would show. What the server holds is
    // bounded by the 16 KiB body limit and hyper's read buffer per connection.
    assert!(peak < rss_before + 32 * 1024, "peak RSS grew by {} KiB", peak.saturating_sub(rss_before));
}

/// A body that arrives in pieces (chunked, each piece sent after a pause, so that the server
/// reads them apart) is read whole: the code in its last piece is checked, and accepted; so
/// is one sent a byte a chunk.
#[tokio::test]
async fn a_body_sent_in_pieces_is_read_whole() {
    let app = TestApp::builder().start().await;
    let secret = app.enroll("alice", None, None).await;
    let body = format!(r#"{{"username": "alice", "token": "{}"}}"#, app.totp(&secret, 0));
    let (first, rest) = body.split_at(10);
    let (middle, last) = rest.split_at(rest.len() - 4);
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let head = "POST /verify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    for piece in [first, middle, last] {
        stream.write_all(format!("{:x}\r\n{piece}\r\n", piece.len()).as_bytes()).await.unwrap();
        stream.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    stream.write_all(b"0\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.contains(r#""valid":true"#), "{answer}");

    // And in hundreds of one-byte chunks (the code is used now: a replay, 401).
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    for piece in body.as_bytes().chunks(1) {
        stream.write_all(format!("1\r\n{}\r\n", char::from(piece[0])).as_bytes()).await.unwrap();
    }
    stream.write_all(b"0\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 401 "), "{answer}");
    assert!(answer.contains(r#""error":"invalid_token""#), "{answer}");
}

/// POSTs `chunks` chunks of `size` bytes with `Transfer-Encoding: chunked` (no length known
/// in advance); returns the status the server answered, or that it closed the connection.
async fn chunked_upload(addr: SocketAddr, chunks: usize, size: usize) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = "POST /verify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut ok = stream.write_all(head.as_bytes()).await.is_ok();
    let chunk = format!("{size:x}\r\n{}\r\n", "a".repeat(size));
    for _ in 0..chunks {
        if !ok {
            break;
        }
        ok = stream.write_all(chunk.as_bytes()).await.is_ok();
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    match answer.strip_prefix("HTTP/1.1 ") {
        Some(rest) => rest.chars().take(3).collect(),
        None => "connection closed while sending".to_string(),
    }
}

/// Clients that give up mid-request (their connection closes while the server is still
/// reading the user or counting the failure, and hyper drops the request) leave nothing
/// behind: afterwards every database connection still gives the right answers. (On
/// PostgreSQL each statement also runs on a task of its own, `store::postgres`; this test
/// passes without that too, since sqlx drains a reply left unread before its next
/// statement, so the task is insurance, not what this shows.)
#[tokio::test]
async fn requests_abandoned_mid_statement_leave_the_database_connections_usable() {
    let app = TestApp::builder().envs(&[("MAX_FAILED_ATTEMPTS", "1000000"), ("RATE_LIMIT", "off")]).start().await;
    let secret = app.enroll("alice", None, None).await;
    // Patience from 0.2 to 50 ms, around how long 32 /verify at once take here (a debug
    // build): some clients leave before the server has their request, some while it works
    // on it, some get the answer.
    let (mut abandoned, mut answered) = (0, 0);
    for round in 0..20 {
        let tasks: Vec<_> = (0..32u64)
            .map(|i| {
                let patience = Duration::from_micros(200 + (round * 32 + i) * 997 % 50_000);
                let request = app
                    .client
                    .post(app.url("/verify"))
                    .timeout(patience)
                    .json(&json!({"username": "alice", "token": "000000"}));
                tokio::spawn(async move { request.send().await })
            })
            .collect();
        for task in tasks {
            match task.await.unwrap() {
                Ok(reply) => {
                    assert_eq!(reply.status(), 401);
                    answered += 1;
                }
                Err(_) => abandoned += 1,
            }
        }
    }
    assert!(abandoned > 0 && answered > 0, "{abandoned} abandoned, {answered} answered: the timeouts missed");

    // One request after another goes round every connection of the store.
    for _ in 0..64 {
        assert_eq!(app.verify("alice", "000000").await.status, 401);
    }
    let code = app.totp(&secret, 0);
    assert_eq!(app.verify("alice", &code).await.status, 200);
    assert_eq!(app.verify("alice", &code).await.status, 401, "a replay is refused");
    assert_eq!(app.get("/healthcheck").await.status, 200);
    println!(
        "{abandoned} of 640 clients gave up, {answered} got their answer; every connection answered right afterwards"
    );
}

#[tokio::test]
async fn a_client_still_sending_its_head_does_not_hold_up_shutdown_past_the_header_timeout() {
    let app = TestApp::builder().envs(&[("HTTP_HEADER_TIMEOUT_SECONDS", "1")]).start().await;
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"GET /healthcheck HTTP/1.1\r\nHost: 127.0.0.1\r\n").await.unwrap();
    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    idle.write_all(b"GET /healthcheck HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
    let mut buffer = [0u8; 1024];
    let n = idle.read(&mut buffer).await.unwrap();
    assert!(buffer[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buffer[..n]));
    let started = Instant::now();

    let stopped = tokio::time::timeout(Duration::from_secs(10), app.stop()).await;

    assert!(stopped.is_ok(), "shutdown waited for the head that never came");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "shutdown took {took:?} with a header timeout of 1 s");
    let mut buffer = [0u8; 16];
    assert!(matches!(slow.read(&mut buffer).await, Ok(0) | Err(_)), "the slow connection was closed");
}
