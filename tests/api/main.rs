//! The one integration-test binary (one link step, one run): every file is a module.

mod env_users;
mod helpers;
mod lockout;
mod malformed;
mod process;
mod rate_limit;
mod replay;
mod request_otp;
mod verify;
