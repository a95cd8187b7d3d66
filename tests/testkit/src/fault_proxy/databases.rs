//! RDS's data plane for tests ([`FaultProxy::serve_databases`]): a real database
//! server on 127.0.0.1 for each DB instance created through the proxy, PostgreSQL 15
//! for engine `postgres` and MariaDB 10.11 for `mysql` and `mariadb`, with the master
//! user, password and database name of the RDS calls, and the DB instance answers
//! rewritten to point their `Endpoint` at it. It stands in for the data plane only:
//! moto still holds the instance, its status and everything else.
//!
//! One server per instance (its own data directory, port and users), so two instances'
//! master users never collide. Both engines go the same way: `CreateDBInstance` picks
//! a free port, answers at once with it, and starts the server in the background
//! (initialize a data directory, start the server, then create the master user and
//! database over the server's unix socket); a `ModifyDBInstance` with
//! `MasterUserPassword` waits for that and sets the new password before its answer is
//! passed on; `DeleteDBInstance` stops the server. The bootstrap superuser (`rdsadmin`
//! on PostgreSQL as on RDS, `root` on MariaDB) is trusted on the unix socket only; TCP
//! on 127.0.0.1 asks for the password (`scram-sha-256` on PostgreSQL, MariaDB's default
//! `mysql_native_password`), so a wrong one is refused. The master user can create
//! databases and users, as RDS's can (on MariaDB: all privileges, with grant option).
//! Not played: other engines, a rename (`NewDBInstanceIdentifier`), a password
//! managed in Secrets Manager (`ManageMasterUserPassword`), TLS and IAM authentication.
//!
//! Neither server runs as root. When the tests run as root, they run as an
//! unprivileged user (PostgreSQL as `postgres`, which its Debian packages create;
//! MariaDB as `nobody`, as its core packages create no user) through `setpriv`, which
//! changes user and then executes the program in place, so the process the testkit
//! supervises and signals is the server itself (`runuser` would stay in between as a
//! parent); the server's temporary directory is given to that user. As any other user
//! they run as that user. The server runs under `supervise.py`
//! ([`Supervised::spawn_watched`]), so it stops with the test process however that
//! ends; dropping it (with the proxy, or on `DeleteDBInstance`) stops it at once
//! (SIGQUIT for PostgreSQL, SIGKILL for MariaDB: the data is thrown away).
//!
//! Passwords never reach a command line, a log or an error: psql reads them from its
//! environment (`\getenv`) and quotes them itself; the `mariadb` client reads its
//! statements, the quoted password among them, from its standard input; neither server
//! logs statements.

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

/// The superuser `mariadb-install-db` creates, without a password, kept on the unix
/// socket only (`root@localhost`; the install's `root` users for TCP are dropped).
const MARIADB_BOOTSTRAP_SUPERUSER: &str = "root";

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
    #[error("{client} failed ({status}): {message}")]
    Client {
        client: &'static str,
        status: std::process::ExitStatus,
        message: String,
    },
    #[error("{server} did not accept connections within {timeout:?}; see {log}")]
    NotReady {
        server: &'static str,
        timeout: Duration,
        log: String,
    },
    #[error(
        "the data plane needs PostgreSQL 15's {0} on PATH (Debian: apt-get install \
         postgresql-15, then add /usr/lib/postgresql/15/bin to PATH; `make setup` does both)"
    )]
    Missing(String),
    #[error(
        "the data plane needs MariaDB's {0} on PATH or in /usr/sbin (Debian: apt-get \
         install mariadb-server-core mariadb-client-core; `make setup` does it)"
    )]
    MissingMariaDb(String),
}

impl FaultProxy {
    /// Serves RDS's data plane from now on: each `postgres`, `mysql` or `mariadb` DB
    /// instance created through the proxy gets a real PostgreSQL or MariaDB server on
    /// 127.0.0.1, with the call's
    /// `MasterUsername`, `MasterUserPassword` and `DBName` (without `DBName`, only the
    /// `postgres` database every PostgreSQL server has, and no database on MariaDB, as
    /// on RDS); a `ModifyDBInstance` with
    /// `MasterUserPassword` changes the password before its answer passes; the answers
    /// of `CreateDBInstance`, `ModifyDBInstance` and `DescribeDBInstances` carry the
    /// server's address and port in `Endpoint`. Other engines are left to the emulator.
    pub fn serve_databases(&self) {
        if let Err(error) = self.try_serve_databases() {
            panic!("{error}");
        }
    }

    /// [`FaultProxy::serve_databases`], failing when PostgreSQL's `initdb`, `postgres`
    /// or `psql`, or MariaDB's `mariadb-install-db`, `mariadbd` or `mariadb` cannot be
    /// found.
    pub fn try_serve_databases(&self) -> Result<(), DataPlaneError> {
        let missing = |programs: &[&str]| {
            programs
                .iter()
                .filter(|program| find_program(program).is_none())
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        };
        let postgres = missing(&["initdb", "postgres", "psql", "pg_isready"]);
        if !postgres.is_empty() {
            return Err(DataPlaneError::Missing(postgres));
        }
        let mariadb = missing(&["mariadb-install-db", "mariadbd", "mariadb"]);
        if !mariadb.is_empty() {
            return Err(DataPlaneError::MissingMariaDb(mariadb));
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
    server: Arc<tokio::sync::Mutex<DatabaseServer>>,
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
            "CreateDBInstance" => {
                let Some(engine) = field("Engine").as_deref().and_then(Engine::serving) else {
                    return;
                };
                let master = MasterUser {
                    username: field("MasterUsername")
                        .unwrap_or_else(|| engine.default_master_username().to_owned()),
                    password: field("MasterUserPassword").unwrap_or_default(),
                    database_name: field("DBName"),
                };
                let port = free_port();
                let server = Arc::new(tokio::sync::Mutex::new(DatabaseServer::new(
                    engine,
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

    fn served_server(&self, identifier: &str) -> Option<Arc<tokio::sync::Mutex<DatabaseServer>>> {
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

/// The database server behind a DB instance, by its RDS engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Engine {
    /// PostgreSQL 15, for `postgres`.
    Postgres,
    /// MariaDB 10.11, for `mysql` and `mariadb` (MySQL's protocol and SQL for users,
    /// passwords and grants).
    MariaDb,
}

impl Engine {
    /// The server for RDS engine `engine`, if the data plane serves it.
    fn serving(engine: &str) -> Option<Self> {
        match engine {
            "postgres" => Some(Self::Postgres),
            "mysql" | "mariadb" => Some(Self::MariaDb),
            _ => None,
        }
    }

    /// The name of the server program, for messages and log files.
    fn server(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::MariaDb => "mariadbd",
        }
    }

    /// The master user without `MasterUsername` (RDS requires one; moto does not).
    fn default_master_username(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::MariaDb => "admin",
        }
    }

    /// The unprivileged user the server runs as when the tests run as root, and its
    /// group.
    fn server_user(self) -> (&'static str, &'static str) {
        match self {
            Self::Postgres => ("postgres", "postgres"),
            Self::MariaDb => ("nobody", "nogroup"),
        }
    }
}

/// One database server in a temporary directory of its own (data directory, unix
/// socket); stopped when dropped.
pub(super) struct DatabaseServer {
    engine: Engine,
    identifier: String,
    port: u16,
    /// The master user, once the server has it.
    master_username: Option<String>,
    /// The running server (dropped before `directory`).
    process: Option<Supervised>,
    directory: tempfile::TempDir,
    log: PathBuf,
}

impl DatabaseServer {
    fn new(engine: Engine, identifier: &str, port: u16) -> Self {
        let directory = tempfile::Builder::new()
            .prefix(&format!("tether-{}-", engine.server()))
            .tempdir()
            .expect("creating a temporary directory");
        Self {
            engine,
            identifier: identifier.to_owned(),
            port,
            master_username: None,
            process: None,
            directory,
            log: crate::logs::file(&format!("{}-{identifier}", engine.server())),
        }
    }

    /// The data directory.
    fn data(&self) -> PathBuf {
        self.directory.path().join("data")
    }

    /// MariaDB's unix socket.
    fn mariadb_socket(&self) -> PathBuf {
        self.directory.path().join("mariadbd.sock")
    }

    /// Initializes the data directory, starts the server, then creates the master user
    /// and database; prints how long each part took.
    fn start(&mut self, master: &MasterUser) -> Result<(), DataPlaneError> {
        let began = Instant::now();
        if running_as_root() {
            let (user, group) = self.engine.server_user();
            run(
                "chown",
                Command::new("chown")
                    .arg(format!("{user}:{group}"))
                    .arg(self.directory.path()),
                &self.log,
            )?;
        }
        match self.engine {
            Engine::Postgres => self.initialize_postgres()?,
            Engine::MariaDb => self.initialize_mariadb()?,
        }
        let initialized = began.elapsed();
        let (program, arguments) = match self.engine {
            Engine::Postgres => ("postgres", self.postgres_settings()),
            Engine::MariaDb => ("mariadbd", self.mariadb_settings()),
        };
        let mut command_line = server_user_prefix(self.engine);
        command_line.push(
            find_program(program)
                .map_or_else(|| program.to_owned(), |path| path.display().to_string()),
        );
        command_line.extend(arguments);
        let (program, arguments) = command_line.split_first().expect("a program");
        let process = Supervised::spawn_watched(
            &format!("{} for {}", self.engine.server(), self.identifier),
            program,
            arguments,
            &self.log,
            |command| {
                command.env("LC_ALL", "C");
            },
        )
        .map_err(|source| DataPlaneError::Io {
            what: format!("starting {}", self.engine.server()),
            source,
        })?;
        self.process = Some(process);
        self.wait_ready(Duration::from_secs(30))?;
        let started = began.elapsed();
        match self.engine {
            Engine::Postgres => self.bootstrap_sql(
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
            )?,
            Engine::MariaDb => {
                let account = mariadb_account(&master.username);
                let mut sql = format!(
                    "DELETE FROM mysql.global_priv WHERE User = '{MARIADB_BOOTSTRAP_SUPERUSER}' \
                     AND Host <> 'localhost';\n\
                     FLUSH PRIVILEGES;\n\
                     CREATE USER {account} IDENTIFIED BY {password};\n\
                     GRANT ALL PRIVILEGES ON *.* TO {account} WITH GRANT OPTION;\n",
                    password = mariadb_literal(&master.password),
                );
                if let Some(database) = &master.database_name {
                    sql.push_str(&format!(
                        "CREATE DATABASE {};\n",
                        mariadb_identifier(database)
                    ));
                }
                self.mariadb_sql(&sql, &master.password)?;
            }
        }
        self.master_username = Some(master.username.clone());
        eprintln!(
            "tether-testkit: data plane: {} for DB instance {} on {DATABASE_ADDRESS}:{} \
             in {:?} (data directory {initialized:?}, server start {:?}, master user {:?})",
            self.engine.server(),
            self.identifier,
            self.port,
            began.elapsed(),
            started - initialized,
            began.elapsed() - started,
        );
        Ok(())
    }

    /// `initdb`.
    fn initialize_postgres(&self) -> Result<(), DataPlaneError> {
        run(
            "initdb",
            as_server_user(self.engine, "initdb")
                .arg("--pgdata")
                .arg(self.data())
                .args([
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
        )
    }

    /// `mariadb-install-db`: the system tables, `root@localhost` without a password.
    fn initialize_mariadb(&self) -> Result<(), DataPlaneError> {
        run(
            "mariadb-install-db",
            as_server_user(self.engine, "mariadb-install-db")
                .arg("--no-defaults")
                .arg(format!("--datadir={}", self.data().display()))
                .args([
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    "--skip-name-resolve",
                    "--innodb-flush-log-at-trx-commit=0",
                    "--innodb-buffer-pool-size=16M",
                    "--innodb-log-file-size=8M",
                ]),
            &self.log,
        )
    }

    fn postgres_settings(&self) -> Vec<String> {
        let settings = [
            format!("listen_addresses={DATABASE_ADDRESS}"),
            format!("port={}", self.port),
            format!(
                "unix_socket_directories={}",
                self.directory.path().display()
            ),
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
        let mut arguments = vec!["-D".to_owned(), self.data().display().to_string()];
        for setting in settings {
            arguments.push("-c".to_owned());
            arguments.push(setting);
        }
        arguments
    }

    fn mariadb_settings(&self) -> Vec<String> {
        // No general or slow query log (they are off unless asked for): statements may
        // carry a password. The error log goes to standard error, i.e. the server's log.
        vec![
            "--no-defaults".to_owned(),
            format!("--datadir={}", self.data().display()),
            format!("--socket={}", self.mariadb_socket().display()),
            format!(
                "--pid-file={}",
                self.directory.path().join("mariadbd.pid").display()
            ),
            format!("--bind-address={DATABASE_ADDRESS}"),
            format!("--port={}", self.port),
            "--skip-name-resolve".to_owned(),
            "--skip-log-bin".to_owned(),
            "--innodb-flush-log-at-trx-commit=0".to_owned(),
            "--innodb-buffer-pool-size=16M".to_owned(),
            "--innodb-log-file-size=8M".to_owned(),
            "--max-connections=50".to_owned(),
        ]
    }

    /// Sets the master user's password, as `ModifyDBInstance` does.
    fn set_password(&self, password: &str) -> Result<(), DataPlaneError> {
        let Some(username) = &self.master_username else {
            // The server did not start; its error was printed.
            return Ok(());
        };
        match self.engine {
            Engine::Postgres => self.bootstrap_sql(
                "ALTER ROLE :\"username\" PASSWORD :'password';\n",
                username,
                password,
                None,
            ),
            Engine::MariaDb => self.mariadb_sql(
                &format!(
                    "ALTER USER {} IDENTIFIED BY {};\n",
                    mariadb_account(username),
                    mariadb_literal(password)
                ),
                password,
            ),
        }
    }

    /// Whether the server accepts connections on its unix socket.
    fn accepts_connections(&self) -> bool {
        let mut probe = match self.engine {
            Engine::Postgres => {
                let mut probe = Command::new("pg_isready");
                probe
                    .args([
                        "--quiet",
                        "--dbname=postgres",
                        "--username",
                        BOOTSTRAP_SUPERUSER,
                    ])
                    .arg("--host")
                    .arg(self.directory.path())
                    .arg(format!("--port={}", self.port));
                probe
            }
            Engine::MariaDb => {
                let mut probe = self.mariadb_client();
                probe.arg("--execute=SELECT 1");
                probe
            }
        };
        probe
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// Polls the unix socket until the server accepts connections.
    fn wait_ready(&mut self, timeout: Duration) -> Result<(), DataPlaneError> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.accepts_connections() {
                return Ok(());
            }
            let exited = self
                .process
                .as_mut()
                .and_then(|process| process.try_wait())
                .is_some();
            if exited || Instant::now() >= deadline {
                return Err(DataPlaneError::NotReady {
                    server: self.engine.server(),
                    timeout,
                    log: self.log.display().to_string(),
                });
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
        .env(PASSWORD_VARIABLE, password);
        client_script(
            "psql",
            &mut psql,
            &format!("\\getenv password {PASSWORD_VARIABLE}\n{sql}"),
            password,
        )
    }

    /// The `mariadb` client as the bootstrap superuser over the unix socket.
    fn mariadb_client(&self) -> Command {
        let mut client = Command::new("mariadb");
        client
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.mariadb_socket().display()))
            .arg(format!("--user={MARIADB_BOOTSTRAP_SUPERUSER}"))
            .arg("--batch");
        client
    }

    /// Runs `sql`, in which `password` may be quoted, as the bootstrap superuser over
    /// the unix socket (from the client's standard input, never its command line).
    fn mariadb_sql(&self, sql: &str, password: &str) -> Result<(), DataPlaneError> {
        client_script("mariadb", &mut self.mariadb_client(), sql, password)
    }
}

/// Runs a database client that reads `script` from its standard input; its first error
/// line, without `password`, on failure.
fn client_script(
    client: &'static str,
    command: &mut Command,
    script: &str,
    password: &str,
) -> Result<(), DataPlaneError> {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let what = |source| DataPlaneError::Io {
        what: format!("running {client}"),
        source,
    };
    let mut child = command.spawn().map_err(what)?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("the client's input is piped");
        stdin.write_all(script.as_bytes()).map_err(what)?;
    }
    let output = child.wait_with_output().map_err(what)?;
    if output.status.success() {
        return Ok(());
    }
    // Terse errors name no statement; the first line is enough.
    let mut message = String::from_utf8_lossy(&output.stderr)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    if !password.is_empty() {
        message = message.replace(password, "<password>");
    }
    Err(DataPlaneError::Client {
        client,
        status: output.status,
        message,
    })
}

/// `text` as a MariaDB string literal (MariaDB's default `sql_mode`, in which a
/// backslash escapes).
fn mariadb_literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `name` as a MariaDB identifier.
fn mariadb_identifier(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// The MariaDB account of user `name` from any host.
fn mariadb_account(name: &str) -> String {
    format!("{}@'%'", mariadb_literal(name))
}

impl Drop for DatabaseServer {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            // Immediate shutdown: the data is thrown away with the directory.
            signal(
                process.id(),
                match self.engine {
                    Engine::Postgres => "QUIT",
                    Engine::MariaDb => "KILL",
                },
            );
            process.stop(Duration::from_secs(10));
        }
    }
}

/// Whether this process runs as root (the owner of `/proc/self` is its user).
fn running_as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| std::fs::metadata("/proc/self").is_ok_and(|metadata| metadata.uid() == 0))
}

/// What runs a program as `engine`'s server user when this process is root: `setpriv`,
/// which executes it in place; nothing otherwise.
fn server_user_prefix(engine: Engine) -> Vec<String> {
    if running_as_root() {
        let (user, group) = engine.server_user();
        vec![
            "setpriv".to_owned(),
            format!("--reuid={user}"),
            format!("--regid={group}"),
            "--clear-groups".to_owned(),
            "--".to_owned(),
        ]
    } else {
        Vec::new()
    }
}

/// Where `program` is: an executable file in a directory of `PATH`, else in
/// `/usr/sbin` (where Debian puts `mariadbd`, and which is not on every user's `PATH`).
fn find_program(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|directory| directory.join(program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|found| found.is_file() && found.permissions().mode() & 0o111 != 0)
        })
}

/// A command running `program` as `engine`'s server user.
fn as_server_user(engine: Engine, program: &str) -> Command {
    let mut prefix = server_user_prefix(engine);
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
