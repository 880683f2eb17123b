use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc: a request allocates and frees a few dozen small
/// buffers (HTTP, JSON, SQLite rows), and in the CPU profile glibc's `malloc`/`free` were
/// about a tenth of the server's time (docs/BENCHMARKS.md, finding 9).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    mfa::cli::run(mfa::cli::Cli::parse())
}
