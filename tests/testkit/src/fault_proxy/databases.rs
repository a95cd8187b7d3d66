//! RDS's data plane for tests ([`FaultProxy::serve_databases`]): a real PostgreSQL
//! server on 127.0.0.1 for each `postgres` DB instance created through the proxy, with
//! the master user, password and database name of the RDS calls, and the DB instance
//! answers rewritten to point their `Endpoint` at it. It stands in for the data plane
//! only: moto still holds the instance, its status and everything else.
//!
//! One server per instance (its own data directory, port and roles), so two instances'
//! master users never collide. `CreateDBInstance` picks a free port, answers at once
//! with it, and starts the server in the background (`initdb`, then `postgres`, then
//! the master role and database over the server's unix socket); a
//! `ModifyDBInstance` with `MasterUserPassword` waits for that and sets the new
//! password before its answer is passed on; `DeleteDBInstance` stops the server. The
//! bootstrap superuser is `rdsadmin` (as on RDS) and trusted on the unix socket only;
//! TCP on 127.0.0.1 asks for the password (`scram-sha-256`), so a wrong one is
//! refused. The master role can create databases and roles, as RDS's can.
//! Not played: other engines, a rename (`NewDBInstanceIdentifier`), a password
//! managed in Secrets Manager (`ManageMasterUserPassword`), TLS and IAM authentication.
//!
//! PostgreSQL refuses to run as root. When the tests run as root, `initdb` and
//! `postgres` run as the `postgres` user (the Debian packages create it) through
//! `setpriv`, which changes user and then executes the program in place, so the
//! process the testkit supervises and signals is the server itself (`runuser` would
//! stay in between as a parent); the server's temporary directory is given to that
//! user. As any other user they run as that user. The server runs under
//! `supervise.py` ([`Supervised::spawn_watched`]), so it stops with the test process
//! however that ends; dropping it (with the proxy, or on `DeleteDBInstance`) stops it
//! at once with SIGQUIT.
//!
//! Passwords never reach a command line, a log or an error: psql reads them from its
//! environment (`\getenv`) and quotes them itself, and the server logs no statement.

use std::{
    collections::HashMap,
    ops::Range,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use http::HeaderMap;

use super::{
    FaultProxy, Forwarder, form_values,
    hiding::{descendants_at, element_text, readable_xml},
};
use crate::process::{Supervised, free_port, signal};

/// The address every served database listens on.
pub const DATABASE_ADDRESS: &str = "127.0.0.1";

/// The superuser `initdb` creates, trusted on the unix socket only.
const BOOTSTRAP_SUPERUSER: &str = "rdsadmin";

/// The environment variable psql reads a password from (`\getenv`).
const PASSWORD_VARIABLE: &str = "TETHER_TESTKIT_MASTER_PASSWORD";

/// Why a database server could not be started or changed.
#[derive(Debug, thiserror::Error)]
pub enum DataPlaneError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{program} failed ({status}); see {log}")]
    Failed {
        program: &'static str,
        status: std::process::ExitStatus,
        log: String,
    },
    #[error("psql failed ({status}): {message}")]
    Psql {
        status: std::process::ExitStatus,
        message: String,
    },
    #[error("postgres did not accept connections within {0:?}; see {1}")]
    NotReady(Duration, String),
    #[error(
        "the data plane needs PostgreSQL 15's {0} on PATH (Debian: apt-get install \
         postgresql-15, then add /usr/lib/postgresql/15/bin to PATH)"
    )]
    Missing(String),
}

impl FaultProxy {
    /// Serves RDS's data plane from now on: each `postgres` DB instance created through
    /// the proxy gets a real PostgreSQL server on 127.0.0.1, with the call's
    /// `MasterUsername`, `MasterUserPassword` and `DBName` (without `DBName`, only the
    /// `postgres` database every server has, as on RDS); a `ModifyDBInstance` with
    /// `MasterUserPassword` changes the password before its answer passes; the answers
    /// of `CreateDBInstance`, `ModifyDBInstance` and `DescribeDBInstances` carry the
    /// server's address and port in `Endpoint`. Other engines are left to the emulator.
    pub fn serve_databases(&self) {
        if let Err(error) = self.try_serve_databases() {
            panic!("{error}");
        }
    }

    /// [`FaultProxy::serve_databases`], failing when PostgreSQL's `initdb`, `postgres`
    /// or `psql` is not on `PATH`.
    pub fn try_serve_databases(&self) -> Result<(), DataPlaneError> {
        let missing: Vec<&str> = ["initdb", "postgres", "psql"]
            .into_iter()
            .filter(|program| !on_path(program))
            .collect();
        if !missing.is_empty() {
            return Err(DataPlaneError::Missing(missing.join(", ")));
        }
        self.state
            .lock()
            .unwrap()
            .databases
            .get_or_insert_with(HashMap::new);
        Ok(())
    }

    /// The port of the server of DB instance `identifier`, if it has one.
    pub fn database_port(&self, identifier: &str) -> Option<u16> {
        let state = self.state.lock().unwrap();
        let servers = state.databases.as_ref()?;
        servers
            .get(&identifier.to_lowercase())
            .map(|server| server.port)
    }
}

/// A served DB instance: its port (fixed when it was created) and its server, locked
/// while it starts or changes.
pub(super) struct ServedDatabase {
    port: u16,
    server: Arc<tokio::sync::Mutex<PostgresServer>>,
}

/// What a `CreateDBInstance` asks of the master user.
struct MasterUser {
    username: String,
    password: String,
    database_name: Option<String>,
}

impl Forwarder {
    /// Applies a successful RDS call to the data plane, when it is served: starts,
    /// changes or stops the server of the instance the call names.
    pub(super) async fn apply_to_databases(&self, operation: &str, request: &[u8]) {
        if self.state.lock().unwrap().databases.is_none() {
            return;
        }
        let field = |name: &str| form_values(request, |key| key == name).pop();
        let Some(identifier) = field("DBInstanceIdentifier").map(|id| id.to_lowercase()) else {
            return;
        };
        match operation {
            "CreateDBInstance" if field("Engine").as_deref() == Some("postgres") => {
                let master = MasterUser {
                    username: field("MasterUsername").unwrap_or_else(|| "postgres".to_owned()),
                    password: field("MasterUserPassword").unwrap_or_default(),
                    database_name: field("DBName"),
                };
                let port = free_port();
                let server = Arc::new(tokio::sync::Mutex::new(PostgresServer::new(
                    &identifier,
                    port,
                )));
                // Locked before the answer passes, so a later ModifyDBInstance waits
                // until the server is up.
                let mut started = server.clone().lock_owned().await;
                {
                    let mut state = self.state.lock().unwrap();
                    let Some(servers) = state.databases.as_mut() else {
                        return;
                    };
                    servers.insert(identifier, ServedDatabase { port, server });
                }
                tokio::task::spawn_blocking(move || {
                    if let Err(error) = started.start(&master) {
                        eprintln!("tether-testkit: data plane: {error}");
                    }
                });
            }
            "ModifyDBInstance" => {
                let Some(password) = field("MasterUserPassword") else {
                    return;
                };
                let Some(server) = self.served_server(&identifier) else {
                    return;
                };
                let server = server.lock_owned().await;
                let changed = tokio::task::spawn_blocking(move || server.set_password(&password))
                    .await
                    .expect("setting the password does not panic");
                if let Err(error) = changed {
                    eprintln!("tether-testkit: data plane: {error}");
                }
            }
            "DeleteDBInstance" => {
                let removed = {
                    let mut state = self.state.lock().unwrap();
                    state
                        .databases
                        .as_mut()
                        .and_then(|servers| servers.remove(&identifier))
                };
                if let Some(served) = removed {
                    // Dropping it stops the server (blocking).
                    tokio::task::spawn_blocking(move || drop(served));
                }
            }
            _ => {}
        }
    }

    fn served_server(&self, identifier: &str) -> Option<Arc<tokio::sync::Mutex<PostgresServer>>> {
        let state = self.state.lock().unwrap();
        let servers = state.databases.as_ref()?;
        servers.get(identifier).map(|served| served.server.clone())
    }

    /// The answer of a DB instance call with the served instances' `Endpoint` pointing
    /// at their servers; `None` to pass it unchanged.
    pub(super) fn with_database_endpoints(
        &self,
        operation: &str,
        headers: &HeaderMap,
        answer: &[u8],
    ) -> Option<String> {
        if !matches!(
            operation,
            "CreateDBInstance" | "ModifyDBInstance" | "DescribeDBInstances"
        ) {
            return None;
        }
        let ports: HashMap<String, u16> = {
            let state = self.state.lock().unwrap();
            let servers = state.databases.as_ref()?;
            servers
                .iter()
                .map(|(identifier, served)| (identifier.clone(), served.port))
                .collect()
        };
        if ports.is_empty() {
            return None;
        }
        let answer = readable_xml(headers, answer)?;
        match point_endpoints(answer, &ports) {
            Ok(rewritten) => rewritten,
            Err(error) => {
                tracing::warn!(%error, "fault proxy: unreadable DB instance answer, passed unchanged");
                None
            }
        }
    }
}

/// `answer` with the `Endpoint` of every `DBInstance` whose identifier (lower case) is
/// in `ports` holding `127.0.0.1` and its port (an `Endpoint` is added after the
/// identifier where there is none); `None` when it names none of them.
fn point_endpoints(
    answer: &str,
    ports: &HashMap<String, u16>,
) -> Result<Option<String>, roxmltree::Error> {
    let document = roxmltree::Document::parse(answer)?;
    let mut edits: Vec<(Range<usize>, String)> = Vec::new();
    let instances = document
        .descendants()
        .filter(|node| node.is_element() && node.tag_name().name() == "DBInstance");
    for instance in instances {
        let Some(identifier_element) = descendants_at(instance, &["DBInstanceIdentifier"])
            .into_iter()
            .next()
        else {
            continue;
        };
        let Some(port) = element_text(identifier_element)
            .and_then(|identifier| ports.get(&identifier.to_lowercase()))
        else {
            continue;
        };
        let address = format!("<Address>{DATABASE_ADDRESS}</Address>");
        let port_element = format!("<Port>{port}</Port>");
        match descendants_at(instance, &["Endpoint"]).into_iter().next() {
            Some(endpoint) => {
                let address_elements = descendants_at(endpoint, &["Address"]);
                let port_elements = descendants_at(endpoint, &["Port"]);
                match (address_elements.first(), port_elements.first()) {
                    (Some(old_address), Some(old_port)) => {
                        edits.push((old_address.range(), address));
                        edits.push((old_port.range(), port_element));
                    }
                    _ => edits.push((
                        endpoint.range(),
                        format!("<Endpoint>{address}{port_element}</Endpoint>"),
                    )),
                }
            }
            None => {
                let after = identifier_element.range().end;
                edits.push((
                    after..after,
                    format!("<Endpoint>{address}{port_element}</Endpoint>"),
                ));
            }
        }
    }
    if edits.is_empty() {
        return Ok(None);
    }
    edits.sort_by_key(|(range, _)| range.start);
    let mut rewritten = String::with_capacity(answer.len());
    let mut position = 0;
    for (range, text) in edits {
        rewritten.push_str(&answer[position..range.start]);
        rewritten.push_str(&text);
        position = range.end;
    }
    rewritten.push_str(&answer[position..]);
    Ok(Some(rewritten))
}

/// One PostgreSQL server in a temporary directory of its own (data directory, unix
/// socket); stopped when dropped.
pub(super) struct PostgresServer {
    identifier: String,
    port: u16,
    /// The master user, once the server has it.
    master_username: Option<String>,
    /// The running server (dropped before `directory`).
    process: Option<Supervised>,
    directory: tempfile::TempDir,
    log: PathBuf,
}

impl PostgresServer {
    fn new(identifier: &str, port: u16) -> Self {
        let directory = tempfile::Builder::new()
            .prefix("tether-postgres-")
            .tempdir()
            .expect("creating a temporary directory");
        Self {
            identifier: identifier.to_owned(),
            port,
            master_username: None,
            process: None,
            directory,
            log: crate::logs::file(&format!("postgres-{identifier}")),
        }
    }

    /// `initdb`, `postgres`, then the master role and database; prints how long the
    /// first two took.
    fn start(&mut self, master: &MasterUser) -> Result<(), DataPlaneError> {
        let began = Instant::now();
        let socket_directory = self.directory.path().to_owned();
        if running_as_root() {
            run(
                "chown",
                Command::new("chown")
                    .arg(format!("{SERVER_USER}:"))
                    .arg(&socket_directory),
                &self.log,
            )?;
        }
        let data = socket_directory.join("data");
        run(
            "initdb",
            as_server_user("initdb").arg("--pgdata").arg(&data).args([
                "--username",
                BOOTSTRAP_SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            ]),
            &self.log,
        )?;
        let initialized = began.elapsed();
        let settings = [
            format!("listen_addresses={DATABASE_ADDRESS}"),
            format!("port={}", self.port),
            format!("unix_socket_directories={}", socket_directory.display()),
            "fsync=off".to_owned(),
            "synchronous_commit=off".to_owned(),
            "full_page_writes=off".to_owned(),
            "shared_buffers=16MB".to_owned(),
            "max_connections=20".to_owned(),
            "password_encryption=scram-sha-256".to_owned(),
            // No statement in the log: they may carry a password.
            "log_min_error_statement=panic".to_owned(),
            "log_statement=none".to_owned(),
        ];
        let mut arguments = server_user_prefix();
        arguments.push("postgres".to_owned());
        arguments.push("-D".to_owned());
        arguments.push(data.display().to_string());
        for setting in settings {
            arguments.push("-c".to_owned());
            arguments.push(setting);
        }
        let (program, arguments) = arguments.split_first().expect("a program");
        let process = Supervised::spawn_watched(
            &format!("postgres for {}", self.identifier),
            program,
            arguments,
            &self.log,
            |command| {
                command.env("LC_ALL", "C");
            },
        )
        .map_err(|source| DataPlaneError::Io {
            what: "starting postgres".to_owned(),
            source,
        })?;
        self.process = Some(process);
        self.wait_ready(Duration::from_secs(30))?;
        let started = began.elapsed();
        self.bootstrap_sql(
            &format!(
                "CREATE ROLE :\"username\" LOGIN CREATEDB CREATEROLE PASSWORD :'password';\n{}",
                match &master.database_name {
                    Some(_) => "CREATE DATABASE :\"database\" OWNER :\"username\";\n",
                    None => "",
                }
            ),
            &master.username,
            &master.password,
            master.database_name.as_deref(),
        )?;
        self.master_username = Some(master.username.clone());
        eprintln!(
            "tether-testkit: data plane: postgres for DB instance {} on {DATABASE_ADDRESS}:{} \
             in {:?} (initdb {initialized:?}, server start {:?}, master user {:?})",
            self.identifier,
            self.port,
            began.elapsed(),
            started - initialized,
            began.elapsed() - started,
        );
        Ok(())
    }

    /// Sets the master user's password, as `ModifyDBInstance` does.
    fn set_password(&self, password: &str) -> Result<(), DataPlaneError> {
        let Some(username) = &self.master_username else {
            // The server did not start; its error was printed.
            return Ok(());
        };
        self.bootstrap_sql(
            "ALTER ROLE :\"username\" PASSWORD :'password';\n",
            username,
            password,
            None,
        )
    }

    /// Polls the unix socket until the server accepts connections.
    fn wait_ready(&mut self, timeout: Duration) -> Result<(), DataPlaneError> {
        let deadline = Instant::now() + timeout;
        loop {
            let ready = Command::new("pg_isready")
                .args([
                    "--quiet",
                    "--dbname=postgres",
                    "--username",
                    BOOTSTRAP_SUPERUSER,
                ])
                .arg("--host")
                .arg(self.directory.path())
                .arg(format!("--port={}", self.port))
                .status()
                .is_ok_and(|status| status.success());
            if ready {
                return Ok(());
            }
            let exited = self
                .process
                .as_mut()
                .and_then(|process| process.try_wait())
                .is_some();
            if exited || Instant::now() >= deadline {
                return Err(DataPlaneError::NotReady(
                    timeout,
                    self.log.display().to_string(),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `sql` as the bootstrap superuser over the unix socket, with psql variables
    /// `username`, `database` and `password` (read from psql's environment, never from
    /// its command line).
    fn bootstrap_sql(
        &self,
        sql: &str,
        username: &str,
        password: &str,
        database: Option<&str>,
    ) -> Result<(), DataPlaneError> {
        let mut psql = Command::new("psql");
        psql.args([
            "--no-psqlrc",
            "--quiet",
            "--set=ON_ERROR_STOP=1",
            "--set=VERBOSITY=terse",
        ])
        .args(["--dbname=postgres", "--username", BOOTSTRAP_SUPERUSER])
        .arg("--host")
        .arg(self.directory.path())
        .arg(format!("--port={}", self.port))
        .arg(format!("--set=username={username}"))
        .arg(format!("--set=database={}", database.unwrap_or_default()))
        .env(PASSWORD_VARIABLE, password)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let what = |source| DataPlaneError::Io {
            what: "running psql".to_owned(),
            source,
        };
        let mut child = psql.spawn().map_err(what)?;
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("psql's input is piped");
            write!(stdin, "\\getenv password {PASSWORD_VARIABLE}\n{sql}").map_err(what)?;
        }
        let output = child.wait_with_output().map_err(what)?;
        if output.status.success() {
            return Ok(());
        }
        // Terse errors name no statement; the first line is enough.
        let message = String::from_utf8_lossy(&output.stderr)
            .lines()
            .next()
            .unwrap_or_default()
            .replace(password, "<password>");
        Err(DataPlaneError::Psql {
            status: output.status,
            message,
        })
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            // Immediate shutdown: the data is thrown away with the directory.
            signal(process.id(), "QUIT");
            process.stop(Duration::from_secs(10));
        }
    }
}

/// The user PostgreSQL runs as when the tests run as root.
const SERVER_USER: &str = "postgres";

/// Whether this process runs as root (the owner of `/proc/self` is its user).
fn running_as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| std::fs::metadata("/proc/self").is_ok_and(|metadata| metadata.uid() == 0))
}

/// What runs a program as [`SERVER_USER`] when this process is root: `setpriv`, which
/// executes it in place; nothing otherwise.
fn server_user_prefix() -> Vec<String> {
    if running_as_root() {
        [
            "setpriv",
            "--reuid=postgres",
            "--regid=postgres",
            "--clear-groups",
            "--",
        ]
        .map(str::to_owned)
        .to_vec()
    } else {
        Vec::new()
    }
}

/// Whether `program` is an executable file in a directory of `PATH`.
fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|directory| {
            std::fs::metadata(directory.join(program))
                .is_ok_and(|found| found.is_file() && found.permissions().mode() & 0o111 != 0)
        })
    })
}

/// A command running `program` as the server's user.
fn as_server_user(program: &str) -> Command {
    let mut prefix = server_user_prefix();
    prefix.push(program.to_owned());
    let mut command = Command::new(&prefix[0]);
    command.args(&prefix[1..]).env("LC_ALL", "C");
    command
}

/// Runs `command` to its end, its output appended to `log`.
fn run(program: &'static str, command: &mut Command, log: &Path) -> Result<(), DataPlaneError> {
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|source| DataPlaneError::Io {
                what: format!("opening {}", log.display()),
                source,
            })
    };
    let status = command
        .stdin(Stdio::null())
        .stdout(open()?)
        .stderr(open()?)
        .status()
        .map_err(|source| DataPlaneError::Io {
            what: format!("running {program}"),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(DataPlaneError::Failed {
            program,
            status,
            log: log.display().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports() -> HashMap<String, u16> {
        HashMap::from([("orders".to_owned(), 54321)])
    }

    #[test]
    fn a_served_instance_s_endpoint_points_at_its_server() {
        let answer = r#"<DescribeDBInstancesResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><DescribeDBInstancesResult><DBInstances><DBInstance><DBInstanceIdentifier>Orders</DBInstanceIdentifier><Endpoint><Address>orders.aaaaaaaaaa.us-east-1.rds.amazonaws.com</Address>
  <Port>5432</Port><HostedZoneId>Z2R2ITUGPM61AM</HostedZoneId></Endpoint></DBInstance><DBInstance><DBInstanceIdentifier>other</DBInstanceIdentifier><Endpoint><Address>other.example</Address><Port>5432</Port></Endpoint></DBInstance></DBInstances></DescribeDBInstancesResult></DescribeDBInstancesResponse>"#;
        let rewritten = point_endpoints(answer, &ports()).unwrap().unwrap();
        assert_eq!(
            rewritten,
            answer
                .replace("orders.aaaaaaaaaa.us-east-1.rds.amazonaws.com", "127.0.0.1")
                .replacen("<Port>5432</Port>", "<Port>54321</Port>", 1),
            "only the served instance changes, the rest byte for byte"
        );
    }

    #[test]
    fn an_answer_without_an_endpoint_gets_one() {
        let answer = "<CreateDBInstanceResponse><CreateDBInstanceResult><DBInstance><DBInstanceIdentifier>orders</DBInstanceIdentifier><Engine>postgres</Engine></DBInstance></CreateDBInstanceResult></CreateDBInstanceResponse>";
        assert_eq!(
            point_endpoints(answer, &ports()).unwrap().unwrap(),
            answer.replace(
                "</DBInstanceIdentifier>",
                "</DBInstanceIdentifier><Endpoint><Address>127.0.0.1</Address><Port>54321</Port></Endpoint>"
            )
        );
    }

    #[test]
    fn an_answer_naming_no_served_instance_passes_unchanged() {
        let answer = "<DescribeDBInstancesResponse><DescribeDBInstancesResult><DBInstances><DBInstance><DBInstanceIdentifier>other</DBInstanceIdentifier></DBInstance></DBInstances></DescribeDBInstancesResult></DescribeDBInstancesResponse>";
        assert_eq!(point_endpoints(answer, &ports()).unwrap(), None);
    }
}
