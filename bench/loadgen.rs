//! The benchmark's load generator. Written here rather than using wrk or oha because the
//! `/verify` paths need a different body per request (a right code for a user not used
//! before), computed at send time.
//!
//!   loadgen users N FILE                      write N users (name,base32 secret,email) as CSV
//!   loadgen run --url URL --mode MODE [...]   load a server, print one JSON line of results
//!
//! Modes: health (GET), ceiling (POST a verify-shaped body), verify-right (each user once,
//! with the code for now), verify-wrong, verify-locked (user `locked`), request-otp,
//! send-email. Without --rate it saturates with --connections concurrent requests; with
//! --rate it offers that many requests a second and measures latency from when each was
//! due (so a stalled server is not hidden by the generator waiting for it).

#![allow(clippy::expect_used, clippy::panic)] // a measuring tool: a broken setup should stop it loudly

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use mfa::clock::{Clock, SystemClock};
use mfa::otp::{OtpParams, SecretBytes, totp_code};
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Users { count: usize, file: String },
    Run(RunArgs),
}

#[derive(Parser, Clone)]
struct RunArgs {
    #[arg(long)]
    url: String,
    #[arg(long)]
    mode: String,
    #[arg(long, default_value = "")]
    users: String,
    #[arg(long, default_value_t = 32)]
    connections: usize,
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    #[arg(long)]
    rate: Option<f64>,
    /// Index of the first user (verify-right: skip the users an earlier run used).
    #[arg(long, default_value_t = 0)]
    first: usize,
}

struct Workload {
    mode: String,
    users: Vec<(String, SecretBytes)>,
    next: AtomicUsize,
}

impl Workload {
    /// The next request's body, or `None` when the workload is used up.
    fn body(&self) -> Option<Value> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let user = |i: usize| &self.users[i % self.users.len()];
        Some(match self.mode.as_str() {
            "health" => Value::Null,
            "ceiling" => json!({"username": "dair", "token": "123456"}),
            "verify-right" => {
                let (name, secret) = self.users.get(i)?;
                json!({"username": name, "token": totp_code(secret, OtpParams::default(), SystemClock.now())})
            }
            "verify-wrong" => json!({"username": user(i).0, "token": "000000"}),
            "verify-locked" => json!({"username": "locked", "token": "000000"}),
            "request-otp" => json!({"username": user(i).0}),
            "send-email" => {
                json!({"channel": "email", "recipient": "bench@example.com", "message": "Your code is 123456"})
            }
            other => panic!("unknown mode {other}"),
        })
    }
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
}

async fn one(client: &reqwest::Client, url: &str, body: Value) -> Result<u16, ()> {
    let request = if body.is_null() { client.get(url) } else { client.post(url).json(&body) };
    let response = request.send().await.map_err(|e| report_first_error(&e))?;
    let status = response.status().as_u16();
    response.bytes().await.map_err(|e| report_first_error(&e))?;
    Ok(status)
}

/// Prints the first transport error, so a broken run says why.
fn report_first_error(e: &reqwest::Error) {
    static SEEN: std::sync::Once = std::sync::Once::new();
    SEEN.call_once(|| eprintln!("loadgen: first transport error: {e:?}"));
}

fn record(tally: &mut Tally, started: Instant, outcome: Result<u16, ()>) {
    tally.latencies_us.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
    match outcome {
        Ok(status) => *tally.statuses.entry(status).or_default() += 1,
        Err(()) => tally.errors += 1,
    }
}

async fn run(args: RunArgs) -> Value {
    let users: Vec<(String, SecretBytes)> = if args.users.is_empty() {
        Vec::new()
    } else {
        std::fs::read_to_string(&args.users)
            .expect("users file")
            .lines()
            .filter_map(|l| {
                let mut fields = l.split(',');
                Some((fields.next()?.to_string(), fields.next()?.to_string()))
            })
            .map(|(n, s)| (n, SecretBytes::from_base32(&s).expect("base32")))
            .collect()
    };
    let work = Arc::new(Workload { mode: args.mode.clone(), users, next: AtomicUsize::new(args.first) });
    let client = mfa::notify::http_client(Duration::from_secs(30)).expect("client");
    let deadline = Instant::now() + Duration::from_secs_f64(args.duration);
    let started = Instant::now();
    let mut tasks = Vec::new();
    match args.rate {
        None => {
            for _ in 0..args.connections {
                let (client, work, url) = (client.clone(), work.clone(), args.url.clone());
                tasks.push(tokio::spawn(async move {
                    let mut tally = Tally::default();
                    while Instant::now() < deadline {
                        let Some(body) = work.body() else { break };
                        let t = Instant::now();
                        let outcome = one(&client, &url, body).await;
                        record(&mut tally, t, outcome);
                    }
                    tally
                }));
            }
        }
        Some(rate) => {
            // Requests are due at a fixed pace; workers take them in order and measure from
            // the due time.
            let (tx, rx) = async_channel(args.connections * 4);
            let interval = Duration::from_secs_f64(1.0 / rate);
            tokio::spawn(async move {
                let mut due = Instant::now();
                while due < deadline {
                    tokio::time::sleep_until(due.into()).await;
                    if tx.send(due).await.is_err() {
                        break;
                    }
                    due += interval;
                }
            });
            for _ in 0..args.connections {
                let (client, work, url, rx) = (client.clone(), work.clone(), args.url.clone(), rx.clone());
                tasks.push(tokio::spawn(async move {
                    let mut tally = Tally::default();
                    while let Ok(due) = rx.recv().await {
                        let Some(body) = work.body() else { break };
                        let outcome = one(&client, &url, body).await;
                        record(&mut tally, due, outcome);
                    }
                    tally
                }));
            }
        }
    }
    let mut all = Tally::default();
    for task in tasks {
        let t = task.await.expect("worker");
        all.latencies_us.extend(t.latencies_us);
        all.errors += t.errors;
        for (s, n) in t.statuses {
            *all.statuses.entry(s).or_default() += n;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.latencies_us.sort_unstable();
    let pct = |p: f64| -> f64 {
        let v = &all.latencies_us;
        if v.is_empty() {
            return 0.0;
        }
        let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        f64::from(v[i.min(v.len() - 1)]) / 1000.0
    };
    let requests = all.latencies_us.len();
    json!({
        "mode": args.mode,
        "requests": requests,
        "rps": requests as f64 / elapsed,
        "p50_ms": pct(50.0), "p99_ms": pct(99.0), "p999_ms": pct(99.9),
        "errors": all.errors,
        "statuses": all.statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
    })
}

/// A small multi-consumer channel from tokio's primitives.
fn async_channel(bound: usize) -> (Sender, Receiver) {
    let (tx, rx) = tokio::sync::mpsc::channel(bound);
    (Sender(tx), Receiver(Arc::new(tokio::sync::Mutex::new(rx))))
}

struct Sender(tokio::sync::mpsc::Sender<Instant>);
impl Sender {
    async fn send(&self, v: Instant) -> Result<(), ()> {
        self.0.send(v).await.map_err(|_| ())
    }
}

#[derive(Clone)]
struct Receiver(Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Instant>>>);
impl Receiver {
    async fn recv(&self) -> Result<Instant, ()> {
        self.0.lock().await.recv().await.ok_or(())
    }
}

#[tokio::main]
async fn main() {
    match Args::parse().command {
        Cmd::Users { count, file } => {
            let mut out = String::with_capacity(count * 48);
            for i in 0..count {
                out.push_str(&format!("u{i},{},u{i}@example.com\n", SecretBytes::generate().to_base32()));
            }
            std::fs::write(file, out).expect("write users");
        }
        Cmd::Run(args) => println!("{}", run(args).await),
    }
}
