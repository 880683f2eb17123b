//! The benchmark's ceiling: a minimal axum server that parses the same JSON body as
//! `/verify` and answers a fixed JSON, served by plain `axum::serve`, as an outsider's bare
//! axum endpoint would be, on the same runtime and allocator as `mfa` and built with its
//! release profile. What it reaches under the same load generator is the most this machine
//! allows; `bench/run` prints every figure of ours as a ratio to it.
//!
//! Given a second address, it serves there the same two routes as `mfa` serves its own:
//! behind `mfa`'s layers (`mfa::http::with_common_layers`: the request id, the log span, the
//! metrics, the `Host` check, the body read, the request timeout, panic catching and
//! `mfa`'s error answers) and through `mfa`'s connection loop (`mfa::http::BoundRouter`:
//! the connection cap and the header, body and write timeouts). What those cost by
//! themselves, apart from what `mfa`'s handlers do.
//!
//! Run: cargo run --release --example ceiling -- 127.0.0.1:7000 [127.0.0.1:7001]

use std::sync::Arc;

use axum::routing::{get, post};
use axum::{Json, Router};
use mfa::api::MAX_BODY_BYTES;
use mfa::api::error::ApiError;
use mfa::http::ServiceState;
use mfa::metrics::Metrics;
use serde::Deserialize;
use serde_json::{Value, json};

/// The same allocator as `mfa`, so the ratio measures our code, not the allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Deserialize)]
struct VerifyLike {
    #[allow(dead_code)]
    username: String,
    #[allow(dead_code)]
    token: String,
}

/// The layered routes' state: none, but `mfa`'s error type for the layers' answers.
#[derive(Clone)]
struct Layered;

impl ServiceState for Layered {
    type Error = ApiError;
}

async fn verify(Json(_): Json<VerifyLike>) -> Json<Value> {
    Json(json!({"valid": true}))
}

async fn healthcheck() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7000".into());
    let bare = Router::new().route("/verify", post(verify)).route("/healthcheck", get(healthcheck));
    let listener = tokio::net::TcpListener::bind(parse(&addr)?).await?;
    eprintln!("ceiling listening on http://{}", listener.local_addr()?);
    let layered_addr = args.next();
    // `mfa`'s subscriber at `mfa`'s level in the benchmark: without any, tracing hands every
    // span to the `log` crate and evaluates its fields, which `mfa` never does. Held to the
    // end, as `mfa` holds its own.
    let _logs = layered_addr
        .is_some()
        .then(|| mfa::telemetry::init(mfa::config::LogFormat::Pretty, "warn", mfa::telemetry::LogWriter::Thread));
    if let Some(addr) = layered_addr {
        let routes = Router::<Layered>::new().route("/verify", post(verify)).route("/healthcheck", get(healthcheck));
        let metrics = Arc::new(Metrics::mfa());
        let layered = mfa::http::with_common_layers(routes, Layered, "ceiling", MAX_BODY_BYTES, metrics, &[]);
        let layered = mfa::http::BoundRouter::bind(parse(&addr)?, layered).await?;
        eprintln!("ceiling with mfa's layers listening on http://{}", layered.local_addr()?);
        tokio::spawn(async move {
            if let Err(e) = layered.run_until(std::future::pending()).await {
                eprintln!("ceiling with mfa's layers: {e}");
                std::process::exit(1);
            }
        });
    }
    axum::serve(listener, bare).await
}

fn parse(addr: &str) -> std::io::Result<std::net::SocketAddr> {
    addr.parse().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
}
