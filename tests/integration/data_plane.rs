//! Connection Secrets that connect: with the fault proxy serving RDS's data plane (a
//! real PostgreSQL server per `postgres` DB instance and a real MariaDB server per
//! `mysql` one, `FaultProxy::serve_databases`), a DBInstance's Secret is used the way an
//! application uses it, with `psql` or a MySQL client and the Secret's `uri`. `db_instance_controller::a_deleted_secret_comes_back_with_a_working_password`
//! connects with a generated password and with the one that replaces it.

use std::{collections::BTreeMap, time::Duration};

use crate::{
    db_instance_controller::{apply_ready_database, database},
    world::World,
};

/// What a connection answered (`current_user current_database`), or psql's error.
async fn query_with_uri(uri: &str, password_override: Option<&str>) -> Result<String, String> {
    let (without_password, password) = split_password(uri);
    // The password goes in psql's environment, never on its command line.
    let output = tokio::process::Command::new("psql")
        .args(["--no-psqlrc", "--no-align", "--tuples-only", "--command"])
        .arg("select current_user || ' ' || current_database()")
        .arg("--dbname")
        .arg(&without_password)
        .env("PGPASSWORD", password_override.unwrap_or(&password))
        .env("PGCONNECT_TIMEOUT", "5")
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|error| format!("running psql: {error}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// `scheme://user:password@rest` as `scheme://user@rest` and the percent-decoded
/// password.
fn split_password(uri: &str) -> (String, String) {
    let (scheme, rest) = uri.split_once("://").expect("a URI with a scheme");
    let (user_info, host_and_path) = rest.split_once('@').expect("a URI with user info");
    let (user, password) = user_info.split_once(':').expect("a URI with a password");
    (
        format!("{scheme}://{user}@{host_and_path}"),
        percent_encoding::percent_decode_str(password)
            .decode_utf8()
            .expect("a UTF-8 password")
            .into_owned(),
    )
}

/// Connects with the Secret's `uri` until the server answers (it starts in the
/// background while the instance becomes Ready, and a new password is applied after
/// the Secret holds it), or panics after 60 s with psql's last error.
pub(crate) async fn connect_with(world: &World, data: &BTreeMap<String, String>) -> String {
    connect_until(world, "the Secret's uri", &data["uri"], None).await
}

/// Connects with the Secret's `host`, `port`, `username` and `dbname` and `password`
/// (which a Secret without a password, such as an observed database's, leaves to the
/// user), as [`connect_with`] does.
pub(crate) async fn connect_with_fields(
    world: &World,
    data: &BTreeMap<String, String>,
    password: &str,
) -> String {
    let uri = format!(
        "postgresql://{}:@{}:{}/{}",
        data["username"], data["host"], data["port"], data["dbname"]
    );
    connect_until(world, "the Secret's fields", &uri, Some(password)).await
}

async fn connect_until(
    world: &World,
    what: &str,
    uri: &str,
    password_override: Option<&str>,
) -> String {
    let mut last = String::new();
    for _ in 0..120 {
        match query_with_uri(uri, password_override).await {
            Ok(answer) => return answer,
            Err(error) => last = error,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!(
        "{what} did not connect within 60 s: {last}\n{}",
        world.log_tail()
    );
}

/// Asserts that the server refuses `password` for the Secret's user (and not for any
/// other reason, such as a server that is down).
pub(crate) async fn assert_refused(data: &BTreeMap<String, String>, password: &str, what: &str) {
    let error = query_with_uri(&data["uri"], Some(password))
        .await
        .expect_err(what);
    assert!(
        error.contains("password authentication failed"),
        "{what}: refused for another reason: {error}"
    );
}

#[tokio::test]
async fn a_postgres_database_without_a_database_name_connects_to_postgres() {
    let world = World::start().await;
    world.proxy.serve_databases();
    let yaml = database(&world, "plain", "").replace("  databaseName: orders\n", "");
    let data = apply_ready_database(&world, "plain", &yaml).await;
    assert_eq!(data["dbname"], "postgres");
    assert_eq!(connect_with(&world, &data).await, "app postgres");
    world.finish().await;
}

/// What a MySQL connection with `uri` answered (`CURRENT_USER() DATABASE()`), or the
/// client's error.
async fn query_mysql_with_uri(uri: &str) -> Result<String, String> {
    use mysql_async::prelude::Queryable;
    let options = mysql_async::OptsBuilder::from_opts(
        mysql_async::Opts::from_url(uri).map_err(|error| format!("the uri: {error}"))?,
    )
    .prefer_socket(false);
    let mut connection =
        tokio::time::timeout(Duration::from_secs(5), mysql_async::Conn::new(options))
            .await
            .map_err(|_| "no answer within 5 s".to_owned())?
            .map_err(|error| error.to_string())?;
    let (user, database): (String, String) = connection
        .query_first("SELECT CURRENT_USER(), DATABASE()")
        .await
        .map_err(|error| error.to_string())?
        .ok_or("no row")?;
    Ok(format!("{user} {database}"))
}

#[tokio::test]
async fn a_mysql_database_s_secret_connects_to_its_database_and_a_wrong_password_is_refused() {
    let world = World::start().await;
    world.proxy.serve_databases();
    let yaml = database(&world, "shop", "").replace("engine: postgres", "engine: mysql");
    let data = apply_ready_database(&world, "shop", &yaml).await;
    assert!(data["uri"].starts_with("mysql://"), "a MySQL uri");
    let mut answer = Err(String::new());
    for _ in 0..120 {
        answer = query_mysql_with_uri(&data["uri"]).await;
        if answer.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        answer.unwrap_or_else(|error| panic!("the Secret's uri: {error}\n{}", world.log_tail())),
        "app@% orders"
    );
    let (without_password, _) = split_password(&data["uri"]);
    let wrong = without_password.replacen('@', ":not-the-password@", 1);
    let refused = query_mysql_with_uri(&wrong)
        .await
        .expect_err("a wrong password");
    assert!(refused.contains("Access denied"), "{refused}");
    world.finish().await;
}
