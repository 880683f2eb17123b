//! A self-hosted multi-factor authentication service: RFC 6238 TOTP and one-time codes
//! delivered to a user's channels, behind the HTTP API of the original Flask design.

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod files;
#[cfg(any(test, fuzzing))]
pub mod harness;
pub mod http;
pub mod lockout;
pub mod metrics;
pub mod notify;
pub mod openapi;
pub mod otp;
#[cfg(test)]
mod proptests;
pub mod server;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod users;
