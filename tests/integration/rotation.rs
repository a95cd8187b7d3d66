//! Scheduled password rotation (`passwordRotation`) as an application lives through
//! it: with a real PostgreSQL server (engine `postgres`, for 5 minutes) or a real
//! MariaDB server (engine `mysql`, for 2.5 minutes) behind the emulated RDS (the fault
//! proxy's data plane), a client that opens a new connection twice a second with what
//! the Secret holds then, and a pooled client that keeps each connection 20 s, never
//! fail while the logins take turns every minute; each previous login is refused once
//! its grace period has run; tables made by one login stay usable by the other; and
//! the rotations cost no AWS call but the master password's, which rotates with
//! them. Also: bad specs are refused at apply time, and a
//! database tether cannot reach is named in `Synced` with nothing half-done.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use kube::Api;
use tether_api::conditions::{READY, SYNCED};
use tether_aws::rds::DBInstance;
use tokio_postgres::NoTls;

use crate::world::merge_patch;
use crate::{
    db_instance_controller::{database, secret_data, wait_secret},
    world::{World, condition},
};

/// How long the clients run against PostgreSQL.
const RUN: Duration = Duration::from_secs(300);
/// How long the clients run against MariaDB (two rotations).
const MYSQL_RUN: Duration = Duration::from_secs(150);
/// The schedule under test.
const ROTATION: &str = "  passwordRotation: {every: 1m, gracePeriod: 30s}\n";
/// The grace period of [`ROTATION`], and how much later a retired login is checked.
const GRACE: Duration = Duration::from_secs(30);
const RETIREMENT_SLACK: Duration = Duration::from_secs(20);

/// Waits until the Secret `name` holds the login `username`.
async fn wait_login(
    world: &World,
    name: &str,
    username: &str,
    what: &str,
) -> BTreeMap<String, String> {
    wait_secret(world, name, what, |data| {
        data.get("username").map(String::as_str) == Some(username)
    })
    .await
}

/// A session with what a connection Secret holds, as an application opens one.
async fn connect(data: &BTreeMap<String, String>) -> Result<tokio_postgres::Client, String> {
    let port: u16 = data["port"].parse().map_err(|_| "a port".to_owned())?;
    let (client, connection) = tokio_postgres::Config::new()
        .host(&data["host"])
        .port(port)
        .user(&data["username"])
        .password(&data["password"])
        .dbname(&data["dbname"])
        .connect_timeout(Duration::from_secs(5))
        .connect(NoTls)
        .await
        .map_err(|error| {
            let detail = match (error.as_db_error(), std::error::Error::source(&error)) {
                (Some(refusal), _) => refusal.message().to_owned(),
                (None, Some(cause)) => format!("{error}: {cause}"),
                (None, None) => error.to_string(),
            };
            format!("{} connecting: {detail}", data["username"])
        })?;
    tokio::spawn(connection);
    Ok(client)
}

/// [`connect`], tried for up to 30 s: the database's server starts in the background
/// while the instance becomes Ready.
async fn connect_eventually(
    data: &BTreeMap<String, String>,
) -> Result<tokio_postgres::Client, String> {
    let mut last = String::new();
    for _ in 0..60 {
        match connect(data).await {
            Ok(client) => return Ok(client),
            Err(error) => last = error,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(last)
}

/// The engine under test, and how its applications connect.
#[derive(Clone, Copy, Debug)]
enum Engine {
    Postgres,
    MySql,
}

/// An application's session with either engine.
enum Session {
    Postgres(tokio_postgres::Client),
    MySql(mysql_async::Conn),
}

impl Engine {
    /// The DBInstance's `engine`.
    fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::MySql => "mysql",
        }
    }

    /// A session with what a connection Secret holds, as an application opens one.
    async fn connect(self, data: &BTreeMap<String, String>) -> Result<Session, String> {
        match self {
            Self::Postgres => connect(data).await.map(Session::Postgres),
            Self::MySql => connect_mysql(data).await.map(Session::MySql),
        }
    }

    /// Whether a connection's `error` says that the server refused the login itself
    /// (a wrong password, or a login that may not log in), not anything else.
    fn refuses_login(self, error: &str) -> bool {
        match self {
            Self::Postgres => {
                error.contains("not permitted to log in")
                    || error.contains("password authentication failed")
            }
            Self::MySql => error.contains("Access denied") || error.contains("account is locked"),
        }
    }
}

impl Session {
    /// Runs `sql`, which returns no rows.
    async fn execute(&mut self, sql: &str) -> Result<(), String> {
        match self {
            Self::Postgres(client) => client
                .batch_execute(sql)
                .await
                .map_err(|error| error.to_string()),
            Self::MySql(connection) => {
                use mysql_async::prelude::Queryable;
                connection
                    .query_drop(sql)
                    .await
                    .map_err(|error| error.to_string())
            }
        }
    }

    /// The number of rows in `orders`.
    async fn count_orders(&mut self) -> Result<i64, String> {
        const COUNT: &str = "SELECT count(*) FROM orders";
        match self {
            Self::Postgres(client) => client
                .query_one(COUNT, &[])
                .await
                .map(|row| row.get(0))
                .map_err(|error| error.to_string()),
            Self::MySql(connection) => {
                use mysql_async::prelude::Queryable;
                connection
                    .query_first::<i64, _>(COUNT)
                    .await
                    .map(Option::unwrap_or_default)
                    .map_err(|error| error.to_string())
            }
        }
    }
}

/// A MySQL session with what a connection Secret holds, over TCP.
async fn connect_mysql(data: &BTreeMap<String, String>) -> Result<mysql_async::Conn, String> {
    let port: u16 = data["port"].parse().map_err(|_| "a port".to_owned())?;
    let options = mysql_async::OptsBuilder::default()
        .ip_or_hostname(data["host"].clone())
        .tcp_port(port)
        .user(Some(data["username"].clone()))
        .pass(Some(data["password"].clone()))
        .db_name(Some(data["dbname"].clone()))
        .prefer_socket(false);
    match tokio::time::timeout(Duration::from_secs(5), mysql_async::Conn::new(options)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(format!("{} connecting: {error}", data["username"])),
        Err(_) => Err(format!(
            "{} connecting: no answer within 5 s",
            data["username"]
        )),
    }
}

/// What the clients saw.
#[derive(Default)]
struct Seen {
    tried: usize,
    failures: Vec<String>,
    /// Every (username, password) the Secret held, with when it was first seen.
    logins: Vec<(String, String, Instant)>,
    /// Previous logins checked to be refused after their grace period.
    refused_after_grace: Vec<String>,
}

/// Opens a new connection twice a second for `run`, with what the Secret holds at
/// that moment, and writes a row through it; checks that each login the Secret held
/// before is refused once [`GRACE`] has run.
async fn fresh_connections(world: &World, engine: Engine, run: Duration, seen: Arc<Mutex<Seen>>) {
    let started = Instant::now();
    let mut row = 0;
    while started.elapsed() < run {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some(data) = secret_data(world, "orders-db").await else {
            seen.lock()
                .unwrap()
                .failures
                .push("the Secret is gone".to_owned());
            continue;
        };
        {
            let mut seen = seen.lock().unwrap();
            seen.tried += 1;
            if seen.logins.last().is_none_or(|(user, password, _)| {
                *user != data["username"] || *password != data["password"]
            }) {
                seen.logins.push((
                    data["username"].clone(),
                    data["password"].clone(),
                    Instant::now(),
                ));
            }
        }
        row += 1;
        let result = async {
            let mut session = engine.connect(&data).await?;
            session
                .execute(&format!("INSERT INTO orders VALUES ({row})"))
                .await
                .map_err(|error| format!("{} inserting: {error}", data["username"]))?;
            Ok::<_, String>(())
        }
        .await;
        if let Err(error) = result {
            seen.lock().unwrap().failures.push(error);
        }
        // Logins replaced more than the grace period (and some slack) ago.
        let retired: Vec<(String, String)> = {
            let seen = seen.lock().unwrap();
            seen.logins
                .windows(2)
                .filter(|pair| pair[1].2.elapsed() > GRACE + RETIREMENT_SLACK)
                .map(|pair| (pair[0].0.clone(), pair[0].1.clone()))
                .filter(|(user, password)| {
                    !seen
                        .refused_after_grace
                        .contains(&format!("{user}/{password}"))
                })
                .collect()
        };
        for (user, password) in retired {
            let mut old = data.clone();
            old.insert("username".to_owned(), user.clone());
            old.insert("password".to_owned(), password.clone());
            match engine.connect(&old).await {
                Ok(_) => seen.lock().unwrap().failures.push(format!(
                    "{user} still logs in with its old password after its grace period"
                )),
                Err(error) => {
                    assert!(
                        engine.refuses_login(&error),
                        "{user} is refused for a reason other than its login: {error}"
                    );
                    seen.lock()
                        .unwrap()
                        .refused_after_grace
                        .push(format!("{user}/{password}"));
                }
            }
        }
    }
}

/// Keeps one connection for 20 s, querying it twice a second, then opens the next with
/// what the Secret holds then, for `run`: a connection pool's life.
async fn pooled_connections(world: &World, engine: Engine, run: Duration, seen: Arc<Mutex<Seen>>) {
    let started = Instant::now();
    while started.elapsed() < run {
        let Some(data) = secret_data(world, "orders-db").await else {
            continue;
        };
        let mut session = match engine.connect(&data).await {
            Ok(client) => client,
            Err(error) => {
                seen.lock().unwrap().failures.push(format!("pool: {error}"));
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let opened = Instant::now();
        while opened.elapsed() < Duration::from_secs(20) && started.elapsed() < run {
            seen.lock().unwrap().tried += 1;
            if let Err(error) = session.count_orders().await {
                seen.lock()
                    .unwrap()
                    .failures
                    .push(format!("pool: {} querying: {error}", data["username"]));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

#[tokio::test]
async fn logins_rotating_every_minute_fail_no_connection_and_each_previous_one_is_retired() {
    rotating_logins_fail_no_connection(Engine::Postgres, RUN, 4).await;
}

#[tokio::test]
async fn mysql_logins_rotating_every_minute_fail_no_connection_and_each_previous_one_is_retired() {
    rotating_logins_fail_no_connection(Engine::MySql, MYSQL_RUN, 2).await;
}

/// The zero-downtime proof on `engine`: clients for `run`, at least `rotations`
/// rotations meanwhile.
async fn rotating_logins_fail_no_connection(engine: Engine, run: Duration, rotations: usize) {
    let world = World::start().await;
    world.proxy.serve_databases();
    let api: Api<DBInstance> = world.ns.api();
    world
        .apply(
            &database(&world, "orders", ROTATION)
                .replace("engine: postgres", &format!("engine: {}", engine.name())),
        )
        .await;
    world
        .wait_condition(&api, "orders", READY, "True", None)
        .await;
    let first = wait_login(&world, "orders-db", "app_a", "hold the login app_a").await;
    let master = wait_login(&world, "orders-db-master", "app", "hold the master user").await;
    assert!(
        first["password"] != master["password"],
        "the login is not the master user"
    );
    engine
        .connect(&first)
        .await
        .unwrap()
        .execute("CREATE TABLE orders (id int)")
        .await
        .expect("the first login creates a table");

    world.proxy.reset_counts();
    let seen = Arc::new(Mutex::new(Seen::default()));
    tokio::join!(
        fresh_connections(&world, engine, run, seen.clone()),
        pooled_connections(&world, engine, run, seen.clone())
    );
    let aws_calls = world.proxy.counts();

    // The clients have ended: what they saw, out of its lock.
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let users: Vec<&str> = seen.logins.iter().map(|(user, ..)| user.as_str()).collect();
    eprintln!(
        "rotation ({engine:?}): {} connections and queries tried in {} s, {} failed; logins in \
         turn: {users:?}; {} previous logins refused after their grace period; AWS calls \
         meanwhile: {aws_calls:?}",
        seen.tried,
        run.as_secs(),
        seen.failures.len(),
        seen.refused_after_grace.len(),
    );
    assert!(
        seen.failures.is_empty(),
        "{} of {} failed, the first: {:#?}\n{}",
        seen.failures.len(),
        seen.tried,
        &seen.failures[..seen.failures.len().min(5)],
        world.log_tail()
    );
    assert!(
        seen.logins.len() > rotations,
        "at least {rotations} rotations in {} s: {users:?}\n{}",
        run.as_secs(),
        world.log_tail()
    );
    assert!(
        users.windows(2).all(|pair| pair[0] != pair[1]),
        "the logins take turns: {users:?}"
    );
    assert!(
        seen.refused_after_grace.len() >= rotations - 1,
        "each previous login is refused after its grace period: {:?}",
        seen.refused_after_grace
    );
    // The logins cost no AWS call; the master password, one ModifyDBInstance each.
    let switches = seen.logins.len() - 1;
    let writes: BTreeMap<&String, &usize> = aws_calls
        .iter()
        .filter(|(operation, _)| {
            !operation.starts_with("Describe") && !operation.starts_with("List")
        })
        .collect();
    let modifies = aws_calls
        .get("ModifyDBInstance")
        .copied()
        .unwrap_or_default();
    assert!(
        writes.len() == 1 && (switches..=switches + 1).contains(&modifies),
        "one ModifyDBInstance (the master password) per rotation, nothing else: {aws_calls:?}"
    );
    let master_now = secret_data(&world, "orders-db-master").await.unwrap();
    assert!(
        master_now["password"] != master["password"],
        "the master password rotates too"
    );
    if let Err(error) = engine.connect(&master_now).await {
        panic!("the master Secret's password logs in: {error}");
    }
    let Err(refused) = engine.connect(&master).await else {
        panic!("the first master password is refused");
    };
    assert!(engine.refuses_login(&refused), "{refused}");

    // Both logins wrote rows into the table the first one made.
    let last = secret_data(&world, "orders-db").await.unwrap();
    let rows = engine
        .connect(&last)
        .await
        .unwrap()
        .count_orders()
        .await
        .unwrap();
    assert!(rows > 100, "rows written by both logins: {rows}");
    let object = api.get("orders").await.unwrap();
    let status = object
        .status
        .as_ref()
        .and_then(|status| status.password_rotation.clone())
        .expect("status.passwordRotation");
    assert_eq!(status.login.as_deref(), Some(last["username"].as_str()));
    assert!(status.next_rotation.unwrap().0 > status.last_rotation.unwrap().0);
    let log = world.tether.log();
    for (user, password, _) in &seen.logins {
        assert!(
            !log.contains(password.as_str()),
            "{user}'s password is in the log"
        );
    }
    for master in [&master, &master_now] {
        assert!(
            !log.contains(&master["password"]),
            "a master password is in the log"
        );
    }
    let events = world.events("orders").await;
    // One Event per reason, its series counting the repeats.
    let rotated: i32 = events
        .iter()
        .filter(|event| event.reason.as_deref() == Some("PasswordRotated"))
        .map(|event| event.series.as_ref().map_or(1, |series| series.count))
        .sum();
    assert!(
        rotated >= i32::try_from(rotations).unwrap(),
        "an Event per rotation: {rotated}"
    );
    world.finish().await;
}

#[tokio::test]
async fn rotate_now_switches_at_once_and_an_unreachable_database_is_named_without_a_half_done_secret()
 {
    let world = World::start().await;
    let api: Api<DBInstance> = world.ns.api();
    // No data plane: the endpoint moto gives answers nowhere.
    world.apply(&database(&world, "lost", ROTATION)).await;
    let object = world
        .wait_condition(&api, "lost", SYNCED, "False", Some("DatabaseUnreachable"))
        .await;
    let synced = condition(&object, SYNCED);
    let at_provider = object.status.as_ref().unwrap().at_provider.clone().unwrap();
    let address = format!(
        "{}:{}",
        at_provider.endpoint_address.unwrap(),
        at_provider.endpoint_port.unwrap()
    );
    assert!(synced.message.contains(&address), "{}", synced.message);
    assert!(
        secret_data(&world, "lost-db").await.is_none(),
        "no connection Secret before a login works"
    );
    let master = secret_data(&world, "lost-db-master").await.unwrap();
    assert!(!synced.message.contains(&master["password"]));

    world.proxy.serve_databases();
    world.apply(&database(&world, "orders", ROTATION)).await;
    let first = wait_login(&world, "orders-db", "app_a", "hold the login app_a").await;
    connect(&first).await.expect("the first login connects");
    let asked = Instant::now();
    // Within the grace period, a rotation waits for it to end.
    merge_patch(
        &api,
        "orders",
        serde_json::json!({"metadata": {"annotations": {"tether.dev/rotate-now": "1"}}}),
    )
    .await;
    let second = wait_login(&world, "orders-db", "app_b", "hold the login app_b").await;
    eprintln!(
        "rotate-now: the Secret switched {:.1?} after the annotation",
        asked.elapsed()
    );
    connect(&second).await.expect("the second login connects");
    world.finish().await;
}

#[tokio::test]
async fn bad_rotation_specs_are_refused_at_apply_time() {
    let world = World::start().await;
    // Each case: what it is, the DBInstance, and what the refusal says.
    let with = |extra: &str| (extra.to_owned(), database(&world, "bad", extra));
    let every_hour = database(&world, "bad", "  passwordRotation: {every: 1h}\n");
    for ((what, yaml), expected) in [
        (
            with("  passwordRotation: {every: 30s}\n"),
            "every must be at least 1m",
        ),
        (
            with("  passwordRotation: {every: 5m}\n"),
            "gracePeriod (default 10m) must be shorter than every",
        ),
        (with("  passwordRotation: {every: 1d}\n"), "should match"),
        (
            with("  passwordRotation: {every: 1h}\n  manageMasterUserPassword: true\n"),
            "passwordRotation needs a password tether generates",
        ),
        (
            with(
                "  passwordRotation: {every: 1h}\n  masterPassword: {secretKeyRef: {name: pw, key: password}}\n",
            ),
            "passwordRotation needs a password tether generates",
        ),
        (
            (
                "sqlserver-ex".to_owned(),
                every_hour.replace("engine: postgres", "engine: sqlserver-ex"),
            ),
            "engines postgres, mysql and mariadb only",
        ),
        (
            (
                "no database".to_owned(),
                every_hour.replace("  databaseName: orders\n", ""),
            ),
            "passwordRotation needs databaseName",
        ),
    ] {
        let refused = world.ns.apply(&yaml).await.expect_err(&what);
        assert!(refused.to_string().contains(expected), "{what}: {refused}");
    }
    // The example in examples/ is accepted as it is (a server-side dry run).
    let example = std::fs::read_to_string(
        tether_testkit::repo_root().join("examples/db-instance-rotated-local.yaml"),
    )
    .unwrap()
    .replace(
        "namespace: default",
        &format!("namespace: {}", world.ns.name),
    );
    tether_testkit::cluster::dry_run(&world.ns.client, Some(&world.ns.name), &example)
        .await
        .expect("examples/db-instance-rotated-local.yaml applies");
    world.finish().await;
}

/// Connects with what the Secret holds now; a refusal counts only when the Secret still
/// holds the same login afterwards (else the login read was retired in between, as
/// its grace period allows).
async fn connect_with_the_secret(world: &World) -> Result<String, String> {
    let mut last = String::new();
    for _ in 0..3 {
        let data = secret_data(world, "orders-db")
            .await
            .ok_or("the Secret is gone")?;
        match connect(&data).await {
            Ok(_) => return Ok(data["username"].clone()),
            Err(error) => last = error,
        }
        let now = secret_data(world, "orders-db").await.unwrap_or_default();
        if now.get("password") == data.get("password") {
            return Err(last);
        }
    }
    Err(last)
}

// Several threads: killing and restarting the controller blocks one, while the fault
// proxy on another keeps serving the controller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tether_killed_at_any_step_of_a_rotation_leaves_a_secret_that_connects() {
    let mut world = World::start().await;
    world.proxy.serve_databases();
    let api: Api<DBInstance> = world.ns.api();
    world
        .apply(&database(
            &world,
            "orders",
            "  passwordRotation: {every: 1m, gracePeriod: 3s}\n",
        ))
        .await;
    wait_login(&world, "orders-db", "app_a", "hold the login app_a").await;
    let mut logins = Vec::new();
    const ROUNDS: usize = 8;
    for round in 0..ROUNDS {
        merge_patch(
            &api,
            "orders",
            serde_json::json!({"metadata": {"annotations": {
                "tether.dev/rotate-now": round.to_string()
            }}}),
        )
        .await;
        // Somewhere in the grace period, the switch or the retirement that follows.
        tokio::time::sleep(Duration::from_millis(fastrand::u64(500..4500))).await;
        let tether = &mut world.tether;
        tokio::task::block_in_place(|| tether.kill_and_restart());
        let login = connect_with_the_secret(&world).await.unwrap_or_else(|error| {
            panic!(
                "after a SIGKILL in round {round}, the Secret's login does not connect: {error}\n{}",
                world.log_tail()
            )
        });
        logins.push(login);
    }
    // The last ask is answered, and what the Secret holds then connects.
    let last = wait_secret(&world, "orders-db", "answer the last rotate-now", |_| true).await;
    let answered = async {
        for _ in 0..60 {
            let secret = world
                .ns
                .api::<k8s_openapi::api::core::v1::Secret>()
                .get("orders-db")
                .await
                .unwrap();
            if secret
                .metadata
                .annotations
                .unwrap_or_default()
                .get("tether.dev/rotate-now-answered")
                == Some(&(ROUNDS - 1).to_string())
            {
                return true;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        false
    };
    assert!(
        answered.await,
        "the last rotate-now is answered\n{}",
        world.log_tail()
    );
    connect_with_the_secret(&world)
        .await
        .expect("the Secret connects at the end");
    let switched = logins.windows(2).filter(|pair| pair[0] != pair[1]).count();
    eprintln!(
        "rotation under SIGKILL: logins after each of {ROUNDS} kills: {logins:?} ({switched} switches \
         between kills); last login {}",
        last["username"]
    );
    assert!(
        switched >= 2,
        "rotations went on between the kills: {logins:?}"
    );
    world.finish().await;
}

#[tokio::test]
async fn rotation_turned_on_then_off_keeps_the_master_password_and_a_secret_that_connects() {
    let world = World::start().await;
    world.proxy.serve_databases();
    let api: Api<DBInstance> = world.ns.api();
    world.apply(&database(&world, "orders", "")).await;
    world
        .wait_condition(&api, "orders", READY, "True", None)
        .await;
    let before = wait_login(&world, "orders-db", "app", "hold the master user").await;
    connect_eventually(&before)
        .await
        .expect("the master user connects");
    world.proxy.reset_counts();

    world.apply(&database(&world, "orders", ROTATION)).await;
    let rotated = wait_login(&world, "orders-db", "app_a", "hold the login app_a").await;
    connect(&rotated).await.expect("the rotated login connects");
    let master = secret_data(&world, "orders-db-master").await.unwrap();
    assert!(
        master["password"] == before["password"],
        "turning rotation on keeps the master password"
    );
    connect(&before)
        .await
        .expect("what applications held before still connects");
    assert_eq!(
        world.proxy.count("ModifyDBInstance"),
        0,
        "no new master password: {:?}",
        world.proxy.counts()
    );

    // Off again: the connection Secret holds the master credentials once more.
    world.apply(&database(&world, "orders", "")).await;
    let after = wait_login(&world, "orders-db", "app", "hold the master user again").await;
    assert!(
        after["password"] == before["password"],
        "turning rotation off keeps the master password"
    );
    connect(&after)
        .await
        .expect("the master user connects again");
    world.finish().await;
}
