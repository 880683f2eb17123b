//! A self-hosted multi-factor authentication service: RFC 6238 TOTP and one-time codes
//! delivered to a user's channels, behind the HTTP API of the original Flask design.

pub mod clock;
pub mod domain;
pub mod otp;
pub mod config;
pub mod crypto;
pub mod store;
pub mod lockout;
pub mod notify;
pub mod service;
pub mod users;
pub mod server;
pub mod telemetry;
pub mod app;
pub mod cli;
