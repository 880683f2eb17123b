//! The one integration-test binary (one link step, one run): every file is a module.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod admin;
mod alerts;
mod authenticators;
mod backup;
mod brute_force;
mod connections;
mod deploy;
mod env_users;
mod exposure;
mod faults;
mod flood;
mod helpers;
mod hostile;
mod instances;
mod integration;
mod kdf;
mod lockout;
mod malformed;
mod metrics;
mod notify_api;
mod notify_email;
mod notify_telegram;
mod openapi;
mod outbox;
mod process;
mod proxy;
mod rate_limit;
mod replay;
mod request_otp;
mod secrets;
mod support;
mod telegram_link;
mod timing;
mod upgrade;
mod verify;
