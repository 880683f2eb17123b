//! A self-hosted multi-factor authentication service: RFC 6238 TOTP and one-time codes
//! delivered to a user's channels, behind the HTTP API of the original Flask design.
//! docs/architecture.md draws how these modules depend on each other.

pub mod alerts;
pub mod api;
pub mod backup;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod files;
pub mod http;
#[cfg(any(test, fuzzing))]
pub mod input_checks;
pub mod keyring;
pub mod lockout;
pub mod metrics;
pub mod notify;
pub mod openapi;
pub mod otp;
pub mod outbox;
pub mod startup;
pub mod store;
#[cfg(test)]
mod strategies;
pub mod telemetry;
pub mod users;
pub mod verify;
