//! The `tether` binary: parses the command line and hands over to the runtime.

use std::process::ExitCode;

fn main() -> ExitCode {
    tether::cli::main()
}
