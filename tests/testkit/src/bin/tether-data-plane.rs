//! `make dev`'s stand-in for RDS's data plane: the testkit's fault proxy on 127.0.0.1
//! in front of an AWS emulator, serving a real PostgreSQL server for each `postgres`
//! DB instance and a real MariaDB server for each `mysql` or `mariadb` one created
//! through it ([`FaultProxy::serve_databases`]), so that the
//! connection Secrets tether writes connect. It injects no fault.
//!
//! It runs until its standard input closes (the script that started it ended) or it
//! gets SIGTERM or SIGINT; then it stops the database servers and exits. The servers'
//! logs go to `$TETHER_TESTKIT_LOG_DIR` (else a run directory under
//! `$TETHER_CACHE/logs`).

use std::process::ExitCode;

use clap::Parser;
use tether_testkit::FaultProxy;
use tokio::signal::unix::{SignalKind, signal};

/// The fault proxy with RDS's data plane, in front of an AWS emulator.
#[derive(Parser)]
#[command(name = "tether-data-plane")]
struct Arguments {
    /// The port to listen on, on 127.0.0.1.
    #[arg(long)]
    port: u16,
    /// The emulator to forward AWS calls to, e.g. `http://127.0.0.1:5000`.
    #[arg(long)]
    upstream: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let arguments = Arguments::parse();
    let proxy = match FaultProxy::start_on(&arguments.upstream, arguments.port).await {
        Ok(proxy) => proxy,
        Err(error) => {
            eprintln!(
                "tether-data-plane: listening on 127.0.0.1:{}: {error}",
                arguments.port
            );
            return ExitCode::FAILURE;
        }
    };
    if let Err(error) = proxy.try_serve_databases() {
        eprintln!("tether-data-plane: {error}");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "tether-data-plane: listening on {}, forwarding to {}",
        proxy.endpoint(),
        arguments.upstream
    );
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("tether-data-plane: cannot handle SIGTERM and SIGINT");
        return ExitCode::FAILURE;
    };
    // A thread of its own, not tokio's stdin, whose blocking read would hold up the
    // runtime's shutdown after a signal.
    let (closed, input_closed) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        let _ = closed.send(());
    });
    let why = tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
        _ = input_closed => "its standard input closed",
    };
    eprintln!("tether-data-plane: stopping the database servers ({why})");
    // Dropping the proxy stops the servers, and waits for them: not on a runtime
    // thread.
    let stopped = tokio::task::spawn_blocking(move || drop(proxy)).await;
    if stopped.is_err() {
        return ExitCode::FAILURE;
    }
    eprintln!("tether-data-plane: stopped");
    ExitCode::SUCCESS
}
