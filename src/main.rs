//! The `tether` binary: parses the command line and hands over to the runtime.

use std::process::ExitCode;

/// With `--features dhat-heap`, every allocation goes through dhat's profiler.
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

fn main() -> ExitCode {
    #[cfg(feature = "dhat-heap")]
    tether::memory::profile::start();
    tether::cli::main()
}
