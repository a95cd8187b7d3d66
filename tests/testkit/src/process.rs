//! Child processes tied to the test process: they get a pipe on their standard input
//! and stop when it closes, so they die with the test process however it ends. A
//! program that does not watch its input itself (`tether run`) runs under
//! `supervise.py`, which does.

use std::{
    io::{BufRead, Read, Write},
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A running child process; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Supervised {
    name: String,
    child: Child,
    /// The process that signals go to, when the child is `supervise.py` running it.
    watched: Option<u32>,
}

impl Supervised {
    /// Starts `command` with a pipe on its standard input that stays open as long as
    /// this value (or the test process) lives.
    pub fn spawn(name: &str, command: &mut Command) -> std::io::Result<Self> {
        let child = command.stdin(Stdio::piped()).spawn()?;
        Ok(Self {
            name: name.to_owned(),
            child,
            watched: None,
        })
    }

    /// Starts `program args…` under `tests/testkit/supervise.py`, its output appended
    /// to `log`: when the test process ends, even by SIGKILL, the pipe to supervise.py
    /// closes and it stops the program. Signals and [`Supervised::id`] go to the
    /// program itself, and its exit status is the program's. `configure` sets the
    /// program's environment (supervise.py passes it on).
    pub fn spawn_watched(
        name: &str,
        program: &str,
        args: &[String],
        log: &Path,
        configure: impl FnOnce(&mut Command),
    ) -> std::io::Result<Self> {
        let mut command = Command::new("python3");
        command
            .arg(crate::repo_root().join("tests/testkit/supervise.py"))
            .arg(log)
            .arg(program)
            .args(args)
            .env("SUPERVISE_PRINT_PID", "1")
            .stdout(Stdio::piped());
        configure(&mut command);
        let mut supervisor = Self::spawn(name, &mut command)?;
        let mut first_line = String::new();
        let stdout = supervisor
            .child
            .stdout
            .take()
            .expect("supervise.py's output is piped");
        std::io::BufReader::new(stdout).read_line(&mut first_line)?;
        let pid = first_line.trim().parse().map_err(|_| {
            std::io::Error::other(format!(
                "supervise.py did not start {program} (it said {first_line:?}); see {}",
                log.display()
            ))
        })?;
        supervisor.watched = Some(pid);
        Ok(supervisor)
    }

    /// The process id (of the supervised program, for [`Supervised::spawn_watched`]).
    pub fn id(&self) -> u32 {
        self.watched.unwrap_or_else(|| self.child.id())
    }

    /// Mutable access to the child, for example to read its standard output.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Whether the process has exited, with its status if so.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends SIGTERM and waits up to `grace` for the process to exit, then SIGKILLs it.
    pub fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        if let Some(status) = self.try_wait() {
            return Some(status);
        }
        signal(self.id(), "TERM");
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not stop within {grace:?}; killing it", self.name);
        self.kill()
    }

    /// Kills the process with SIGKILL, as a node failure or the OOM killer would, and
    /// reaps it.
    pub fn kill(&mut self) -> Option<std::process::ExitStatus> {
        match self.watched {
            // supervise.py exits once the program is gone.
            Some(pid) => signal(pid, "KILL"),
            None => {
                let _ = self.child.kill();
            }
        }
        self.child.wait().ok()
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

/// Sends a signal (by name, e.g. `TERM`, `KILL`) to a process.
pub fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `timeout` with
/// `what` and the last `detail`.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return value,
            Err(detail) if Instant::now() >= deadline => {
                panic!("{what} did not happen within {timeout:?}: {detail}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A plain HTTP/1.0 GET on 127.0.0.1; the body of a 200 answer, or why not.
pub fn http_get(port: u16, path: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    if head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200") {
        Ok(body.to_owned())
    } else {
        Err(head.lines().next().unwrap_or_default().to_owned())
    }
}
