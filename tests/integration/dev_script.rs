//! `make dev`'s script (`scripts/dev.sh`) as a user runs it in a terminal: it brings
//! the examples to Ready on a control plane and moto of its own, behind the data plane
//! (`tether-data-plane`), and the `psql` command it prints connects with the database's
//! Secret; Ctrl-C, or a SIGTERM, stops every server it started (the database servers
//! included) before it exits; and it refuses to start next to a server that holds its
//! port.

use std::{
    collections::HashMap,
    fs::File,
    io::{BufRead, BufReader},
    net::{TcpListener, TcpStream},
    os::unix::process::{CommandExt, ExitStatusExt},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{OnceLock, mpsc},
    time::{Duration, Instant},
};

use tether_testkit::process::free_port;

const TETHER: &str = env!("CARGO_BIN_EXE_tether");

/// The testkit's `tether-data-plane`, built once per test run as `make dev` builds it
/// (with the workspace's features, so it reuses the test build's dependencies), in
/// the target directory of this test.
fn data_plane_binary() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        // <target>/<profile>/deps/integration-…, else where cargo builds by default.
        let test = std::env::current_exe().expect("the test's path");
        let target = test
            .parent()
            .filter(|deps| deps.ends_with("deps"))
            .and_then(|deps| deps.parent()?.parent())
            .map(Path::to_owned)
            .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from))
            .unwrap_or_else(|| tether_testkit::repo_root().join("target"));
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--locked",
                "--workspace",
                "--bin",
                "tether-data-plane",
            ])
            .arg("--target-dir")
            .arg(&target)
            .current_dir(tether_testkit::repo_root())
            .status()
            .expect("running cargo build");
        assert!(
            status.success(),
            "cargo build of tether-data-plane: {status}"
        );
        target.join("debug/tether-data-plane")
    })
}

/// `scripts/dev.sh` on free ports, with its state in `dir` and the binaries this test
/// run built (so it compiles nothing), in a process group of its own that it leads, as
/// a shell runs a job in a terminal.
fn dev_script(dir: &Path, ports: &DevPorts) -> Command {
    let mut command = Command::new("bash");
    command
        .arg(tether_testkit::repo_root().join("scripts/dev.sh"))
        .env("TETHER_BIN", TETHER)
        .env("TETHER_DATA_PLANE_BIN", data_plane_binary())
        .env("TETHER_DEV_MOTO_PORT", ports.moto.to_string())
        .env("TETHER_DEV_AWS_PORT", ports.aws.to_string())
        .env("TETHER_DEV_ADMIN_PORT", ports.admin.to_string())
        .env("TETHER_DEV_DIR", dir.join("dev"))
        .stdin(Stdio::null())
        .process_group(0);
    command
}

/// The ports of `make dev`'s servers.
struct DevPorts {
    moto: u16,
    /// The data plane's, which tether calls.
    aws: u16,
    admin: u16,
}

impl DevPorts {
    fn free() -> Self {
        Self {
            moto: free_port(),
            aws: free_port(),
            admin: free_port(),
        }
    }
}

/// How the test stops the script.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// Ctrl-C in a terminal: SIGINT to the whole foreground process group.
    CtrlC,
    /// SIGTERM to the script alone, as `make` passes on one it gets, or `kill` sends.
    Term,
}

#[test]
fn ctrl_c_on_make_dev_stops_every_server_it_started() {
    stops_every_server_it_started(Stop::CtrlC);
}

#[test]
fn sigterm_to_make_dev_stops_every_server_it_started() {
    stops_every_server_it_started(Stop::Term);
}

fn stops_every_server_it_started(stop: Stop) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ports = DevPorts::free();
    let stderr = dir.path().join("dev.stderr");
    let script = dev_script(dir.path(), &ports)
        .stdout(Stdio::piped())
        .stderr(File::create(&stderr).expect("creating the stderr file"))
        .spawn()
        .expect("starting scripts/dev.sh");
    let mut script = KillOnDrop::new(script, dir.path());
    let stdout = script.child.stdout.take().expect("piped stdout");
    let (lines, printed) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });

    let mut output = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(240);
    // Up to the end of the text that says what to try (Ctrl-C comes last).
    while !output
        .last()
        .is_some_and(|line: &String| line.starts_with("Ctrl-C stops"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match printed.recv_timeout(left) {
            Ok(line) => output.push(line),
            Err(_) => panic!(
                "scripts/dev.sh did not report the examples Ready within 240 s; it printed:\n{}\n\
                 on stderr:\n{}",
                output.join("\n"),
                std::fs::read_to_string(&stderr).unwrap_or_default(),
            ),
        }
    }

    // Every process the script started, as it runs now; and the servers' ports.
    let started = descendants(script.child.id());
    script.started.clone_from(&started);
    for server in [
        "tether-control-plane",
        "moto_server",
        TETHER,
        "tether-data-plane",
        "postgres -D",
    ] {
        assert!(
            started.values().any(|command| command.contains(server)),
            "{server} runs under the script: {started:#?}"
        );
    }
    let kubeconfig_path = dir.path().join("dev/kubeconfig");
    let kubeconfig = std::fs::read_to_string(&kubeconfig_path).expect("the kubeconfig");
    let api_port: u16 = kubeconfig
        .split("server: https://127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|port| port.parse().ok())
        .expect("the API server's port in the kubeconfig");
    // The psql command it printed, run in another shell as the text says.
    let psql = output
        .iter()
        .find(|line| line.trim_start().starts_with("psql "))
        .unwrap_or_else(|| {
            panic!(
                "scripts/dev.sh printed no psql command:\n{}",
                output.join("\n")
            )
        });
    let answer = shell(psql, &kubeconfig_path);
    assert!(
        answer
            .lines()
            .any(|line| line.split('|').map(str::trim).eq(["app", "orders"])),
        "{psql} answers the database's user and name: {answer}"
    );
    let database_port: u16 = shell(
        "kubectl get secret orders-db -o jsonpath='{.data.port}' | base64 -d",
        &kubeconfig_path,
    )
    .trim()
    .parse()
    .expect("the Secret's port");
    let ports = [
        ("moto", ports.moto),
        ("the data plane", ports.aws),
        ("the database", database_port),
        ("tether's admin server", ports.admin),
        ("the API server", api_port),
    ];
    for (server, port) in ports {
        assert!(listening(port), "{server} listens on {port}");
    }

    let interrupted = Instant::now();
    let (target, signal, number) = match stop {
        Stop::CtrlC => (format!("-{}", script.child.id()), "INT", 2),
        Stop::Term => (script.child.id().to_string(), "TERM", 15),
    };
    kill(&target, signal);
    let status = script.exit_within(Duration::from_secs(10), &format!("after {stop:?}"), &stderr);
    let exited = interrupted.elapsed();
    // Nothing may outlive the script: the prompt comes back only once all is stopped.
    let left: Vec<_> = started
        .iter()
        .filter(|(pid, _)| alive(**pid))
        .map(|(pid, command)| format!("{pid} {command}"))
        .collect();
    assert!(
        left.is_empty(),
        "still running when scripts/dev.sh exited, {exited:.1?} after {stop:?}: {left:#?}"
    );
    for (server, port) in ports {
        assert!(!listening(port), "{server} still listens on {port}");
    }
    assert_eq!(
        status.signal(),
        Some(number),
        "scripts/dev.sh dies of the SIG{signal} (so make reports it): {status}"
    );
    eprintln!(
        "scripts/dev.sh and the {} processes it started stopped {exited:.1?} after {stop:?}",
        started.len()
    );
}

#[test]
fn make_dev_refuses_to_start_when_a_server_holds_the_moto_port() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let stale = TcpListener::bind("127.0.0.1:0").expect("binding a port");
    let port = stale.local_addr().expect("its address").port();
    let stderr_path = dir.path().join("dev.stderr");
    let ports = DevPorts {
        moto: port,
        ..DevPorts::free()
    };
    let script = dev_script(dir.path(), &ports)
        .stdout(Stdio::null())
        .stderr(File::create(&stderr_path).expect("creating the stderr file"))
        .spawn()
        .expect("starting scripts/dev.sh");
    let status = KillOnDrop::new(script, dir.path()).exit_within(
        Duration::from_secs(60),
        "instead of refusing to start",
        &stderr_path,
    );
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert_eq!(status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains(&format!(
            "moto port 127.0.0.1:{port} is taken by process {}",
            std::process::id()
        )),
        "the message names the port and the process holding it: {stderr}"
    );
    assert!(
        !dir.path().join("dev").exists(),
        "nothing was started or set up"
    );
}

/// The processes below `root` (children, their children, …), by pid, with their
/// command lines.
fn descendants(root: u32) -> HashMap<u32, String> {
    let mut parents = HashMap::new();
    for entry in std::fs::read_dir("/proc").expect("reading /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<u32>().ok())
        else {
            continue;
        };
        parents.insert(pid, ppid);
    }
    let mut found = HashMap::new();
    for &pid in parents.keys() {
        let mut up = pid;
        while let Some(&parent) = parents.get(&up) {
            if parent == root {
                let command = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let command = String::from_utf8_lossy(&command).replace('\0', " ");
                found.insert(pid, command.trim_end().to_owned());
                break;
            }
            up = parent;
        }
    }
    found
}

/// What `command` prints, run by bash with `KUBECONFIG` at `kubeconfig`; fails with
/// its error output when it fails.
fn shell(command: &str, kubeconfig: &Path) -> String {
    let output = Command::new("bash")
        .args(["-c", command])
        .env("KUBECONFIG", kubeconfig)
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::null())
        .output()
        .expect("running bash");
    assert!(
        output.status.success(),
        "{command} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Whether process `pid` exists and has not exited (a zombie has).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}

fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// `kill -SIGNAL -- TARGET` (a pid, or `-pgid` for a process group).
fn kill(target: &str, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), "--", target])
        .stderr(Stdio::null())
        .status();
}

/// The script and what it started: killed when the test fails half-way, so that a
/// failure leaves no server behind, and the logs in its directory `dir` kept with the
/// test run's (the temporary directory goes).
struct KillOnDrop {
    child: Child,
    started: HashMap<u32, String>,
    dir: PathBuf,
}

impl KillOnDrop {
    fn new(child: Child, dir: &Path) -> Self {
        Self {
            child,
            started: HashMap::new(),
            dir: dir.to_owned(),
        }
    }

    /// Waits up to `limit` for the script to exit; fails saying it still runs `when`,
    /// with what it wrote to `stderr`.
    fn exit_within(&mut self, limit: Duration, when: &str, stderr: &Path) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the script") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "scripts/dev.sh still runs {limit:?} {when}; stderr:\n{}",
                std::fs::read_to_string(stderr).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let pid = self.child.id();
        if self.child.try_wait().ok().flatten().is_none() {
            self.started.extend(descendants(pid));
            // SIGTERM first: the script stops its servers itself.
            kill(&pid.to_string(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            kill(&format!("-{pid}"), "KILL");
            let _ = self.child.wait();
        }
        for (&pid, _) in self.started.iter().filter(|(pid, _)| alive(**pid)) {
            kill(&pid.to_string(), "KILL");
        }
        if std::thread::panicking() {
            for (log, name) in [
                ("dev.stderr", "stderr"),
                ("dev/control-plane.log", "control-plane"),
                ("dev/moto.log", "moto"),
                ("dev/tether.log", "tether"),
                ("dev/data-plane.log", "data-plane"),
            ] {
                let kept = tether_testkit::logs::file(&format!("dev-script-{name}"));
                if std::fs::copy(self.dir.join(log), &kept).is_ok() {
                    eprintln!("scripts/dev.sh's {log}: {}", kept.display());
                }
            }
        }
    }
}
