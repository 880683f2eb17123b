use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    mfa::cli::run(mfa::cli::Cli::parse())
}
